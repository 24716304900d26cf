"""TLS of the servers and of the channels one service opens to another, from the VOXPLANE_TLS_* files.

A server speaks TLS with VOXPLANE_TLS_CERT and VOXPLANE_TLS_KEY, and mutual TLS when VOXPLANE_TLS_CLIENT_CA
is set too (a client must then present a certificate that CA signed). A service asking another (Calls
asking Numbers and Agents, Messaging asking Numbers) does so over TLS when its own server does, verifying
the certificate by the name in the address, against VOXPLANE_TLS_CA, else VOXPLANE_TLS_CLIENT_CA, else
the system's roots; with mutual TLS on, it presents its own server certificate as its client certificate.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import Any

from cryptography import x509

from . import config
from .server import TlsFiles

log = logging.getLogger("voxplane.server")


def is_loopback(host: str) -> bool:
    """Whether `host` (what a server binds) is a loopback address: 127.0.0.0/8, ::1 or localhost. The
    wildcard ('', 0.0.0.0, ::) and every other name are not: they may be reached from other machines."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(setting: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise SystemExit(f"voxplane: {setting}: cannot read {path}: {error.strerror or error}") from None


def server_files(settings: config.Settings) -> TlsFiles | None:
    """The server's certificate, key and client CA, read from their files; None when TLS is off. A
    half-configured TLS (a certificate without its key, a client CA without a certificate) stops the
    process with one line, rather than serving plaintext by surprise."""
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.tls_client_ca
    if not (cert or key or client_ca):
        return None
    if not (cert and key):
        raise SystemExit("voxplane: TLS needs both VOXPLANE_TLS_CERT and VOXPLANE_TLS_KEY (PEM files)"
                         + ("; VOXPLANE_TLS_CLIENT_CA only adds mutual TLS to them" if client_ca else ""))
    return TlsFiles(
        cert_chain=_read("VOXPLANE_TLS_CERT", cert),
        private_key=_read("VOXPLANE_TLS_KEY", key),
        client_ca=_read("VOXPLANE_TLS_CLIENT_CA", client_ca) if client_ca else None,
    )


def check_exposure(host: str, tls: TlsFiles | None, plaintext: bool) -> None:
    """Off loopback, a server without TLS would send API keys in the clear: it does not start, unless
    `--plaintext` says the network is trusted (a private container network, a TLS-terminating proxy),
    and then it says so in a WARNING."""
    if tls is not None or is_loopback(host):
        return
    where = host or "every interface"
    if not plaintext:
        raise SystemExit(
            f"voxplane: refusing to serve plaintext on {where}, off loopback: API keys would cross the network "
            "in the clear. Set VOXPLANE_TLS_CERT and VOXPLANE_TLS_KEY, or pass --plaintext if the network "
            "is trusted (a TLS-terminating proxy in front, a private network)"
        )
    log.warning("serving PLAINTEXT off loopback (--plaintext): API keys and every request cross the network "
                "unencrypted; use it only on a trusted network or behind a TLS-terminating proxy",
                extra={"fields": {"host": where}})


def _names(cert_pem: bytes) -> list[str]:
    """The names a certificate is valid for: its DNS and IP subject alternative names."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*alternative.get_values_for_type(x509.DNSName),
            *(str(ip) for ip in alternative.get_values_for_type(x509.IPAddress))]


def client_options(endpoint: str) -> dict[str, Any]:
    """The voxplane client options of a channel from this service to another at `endpoint`: TLS when this
    server speaks it, else plaintext. A loopback address is this machine: when the server's own
    certificate does not name it (a certificate for `voxplane.example.com` on a `serve all`, which asks
    itself at 127.0.0.1), the name verified is the certificate's own first name."""
    settings = config.settings()
    tls = server_files(settings)
    if tls is None:
        return {"tls": False}
    roots = (_read("VOXPLANE_TLS_CA", settings.tls_ca) if settings.tls_ca
             else tls.client_ca)  # None: the system's roots
    options: dict[str, Any] = {"tls": True, "root_certificates": roots}
    if tls.client_ca is not None:
        options |= {"certificate_chain": tls.cert_chain, "private_key": tls.private_key}
    host = endpoint.rpartition(":")[0].strip("[]")
    names = _names(tls.cert_chain)
    if is_loopback(host) and names and host not in names:
        options["server_name"] = names[0]
    return options
