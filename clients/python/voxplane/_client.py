"""The machinery shared by every client class: options, channel, auth, retries, errors.

Each service's client declares its RPCs once, as `Method` and `Pages`
descriptors on a mixin; `SyncClient` and `AsyncClient` give the same
declarations a blocking and an asyncio implementation.

Retries on UNAVAILABLE are made in two places, never both for one call: the channel retries the
reads, as the contract's service config (service_config.json, from protos/voxplane) says; the
client retries a request that carries a request_id (creates), which it fills in when empty.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import ipaddress
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any, Generic, Self, TypeVar

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from ._errors import FieldViolation, InvalidArgumentError, from_rpc_error, retry_delay

DEFAULT_ENDPOINT = "127.0.0.1:50051"

M = TypeVar("M", bound=Message)  # a request message type


# PEM given as bytes, as text, or as the path of a file holding it.
Pem = bytes | str | os.PathLike[str]


def _pem(value: Pem | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str) and value.lstrip().startswith("-----BEGIN"):
        return value.encode()
    with open(value, "rb") as file:
        return file.read()


# The name-resolver schemes of gRPC targets: an endpoint starting with one is gRPC's to read.
_TARGET = re.compile(r"^(dns|ipv4|ipv6|unix|unix-abstract|vsock|xds):")


@dataclass(frozen=True)
class Target:
    """Where a channel connects: gRPC's target string, whether it balances over several addresses
    (round_robin), and the host a TLS certificate is verified by when no server_name is given."""

    target: str
    balanced: bool
    host: str


def _host_port(address: str) -> tuple[str, str]:
    host, colon, port = address.rpartition(":")
    if not colon or not port.isdigit() or not host:
        raise ValueError(f"endpoint {address!r} is not host:port")
    return host.strip("[]"), port


def target(endpoint: str) -> Target:
    """The gRPC target of an endpoint: a gRPC target as it is (`dns:///voxplane.internal:50051` balances
    over every address the name has), one host:port as it is, or several (comma-separated) as one
    `ipv4:`/`ipv6:` target of their addresses, a host name resolved once, when the channel opens."""
    endpoint = endpoint.strip()
    if _TARGET.match(endpoint):
        scheme, _, rest = endpoint.partition(":")
        if scheme == "dns" and rest.startswith("//"):  # dns://[dns server]/name:port
            rest = rest[2:].partition("/")[2]
        first = rest.split(",")[0]
        host = first.rpartition(":")[0].strip("[]") if scheme in ("dns", "ipv4", "ipv6") else ""
        return Target(endpoint, scheme == "dns" or "," in rest, host)
    addresses = [address.strip() for address in endpoint.split(",") if address.strip()]
    if len(addresses) == 1:
        return Target(addresses[0], False, _host_port(addresses[0])[0])
    resolved: list[str] = []
    for address in addresses:
        host, port = _host_port(address)
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:  # a name: its addresses now, IPv4 ones when it has both (localhost)
            try:
                found = socket.getaddrinfo(host, int(port), socket.AF_INET, socket.SOCK_STREAM)
            except socket.gaierror:
                found = socket.getaddrinfo(host, int(port), socket.AF_INET6, socket.SOCK_STREAM)
            ips = list(dict.fromkeys(ipaddress.ip_address(entry[4][0]) for entry in found))
        resolved += [f"{ip}:{port}" if ip.version == 4 else f"[{ip}]:{port}" for ip in ips]
    families = {"[" in address for address in resolved}
    if len(families) > 1:
        raise ValueError(f"endpoints {endpoint!r} mix IPv4 and IPv6 addresses: give one family, or a dns:/// target")
    return Target(("ipv6:" if True in families else "ipv4:") + ",".join(resolved), True,
                  _host_port(addresses[0])[0])


@dataclass(frozen=True)
class ClientOptions:
    """Where and how to connect. Unset values come from the environment.

    endpoint: host:port (`VOXPLANE_ENDPOINT`, default 127.0.0.1:50051); several, as a list or comma-separated,
        which the channel balances calls over (round_robin); or a gRPC target such as
        `dns:///voxplane.internal:50051` (round_robin over every address the name has).
    api_key: the workspace API key (`VOXPLANE_API_KEY`).
    tls: use TLS (`VOXPLANE_TLS=1`), verifying the server's certificate against the system's roots; giving
        `root_certificates` or a client certificate turns it on too.
    root_certificates: the CA certificates (PEM: bytes, text or a file's path) to trust instead, a private
        CA's (`VOXPLANE_TLS_CA`, a file).
    certificate_chain, private_key: the client's certificate and key (PEM, as above) for a server that asks
        for one (mutual TLS; `VOXPLANE_TLS_CLIENT_CERT`, `VOXPLANE_TLS_CLIENT_KEY`).
    server_name: the name the server's certificate is verified by, when it is not the endpoint's host (the
        first endpoint's, when there are several) (`VOXPLANE_TLS_SERVER_NAME`).
    timeout: seconds each call may take, retries included.
    max_attempts: tries of a call that is safe to retry when the server is UNAVAILABLE (reads: at most 5,
        gRPC's limit for the channel's retries), and of any call the server refused over a workspace
        limit (RESOURCE_EXHAUSTED), each after the delay its RetryInfo asks for.
    """

    endpoint: str | Sequence[str] | None = None
    api_key: str | None = None
    tls: bool | None = None
    root_certificates: Pem | None = None
    certificate_chain: Pem | None = None
    private_key: Pem | None = None
    server_name: str | None = None
    timeout: float = 10.0
    max_attempts: int = 4

    def resolved(self) -> ClientOptions:
        env = os.environ.get
        roots = _pem(self.root_certificates or env("VOXPLANE_TLS_CA") or None)
        chain = _pem(self.certificate_chain or env("VOXPLANE_TLS_CLIENT_CERT") or None)
        key = _pem(self.private_key or env("VOXPLANE_TLS_CLIENT_KEY") or None)
        if bool(chain) != bool(key):
            raise ValueError("a client certificate needs its private key, and a key its certificate")
        tls = self.tls
        if tls is None:
            tls = env("VOXPLANE_TLS", "") in ("1", "true", "yes") or bool(roots or chain)
        endpoint = self.endpoint or env("VOXPLANE_ENDPOINT") or DEFAULT_ENDPOINT
        return dataclasses.replace(
            self,
            endpoint=endpoint if isinstance(endpoint, str) else ",".join(endpoint),
            api_key=self.api_key or env("VOXPLANE_API_KEY"),
            tls=tls,
            root_certificates=roots,
            certificate_chain=chain,
            private_key=key,
            server_name=self.server_name or env("VOXPLANE_TLS_SERVER_NAME") or None,
        )

    def open_channel(self, arguments: Sequence[tuple[str, Any]] = (), *, aio: bool = False) -> Any:
        """A channel to the endpoint of these (resolved) options, TLS or plaintext as they say: a
        `grpc.Channel`, or with `aio` a `grpc.aio.Channel`. What the clients use; also for stubs of
        your own (grpc.health.v1's, say)."""
        factory: Any = grpc.aio if aio else grpc
        endpoint = self.endpoint or DEFAULT_ENDPOINT
        where = target(endpoint if isinstance(endpoint, str) else ",".join(endpoint))
        if where.balanced:
            arguments = [(name, balanced(value) if name == "grpc.service_config" else value)
                         for name, value in arguments]
        if not self.tls:
            return factory.insecure_channel(where.target, list(arguments))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_pem(self.root_certificates),
            private_key=_pem(self.private_key),
            certificate_chain=_pem(self.certificate_chain),
        )
        # Several addresses are one target of IP addresses: the certificate is still verified by a name.
        name = self.server_name or (where.host if where.target.startswith(("ipv4:", "ipv6:")) else None)
        if name:
            arguments = [*arguments, ("grpc.ssl_target_name_override", name)]
        return factory.secure_channel(where.target, credentials, list(arguments))


def service_config(max_attempts: int) -> str:
    """The contract's service config with the client's options applied: every call carries the client's
    own deadline (so the config's default timeout is dropped: it could only cut a longer one short),
    and `max_attempts` bounds the channel's retries of reads as it bounds the client's of creates."""
    config = json.loads(resources.files(__package__).joinpath("service_config.json").read_text())
    for method in config["methodConfig"]:
        method.pop("timeout", None)
        if "retryPolicy" in method and max_attempts < 2:
            del method["retryPolicy"]
        elif "retryPolicy" in method:
            method["retryPolicy"]["maxAttempts"] = min(max_attempts, 5)
    return json.dumps(config)


def balanced(config: str) -> str:
    """A service config that spreads calls over every address of the target (round_robin), for several
    endpoints: gRPC's default, pick_first, would send them all to one."""
    return json.dumps({**json.loads(config), "loadBalancingConfig": [{"round_robin": {}}]})


def _request_ids(message: Any) -> list[Any]:
    """The messages whose `request_id` makes sending `message` again harmless: itself when it has
    that field (creates), or each item of its `requests` when they have it (batch creates). Any:
    the descriptor, not the type `Message`, says which fields they have."""
    fields = message.DESCRIPTOR.fields_by_name
    if "request_id" in fields:
        return [message]
    items = fields.get("requests")
    if items is not None and items.message_type is not None and "request_id" in items.message_type.fields_by_name:
        return list(message.requests)
    return []


_NOT_CHANGES = frozenset({"ref", "url", "etag", "update_mask"})  # what identifies (a webhook endpoint by its url) or guards an update


def _mask_paths(descriptor: Any, values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The update_mask paths of the fields `values` gives; a message given as a dict (settings) names
    its fields, one path each, unless it is one of a oneof (a routing), which is replaced whole."""
    paths: list[str] = []
    for key, value in values.items():
        field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        if field is None or (not prefix and field.name in _NOT_CHANGES):
            continue
        if isinstance(value, Mapping) and field.message_type is not None and field.containing_oneof is None:
            paths += _mask_paths(field.message_type, value, f"{prefix}{field.name}.")
        else:
            paths.append(prefix + field.name)
    return paths


def _duration_json(descriptor: Any, name: str, value: Any) -> Any:
    """A number of seconds, or a timedelta, given for a Duration field, in the JSON form ParseDict reads."""
    field = descriptor.fields_by_name.get(name) or descriptor.fields_by_camelcase_name.get(name)
    if field is None or field.message_type is None or field.message_type.full_name != "google.protobuf.Duration":
        return value
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.9f}".rstrip("0").rstrip(".") + "s"
    return value


_PARSING = re.compile(r"Failed to parse (\w+) field: ")
_LOCATION = re.compile(r"\s+at \"?[\w.]+\"?\.*$")


# `descriptor`: a message's DESCRIPTOR, which protobuf types as either of two Descriptor classes.
def _invalid_request(values: Mapping[str, Any], descriptor: Any, error: Exception) -> InvalidArgumentError:
    """What the server would say of a request that cannot even be built: INVALID_ARGUMENT naming each
    bad field (unknown names, enum values that are not), not protobuf's ParseError."""
    violations = _problems(values, descriptor, "")
    if not violations:  # a value of the wrong type: protobuf's text names the field, innermost last
        text, path = str(error), []
        while step := _PARSING.match(text):
            path.append(step.group(1))
            text = text[step.end():]
        description = _LOCATION.sub("", text.split("\n")[0]).rstrip(".")
        violations = [FieldViolation(".".join(path) or descriptor.name, description)]
    message = "; ".join(f"{v.field}: {v.description}" for v in violations)
    return InvalidArgumentError(grpc.StatusCode.INVALID_ARGUMENT, message, tuple(violations))


def _problems(values: Mapping[str, Any], descriptor: Any, prefix: str) -> list[FieldViolation]:
    """Unknown field names and unknown enum names in a dict request, at every depth."""
    fields = {f.name: f for f in descriptor.fields} | {f.json_name: f for f in descriptor.fields}
    problems: list[FieldViolation] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        field = fields.get(key) if isinstance(key, str) else None
        if field is None:
            names = ", ".join(f.name for f in descriptor.fields)
            problems.append(FieldViolation(path, f"is not a field of {descriptor.name} (its fields: {names})"))
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue  # map values: protobuf's message says what is wrong with them
        if field.is_repeated and isinstance(value, list):
            items = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
        else:
            items = [(path, value)]
        for where, item in items:
            if field.enum_type is not None and isinstance(item, str) and item not in field.enum_type.values_by_name:
                names = ", ".join(v.name for v in field.enum_type.values)
                problems.append(FieldViolation(where, f"{item!r} is not a {field.enum_type.name}: one of {names}"))
            elif (
                field.message_type is not None
                and isinstance(item, Mapping)
                and not field.message_type.full_name.startswith("google.protobuf.")
            ):
                problems += _problems(item, field.message_type, f"{where}.")
    return problems


@dataclass(frozen=True)
class Method(Generic[M]):
    """One unary RPC, exposed as `client.<name>(request=None, /, **fields)`.

    `request` may be the request message, or a dict of its fields (snake_case
    or camelCase, as in the proto's JSON form); keyword arguments set fields
    too. `positional` names the field a lone positional string fills, so
    `get_number(ref)` works as in the Fonoster SDK.
    """

    rpc: str
    request_type: type[M]
    positional: str | None = None

    def build(self, request: Any, fields: Mapping[str, Any]) -> M:
        if isinstance(request, self.request_type):
            message = type(request)()
            message.CopyFrom(request)
        else:
            values: dict[str, Any] = {}
            if isinstance(request, str) and self.positional:
                values[self.positional] = request
            elif isinstance(request, Mapping):
                values.update(request)
            elif request is not None:
                raise TypeError(f"{self.rpc} takes a {self.request_type.__name__}, a dict or keyword arguments")
            values.update(fields)
            message = self.request_type()
            descriptor = message.DESCRIPTOR
            values = {name: _duration_json(descriptor, name, value) for name, value in values.items()}
            try:
                json_format.ParseDict(values, message)
            except (json_format.ParseError, TypeError, ValueError) as error:
                raise _invalid_request(values, self.request_type.DESCRIPTOR, error) from None
            # An update given as fields changes those fields (AIP-134): the mask names them, so that a
            # field given its default (False, "", []) is changed too, and the others are left alone.
            if "update_mask" in descriptor.fields_by_name and not ({"update_mask", "updateMask"} & set(values)):
                message.update_mask.paths.extend(_mask_paths(descriptor, values))  # type: ignore[attr-defined]
        for item in _request_ids(message):
            if not item.request_id:
                item.request_id = uuid.uuid4().hex  # makes retries safe
        return message

    def retryable(self, message: Message) -> bool:
        """Whether the client retries it: reads are the channel's to retry (the service config)."""
        items = _request_ids(message)
        return bool(items) and all(item.request_id for item in items)

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self

        def call(request: Any = None, /, **fields: Any) -> Any:
            return client._invoke(self, self.build(request, fields))

        call.__name__ = self.rpc
        call.__doc__ = f"Calls {self.rpc} with a {self.request_type.__name__} (message, dict or keywords)."
        return call


@dataclass(frozen=True)
class Pages:
    """Walks every page of a List RPC, yielding its items: `for n in client.iter_numbers(): ...`."""

    method: str  # attribute name of the List method
    items: str  # repeated field holding the page's items

    def __get__(self, client: Any, owner: type | None = None) -> Any:
        if client is None:
            return self

        def walk(request: Any = None, /, **fields: Any) -> Any:
            method: Method[Any] = getattr(type(client), self.method)
            return client._walk(method, method.build(request, fields), self.items)

        return walk


class _Attempts:
    """The deadline and retry budget of one call: UNAVAILABLE is retried, with backoff, when safe, and
    RESOURCE_EXHAUSTED with a RetryInfo (a workspace limit: the server did nothing) after its delay."""

    def __init__(self, options: ClientOptions, retryable: bool):
        self.deadline = time.monotonic() + options.timeout
        self.most = options.max_attempts
        self.allowed = self.most if retryable else 1
        self.made = 0

    def timeout(self) -> float:
        """The time left for the next try (counting it as made)."""
        self.made += 1
        return max(0.0, self.deadline - time.monotonic())

    def retry_after(self, error: grpc.RpcError) -> float | None:
        """Seconds to wait before the next try (the server's RetryInfo, else a jittered backoff), or None
        when the error is final, or when waiting would outlast the call's deadline."""
        delay = retry_delay(error)
        if error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED and delay is not None:
            if self.made >= self.most:
                return None
        elif error.code() is not grpc.StatusCode.UNAVAILABLE or self.made >= self.allowed:
            return None
        if delay is None:
            delay = 0.05 * 2 ** (self.made - 1) * (0.5 + random.random() / 2)
        return delay if time.monotonic() + delay < self.deadline else None


class _Client:
    """What both flavours share: options, stub construction, metadata."""

    stub_type: type[Any]  # the service's generated stub class

    def __init__(self, options: ClientOptions | Mapping[str, Any] | None = None, **overrides: Any):
        if isinstance(options, Mapping):
            options = ClientOptions(**options)
        self.options = dataclasses.replace(options or ClientOptions(), **overrides).resolved()
        self._channel: Any = None
        self._stub: Any = None
        self._shares_channel = False  # made by with_api_key: the channel belongs to another client
        self._metadata = (("authorization", f"Bearer {self.options.api_key}"),) if self.options.api_key else ()

    def _rpc(self, method: Method[Any]) -> Any:
        if self._stub is None:
            self._channel = self._open_channel()
            self._stub = self.stub_type(self._channel)
        return getattr(self._stub, method.rpc)

    def with_api_key(self, api_key: str, *, timeout: float | None = None) -> Self:
        """A client like this one that calls with `api_key` (and at most `timeout` seconds a call), sharing
        this client's channel: how a service calls another for each of its own callers. Closing the
        returned client leaves the channel open; closing this one closes it."""
        if self._stub is None:
            self._channel = self._open_channel()
            self._stub = self.stub_type(self._channel)
        twin = copy.copy(self)
        limit = self.options.timeout if timeout is None else min(timeout, self.options.timeout)
        twin.options = dataclasses.replace(self.options, api_key=api_key, timeout=max(limit, 0.0))
        twin._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        twin._shares_channel = True
        return twin

    def _open_channel(self) -> Any:
        raise NotImplementedError

    def _channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.service_config", service_config(self.options.max_attempts)), ("grpc.enable_retries", 1)]


class SyncClient(_Client):
    """Blocking client; use as a context manager or call `close()`."""

    def _open_channel(self) -> grpc.Channel:
        return self.options.open_channel(self._channel_options())

    def _invoke(self, method: Method[Any], message: Message) -> Any:
        attempts = _Attempts(self.options, method.retryable(message))
        while True:
            try:
                return self._rpc(method)(message, timeout=attempts.timeout(), metadata=self._metadata)
            except grpc.RpcError as error:
                delay = attempts.retry_after(error)
                if delay is None:
                    raise from_rpc_error(error) from None
                time.sleep(delay)

    def _walk(self, method: Method[Any], message: Message, items: str) -> Iterator[Any]:
        while True:
            page = self._invoke(method, message)
            yield from getattr(page, items)
            if not page.next_page_token:
                return
            message.page_token = page.next_page_token  # type: ignore[attr-defined]  # a List request has one

    def close(self) -> None:
        if self._channel is not None:
            if not self._shares_channel:
                self._channel.close()
            self._channel = self._stub = None

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_Client):
    """asyncio client for services calling services; `await client.close()` or `async with`."""

    def _open_channel(self) -> grpc.aio.Channel:
        return self.options.open_channel(self._channel_options(), aio=True)

    async def _invoke(self, method: Method[Any], message: Message) -> Any:
        attempts = _Attempts(self.options, method.retryable(message))
        while True:
            try:
                return await self._rpc(method)(message, timeout=attempts.timeout(), metadata=self._metadata)
            except grpc.RpcError as error:
                delay = attempts.retry_after(error)
                if delay is None:
                    raise from_rpc_error(error) from None
                await asyncio.sleep(delay)

    async def _walk(self, method: Method[Any], message: Message, items: str) -> AsyncIterator[Any]:
        while True:
            page = await self._invoke(method, message)
            for item in getattr(page, items):
                yield item
            if not page.next_page_token:
                return
            message.page_token = page.next_page_token  # type: ignore[attr-defined]  # a List request has one

    async def close(self) -> None:
        if self._channel is not None:
            if not self._shares_channel:
                await self._channel.close()
            self._channel = self._stub = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

