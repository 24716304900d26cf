"""Two real replicas of every service (`voxplane serve all`, twice) on one PostgreSQL, one client balancing
over both (round_robin): what one made the other reads, and the races between them keep the invariants.
(Scheduled messages across two servers: test_messaging_durability's two-servers test.)"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from voxplane import Numbers
from voxplane._errors import VoxplaneError

from .test_cli import cli
from .test_workers import Workers, pg_env  # noqa: F401  # pg_env: a fixture

pytestmark = pytest.mark.skipif(not os.environ.get("VOXPLANE_TEST_DATABASE_URL"),
                                reason="replicas share PostgreSQL: set VOXPLANE_TEST_DATABASE_URL")


@pytest.fixture
def replicas(pg_env) -> Iterator[list[Workers]]:  # type: ignore[no-untyped-def]  # noqa: F811
    cli(pg_env, "migrate")
    started = [Workers(pg_env, "all", 1), Workers(pg_env, "all", 1)]
    yield started
    for replica in started:
        replica.stop()


def keys(env: dict[str, str], workspace: str, role: str = "member") -> str:
    cli(env, "workspaces", "create", workspace)
    return cli(env, "keys", "create", "--workspace", workspace, "--role", role).stdout.strip()


def rpcs(replica: Workers, method: str) -> int:
    return sum(1 for line in replica.lines if line["msg"] == "rpc" and line["method"].endswith("/" + method))


def test_one_client_balances_over_two_replicas_and_races_keep_the_invariants(replicas, pg_env):  # noqa: F811
    a, b = replicas
    key = keys(pg_env, "acme")
    with Numbers(endpoint=[a.address, b.address], api_key=key) as numbers:
        made = [numbers.create_number(provider_ref="t", e164_number=f"+1415555{i:04d}") for i in range(8)]
        for number in made:  # each read by whichever replica round robin picks
            assert numbers.get_number(number.ref).e164_number == number.e164_number
    for replica in (a, b):  # round robin: each replica answered its share, not one all of them
        replica.wait_for(lambda r=replica: rpcs(r, "GetNumber") >= 4)
        assert rpcs(replica, "CreateNumber") == 4 and rpcs(replica, "GetNumber") == 4

    # Unique numbers: the same E.164 created at once on both replicas: one succeeds, the others ALREADY_EXISTS.
    outcomes: list[str] = []

    def create(address: str) -> None:
        with Numbers(endpoint=address, api_key=key) as own:
            try:
                own.create_number(provider_ref="t", e164_number="+14155559999")
                outcomes.append("OK")
            except VoxplaneError as error:
                outcomes.append(error.code.name)

    racers = [threading.Thread(target=create, args=(r.address,)) for r in (a, b) * 4]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert Counter(outcomes) == {"OK": 1, "ALREADY_EXISTS": 7}, outcomes

    # The acquire race: workspaces on both replicas racing for the same inventory numbers: each acquired once.
    stock = [f"+44122490{i:04d}" for i in range(5)]
    operator = keys(pg_env, "operator", "operator")
    with Numbers(endpoint=a.address, api_key=operator) as numbers:
        numbers.import_inventory(entries=[{"e164_number": e164, "provider_ref": "trunk-uk"} for e164 in stock])
    rivals = [keys(pg_env, f"rival{i}") for i in range(4)]
    won: list[tuple[str, str]] = []
    refused: list[str] = []

    def acquire(address: str, rival: str) -> None:
        with Numbers(endpoint=address, api_key=rival) as own:
            for e164 in stock:
                try:
                    own.acquire_number(e164_number=e164)
                    won.append((rival, e164))
                except VoxplaneError as error:
                    refused.append(error.code.name)

    racers = [threading.Thread(target=acquire, args=(r.address, rival))
              for rival in rivals for r in (a, b)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(e164 for _, e164 in won) == stock, won  # each number once, none lost
    assert len(refused) == len(racers) * len(stock) - len(stock) and "INTERNAL" not in refused, Counter(refused)
    print(f"acquire race: {len(stock)} numbers, {len(racers)} racers over 2 replicas, refusals {Counter(refused)}")
