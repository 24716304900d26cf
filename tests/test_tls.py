"""TLS and mutual TLS with certificates made here: a CA, a server certificate for localhost and one for
another name, a client certificate. Real servers (in-process and `voxplane serve`), the Python client,
Calls asking Numbers and Agents over TLS, `voxplane health`, and the rule that off loopback a server
without TLS does not start unless told --plaintext."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from voxplane import Calls, Messaging, Numbers, UnavailableError
from voxplane.calls.v1 import calls_pb2
from voxplane.messaging.v1 import messaging_pb2
from voxplane.services.core import config, tls
from voxplane.services.core.auth import Role

from .conftest import ServerThread
from .test_calls import ANSWERS, new_agent, routed_number
from .test_cli import VOXPLANE, Served, cli, env  # noqa: F401  # env is a fixture
from .test_grpcurl import GRPCURL
from .test_messaging import DELIVERS

NUMBERS = "voxplane.numbers.v1.Numbers"


@dataclass
class Pem:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Pem:
    pem = Pem(directory / f"{stem}.pem", directory / f"{stem}-key.pem")
    pem.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return pem


class Authority:
    """A CA of the test's own, which signs server and client certificates."""

    def __init__(self, directory: Path, name: str = "voxplane test CA"):
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = _name(name)
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = _write(directory, name.replace(" ", "-"), self.cert, self.key).cert

    def _builder(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(self.name).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1)))

    def issue(self, stem: str, dns: list[str], ips: list[str] = ()) -> Pem:  # type: ignore[assignment]
        """A certificate for servers and clients both (a service presents its server's to another)."""
        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cert = (
            self._builder(_name(dns[0]), key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return _write(self.directory, stem, cert, key)


@dataclass
class Pki:
    ca: Authority
    server: Pem  # localhost and 127.0.0.1
    client: Pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = Authority(tmp_path_factory.mktemp("pki"))
    return Pki(ca, ca.issue("server", ["localhost"], ["127.0.0.1"]), ca.issue("client", ["client.test"]))


@pytest.fixture
def tls_server(database_url, environment, pki) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    """Every service over TLS, as VOXPLANE_TLS_CERT and VOXPLANE_TLS_KEY make `serve` do; Calls trusts the
    test CA (VOXPLANE_TLS_CA) where it asks Numbers and Agents."""
    environment.set(VOXPLANE_TLS_CERT=str(pki.server.cert), VOXPLANE_TLS_KEY=str(pki.server.key),
                    VOXPLANE_TLS_CA=str(pki.ca.pem))
    yield from _served(database_url)


@pytest.fixture
def mtls_server(database_url, environment, pki) -> Iterator[ServerThread]:  # type: ignore[no-untyped-def]
    """Every service over mutual TLS: clients need a certificate the test CA signed (which Calls, asking
    Numbers and Agents, trusts and presents its server's, untold)."""
    environment.set(VOXPLANE_TLS_CERT=str(pki.server.cert), VOXPLANE_TLS_KEY=str(pki.server.key),
                    VOXPLANE_TLS_CLIENT_CA=str(pki.ca.pem))
    yield from _served(database_url)


def _served(database_url: str) -> Iterator[ServerThread]:
    served = ServerThread(database_url, ["all"], tls=tls.server_files(config.settings()))
    try:
        yield served
    finally:
        served.stop()


def test_a_client_that_trusts_the_ca_is_served_and_one_that_does_not_is_unavailable(tls_server, tenant, pki,
                                                                                   tmp_path):
    key = tenant.keys[Role.READER]
    # The CA as bytes, or as a file's path, which turns TLS on by itself.
    with Numbers(endpoint=f"localhost:{tls_server.port}", api_key=key, root_certificates=pki.ca.pem.read_bytes()) as numbers:
        assert numbers.list_numbers().next_page_token == ""
    with Numbers(endpoint=tls_server.address, api_key=key, root_certificates=str(pki.ca.pem)) as numbers:
        assert numbers.list_numbers().next_page_token == ""
    # Another CA does not vouch for the server; plaintext is not TLS.
    another = Authority(tmp_path, "another CA").pem
    for options in ({"root_certificates": str(another)}, {"tls": False}):
        with Numbers(endpoint=tls_server.address, api_key=key, timeout=2, **options) as numbers:
            with pytest.raises(UnavailableError):
                numbers.list_numbers()


def test_mutual_tls_serves_only_clients_with_a_certificate_the_ca_signed(mtls_server, tenant, pki, tmp_path):
    key = tenant.keys[Role.READER]
    # TLS alone trusts the system's roots, which do not know the test CA.
    with Numbers(endpoint=mtls_server.address, api_key=key, tls=True, timeout=2) as numbers:
        with pytest.raises(UnavailableError):
            numbers.list_numbers()
    with Numbers(endpoint=mtls_server.address, api_key=key, root_certificates=str(pki.ca.pem), timeout=2) as numbers:
        with pytest.raises(UnavailableError):
            numbers.list_numbers()
    stranger = Authority(tmp_path, "another CA").issue("stranger", ["client.test"])
    with Numbers(endpoint=mtls_server.address, api_key=key, root_certificates=str(pki.ca.pem), timeout=2,
                 certificate_chain=str(stranger.cert), private_key=str(stranger.key)) as numbers:
        with pytest.raises(UnavailableError):
            numbers.list_numbers()
    with Numbers(endpoint=mtls_server.address, api_key=key, root_certificates=str(pki.ca.pem),
                 certificate_chain=str(pki.client.cert), private_key=str(pki.client.key)) as numbers:
        assert numbers.list_numbers().next_page_token == ""


def test_the_client_reads_its_tls_options_from_the_environment(mtls_server, tenant, pki, monkeypatch):
    monkeypatch.setenv("VOXPLANE_TLS_CA", str(pki.ca.pem))
    monkeypatch.setenv("VOXPLANE_TLS_CLIENT_CERT", str(pki.client.cert))
    monkeypatch.setenv("VOXPLANE_TLS_CLIENT_KEY", str(pki.client.key))
    with Numbers(endpoint=mtls_server.address, api_key=tenant.keys[Role.READER]) as numbers:
        assert numbers.list_numbers().next_page_token == ""


def _plaintext_agent(tenant, fresh_e164, monkeypatch):  # type: ignore[no-untyped-def]
    """An agent, and a number routed to it, made on the plaintext test server: without the VOXPLANE_TLS_CA
    the TLS server read at its start (the clients of this process read it too)."""
    with monkeypatch.context() as plain:
        plain.delenv("VOXPLANE_TLS_CA", raising=False)
        caller = new_agent(tenant)
        return caller, routed_number(tenant, caller, fresh_e164())


def _call_through_numbers_and_agents(address: str, tenant, pki, fresh_e164, monkeypatch, **options) -> None:  # type: ignore[no-untyped-def]
    """CreateCall, which has Calls ask Agents for the agent and Numbers for its number, over its own
    server's TLS: the call gets the agent's number as its caller ID."""
    caller, number = _plaintext_agent(tenant, fresh_e164, monkeypatch)
    with Calls(endpoint=address, api_key=tenant.keys[Role.MEMBER], root_certificates=str(pki.ca.pem), **options) as calls:
        call = calls.create_call(source=caller.ref, destination=ANSWERS)
    assert call.caller_id == number and call.status == calls_pb2.CALL_STATUS_QUEUED


def test_calls_asks_numbers_and_agents_over_tls(tls_server, tenant, pki, fresh_e164, monkeypatch):
    _call_through_numbers_and_agents(tls_server.address, tenant, pki, fresh_e164, monkeypatch)


def test_calls_asks_numbers_and_agents_over_mutual_tls(mtls_server, tenant, pki, fresh_e164, monkeypatch):
    _call_through_numbers_and_agents(mtls_server.address, tenant, pki, fresh_e164, monkeypatch,
                                     certificate_chain=str(pki.client.cert), private_key=str(pki.client.key))


def test_messaging_asks_numbers_over_mutual_tls(mtls_server, tenant, pki, fresh_e164, monkeypatch):
    """SendMessage has Messaging ask Numbers whether the workspace holds the sender number."""
    _, number = _plaintext_agent(tenant, fresh_e164, monkeypatch)
    with Messaging(endpoint=mtls_server.address, api_key=tenant.keys[Role.MEMBER], root_certificates=str(pki.ca.pem),
                   certificate_chain=str(pki.client.cert), private_key=str(pki.client.key)) as messaging:
        sent = messaging.send_message(source=number, destination=DELIVERS, body="over TLS")
    assert sent.status == messaging_pb2.MESSAGE_STATUS_QUEUED


def test_the_certificate_is_verified_by_the_name_in_the_address(database_url, environment, tenant, pki, fresh_e164,
                                                                monkeypatch):
    """A certificate for voxplane.test alone: a client at 127.0.0.1 must be told that name. `serve all`
    asks itself at 127.0.0.1 too, and verifies its own certificate by its name, untold."""
    named = pki.ca.issue("named", ["voxplane.test"])
    environment.set(VOXPLANE_TLS_CERT=str(named.cert), VOXPLANE_TLS_KEY=str(named.key),
                    VOXPLANE_TLS_CA=str(pki.ca.pem))
    for served in _served(database_url):
        with Numbers(endpoint=served.address, api_key=tenant.keys[Role.READER], root_certificates=str(pki.ca.pem),
                     timeout=2) as numbers:
            with pytest.raises(UnavailableError):
                numbers.list_numbers()
        _call_through_numbers_and_agents(served.address, tenant, pki, fresh_e164, monkeypatch,
                                         server_name="voxplane.test")


def test_calls_refuses_a_numbers_and_agents_whose_certificate_it_cannot_verify(
    database_url, environment, tls_server, tenant, pki, fresh_e164, tmp_path, monkeypatch
):
    """Calls alone, asking Numbers and Agents of another server, trusting only another CA: CreateCall fails
    UNAVAILABLE naming the service, rather than sending the caller's key to a server it cannot verify."""
    other = Authority(tmp_path, "another CA")
    own = other.issue("calls", ["localhost"], ["127.0.0.1"])
    environment.set(VOXPLANE_TLS_CERT=str(own.cert), VOXPLANE_TLS_KEY=str(own.key), VOXPLANE_TLS_CA=str(other.pem),
                    VOXPLANE_NUMBERS_ENDPOINT=f"localhost:{tls_server.port}",
                    VOXPLANE_AGENTS_ENDPOINT=f"localhost:{tls_server.port}")
    calls_only = ServerThread(database_url, ["calls"], tls=tls.server_files(config.settings()))
    caller, _ = _plaintext_agent(tenant, fresh_e164, monkeypatch)
    try:
        with Calls(endpoint=calls_only.address, api_key=tenant.keys[Role.MEMBER], root_certificates=str(other.pem),
                   max_attempts=1) as calls:
            with pytest.raises(UnavailableError, match="Agents service at localhost"):
                calls.create_call(source=caller.ref, destination=ANSWERS)
    finally:
        calls_only.stop()


# --- `voxplane serve` and `voxplane health` ---------------------------------------------------------------


def test_off_loopback_serve_refuses_plaintext_unless_told(env):  # noqa: F811
    cli(env, "migrate")
    blank = {**env, "VOXPLANE_TLS_CERT": "", "VOXPLANE_TLS_KEY": ""}  # a compose file's blanks: no TLS
    for command, environment in ((["serve", "all"], blank), (["dev"], env)):
        done = cli(environment, *command, "--host", "0.0.0.0", "--port", "0", check=False)
        assert done.returncode == 1
        assert "voxplane: refusing to serve plaintext on 0.0.0.0, off loopback" in done.stderr
        assert "VOXPLANE_TLS_CERT" in done.stderr and "--plaintext" in done.stderr
    served = Served(env, "serve", "numbers", "--host", "0.0.0.0", "--plaintext")
    try:
        warnings = [json.loads(line) for line in served.logs if '"warning"' in line]
        assert [w["host"] for w in warnings if "PLAINTEXT off loopback" in w["msg"]] == ["0.0.0.0"]
        assert cli(env, "health", f"127.0.0.1:{served.address.rpartition(':')[2]}").stdout == "SERVING\n"
    finally:
        assert served.stop() == 0


def test_half_configured_tls_stops_serve_with_one_line(env, pki):  # noqa: F811
    cli(env, "migrate")
    done = cli({**env, "VOXPLANE_TLS_CERT": str(pki.server.cert)}, "serve", "numbers", "--port", "0", check=False)
    assert done.returncode == 1
    assert done.stderr == "voxplane: TLS needs both VOXPLANE_TLS_CERT and VOXPLANE_TLS_KEY (PEM files)\n"


def test_health_of_a_plaintext_server(env):  # noqa: F811
    cli(env, "migrate")
    served = Served(env, "serve", "numbers")
    try:
        assert cli(env, "health", served.address).stdout == "SERVING\n"
        assert cli(env, "health", served.address, "--service", NUMBERS).stdout == "SERVING\n"
        unknown = cli(env, "health", served.address, "--service", "voxplane.calls.v1.Calls", check=False)
        assert unknown.returncode == 1
        assert unknown.stderr.startswith(f"voxplane: {served.address}: NOT_FOUND: This server does not serve")
    finally:
        served.stop()
    gone = cli(env, "health", served.address, "--timeout", "1", check=False)
    assert gone.returncode == 1 and gone.stderr.startswith(f"voxplane: {served.address}: ")


def test_serve_and_health_over_mutual_tls_off_loopback(env, pki):  # noqa: F811
    """What a container runs: TLS off loopback, no --plaintext; its health check speaks TLS too."""
    cli(env, "migrate")
    env = {**env, "VOXPLANE_TLS_CERT": str(pki.server.cert), "VOXPLANE_TLS_KEY": str(pki.server.key),
           "VOXPLANE_TLS_CLIENT_CA": str(pki.ca.pem)}
    served = Served(env, "serve", "all", "--host", "0.0.0.0")
    try:
        assert not [line for line in served.logs if "PLAINTEXT" in line]
        address = f"localhost:{served.address.rpartition(':')[2]}"
        client = ["--ca", str(pki.ca.pem), "--cert", str(pki.client.cert), "--key", str(pki.client.key)]
        assert cli(env, "health", address, *client).stdout == "SERVING\n"
        assert cli(env, "health", address, *client, "--service", NUMBERS).stdout == "SERVING\n"
        # Without a client certificate, or without trusting the CA, or in plaintext: no answer.
        for flags in (client[:2], client[2:], []):
            done = cli(env, "health", address, *flags, "--timeout", "2", check=False)
            # (grpc's C core logs the failed handshakes before the command's one line)
            said = done.stderr.splitlines()[-1]
            assert done.returncode == 1 and said.startswith(f"voxplane: {address}: UNAVAILABLE"), done.stderr
        # The options come from the environment as well, as the clients' do.
        tls_env = {**env, "VOXPLANE_TLS_CA": str(pki.ca.pem), "VOXPLANE_TLS_CLIENT_CERT": str(pki.client.cert),
                   "VOXPLANE_TLS_CLIENT_KEY": str(pki.client.key)}
        assert cli(tls_env, "health", address).stdout == "SERVING\n"
    finally:
        assert served.stop() == 0


def test_health_without_its_key_says_so(env, pki):  # noqa: F811
    done = subprocess.run([VOXPLANE, "health", "127.0.0.1:1", "--cert", str(pki.client.cert)], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert done.stderr == "voxplane: a client certificate needs its private key, and a key its certificate\n"


# The Node client over mutual TLS: with a client certificate it is served, without one it is UNAVAILABLE.
NODE_SCRIPT = """
const { Numbers } = require(process.argv[1]);
(async () => {
  const ca = process.env.TEST_CA;
  const say = async (options) => {
    const numbers = new Numbers({ endpoint: process.env.TEST_ENDPOINT, apiKey: process.env.TEST_KEY, timeoutMs: 3000,
                                  ...options });
    try {
      const page = await numbers.listNumbers({});
      return "served " + page.numbers.length;
    } catch (error) {
      return error.codeName;
    } finally {
      numbers.close();
    }
  };
  console.log(await say({ rootCertificates: ca }));
  console.log(await say({ rootCertificates: ca, certChain: process.env.TEST_CERT, privateKey: process.env.TEST_CERT_KEY }));
  console.log(await say({ rootCertificates: require("node:fs").readFileSync(ca), certChain: process.env.TEST_CERT,
                          privateKey: process.env.TEST_CERT_KEY, endpoint: "127.0.0.1:" + process.env.TEST_PORT,
                          serverName: "localhost" }));
})();
"""


def test_the_node_client_speaks_mutual_tls(mtls_server, tenant, pki):
    node = shutil.which("node")
    assert node, "the Node client's tests need node (20 or later) on PATH"
    client = Path(__file__).resolve().parent.parent / "clients" / "node" / "dist" / "src" / "index.js"
    assert client.exists(), "clients/node is not built: run `make test` (npm ci, npm run build)"
    variables = {**os.environ, "TEST_ENDPOINT": f"localhost:{mtls_server.port}", "TEST_PORT": str(mtls_server.port),
           "TEST_KEY": tenant.keys[Role.READER], "TEST_CA": str(pki.ca.pem), "TEST_CERT": str(pki.client.cert),
           "TEST_CERT_KEY": str(pki.client.key)}
    done = subprocess.run([node, "-e", NODE_SCRIPT, str(client)], env=variables, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["UNAVAILABLE", "served 0", "served 0"], done.stdout + done.stderr


def test_grpcurl_over_mutual_tls_with_the_readmes_flags(mtls_server, tenant, pki):
    address = f"localhost:{mtls_server.port}"
    tls_flags = ["-cacert", str(pki.ca.pem), "-cert", str(pki.client.cert), "-key", str(pki.client.key)]
    listed = subprocess.run([GRPCURL, *tls_flags, address, "list"], capture_output=True, text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert NUMBERS in listed.stdout.split()
    called = subprocess.run([GRPCURL, *tls_flags, "-H", f"authorization: Bearer {tenant.keys[Role.READER]}", address,
                             f"{NUMBERS}/ListNumbers"], capture_output=True, text=True, timeout=30)
    assert called.returncode == 0 and json.loads(called.stdout) == {}, called.stderr
    plaintext = subprocess.run([GRPCURL, "-plaintext", "-max-time", "3", address, "list"], capture_output=True,
                               text=True, timeout=30)
    assert plaintext.returncode != 0
