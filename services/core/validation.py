"""Checks of caller-supplied values shared by the services.

Each check records what is wrong in a `Violations` collector under the
field's name and returns the normalised value (or None when invalid).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import phonenumbers

from .errors import InvalidArgument, Violations

MAX_REQUEST_ID = 128
MAX_BATCH = 1000  # items of one batch RPC
MAX_SIP_URI = 512  # the columns that store one (numbers.aor_link, forward_sip_to; call parties)
MAX_URL = 2048


def check_batch_size(field: str, count: int, what: str) -> None:
    """Raises INVALID_ARGUMENT unless a batch RPC's `field` holds 1 to MAX_BATCH items ("creates", "refs"…),
    before any item is looked at."""
    if not 1 <= count <= MAX_BATCH:
        raise InvalidArgument.of(field, f"must hold 1 to {MAX_BATCH:,} {what}, got {count:,}")


def text(v: Violations, field: str, value: str, *, max_len: int, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        v.add(field, "is required")
    elif len(value) > max_len:
        v.add(field, f"must be at most {max_len} characters, got {len(value)}")
    return value


def request_id(v: Violations, value: str) -> str | None:
    return text(v, "request_id", value, max_len=MAX_REQUEST_ID) or None


def e164(v: Violations, field: str, value: str) -> str | None:
    """A phone number in any form libphonenumber reads with a country code, as E.164."""
    if not value.strip():
        v.add(field, "is required")
        return None
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        v.add(field, f"{value!r} is not a phone number with a country code, e.g. '+14155550100'")
        return None
    if not phonenumbers.is_valid_number(parsed):
        v.add(field, f"{value!r} is not a valid phone number")
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def is_hostname(value: str) -> bool:
    """RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens."""
    if not value or len(value) > 253:
        return False
    labels = value.removesuffix(".").split(".")  # one trailing dot is the DNS root
    return all(
        0 < len(label) <= 63
        and label.isascii()
        and label.replace("-", "").isalnum()
        and not label.startswith("-")
        and not label.endswith("-")
        for label in labels
    )


def is_host(value: str) -> bool:
    """A host name or an IP literal (IPv6 in brackets, as in URIs)."""
    if is_hostname(value):  # first: most hosts are names, and a failed ip_address() raises
        return True
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


def hostname(v: Violations, field: str, value: str) -> str | None:
    """A host name, lower case, without the root dot ('sip.example.com.' names 'sip.example.com')."""
    value = value.strip()
    if not is_hostname(value):
        v.add(field, f"{value!r} is not a valid host name, e.g. 'sip.example.com'")
        return None
    return value.lower().removesuffix(".")


def sip_uri(v: Violations, field: str, value: str) -> str | None:
    """A `sip:` or `sips:` URI such as 'sip:1001@sip.local' or 'sips:pbx.example.com:5061'."""
    value = value.strip()
    scheme, _, rest = value.partition(":")
    address = rest.split(";", 1)[0].split("?", 1)[0]
    host_port = address.rpartition("@")[2]
    host, port = host_port, ""
    if not host_port.endswith("]") and ":" in host_port:
        host, _, port = host_port.rpartition(":")
    if len(value) > MAX_SIP_URI:
        v.add(field, f"must be at most {MAX_SIP_URI} characters, got {len(value):,}")
        return None
    if (
        scheme.lower() not in ("sip", "sips")
        or any(c.isspace() for c in value)
        or not is_host(host)
        or (port and not (port.isdigit() and 0 < int(port) < 65536))
    ):
        v.add(field, f"{value!r} is not a SIP URI, e.g. 'sip:1001@sip.example.com'")
        return None
    return value


def http_url(v: Violations, field: str, value: str) -> str | None:
    value = value.strip()
    try:
        parts = urlsplit(value)
        valid = parts.scheme in ("http", "https") and is_host(parts.hostname or "") and parts.port != 0
    except ValueError:
        valid = False
    if len(value) > MAX_URL:
        v.add(field, f"must be at most {MAX_URL} characters, got {len(value):,}")
        return None
    if not valid or any(c.isspace() for c in value):
        v.add(field, f"{value!r} is not an http(s) URL, e.g. 'https://example.com/hooks/voice'")
        return None
    return value
