"""The edge: what Kamailio reads in voxplane's database, kept in step with Agents."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import insert, select, text

from voxplane.services.edge.models import location

from .test_agents import create, fresh_domain


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
