"""The edge: what Kamailio reads in voxplane's database, kept in step with Agents; its kamailio.cfg; and
real Kamailio 5.6 started by `voxplane edge run` on the test database, with sipp as the phones.

Without the Debian packages (kamailio, kamailio-sqlite-modules, kamailio-postgres-modules, sip-tester) the
tests that need them skip, unless CI=true: there they must run (`.ci/run` installs the packages).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text

from voxplane.services.edge.kamailio import KAMAILIO_MODULES, kamailio_database_url
from voxplane.services.edge.models import location

from .sip_peers import free_port, missing_peers
from .test_agents import create, fresh_domain

VOXPLANE = Path(sys.executable).parent / "voxplane"
SCENARIOS = Path(__file__).resolve().parent / "sipp"


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



def test_edge_config_spreads_calls_over_the_gateways_workers_and_trusts_each(tmp_path):
    """`serve calls --workers 2`: worker i takes the gateway's port + i; the edge trusts both and sends each
    call to the one its Call-ID hashes to."""
    done = subprocess.run([VOXPLANE, "edge", "config", "--gateway", "127.0.0.1:5070", "--gateway-workers", "2",
                           "--database-url", f"sqlite:///{tmp_path}/v.db"], capture_output=True, text=True, check=True)
    config = done.stdout
    assert '(is_in_subnet("$si", "127.0.0.1/32") && $sp >= 5070 && $sp <= 5071)' in config
    assert '$var(worker) = $(ci{s.corehash}) mod 2;' in config
    for worker, port in ((0, 5070), (1, 5071)):
        assert f'if ($var(worker) == {worker}) $du = "sip:127.0.0.1:{port}";' in config
    if shutil.which("kamailio"):
        (tmp_path / "kamailio.cfg").write_text(config)
        checked = subprocess.run(["kamailio", "-c", "-f", tmp_path / "kamailio.cfg"], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_edge_run_says_what_to_install_and_which_setting_is_wrong(tmp_path):
    url = f"sqlite:///{tmp_path}/v.db"
    without_kamailio = {**os.environ, "PATH": str(VOXPLANE.parent)}
    done = subprocess.run([VOXPLANE, "edge", "run", "--database-url", url, "--work-dir", tmp_path],
                          capture_output=True, text=True, env=without_kamailio, timeout=60)
    assert done.returncode == 1
    assert "voxplane: kamailio is not installed: apt-get install --no-install-recommends kamailio" in done.stderr
    done = subprocess.run([VOXPLANE, "edge", "run", "--database-url", url, "--rtp-ports", "40000"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "rtp_ports: '40000' is not a range of UDP ports like '30000-30999'" in done.stderr

# Real Kamailio and sipp.

def require_edge_packages() -> None:
    missing = [name for name in ("kamailio", "sipp") if shutil.which(name) is None]
    missing += [f"{KAMAILIO_MODULES}/{module}.so" for module in ("db_sqlite", "db_postgres")
                if not (KAMAILIO_MODULES / f"{module}.so").exists()]
    if missing:
        missing_peers(f"the edge tests need Kamailio and sipp; missing: {', '.join(missing)} (apt-get install "
                      "kamailio kamailio-sqlite-modules kamailio-postgres-modules sip-tester)")


@dataclass
class RunningEdge:
    port: int
    domain: str
    log: Path
    gateway_port: int  # what a sipp UAC bound to 127.0.0.1 at this port is taken for
    trunk_port: int
    rtpengine_ng: str  # where the rtpengine `voxplane edge run` started takes NG commands

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])


def options_answered(port: int, count: int = 1, wait: float = 0.2) -> int:
    """How many of `count` OPTIONS, sent at once to the proxy, it answered 200 within `wait` seconds."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        here = probe.getsockname()[1]
        for _ in range(count):
            probe.sendto((f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{here};branch=z9hG4bK"
                          f"{secrets.token_hex(6)}\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
                          f"Call-ID: {secrets.token_hex(8)}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                          "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
        answered, deadline = 0, time.monotonic() + wait
        while answered < count and (left := deadline - time.monotonic()) > 0:
            probe.settimeout(left)
            try:
                answered += probe.recv(4096).startswith(b"SIP/2.0 200")
            except OSError:
                break
        return answered


@contextlib.contextmanager
def running_edge(database_url: str, work: Path, **settings: str) -> Iterator[RunningEdge]:
    """`voxplane edge run` on the database: Kamailio on an ephemeral port (and rtpengine when installed), with
    these VOXPLANE_EDGE_* settings besides."""
    require_edge_packages()
    port, domain = free_port(), f"edge-{secrets.token_hex(4)}.example.com"
    gateway_port, trunk_port, rtpengine_ng = free_port(), free_port(), f"127.0.0.1:{free_port()}"
    rtp = 40000 + secrets.randbelow(2000) * 10
    log = work / "edge.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [VOXPLANE, "edge", "run", "--listen", f"127.0.0.1:{port}", "--domain", domain,
             "--gateway", f"127.0.0.1:{gateway_port}", "--trunk", f"127.0.0.1:{trunk_port}",
             "--database-url", database_url, "--work-dir", work.name,  # relative, as `make edge` gives it
             "--rtpengine-ng", rtpengine_ng, "--rtp-ports", f"{rtp}-{rtp + 9}"],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=work.parent,
            env={**os.environ, **{f"VOXPLANE_EDGE_{name.upper()}": value for name, value in settings.items()}},
        )
    running = RunningEdge(port, domain, log, gateway_port, trunk_port, rtpengine_ng)
    try:
        deadline = time.monotonic() + 30
        while not options_answered(port):
            assert process.poll() is None, f"voxplane edge run stopped ({process.returncode}):\n{running.log_tail()}"
            assert time.monotonic() < deadline, f"Kamailio did not answer in 30 s:\n{running.log_tail()}"
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0, running.log_tail()


@pytest.fixture(scope="session")
def edge(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEdge]:
    # Every test phone is 127.0.0.1: pike would take quick tests for a flood.
    with running_edge(database_url, tmp_path_factory.mktemp("edge"), flood_requests="10000") as running:
        yield running


def sipp_register(edge: RunningEdge, tmp_path: Path, username: str, secret: str, port: int = 0,
                  transport: str = "u1") -> list[int]:
    """The statuses a sipp phone (at `port`, else any; over UDP, or TCP with transport "t1") got for
    REGISTER (challenged, then with its credentials), in order."""
    trace = tmp_path / f"register-{secrets.token_hex(4)}.log"
    done = subprocess.run(
        ["sipp", f"127.0.0.1:{edge.port}", "-sf", SCENARIOS / "register.xml", "-i", "127.0.0.1", "-t", transport,
         "-p", str(port or free_port()), "-s", username, "-au", username, "-ap", secret, "-key", "domain", edge.domain,
         "-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error", "-trace_msg", "-message_file", trace],
        capture_output=True, text=True, timeout=30,
    )
    statuses = [int(code) for code in re.findall(r"^SIP/2\.0 (\d{3}) ", trace.read_text(), re.MULTILINE)]
    assert done.returncode == 0, f"sipp failed ({done.returncode}), statuses {statuses}:\n{edge.log_tail()}"
    return list(dict.fromkeys(statuses))  # retransmissions answered again count once


def test_an_agent_registers_with_its_secret_and_only_with_it(tenant, db, edge, tmp_path):
    secret = "Secret-" + secrets.token_hex(8)
    with tenant.agents() as agents:
        agent = agents.create_agent(username="ivy", secret=secret, domains=[edge.domain])
        assert sipp_register(edge, tmp_path, "ivy", "Wrong-" + secrets.token_hex(8)) == [401, 403]
        assert registered(db, "ivy", edge.domain) == 0
        assert sipp_register(edge, tmp_path, "ivy", secret) == [401, 200]
        assert registered(db, "ivy", edge.domain) == 1  # Kamailio wrote it to voxplane's database
        assert sipp_register(edge, tmp_path, "ivy", secret, transport="t1") == [401, 200]  # a second phone, on TCP
        assert registered(db, "ivy", edge.domain) == 2
        agents.delete_agent(agent.ref)
    assert registered(db, "ivy", edge.domain) == 0
    assert sipp_register(edge, tmp_path, "ivy", secret) == [401, 403]


def test_a_disabled_agent_cannot_register_until_enabled_again(tenant, db, edge, tmp_path):
    secret = "Secret-" + secrets.token_hex(8)
    with tenant.agents() as agents:
        agent = agents.create_agent(username="jack", secret=secret, domains=[edge.domain])
        assert sipp_register(edge, tmp_path, "jack", secret) == [401, 200]
        agents.update_agent(ref=agent.ref, enabled=False)
        assert registered(db, "jack", edge.domain) == 0
        assert sipp_register(edge, tmp_path, "jack", secret) == [401, 403]
        agents.update_agent(ref=agent.ref, enabled=True)
        assert sipp_register(edge, tmp_path, "jack", secret) == [401, 200]
        agents.delete_agent(agent.ref)


def sipp_call(edge: RunningEdge, tmp_path: Path, caller: str, callee: str, *, port: int = 0, secret: str = "",
              scenario: str = "call") -> list[int]:
    """The statuses a sipp phone (at `port`, else any) got calling `callee`@domain as `caller` with a scenario
    of tests/sipp/ (`caller`: with media), in order (answering a 407 with `secret`)."""
    trace = tmp_path / f"call-{secrets.token_hex(4)}.log"
    done = subprocess.run(
        ["sipp", f"127.0.0.1:{edge.port}", "-sf", SCENARIOS / f"{scenario}.xml", "-i", "127.0.0.1",
         "-p", str(port or free_port()), "-s", callee, "-key", "caller", caller, "-key", "domain", edge.domain,
         "-au", caller, "-ap", secret or "none", "-m", "1", "-nostdin", "-timeout", "10s", "-timeout_error",
         "-mi", "127.0.0.1", "-mp", str(free_port()), "-trace_msg", "-message_file", trace],
        capture_output=True, text=True, timeout=30,
    )
    statuses = [int(code) for code in re.findall(r"^SIP/2\.0 (\d{3}) ", trace.read_text(), re.MULTILINE)]
    assert done.returncode == 0, f"sipp failed ({done.returncode}), statuses {statuses}:\n{edge.log_tail()}"
    return [status for status in dict.fromkeys(statuses) if status != 100]


class Phone:
    """A sipp phone at `port` that answers one call; `requests` are what reached it, once it is done."""

    def __init__(self, tmp_path: Path, port: int):
        self.trace = tmp_path / f"phone-{port}.log"
        self.process = subprocess.Popen(
            ["sipp", "-sf", SCENARIOS / "proxied_answer.xml", "-i", "127.0.0.1", "-p", str(port), "-m", "1", "-nostdin",
             "-timeout", "15s", "-timeout_error", "-trace_msg", "-message_file", self.trace],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while _port_is_free(port):  # sipp listens once it holds the port
            assert time.monotonic() < deadline and self.process.poll() is None, "the sipp phone did not start"
            time.sleep(0.02)

    def done(self) -> tuple[list[str], bool]:
        """The methods of the requests it got, and whether the INVITE carried the edge's Record-Route."""
        assert self.process.wait(timeout=20) == 0, self.trace.read_text()
        text = self.trace.read_text()
        return re.findall(r"^(INVITE|ACK|BYE) sip:", text, re.MULTILINE), "Record-Route: <sip:127.0.0.1" in text


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        try:
            udp.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_the_gateway_reaches_a_registered_agent_until_it_is_deleted(tenant, edge, tmp_path):
    secret, phone_port = "Secret-" + secrets.token_hex(8), free_port()
    with tenant.agents() as agents:
        agent = agents.create_agent(username="kate", secret=secret, domains=[edge.domain])
        assert sipp_register(edge, tmp_path, "kate", secret, port=phone_port) == [401, 200]
        phone = Phone(tmp_path, phone_port)
        # Trusted by source address and port: no challenge.
        assert sipp_call(edge, tmp_path, "gateway", "kate", port=edge.gateway_port) == [180, 200]
        assert phone.done() == (["INVITE", "ACK", "BYE"], True)
        agents.delete_agent(agent.ref)
    assert sipp_call(edge, tmp_path, "gateway", "kate", port=edge.gateway_port) == [480]


def test_an_agent_calls_another_with_its_own_credentials_only(tenant, edge, tmp_path):
    leo, mia = "Secret-" + secrets.token_hex(8), "Secret-" + secrets.token_hex(8)
    phone_port = free_port()
    with tenant.agents() as agents:
        agents.create_agent(username="leo", secret=leo, domains=[edge.domain])
        agents.create_agent(username="mia", secret=mia, domains=[edge.domain])
        agents.create_agent(username="ned", secret=mia, domains=[edge.domain])  # never registers
        assert sipp_register(edge, tmp_path, "mia", mia, port=phone_port) == [401, 200]
        phone = Phone(tmp_path, phone_port)
        assert sipp_call(edge, tmp_path, "leo", "mia", secret=leo) == [407, 180, 200]
        assert phone.done() == (["INVITE", "ACK", "BYE"], True)
        assert sipp_call(edge, tmp_path, "leo", "mia", secret=mia) == [407, 403]
        assert sipp_call(edge, tmp_path, "leo", "ned", secret=leo) == [407, 480]
        assert sipp_call(edge, tmp_path, "leo", "ned", port=edge.trunk_port) == [404]  # a trunk reaches numbers only


def test_an_address_that_fails_to_authenticate_too_often_is_refused_for_a_while(tenant, database_url, tmp_path):
    secret = "Secret-" + secrets.token_hex(8)
    with running_edge(database_url, tmp_path, max_auth_failures="2", auth_failure_window="2",
                      flood_requests="10000") as edge, tenant.agents() as agents:
        agents.create_agent(username="olga", secret=secret, domains=[edge.domain])
        assert sipp_register(edge, tmp_path, "olga", "Wrong-" + secrets.token_hex(8)) == [401, 403]
        assert sipp_register(edge, tmp_path, "nobody", secret) == [401, 403]
        # The right secret now: refused before any challenge, since 127.0.0.1 guessed twice.
        trace = tmp_path / "blocked.log"
        subprocess.run(["sipp", f"127.0.0.1:{edge.port}", "-sf", SCENARIOS / "register.xml", "-i", "127.0.0.1",
                        "-p", str(free_port()), "-s", "olga", "-key", "domain", edge.domain, "-m", "1", "-nostdin",
                        "-timeout", "5s", "-trace_msg", "-message_file", trace], capture_output=True, timeout=30)
        assert "SIP/2.0 403 Too Many Failed Authentications" in trace.read_text()
        time.sleep(3.5)  # the window (2 s) and htable's expiry sweep passed
        assert sipp_register(edge, tmp_path, "olga", secret) == [401, 200]


def test_a_flood_from_one_address_is_dropped(database_url, tmp_path):
    with running_edge(database_url, tmp_path, flood_requests="5") as edge:
        answered = options_answered(edge.port, count=40, wait=1)
    assert 5 <= answered < 20, answered


def test_a_trunks_call_to_a_voxplane_number_goes_to_the_gateway_until_it_is_released(tenant, edge, tmp_path,
                                                                                       fresh_e164):
    e164 = fresh_e164()
    with tenant.numbers() as numbers:
        number = numbers.create_number(e164_number=e164, provider_ref="trunk-1", aor_link=f"sip:kate@{edge.domain}")
        gateway = Phone(tmp_path, edge.gateway_port)
        assert sipp_call(edge, tmp_path, "carrier", e164, port=edge.trunk_port) == [180, 200]
        assert gateway.done() == (["INVITE", "ACK", "BYE"], True)
        numbers.release_number(number.ref)
    assert sipp_call(edge, tmp_path, "carrier", e164, port=edge.trunk_port) == [404]


def test_an_agents_call_to_any_number_goes_to_the_gateway(tenant, edge, tmp_path):
    secret = "Secret-" + secrets.token_hex(8)
    with tenant.agents() as agents:
        agents.create_agent(username="pia", secret=secret, domains=[edge.domain])
    gateway = Phone(tmp_path, edge.gateway_port)
    # Not a voxplane number: to the gateway all the same, where Calls sees it (and refuses it: calls from a
    # phone to outside numbers are not carried yet).
    assert sipp_call(edge, tmp_path, "pia", "+442079460123", secret=secret) == [407, 180, 200]
    assert gateway.done() == (["INVITE", "ACK", "BYE"], True)


def test_a_register_waits_out_a_write_voxplane_holds_on_sqlite(tenant, db, database_url, edge, tmp_path):
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's writers wait for each other by themselves")
    secret = "Secret-" + secrets.token_hex(8)
    with tenant.agents() as agents:
        agent = agents.create_agent(username="quinn", secret=secret, domains=[edge.domain])
    holding, release = threading.Event(), threading.Event()

    def hold_the_write_lock(session):  # type: ignore[no-untyped-def]
        session.execute(text("UPDATE agents SET name = name WHERE ref = :ref"), {"ref": agent.ref})
        holding.set()
        release.wait(timeout=10)

    writer = threading.Thread(target=db.transaction, args=(hold_the_write_lock,), kwargs={"write": True})
    writer.start()
    assert holding.wait(timeout=10)
    threading.Timer(0.4, release.set).start()  # a long write, for voxplane, but over before a second
    try:
        assert sipp_register(edge, tmp_path, "quinn", secret) == [401, 200]
    finally:
        release.set()
        writer.join(timeout=10)
    assert registered(db, "quinn", edge.domain) == 1
