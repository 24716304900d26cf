"""The fuzz test: requests drawn from the contract's own descriptors, sent to every RPC of a real server.

Every RPC of every service in the generated `*_pb2` modules is covered by itself, a new one included:
the requests are built from its input message's descriptor, with the values that break servers —
empty, huge (a few KB), unicode, control and NUL characters, out-of-range numbers and enum values,
Timestamps past year 9999 or with negative nanos, huge Durations, batches over 1,000 items, forged
page tokens, another workspace's refs — plus raw bytes that decode as no message at all, and
requests plausible in every field but one, so that writes get past their checks too. Whatever
the server answers must be OK or a deliberate code: never UNKNOWN or INTERNAL, never the client's
RESOURCE_EXHAUSTED for a trailer over gRPC's metadata limit, a message under 1 KB; an OK answer never
carries another workspace's data; and the server is healthy afterwards.

VOXPLANE_FUZZ_EXAMPLES sets the requests per RPC (200 by default; `make fuzz` sends 1,000). The
requests and codes per RPC are printed at the end of the run (see conftest's terminal summary).
"""

from __future__ import annotations

import collections
import functools
import os
import re
import secrets
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message_factory
from google.protobuf.descriptor import FieldDescriptor as F
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voxplane.agents.v1 import agents_pb2
from voxplane.calls.v1 import calls_pb2
from voxplane.messaging.v1 import messaging_pb2
from voxplane.numbers.v1 import numbers_pb2
from voxplane.services.core.auth import Role
from voxplane.webhooks.v1 import webhooks_pb2

from .conftest import ServerThread, Tenant

EXAMPLES = int(os.environ.get("VOXPLANE_FUZZ_EXAMPLES", "200"))
MODULES = (numbers_pb2, agents_pb2, calls_pb2, webhooks_pb2, messaging_pb2)


@dataclass(frozen=True)
class Method:
    path: str  # /voxplane.numbers.v1.Numbers/CreateNumber
    input: descriptor.Descriptor
    streaming: bool
    uploading: bool  # a client stream (SendFax): the drawn request is sent as its messages

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


METHODS = [
    Method(f"/{service.full_name}/{m.name}", m.input_type, m.server_streaming, m.client_streaming)
    for module in MODULES
    for service in module.DESCRIPTOR.services_by_name.values()
    for m in service.methods
]

# --- the values --------------------------------------------------------------------------------------------

# Filled once the workspaces exist: the tenant's own refs and numbers, and the other workspace's.
POOL: list[str] = []
# Markers in the other workspace's data: no answer to the fuzzing tenant may contain one, but those it
# sent itself (a ref it drew from POOL, stored as its own text: an SMS body, a HELP reply).
SECRETS: list[bytes] = []
SENT: set[bytes] = set()

NASTY = [
    "", " ", "\x00", "a\x00b", "\x01\x1f\x7f", "\n", "\t", "é", "日本語", "\U0001f4de", "\u202e", "\ufeff",
    "+", "+1", "+14155550100", "+1 (785) 317-7343", "sip:", "sip:1001@sip.local", "sips:[::1]:5061",
    "https://example.com/hooks", "http://[::1]:0/", "*", "%", "_", "'", "\"; DROP TABLE numbers; --",
    "settings", "name", "settings.context", "a,b", "-1", "0", "9" * 40,
    # Values that pass their checks, so that a request often gets past all but one field.
    "trunk-1", "sip.example.com", "GB", "US", "01224", "+44", "AB10 1AA", "Secret-0123456789abcdef", "alice",
    "+15005550001", "+441224901364", "https://hooks.example.com/voice", "sip:1001@sip.example.com", "\udcff".encode("utf-8", "surrogatepass")
    .decode("utf-8", "replace"),
]
HUGE = st.sampled_from(["x" * 513, "é" * 1500, "+1" + "4" * 3000, "sip:" + "a" * 600 + "@h", "\x00" * 4000])

strings = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=40),
    st.text(alphabet=string.printable, max_size=40),
    st.integers(0, 10**6).map(lambda i: POOL[i % len(POOL)] if POOL else ""),
    HUGE,
    st.binary(min_size=8, max_size=80).map(lambda b: __import__("base64").urlsafe_b64encode(b).decode()),  # tokens
)

INT_BOUNDS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1), F.TYPE_SINT32: (-(2**31), 2**31 - 1), F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1), F.TYPE_SINT64: (-(2**63), 2**63 - 1), F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1), F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1), F.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 2, 1000, 1001, 10**9, 2**31 - 1) if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(max(low, -100), min(high, 2000)), st.integers(low, high))


SECONDS = st.one_of(
    st.sampled_from([0, 1, -1, 1800, 7 * 86400, 253402300800, -62135596801, 100000000000000, 2**63 - 1, -(2**63)]),
    st.integers(-(2**40), 2**40),
)
NANOS = st.one_of(st.sampled_from([0, -1, 999_999_999, 1_000_000_000, -(2**31), 2**31 - 1]), st.integers(0, 10**9))


def scalar(field: F) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_STRING:
        return strings
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32 if field.type == F.TYPE_FLOAT else 64)
    if field.type == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-(2**31), 2**31 - 1))
    low, high = INT_BOUNDS[field.type]
    return integers(low, high)


_CACHE: dict[tuple[str, int], st.SearchStrategy[Any]] = {}


def messages(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of `desc`: any subset of its fields set, each to an awkward value."""
    key = (desc.full_name, depth)
    if key in _CACHE:
        return _CACHE[key]
    cls = message_factory.GetMessageClass(desc)
    if desc.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        made = st.builds(lambda s, n: cls(seconds=s, nanos=n), SECONDS, NANOS)
    elif desc.full_name == "google.protobuf.FieldMask":
        made = st.lists(strings, max_size=3).map(lambda paths: cls(paths=paths))
    elif depth > 3:
        made = st.just(cls())
    else:
        fields = {f.name: field_values(f, depth) for f in desc.fields}
        made = st.fixed_dictionaries({}, optional=fields).map(lambda values: build(cls, desc, values))
    _CACHE[key] = made
    return made


def field_values(field: F, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return st.dictionaries(scalar(key), scalar(value) if value.message_type is None else messages(value.message_type,
                               depth + 1), max_size=4)
    one = messages(field.message_type, depth + 1) if field.message_type is not None else scalar(field)
    if not field.is_repeated:
        return one
    # Mostly a few items; sometimes more than any batch takes: one small item repeated, so that the
    # request stays a few KB to a few hundred KB.
    return st.one_of(
        st.lists(one, max_size=4),
        st.tuples(one, st.sampled_from([1001, 1100])).map(lambda pair: [small(pair[0], field)] * pair[1]),
    )


def small(item: Any, field: F) -> Any:
    """`item`, or its type's default when it is more than a few dozen bytes (items of an oversized list)."""
    size = item.ByteSize() if isinstance(item, Message) else len(item.encode()) if isinstance(item, str) else 0
    if size <= 64:
        return item
    return message_factory.GetMessageClass(field.message_type)() if field.message_type is not None else ""


def build(cls: Any, desc: descriptor.Descriptor, values: dict[str, Any]) -> Any:
    message = cls()
    for name, value in values.items():
        field = desc.fields_by_name[name]
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for k, v in value.items():
                if field.message_type.fields_by_name["value"].message_type is None:
                    target[k] = v
                else:
                    target[k].CopyFrom(v)
        elif field.is_repeated:
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


# --- plausible requests, one field awkward ---------------------------------------------------------------
#
# Awkward values in every field mostly stop at the first check, so writes would rarely be reached: a
# request is also drawn valid-looking in every field the fuzzer knows by name (the tenant's own refs, a
# fresh valid number, a SIP URI…), then one field, any, is given an awkward value.


def own_refs() -> list[str]:
    """The fuzzing tenant's number, agent and call refs (the world fixture fills POOL)."""
    return [POOL[i] for i in (0, 2, 4)] if POOL else [""]


def fresh_numbers() -> st.SearchStrategy[str]:
    from .conftest import _numbers, _numbers_lock

    def take(_: object) -> str:
        with _numbers_lock:
            return next(_numbers)

    return st.just(None).map(take)


def _hex(prefix: str, suffix: str = "") -> st.SearchStrategy[str]:
    return st.binary(min_size=4, max_size=4).map(lambda b: f"{prefix}{b.hex()}{suffix}")


REFS = st.integers(0, 2).map(lambda i: own_refs()[i % len(own_refs())])
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "ref": REFS, "refs": st.lists(REFS, min_size=1, max_size=3), "call_ref": REFS,
    "e164_number": st.one_of(fresh_numbers(), st.integers(0, 10).map(lambda _: POOL[1] if POOL else "")),
    "e164_numbers": st.lists(fresh_numbers(), min_size=1, max_size=3), "numbers": st.lists(fresh_numbers(), max_size=3),
    "number": fresh_numbers(), "party": fresh_numbers(), "caller_id": st.just(""),
    "source": st.integers(0, 1).map(lambda _: POOL[2] if POOL else ""), "device_id": st.just(""),
    "destination": st.sampled_from(["+15005550001", "+15005550002", "sip:bob@sip.example.com"]),
    "provider_ref": st.just("trunk-1"), "name": _hex("n-"), "username": _hex("u"), "secret": _hex("Secret-", "XYZ"),
    "domains": st.lists(_hex("sip-", ".example.com"), min_size=1, max_size=2),
    "aor_link": st.just("sip:1001@sip.example.com"), "forward_sip_to": st.just("sip:desk@sip.example.com"),
    "webhook": st.just("https://hooks.example.com/voice"), "url": st.just("https://hooks.example.com/a.wav"),
    "request_id": _hex("req-"), "region_code": st.sampled_from(["US", "GB"]), "country": st.just("US"),
    "digits": st.sampled_from(["1", "123#"]), "note": st.text(max_size=20), "labels": st.lists(_hex("l"), max_size=3),
    "label": _hex("l"), "prefix": st.sampled_from(["+1415", "+44"]), "etag": st.just(""), "page_token": st.just(""),
}


def plausible(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of `desc` with a plausible value in every field known by name (sub-messages too)."""
    key = (desc.full_name, -1 - depth)
    if key in _CACHE:
        return _CACHE[key]
    cls = message_factory.GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.name in PLAUSIBLE:
            fields[field.name] = PLAUSIBLE[field.name]
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry and depth < 2 \
                and not field.message_type.full_name.startswith("google.protobuf."):
            sub = plausible(field.message_type, depth + 1)
            fields[field.name] = st.lists(sub, min_size=1, max_size=2) if field.is_repeated else sub
    made = st.fixed_dictionaries(fields).map(lambda values: build(cls, desc, values))
    _CACHE[key] = made
    return made


def one_field_awkward(desc: descriptor.Descriptor) -> st.SearchStrategy[Any]:
    """A plausible message of `desc` with one of its fields given an awkward value."""
    if not desc.fields:
        return plausible(desc)
    key = (desc.full_name, -100)
    if key in _CACHE:
        return _CACHE[key]

    def mutate(pair: tuple[Any, Any]) -> Any:
        message, (name, value) = pair  # a message `build` made for this example alone
        message.ClearField(name)
        message.MergeFrom(build(type(message), desc, {name: value}))
        return message

    # One strategy per field, built once: a flatmap would build and validate a new one on every draw.
    awkward = st.one_of([field_values(f, 1).map(functools.partial(_named, f.name)) for f in desc.fields])
    made = _CACHE[key] = st.tuples(plausible(desc), awkward).map(mutate)
    return made


def _named(name: str, value: Any) -> tuple[str, Any]:
    return name, value


# --- the checks --------------------------------------------------------------------------------------------

DELIBERATE = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.OUT_OF_RANGE,
}


def check_answer(method: Method, request: bytes, code: grpc.StatusCode, details: str | None,
                 trailers: Any, answers: list[bytes]) -> None:
    shown = request[:300]
    SENT.update(marker for marker in SECRETS if marker in request)
    assert code in DELIBERATE, f"{method.name} answered {code.name}: {details!r} to {shown!r}"
    assert len((details or "").encode()) < 1024, f"{method.name}: a {len(details or '')}-char message to {shown!r}"
    size = sum(len(k) + len(v) for k, v in trailers or ())
    assert size < 8192, f"{method.name}: a trailer of {size} bytes to {shown!r}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        for name in violated_fields(trailers):
            assert name in REQUEST_WIDE or names_a_field(method.input, name), (
                f"{method.name}: {name!r} is no field of {method.input.name} ({details!r} to {shown!r})")
    for answer in answers:
        for marker in SECRETS:
            assert marker not in answer or marker in SENT, \
                f"{method.name} returned another workspace's data to {shown!r}"


# What an INVALID_ARGUMENT may name besides a field: the request as a whole (undecodable, too large).
REQUEST_WIDE = {"request", "…"}
_PATH_STEP = re.compile(r"^(\w+)(?:\[[^\]]*\])*(?:\.(.*))?$")


def violated_fields(trailers: Any) -> list[str]:
    raw = dict(trailers or ()).get("grpc-status-details-bin")
    if raw is None:
        return []
    status = status_pb2.Status.FromString(raw)
    found = error_details_pb2.BadRequest()
    return [v.field for d in status.details if d.Unpack(found) for v in found.field_violations]


def names_a_field(desc: descriptor.Descriptor, path: str) -> bool:
    """Whether `path` (`requests[3].e164_number`, `filter.party`, `metadata['k']`) walks fields of `desc`;
    a path cut short (`metadata['ééé…`: a long key) by the field it starts with."""
    if path.endswith("…"):
        path = re.split(r"[.\[]", path, maxsplit=1)[0]
    step = _PATH_STEP.match(path)
    if step is None or step.group(1) not in desc.fields_by_name:
        return False
    field, rest = desc.fields_by_name[step.group(1)], step.group(2)
    if not rest or field.message_type is None or field.message_type.GetOptions().map_entry:
        return not rest
    if field.message_type.full_name.startswith("google.protobuf."):
        return True  # a Timestamp's or Duration's own parts
    return names_a_field(field.message_type, rest)


# Streams that run until the caller stops them: each is read for ENDLESS_FOR seconds, then stopped.
ENDLESS = {"WatchCallEvents", "WatchMessageEvents"}
ENDLESS_FOR = 0.5


def send(channel: grpc.Channel, method: Method, key: str, body: bytes) -> tuple[grpc.StatusCode, str | None, Any, list]:
    metadata = (("authorization", f"Bearer {key}"),)
    identity: Callable[[bytes], bytes] = lambda b: b  # noqa: E731
    try:
        if method.uploading:  # the request, then the same again: a header repeated, chunks in a row
            upload = channel.stream_unary(method.path, request_serializer=identity, response_deserializer=identity)
            answer, call = upload.with_call(iter([body, body]), metadata=metadata, timeout=30)
            return call.code(), call.details(), call.trailing_metadata(), [answer]
        if method.streaming:
            stream = channel.unary_stream(method.path, request_serializer=identity, response_deserializer=identity)
            endless = method.name in ENDLESS
            call = stream(body, metadata=metadata, timeout=ENDLESS_FOR if endless else 30)
            answers: list[bytes] = []
            try:
                answers.extend(call)
            except grpc.RpcError:
                if not (endless and call.code() == grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                return grpc.StatusCode.OK, None, call.trailing_metadata(), answers  # streamed until stopped
            return call.code(), call.details(), call.trailing_metadata(), answers
        unary = channel.unary_unary(method.path, request_serializer=identity, response_deserializer=identity)
        answer, call = unary.with_call(body, metadata=metadata, timeout=30)
        return call.code(), call.details(), call.trailing_metadata(), [answer]
    except grpc.RpcError as error:
        return error.code(), error.details(), error.trailing_metadata(), []  # type: ignore[attr-defined]


# --- the world it runs in ----------------------------------------------------------------------------------


@dataclass
class World:
    tenant: Tenant
    channel: grpc.Channel


@pytest.fixture
def world(server: ServerThread, new_tenant, fresh_e164) -> Iterator[World]:  # type: ignore[no-untyped-def]
    tenant, other = new_tenant(), new_tenant()
    marker = f"secret{secrets.token_hex(6)}"
    found: list[str] = []
    for who, name in ((tenant, "mine"), (other, marker)):
        with who.numbers() as numbers:
            number = numbers.create_number(provider_ref="trunk-1", e164_number=fresh_e164(), name=name,
                                           aor_link="sip:1001@sip.local")
            found += [number.ref, number.e164_number]
        with who.agents() as agents:
            agent = agents.create_agent(name=name, username=f"u{secrets.token_hex(4)}",
                                        secret=f"Secret-{secrets.token_hex(8)}",
                                        domains=[f"sip-{secrets.token_hex(4)}.example.com"])
            found += [agent.ref, agent.username]
        with who.calls() as calls:
            found.append(calls.create_call(source=agent.ref, destination="+15005550001").ref)
        with who.messaging() as messaging:
            found.append(messaging.send_message(source="Shop", destination="+15005550001", body=name).ref)
    POOL[:] = found
    # The other workspace's name marker and refs; its E.164 and username are public (CheckAvailability
    # names the one, another domain may take the other).
    SECRETS[:] = [marker.encode(), *(found[i].encode() for i in (6, 8, 10, 11))]
    SENT.clear()
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_metadata_size", 16384)])
    yield World(tenant, channel)
    channel.close()


def healthy(world: World) -> None:
    health = health_pb2_grpc.HealthStub(world.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    with world.tenant.numbers() as numbers:
        numbers.list_numbers(page_size=1)  # the fuzzer may have deleted the tenant's number: any answer will do


ROLES = st.sampled_from([Role.OPERATOR, Role.ADMIN, Role.MEMBER, Role.SERVICE, Role.READER])
GARBAGE = st.one_of(st.binary(max_size=64), st.sampled_from([b"\xff" * 16, b"\x0a\x05ab", b"\x08", b"\x12\xff\xff\xff\xff\x0f"]))


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_no_request_reaches_internal(world: World, method: Method, record_property) -> None:  # type: ignore[no-untyped-def]
    codes: collections.Counter[str] = collections.Counter()
    requests = st.one_of(
        messages(method.input).map(lambda m: m.SerializeToString()),
        one_field_awkward(method.input).map(lambda m: m.SerializeToString()),
        GARBAGE,
    )

    @settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(body=requests, role=ROLES)
    def fuzz(body: bytes, role: Role) -> None:
        code, details, trailers, answers = send(world.channel, method, world.tenant.keys[role], body)
        codes[code.name] += 1
        check_answer(method, body, code, details, trailers, answers if role is not Role.SERVICE else [])

    try:
        fuzz()
    finally:
        record_property("fuzz", (method.path, dict(codes)))
    healthy(world)


# --- what the fuzzer found: one example each, on every backend -----------------------------------------------


def call_raw(world: World, path: str, body: bytes, role: Role = Role.OPERATOR) -> tuple[grpc.StatusCode, str, Any]:
    method = next(m for m in METHODS if m.path.endswith("/" + path))
    code, details, trailers, _ = send(world.channel, method, world.tenant.keys[role], body)
    return code, details or "", trailers


def bad_fields(trailers: Any) -> list[str]:
    from google.rpc import error_details_pb2, status_pb2

    raw = dict(trailers)["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    found = error_details_pb2.BadRequest()
    status.details[0].Unpack(found)
    return [v.field for v in found.field_violations]


YEAR_10000 = {"seconds": 253402300800}
NEGATIVE_NANOS = {"seconds": 0, "nanos": -1}


@pytest.mark.parametrize("path, request_type, field", [
    ("ListNumbers", numbers_pb2.ListNumbersRequest, "created_after"),
    ("ListNumbers", numbers_pb2.ListNumbersRequest, "created_before"),
    ("ListCalls", calls_pb2.ListCallsRequest, "created_after"),
    ("ExportCalls", calls_pb2.ExportCallsRequest, "created_before"),
])
@pytest.mark.parametrize("time", [YEAR_10000, NEGATIVE_NANOS], ids=["year-10000", "negative-nanos"])
def test_an_out_of_range_time_filter_is_invalid_argument_naming_it(world, path, request_type, field, time):
    sent = request_type(filter={field: time})
    code, _, trailers = call_raw(world, path, sent.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(trailers) == [f"filter.{field}"]


@pytest.mark.parametrize("path, sent", [
    ("ReserveNumber", numbers_pb2.ReserveNumberRequest(e164_number="+14155550100", hold={"seconds": 10**14})),
    ("CreateCall", calls_pb2.CreateCallRequest(source="a", destination="+15005550001", timeout={"seconds": 10**14})),
], ids=["hold", "timeout"])
def test_a_huge_duration_is_invalid_argument_naming_it(world, path, sent):
    code, _, trailers = call_raw(world, path, sent.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(trailers) == ["hold" if path == "ReserveNumber" else "timeout"]


@pytest.mark.parametrize("path, sent, field", [
    ("GetNumber", numbers_pb2.GetNumberRequest(ref="a\x00b"), "ref"),
    ("GetIngressInfo", numbers_pb2.GetIngressInfoRequest(e164_number="+1415\x00"), "e164_number"),
    ("CreateNumber", numbers_pb2.CreateNumberRequest(e164_number="+14155550100", provider_ref="t", name="n\x00",
                                                     request_id="\x00"), "name"),
    ("UpdateCallRecord", calls_pb2.UpdateCallRecordRequest(ref="r", note="bell\x07"), "note"),
    ("CreateCall", calls_pb2.CreateCallRequest(source="sip:a\x00@h", destination="+15005550001"), "source"),
    ("ListNumbers", numbers_pb2.ListNumbersRequest(filter={"aor_link": "sip:\x00@h"}), "filter.aor_link"),
    ("CreateCall", calls_pb2.CreateCallRequest(source="a", destination="b", metadata={"k": "\x1b[31m"}),
     "metadata['k']"),
])
def test_a_control_character_in_any_string_is_invalid_argument_naming_it(world, path, sent, field):
    """PostgreSQL refused NUL in text (INTERNAL) where SQLite stored it; now neither sees it."""
    code, details, trailers = call_raw(world, path, sent.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert field in bad_fields(trailers) and "control characters" in details


def test_an_agent_lookup_the_agents_service_refuses_is_the_callers_invalid_argument(world, monkeypatch):
    """Calls asks Numbers and Agents about the call's parties; what they refuse as invalid is the
    caller's error, not "retry shortly" naming an internal address."""
    from voxplane import InvalidArgumentError
    from voxplane.services.calls import directory

    error = InvalidArgumentError(grpc.StatusCode.INVALID_ARGUMENT, "filter.aor_link: bad", ())
    found = directory._unreachable("Numbers", "10.0.0.7:50051", error)
    assert type(found).__name__ == "InvalidArgument" and "10.0.0.7" not in str(found)


@pytest.mark.parametrize("path, sent, field", [
    ("CreateNumber", numbers_pb2.CreateNumberRequest(e164_number="+14155550100", provider_ref="t",
                                                     aor_link="sip:" + "a" * 600 + "@h.example"), "aor_link"),
    ("CreateNumber", numbers_pb2.CreateNumberRequest(e164_number="+14155550100", provider_ref="t",
                                                     forward_sip_to="sip:" + "a" * 600 + "@h.example"),
     "forward_sip_to"),
])
def test_a_sip_uri_longer_than_its_column_is_invalid_argument_on_every_backend(world, path, sent, field):
    code, details, trailers = call_raw(world, path, sent.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert bad_fields(trailers) == [field] and "at most 512 characters" in details


def test_an_error_echoes_a_long_value_shortened(world):
    sent = numbers_pb2.CreateNumberRequest(e164_number="+1" + "4" * 3000, provider_ref="t")
    code, details, trailers = call_raw(world, "CreateNumber", sent.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(details.encode()) < 1024 and "…" in details


def test_a_batch_of_a_thousand_bad_items_names_the_first_fifty_and_counts_the_rest(world):
    items = [numbers_pb2.CreateNumberRequest(e164_number="+1" + "5" * 1000, provider_ref="t") for _ in range(1000)]
    request = numbers_pb2.BatchCreateNumbersRequest(requests=items)
    code, details, trailers = call_raw(world, "BatchCreateNumbers", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details  # not RESOURCE_EXHAUSTED: the trailer is small
    fields = bad_fields(trailers)
    assert 2 <= len(fields) <= 51 and fields[0] == "requests[0].e164_number" and fields[-1] == "…"
    assert sum(len(k) + len(v) for k, v in trailers) < 8192


def test_a_batch_items_unknown_mask_path_is_named_by_its_index(world):
    item = calls_pb2.UpdateCallRecordRequest(ref=POOL[4], update_mask={"paths": ["status"]})
    request = calls_pb2.BatchUpdateCallRecordsRequest(requests=[calls_pb2.UpdateCallRecordRequest(ref=POOL[4]), item])
    code, _, trailers = call_raw(world, "BatchUpdateCallRecords", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(trailers) == ["requests[1].update_mask"]


def test_undecodable_bytes_are_invalid_argument(world):
    for path in ("GetNumber", "GetIngressInfo", "ExportCalls"):
        code, details, _ = call_raw(world, path, b"\xff\xff\xff")
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (path, code, details)
        assert "is not a valid voxplane." in details


def test_a_request_larger_than_its_rpc_needs_is_invalid_argument(world):
    request = numbers_pb2.GetNumberLocalityRequest(numbers=["+14155550100" * 10] * 1000)  # 100 KB
    code, details, _ = call_raw(world, "GetNumberLocality", request.SerializeToString())
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "must be at most 65,536 bytes" in details


def test_a_string_longer_than_its_column_is_invalid_argument_before_the_database_sees_it(db):
    """The net under the services' own checks: PostgreSQL refused such a value (INTERNAL) where SQLite
    stored it; now neither sees it, by an ORM write or a Core one."""
    from sqlalchemy import insert

    from voxplane.services.core.errors import InvalidArgument
    from voxplane.services.persistence.tenancy import Workspace

    with pytest.raises(InvalidArgument) as caught:
        db.transaction(lambda s: s.add(Workspace(name="w" * 129)), write=True)
    assert [v.field for v in caught.value.violations] == ["name"]
    with pytest.raises(InvalidArgument):
        db.transaction(lambda s: s.execute(insert(Workspace), [{"name": "ok"}, {"name": "w" * 200}]), write=True)
