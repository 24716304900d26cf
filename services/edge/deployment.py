"""A deployment's edge as its settings and the command line describe it, checked: every bad value is
named at once, as `voxplane: <field>: <problem>`."""

from __future__ import annotations

import ipaddress

from ..core import validation
from ..core.errors import Violations
from .kamailio import Edge, Endpoint, TrustedSource, kamailio_database_url


def edge(*, listen: str, domains: list[str], gateway: str, trunks: list[str], database_url: str,
         max_auth_failures: int, auth_failure_window: int, flood_requests: int, gateway_workers: int = 1) -> Edge:
    v = Violations()
    listening = endpoint(v, "listen", listen, 5060)
    served = _domains(v, "domains", domains)
    gateway_at = endpoint(v, "gateway", gateway, 5060)
    trusted = [trusted_source(v, "trunks", trunk) for trunk in trunks if trunk.strip()]
    try:
        kamailio_database_url(database_url)
    except ValueError as error:
        v.add("database_url", str(error))
    if max_auth_failures < 1:
        v.add("max_auth_failures", f"must be at least 1, got {max_auth_failures}")
    if auth_failure_window < 1:
        v.add("auth_failure_window", f"must be at least 1 second, got {auth_failure_window}")
    if flood_requests < 1:
        v.add("flood_requests", f"must be at least 1, got {flood_requests}")
    if gateway_workers < 1 or (gateway_at and gateway_at.port + gateway_workers - 1 > 65535):
        v.add("gateway_workers", f"must be 1 or more, each with a port from the gateway's on, got {gateway_workers}")
    v.raise_if_any()
    assert listening and gateway_at  # else `v` held a violation
    return Edge(listening, served, database_url, gateway_at, [t for t in trusted if t], max_auth_failures,
                auth_failure_window, flood_requests, gateway_workers)


def _port(v: Violations, field: str, text: str) -> int | None:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        v.add(field, f"{text!r} is not a port (1 to 65535)")
        return None
    return int(text)


def _split_port(text: str) -> tuple[str, str | None]:
    """'1.2.3.4:5060' -> ('1.2.3.4', '5060'); '[::1]:5060' -> ('::1', '5060'); a bare address, port None."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, rest.removeprefix(":") if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None


def endpoint(v: Violations, field: str, text: str, default_port: int) -> Endpoint | None:
    """An IP address with an optional port: '127.0.0.1:5060', '[::1]:5060', '10.0.0.5'."""
    host, port_text = _split_port(text.strip())
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        v.add(field, f"{text!r} is not an IP address with an optional port, e.g. '127.0.0.1:5060'")
        return None
    port = default_port if port_text is None else _port(v, field, port_text)
    return Endpoint(str(address), port) if port is not None else None


def trusted_source(v: Violations, field: str, text: str) -> TrustedSource | None:
    """An IP address or network with an optional port: '203.0.113.7', '203.0.113.0/24:5060'."""
    host, port_text = _split_port(text.strip())
    try:
        network = ipaddress.ip_network(host, strict=False)
    except ValueError:
        v.add(field, f"{text!r} is not an IP address or network with an optional port, e.g. '203.0.113.0/24:5060'")
        return None
    if port_text is None:
        return TrustedSource(network)
    port = _port(v, field, port_text)
    return TrustedSource(network, port) if port is not None else None


def _domains(v: Violations, field: str, names: list[str]) -> list[str]:
    checked = [validation.hostname(v, field, name) for name in names if name.strip()]
    if not checked:
        v.add(field, "needs at least one SIP domain, e.g. 'sip.local'")
    return list(dict.fromkeys(d for d in checked if d))


