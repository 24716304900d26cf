"""`pip install voxplane` without the `server` extra: the clients work, and the `voxplane` command says
what to install. Each check runs in a Python process where the extra's modules cannot be imported
(None in sys.modules), which is what their absence looks like to an import."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from voxplane.services import cli
from voxplane.services.core.auth import Role

ROOT = Path(__file__).resolve().parent.parent


def _canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def server_extra_modules() -> set[str]:
    """The import names of the distributions pyproject.toml's `server` extra lists."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    wanted = {_canonical(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]) for requirement in extra}
    return {
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if wanted & {_canonical(d) for d in distributions}
    } - STRAYS


# Top-level packages a distribution of the extra installs besides its own: sippy 2.5.0's wheel carries its
# test suite as `tests`, which is nothing the command needs.
STRAYS = {"tests"}


def without_server_extra(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    hide = f"import sys\nfor name in {sorted(server_extra_modules())!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", hide + code, *args], capture_output=True, text=True, timeout=60, cwd=ROOT / "tests"
    )


def test_the_command_checks_for_every_module_of_the_server_extra():
    assert set(cli.SERVER_MODULES) == server_extra_modules()


CLIENT = """
import json
from voxplane import AsyncNumbers, InvalidArgumentError, Numbers

endpoint, key, path = sys.argv[1:]
with Numbers(endpoint=endpoint, api_key=key) as numbers:
    try:
        numbers.create_number(e164_number="+1785", provider_ref="", aor_link="mailto:x")
    except InvalidArgumentError as error:
        fields = sorted(v.field for v in error.field_violations)
    rows = numbers.import_numbers_csv(path, batch_size=2, progress=False).rows
servers = [name for name in sys.modules if name.startswith("voxplane.services")]
print(json.dumps({"fields": fields, "rows": rows, "services_loaded": servers}))
"""


def test_the_clients_work_without_the_server_extra(tenant, fresh_e164, tmp_path):
    path = tmp_path / "numbers.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["e164_number", "provider_ref", "aor_link"])
        writer.writerows([fresh_e164(), "trunk-1", f"sip:{i}@pbx.example.com"] for i in range(3))
    done = without_server_extra(CLIENT, tenant.address, tenant.keys[Role.MEMBER], str(path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "fields": ["aor_link", "e164_number", "provider_ref"],
        "rows": 3,
        "services_loaded": [],
    }


COMMAND = """
from voxplane.services.cli import main
main(sys.argv[1:])
"""


def test_the_command_without_the_server_extra_says_what_to_install():
    for args in (["serve", "all"], ["migrate"], ["keys", "list"], ["inventory", "import", "stock.csv"]):
        done = without_server_extra(COMMAND, *args)
        assert done.returncode == 1, done.stderr
        assert done.stderr == (
            f"voxplane: `{args[0]}` needs the server extra (missing: "
            f"{', '.join(cli.SERVER_MODULES)}): pip install 'voxplane[server]'\n"
        )
    helped = without_server_extra(COMMAND, "--help")
    assert (helped.returncode, helped.stderr) == (0, "")
    assert "{serve,dev,health,migrate,cluster,workspaces,inventory,keys,calls,webhooks,edge}" in helped.stdout
