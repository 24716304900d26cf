"""The edge: what Kamailio reads in voxplane's database, kept in step with Agents; and its kamailio.cfg."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from sqlalchemy import insert, select, text

from voxplane.services.edge.kamailio import kamailio_database_url
from voxplane.services.edge.models import location

from .test_agents import create, fresh_domain

VOXPLANE = Path(sys.executable).parent / "voxplane"


def register(db, username: str, domain: str) -> None:  # type: ignore[no-untyped-def]
    """A registration as Kamailio's usrloc (db_mode 3) writes one."""
    row = {"ruid": f"uloc-{secrets.token_hex(8)}", "username": username, "domain": domain,
           "contact": f"sip:{username}@127.0.0.1:5062", "expires": datetime(2030, 1, 1)}
    db.transaction(lambda session: session.execute(insert(location).values(row)), write=True)


def registered(db, username: str, domain: str) -> int:  # type: ignore[no-untyped-def]
    query = select(location.c.contact).where(location.c.username == username, location.c.domain == domain)
    return len(db.transaction(lambda session: session.execute(query).all(), write=False))


def test_version_rows_are_those_kamailio_checks(db):
    rows = db.transaction(lambda s: s.execute(text("SELECT table_name, table_version FROM version")).all(), write=False)
    assert dict(rows) == {"version": 1, "location": 9, "sip_subscribers": 7}


def test_deleting_an_agent_drops_its_registrations_and_no_others(tenant, db):
    domains = [fresh_domain(), fresh_domain()]
    with tenant.agents() as agents:
        agent = create(agents, username="erin", domains=domains)
        other = create(agents, username="frank", domains=domains[:1])
        for domain in domains:
            register(db, "erin", domain)
        register(db, "frank", domains[0])
        agents.delete_agent(agent.ref)
        assert [registered(db, "erin", d) for d in domains] == [0, 0]
        assert registered(db, "frank", domains[0]) == 1
        agents.delete_agent(other.ref)


def test_disabling_an_agent_drops_its_registrations(tenant, db):
    domain = fresh_domain()
    with tenant.agents() as agents:
        agent = create(agents, username="gina", domains=[domain])
        register(db, "gina", domain)
        agents.update_agent(ref=agent.ref, name="Gina")
        assert registered(db, "gina", domain) == 1  # a change of name leaves the phone registered
        agents.update_agent(ref=agent.ref, enabled=False)
        assert registered(db, "gina", domain) == 0


def test_new_credentials_drop_the_registrations_made_with_the_old(tenant, db):
    old, new = fresh_domain(), fresh_domain()
    with tenant.agents() as agents:
        agent = create(agents, username="hank", domains=[old])
        register(db, "hank", old)
        agents.update_agent(ref=agent.ref, domains=[old, new], secret="Another-secret-1")
        assert registered(db, "hank", old) == 0


def test_database_urls_become_kamailios(tmp_path):
    assert kamailio_database_url(f"sqlite:///{tmp_path}/v.db") == f"sqlite:///{tmp_path}/v.db"
    assert kamailio_database_url("postgresql+psycopg://kam:pw@db.internal:6543/voxplane") == (
        "postgres://kam:pw@db.internal:6543/voxplane")
    assert kamailio_database_url("postgresql://postgres@127.0.0.1/test") == "postgres://postgres@127.0.0.1:5432/test"


def test_edge_config_names_every_bad_setting_at_once():
    done = subprocess.run([VOXPLANE, "edge", "config", "--listen", "nope", "--gateway", "127.0.0.1:70000",
                           "--trunk", "10.0.0.0/33", "--domain", "not a host", "--database-url", "sqlite://"],
                          capture_output=True, text=True)
    assert done.returncode == 1
    for said in ("listen: 'nope' is not an IP address", "gateway: '70000' is not a port",
                 "trunks: '10.0.0.0/33' is not an IP address or network", "domains: 'not a host'",
                 "database_url: Kamailio needs the SQLite database in a file"):
        assert said in done.stderr


def test_edge_config_serves_the_domains_and_trusts_the_gateway_and_trunks_by_source(tmp_path):
    done = subprocess.run([VOXPLANE, "edge", "config", "--listen", "127.0.0.1:5066", "--domain", "sip.local",
                           "--domain", "Pbx.Example.COM.", "--gateway", "127.0.0.1:5090", "--trunk", "203.0.113.0/24",
                           "--trunk", "[2001:db8::7]:5060", "--database-url", f"sqlite:///{tmp_path}/v.db"],
                          capture_output=True, text=True, check=True)
    config = done.stdout
    assert "listen=udp:127.0.0.1:5066\nlisten=tcp:127.0.0.1:5066\n" in config
    assert 'alias="sip.local"\nalias="pbx.example.com"\n' in config
    assert '(is_in_subnet("$si", "127.0.0.1/32") && $sp == 5090)' in config
    assert 'is_in_subnet("$si", "203.0.113.0/24") || (is_in_subnet("$si", "2001:db8::7/128") && $sp == 5060)' in config
    assert f'#!define DBURL "sqlite:///{tmp_path}/v.db"' in config
    for setting in ('"calculate_ha1", 0', '"password_column", "ha1"', '"nonce_count", 1', '"db_mode", 3'):
        assert setting in config
    if shutil.which("kamailio"):  # Kamailio's own check of the file, when it is here to make it
        (tmp_path / "kamailio.cfg").write_text(config)
        checked = subprocess.run(["kamailio", "-c", "-f", tmp_path / "kamailio.cfg"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        assert "warning" not in checked.stderr.lower()

