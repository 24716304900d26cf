"""The Node client (clients/node) against a real server: node's test runner drives every service.

`make test` builds clients/node (npm ci, tsc) before the suite; the Node tests are written with
today's field names in clients/node/test/contract.ts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pypdf import PdfWriter

from voxplane.services.core.auth import Role

from .conftest import postgres_database
from .sip_peers import missing_peers
from .test_replicas import keys, rpcs
from .test_resilience import FlakyNumbers
from .test_tls import pki  # noqa: F401  # a fixture
from .test_workers import Workers

NODE_CLIENT = Path(__file__).resolve().parent.parent / "clients" / "node"
TESTS = NODE_CLIENT / "dist" / "test"


FAX_PAGES = 3


def fax_pdf(path: Path) -> Path:
    """A real PDF of FAX_PAGES pages, over 1 MB (an attached file pads it), so that it takes two chunks."""
    writer = PdfWriter()
    for _ in range(FAX_PAGES):
        writer.add_blank_page(width=595, height=842)
    writer.add_attachment("padding.bin", os.urandom(1_300_000))
    with path.open("wb") as out:
        writer.write(out)
    return path


def test_node_client_drives_every_service(tenant, other_tenant, fresh_e164, tmp_path):
    node = shutil.which("node")
    assert node, "the Node client's tests need node (20 or later) on PATH"
    files = sorted(str(p) for p in TESTS.glob("*.test.js"))
    assert files, f"no compiled Node tests in {TESTS}: run `make test` (it runs npm ci and npm run build)"
    flaky = FlakyNumbers(failures=2)
    try:
        env = {
            **os.environ,
            "VOXPLANE_ENDPOINT": tenant.address,
            "VOXPLANE_API_KEY": tenant.keys[Role.MEMBER],
            "VOXPLANE_TEST_E164S": ",".join(fresh_e164() for _ in range(8)),
            "VOXPLANE_TEST_ENDPOINT_E164S": ",".join(fresh_e164() for _ in range(2)),
            "VOXPLANE_TEST_ENDPOINT_API_KEY": other_tenant.keys[Role.MEMBER],
            "VOXPLANE_TEST_FLAKY_ENDPOINT": f"127.0.0.1:{flaky.port}",
            "VOXPLANE_TEST_FAX_PDF": str(fax_pdf(tmp_path / "offer.pdf")),
            "VOXPLANE_TEST_FAX_PAGES": str(FAX_PAGES),
        }
        done = subprocess.run(
            [node, "--test", "--test-reporter=tap", *files],
            cwd=NODE_CLIENT, env=env, capture_output=True, text=True, timeout=120,
        )
    finally:
        flaky.close()
    summary = dict(re.findall(r"^# (\w+) (\d+)$", done.stdout, re.MULTILINE))
    assert done.returncode == 0 and summary.get("fail") == "0", done.stdout + done.stderr
    assert summary.get("skipped") == "0" and int(summary.get("pass", 0)) >= 10, done.stdout
    # The channel retried the read, the client the create (one request_id), nobody the update.
    assert flaky.calls == {"GetNumber": 3, "CreateNumber": 3, "UpdateNumber": 1}
    assert len(set(flaky.request_ids)) == 1 and flaky.request_ids[0]



@pytest.fixture
def tls_replicas(pki, tmp_path):  # type: ignore[no-untyped-def]  # noqa: F811
    """Two `serve all` replicas over TLS on one PostgreSQL, and the environment they were started with."""
    if not os.environ.get("VOXPLANE_TEST_DATABASE_URL"):
        missing_peers("two replicas share PostgreSQL (on SQLite one process is the supported deployment): "
                      "set VOXPLANE_TEST_DATABASE_URL")
    with postgres_database() as database:
        env = {**os.environ, "VOXPLANE_DATABASE_URL": database.url, "VOXPLANE_DATA_DIR": str(tmp_path / "data"),
               "VOXPLANE_SHUTDOWN_GRACE": "5", "VOXPLANE_TLS_CERT": str(pki.server.cert),
               "VOXPLANE_TLS_KEY": str(pki.server.key), "VOXPLANE_TLS_CA": str(pki.ca.pem)}
        started = [Workers(env, "all", 1), Workers(env, "all", 1)]
        try:
            yield started, env
        finally:
            for replica in started:
                replica.stop()


CREATES = 8


def test_the_node_client_balances_over_two_replicas_over_tls(tls_replicas, pki, fresh_e164):  # noqa: F811
    node = shutil.which("node")
    assert node, "the Node client's tests need node (20 or later) on PATH"
    (a, b), env = tls_replicas
    # The certificate names localhost: each endpoint a name, verified by it (the channel's authority).
    endpoints = ",".join(replica.address.replace("127.0.0.1", "localhost") for replica in (a, b))
    done = subprocess.run(
        [node, str(TESTS / "balanced.js")], cwd=NODE_CLIENT, capture_output=True, text=True, timeout=60,
        env={**env, "VOXPLANE_ENDPOINT": endpoints, "VOXPLANE_API_KEY": keys(env, "acme"),
             "VOXPLANE_TEST_E164S": ",".join(fresh_e164() for _ in range(CREATES))},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Round robin takes turns per call (a create on one replica, its read on the other), so each replica's
    # share is counted over both methods; calls made before the second connection was ready all go to the first.
    def answered() -> list[int]:
        return [rpcs(replica, "CreateNumber") + rpcs(replica, "GetNumber") for replica in (a, b)]

    logged_by = time.monotonic() + 30  # each replica logs an RPC as it answers it
    while sum(answered()) < 2 * CREATES and time.monotonic() < logged_by:
        time.sleep(0.05)
    shares = answered()
    print("calls answered per replica:", shares)
    assert sum(shares) == 2 * CREATES and min(shares) >= CREATES / 2, shares  # both took turns
