"""The Node client (clients/node) against a real server: node's test runner drives every service.

`make test` builds clients/node (npm ci, tsc) before the suite; the Node tests are written with
today's field names in clients/node/test/contract.ts.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from pypdf import PdfWriter

from voxplane.services.core.auth import Role

from .test_resilience import FlakyNumbers

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


def test_node_client_drives_every_service(tenant, fresh_e164, tmp_path):
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

