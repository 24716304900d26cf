"""Per-workspace limits against the real server, on both backends: the request rate (tokens leased in
batches), the service keys' routing lookups left out of it, calls and messages created per minute
(exact under concurrency), a workspace's own limits set with `voxplane workspaces limits`, and the
client waiting out RetryInfo."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from sqlalchemy import event

from voxplane import ResourceExhaustedError
from voxplane.calls.v1 import calls_pb2, calls_pb2_grpc
from voxplane.numbers.v1 import numbers_pb2, numbers_pb2_grpc
from voxplane.services.core.auth import Role

from .test_calls import ANSWERS, new_agent, new_number
from .test_cli import cli
from .test_messaging import DELIVERS, owned_number
from .test_node_client import NODE_CLIENT


def retry_info(error: grpc.RpcError) -> tuple[str, float]:
    """The message and RetryInfo delay (seconds) of a RESOURCE_EXHAUSTED error."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and status.code == code_pb2.RESOURCE_EXHAUSTED
    info = error_details_pb2.RetryInfo()
    assert any(detail.Unpack(info) for detail in status.details)
    return status.message, info.retry_delay.ToTimedelta().total_seconds()


@pytest.fixture
def stub(server) -> Iterator[numbers_pb2_grpc.NumbersStub]:  # type: ignore[no-untyped-def]
    """A bare stub: no service config, so nothing is retried."""
    with grpc.insecure_channel(server.address) as channel:
        yield numbers_pb2_grpc.NumbersStub(channel)


def list_numbers(stub: numbers_pb2_grpc.NumbersStub, key: str) -> Any:
    return stub.ListNumbers(numbers_pb2.ListNumbersRequest(), metadata=(("authorization", f"Bearer {key}"),))


def until_refused(call: Any, most: int = 100) -> tuple[int, grpc.RpcError]:
    """Makes `call()` until it fails: how many succeeded, and the error."""
    for made in range(most):
        try:
            call()
        except grpc.RpcError as error:
            return made, error
    raise AssertionError(f"{most} calls, none refused")


def test_over_the_request_rate_is_resource_exhausted_with_retry_info(tenant, stub, environment):
    environment.set(VOXPLANE_RATE_LIMIT_REQUESTS="5")
    made, error = until_refused(lambda: list_numbers(stub, tenant.keys[Role.MEMBER]))
    assert 5 <= made <= 11  # within one second, or across one second's end (and a batch of 1 carried over)
    message, delay = retry_info(error)
    assert "limit of 5 requests per second" in message
    assert 0 < delay <= 1
    time.sleep(delay)
    list_numbers(stub, tenant.keys[Role.MEMBER])  # the next second has tokens again


def test_service_keys_routing_lookups_are_exempt_and_their_other_calls_are_not(tenant, stub, fresh_e164, environment):
    environment.set(VOXPLANE_RATE_LIMIT_REQUESTS="3")  # before the workspace's first request leases tokens
    e164 = new_number(tenant, fresh_e164())
    service = (("authorization", f"Bearer {tenant.keys[Role.SERVICE]}"),)
    for _ in range(30):
        stub.GetIngressInfo(numbers_pb2.GetIngressInfoRequest(e164_number=e164), metadata=service)
        stub.GetMessagingRoute(numbers_pb2.GetMessagingRouteRequest(e164_number=e164), metadata=service)
    made, error = until_refused(lambda: list_numbers(stub, tenant.keys[Role.SERVICE]))
    assert 1 <= made <= 6  # what creating the number left of this second, or the next second's too
    retry_info(error)
    # A member's GetIngressInfo is counted like any request.
    made, error = until_refused(lambda: stub.GetIngressInfo(
        numbers_pb2.GetIngressInfoRequest(e164_number=e164), metadata=(("authorization", f"Bearer {tenant.keys[Role.MEMBER]}"),)
    ))
    assert made <= 6
    retry_info(error)


def test_request_tokens_are_leased_in_batches(server, tenant, stub, environment):
    environment.set(VOXPLANE_RATE_LIMIT_REQUESTS="1000")  # leases of 50
    leases: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if "rate_windows" in statement:
            leases.append(statement)

    engine = server.server.db.writer
    event.listen(engine, "before_cursor_execute", count)
    try:
        started = time.monotonic()
        for _ in range(200):
            list_numbers(stub, tenant.keys[Role.MEMBER])
        seconds = time.monotonic() - started
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # 200 requests need 4 leases, whatever second they fall in: a batch outlives its second.
    assert len(leases) == 4, (len(leases), seconds)


def at_least_seconds_left_in_minute(seconds: float) -> None:
    """Waits for the next minute when this one ends too soon: a test of a per-minute count stays in one."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)


def created_of_12_at_5(create: Callable[[int], Any], limit: str) -> int:
    """How many of 12 concurrent `create(i)` succeed under a limit of 5 (each refusal names `limit`)."""
    at_least_seconds_left_in_minute(15)

    def attempt(i: int) -> bool:
        try:
            create(i)
            return True
        except ResourceExhaustedError as error:
            assert f"limit of 5 {limit}" in error.message
            return False

    with ThreadPoolExecutor(12) as pool:
        return sum(pool.map(attempt, range(12)))


def test_call_creation_limit_is_exact_under_concurrency(tenant, environment):
    agent = new_agent(tenant)
    environment.set(VOXPLANE_RATE_LIMIT_CALLS="5")

    def create(_: int) -> None:
        with tenant.calls(max_attempts=1) as calls:
            calls.create_call(source=agent.ref, destination=ANSWERS)

    assert created_of_12_at_5(create, "calls created per minute") == 5


def test_message_creation_limit_is_exact_under_concurrency(tenant, fresh_e164, environment):
    source = owned_number(tenant, fresh_e164)
    environment.set(VOXPLANE_RATE_LIMIT_MESSAGES="5")

    def send(i: int) -> None:
        with tenant.messaging(max_attempts=1) as messaging:
            messaging.send_message(source=source, destination=DELIVERS, body=f"hello {i}")

    assert created_of_12_at_5(send, "messages sent per minute") == 5


def workspace_limits(database_url: str, *arguments: str) -> dict[str, tuple[str, str]]:
    """`voxplane workspaces limits …` on the server's database: each limit's value, and whose it is."""
    shown = cli({**os.environ, "VOXPLANE_DATABASE_URL": database_url}, "workspaces", "limits", *arguments).stdout
    return {name: (value, whose) for name, value, whose in (line.split("\t") for line in shown.splitlines())}


# Seconds the server keeps a workspace's overrides read, in these tests (VOXPLANE_RATE_LIMIT_REFRESH).
REFRESH = 0.5


def test_a_workspace_call_limit_below_the_default_refuses_the_nth_create_until_reset(
        tenant, other_tenant, database_url, server, environment):
    environment.set(VOXPLANE_RATE_LIMIT_REFRESH=str(REFRESH))
    shown = workspace_limits(database_url, tenant.name, "--calls-per-minute", "3")
    assert shown == {"requests_per_second": ("10000", "default"), "calls_per_minute": ("3", "workspace"),
                     "messages_per_minute": ("600000", "default")}
    agent = new_agent(tenant)
    at_least_seconds_left_in_minute(15)
    with grpc.insecure_channel(server.address) as channel:
        calls = calls_pb2_grpc.CallsStub(channel)

        def create() -> Any:
            return calls.CreateCall(calls_pb2.CreateCallRequest(source=agent.ref, destination=ANSWERS),
                                    metadata=(("authorization", f"Bearer {tenant.keys[Role.MEMBER]}"),))

        made, error = until_refused(create)
        assert made == 3
        message, delay = retry_info(error)
        assert "limit of 3 calls created per minute" in message and 0 < delay <= 60
        other = new_agent(other_tenant)  # another workspace keeps the default
        with other_tenant.calls(max_attempts=1) as others:
            for _ in range(4):
                others.create_call(source=other.ref, destination=ANSWERS)

        assert workspace_limits(database_url, tenant.name, "--reset")["calls_per_minute"] == ("60000", "default")
        time.sleep(REFRESH)  # what the server read of the workspace's limits is due to be read again
        create()  # the default again, the same minute


def test_a_workspace_request_rate_set_and_shown_and_reset(tenant, stub, database_url, environment):
    environment.set(VOXPLANE_RATE_LIMIT_REFRESH=str(REFRESH))
    workspace_limits(database_url, tenant.name, "--requests-per-second", "4", "--messages-per-minute", "0")
    shown = workspace_limits(database_url, tenant.name)  # no option: shows them
    assert shown["requests_per_second"] == ("4", "workspace") and shown["messages_per_minute"] == ("none", "workspace")
    made, error = until_refused(lambda: list_numbers(stub, tenant.keys[Role.MEMBER]))
    assert 4 <= made <= 9  # within one second, or across one second's end (and a batch of 1 carried over)
    message, delay = retry_info(error)
    assert "limit of 4 requests per second" in message and 0 < delay <= 1

    shown = workspace_limits(database_url, tenant.name, "--requests-per-second", "default")
    assert shown["requests_per_second"] == ("10000", "default") and shown["messages_per_minute"][1] == "workspace"
    time.sleep(max(REFRESH, delay))  # the cached overrides stale, this second's budget spent
    for _ in range(4):  # the batch of 1 left from the override, then a lease of the default's batch
        list_numbers(stub, tenant.keys[Role.MEMBER])
    for _ in range(30):  # the default's batch of 500
        list_numbers(stub, tenant.keys[Role.MEMBER])


def test_a_workspace_message_limit_below_the_default_refuses_the_nth_send(tenant, fresh_e164, database_url,
                                                                           environment):
    environment.set(VOXPLANE_RATE_LIMIT_REFRESH=str(REFRESH))
    workspace_limits(database_url, tenant.name, "--messages-per-minute", "2")
    source = owned_number(tenant, fresh_e164)
    at_least_seconds_left_in_minute(15)
    with tenant.messaging(max_attempts=1) as messaging:
        for i in range(2):
            messaging.send_message(source=source, destination=DELIVERS, body=f"hello {i}")
        with pytest.raises(ResourceExhaustedError, match="limit of 2 messages sent per minute"):
            messaging.send_message(source=source, destination=DELIVERS, body="one too many")


def test_workspace_limits_refuse_what_is_not_a_limit(tenant, database_url):
    env = {**os.environ, "VOXPLANE_DATABASE_URL": database_url}
    done = cli(env, "workspaces", "limits", tenant.name, "--calls-per-minute", "-1", check=False)
    assert done.returncode == 2 and "neither a count" in done.stderr
    done = cli(env, "workspaces", "limits", tenant.name, "--reset", "--calls-per-minute", "5", check=False)
    assert done.returncode == 1 and "give it alone" in done.stderr
    done = cli(env, "workspaces", "limits", "no-such-workspace", check=False)
    assert done.returncode == 1 and "No workspace is named" in done.stderr


# Ten requests at 3 a second reach into the fourth second (the first may come at the end of one).
TEN_AT_THREE_A_SECOND = 2.0


def test_the_client_waits_out_retry_info_within_its_deadline(tenant, environment):
    environment.set(VOXPLANE_RATE_LIMIT_REQUESTS="3")
    agent = new_agent(tenant)
    with tenant.numbers() as numbers:
        started = time.monotonic()
        for _ in range(10):
            numbers.list_numbers()  # a read: the channel would not retry RESOURCE_EXHAUSTED, the client does
        assert time.monotonic() - started > TEN_AT_THREE_A_SECOND
    environment.set(VOXPLANE_RATE_LIMIT_REQUESTS="0", VOXPLANE_RATE_LIMIT_CALLS="1")
    at_least_seconds_left_in_minute(15)
    with tenant.calls(timeout=5) as calls:
        calls.create_call(source=agent.ref, destination=ANSWERS)
        started = time.monotonic()
        with pytest.raises(ResourceExhaustedError):  # the next minute is past the deadline: no wait
            calls.create_call(source=agent.ref, destination=ANSWERS)
        assert time.monotonic() - started < 1


def test_the_node_client_waits_out_retry_info(tenant, environment):
    node = shutil.which("node")
    assert node, "the Node client's tests need node (20 or later) on PATH"
    environment.set(VOXPLANE_RATE_LIMIT_REQUESTS="3")
    done = subprocess.run(
        [node, str(NODE_CLIENT / "dist" / "test" / "rate_limited.js")], cwd=NODE_CLIENT, capture_output=True,
        text=True, timeout=60,
        env={**os.environ, "VOXPLANE_ENDPOINT": tenant.address, "VOXPLANE_API_KEY": tenant.keys[Role.MEMBER]},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout) / 1000 > TEN_AT_THREE_A_SECOND
