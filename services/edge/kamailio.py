"""The kamailio.cfg of a deployment: Kamailio 5.6 as voxplane's edge proxy, reading agents' HA1 digests
(`sip_subscribers`), voxplane's numbers (`number_routes`) and its own registrations (`location`) straight
from voxplane's database.

What it does with a request, by where it comes from (trust is by source address and port):
- the SIP gateway (the legs it bridges inbound calls to, and click-to-call's legs): to an agent's AOR,
  the contacts it registered (480 when none); anywhere else, as addressed (forward targets, trunks);
- a carrier trunk: to a voxplane number, the gateway; any other number, 404;
- anyone else: REGISTER and INVITE are digest-authenticated against the agents' HA1 (with nonce
  counting); a registered agent's call to an E.164 number goes to the gateway, to an agent's AOR to
  its contacts; anything else is refused.
Every call to a number thus reaches the gateway, which reports it to Calls (routing, events, steering).
Pike and a count of failed authentications per source address turn away floods and password guessing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

KAMAILIO_MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")
E164 = "^[+][1-9][0-9]{6,14}$"


@dataclass(frozen=True)
class Endpoint:
    """A host (IP address) and UDP/TCP port."""

    host: str
    port: int

    @property
    def uri_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


@dataclass(frozen=True)
class TrustedSource:
    """Requests from this network (and port, when given) are let through without digest authentication."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None


@dataclass(frozen=True)
class Edge:
    listen: Endpoint
    domains: list[str]
    database_url: str  # voxplane's, as SQLAlchemy takes it
    gateway: Endpoint
    trunks: list[TrustedSource]
    # Failed authentications one source address may have in `auth_failure_window` seconds before it is refused.
    max_auth_failures: int = 10
    auth_failure_window: int = 300
    # Requests one untrusted address may send in 2 s; past that, pike drops them until it calms down.
    flood_requests: int = 16
    # The gateway's processes (`serve calls --workers N`): worker i listens on the gateway's port + i.
    gateway_workers: int = 1


def kamailio_database_url(url: str) -> str:
    """voxplane's database URL as Kamailio's db_sqlite or db_postgres module takes it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("Kamailio needs the SQLite database in a file, not in memory")
        return f"sqlite:///{Path(parsed.database).resolve()}"  # three slashes, then the absolute path
    if parsed.get_backend_name() == "postgresql":
        credentials = parsed.username or ""
        if parsed.password:
            credentials += f":{parsed.password}"
        host = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        return f"postgres://{credentials + '@' if credentials else ''}{host}/{parsed.database}"
    raise ValueError(f"Kamailio reads SQLite or PostgreSQL, not {parsed.get_backend_name()}")


def _is_from(source: TrustedSource | Endpoint, ports: int = 1) -> str:
    """The script condition that a request came from `source` (from its port or the `ports` from it on)."""
    port: int | None = source.port
    network = ipaddress.ip_network(source.host) if isinstance(source, Endpoint) else source.network
    condition = f'is_in_subnet("$si", "{network}")'
    if port is None:
        return condition
    if ports > 1:
        return f"({condition} && $sp >= {port} && $sp <= {port + ports - 1})"
    return f"({condition} && $sp == {port})"


def _to_gateway(gateway: Endpoint, workers: int) -> str:
    """The route that sends a request to the gateway: with several workers, the one its Call-ID hashes to,
    so that every request of a call (and each worker's own dialogs' in-dialog ones, by their Contact)
    reaches the same process."""
    uris = [_quoted(f"sip:{gateway.uri_host}:{gateway.port + i}") for i in range(workers)]
    if workers == 1:
        return f"\t$du = {uris[0]};"
    picks = "\n".join(f"\tif ($var(worker) == {i}) $du = {uri};" for i, uri in enumerate(uris))
    return f"\t$var(worker) = $(ci{{s.corehash}}) mod {workers};\n{picks}"


def _quoted(text: str) -> str:
    if '"' in text or "\\" in text or "\n" in text:
        raise ValueError(f"{text!r} cannot go in a kamailio.cfg string")
    return f'"{text}"'


def render(edge: Edge) -> str:
    """The kamailio.cfg."""
    database = kamailio_database_url(edge.database_url)
    backend = "db_sqlite" if database.startswith("sqlite:") else "db_postgres"
    listen = f"{edge.listen.uri_host}:{edge.listen.port}"
    aliases = "\n".join(f"alias={_quoted(domain)}" for domain in edge.domains)
    trunks = " || ".join(_is_from(trunk) for trunk in edge.trunks)
    from_trunk = f' else if ({trunks}) {{\n\t\t$var(source) = "trunk";\n\t}}' if trunks else ""
    return TEMPLATE.format(
        database=_quoted(database),
        sql_connection=_quoted(f"voxplane=>{database}"),
        backend=backend,
        modules=KAMAILIO_MODULES,
        listen=listen,
        aliases=aliases,
        to_gateway=_to_gateway(edge.gateway, edge.gateway_workers),
        from_gateway=_is_from(edge.gateway, edge.gateway_workers),
        from_trunk=from_trunk,
        max_auth_failures=edge.max_auth_failures,
        auth_failure_window=edge.auth_failure_window,
        flood_requests=edge.flood_requests,
        # SQLite: up to a second for a write lock voxplane holds; PostgreSQL's writers wait by themselves.
        save_attempts=20 if backend == "db_sqlite" else 1,
        e164=_quoted(E164),
    )


# Doubled braces are Kamailio's own; format() fills the single ones.
TEMPLATE = """\
#!KAMAILIO
# voxplane's edge proxy. Rendered by `voxplane edge config` for this deployment: render it again after a
# change of settings rather than editing it.

#!define DBURL {database}

####### global parameters #########
debug=2
log_stderror=yes
children=4
tcp_children=2
listen=udp:{listen}
listen=tcp:{listen}
auto_aliases=no
{aliases}
server_header="Server: voxplane edge"
user_agent_header="User-Agent: voxplane edge"
sip_warning=0

####### modules #########
loadpath "{modules}"
loadmodule "{backend}.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "sanity.so"
loadmodule "ipops.so"
loadmodule "htable.so"
loadmodule "pike.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "sqlops.so"
loadmodule "cfgutils.so"

modparam("rr", "enable_full_lr", 1)
modparam("rr", "append_fromtag", 1)

# Registrations live in the database alone (db_mode 3): voxplane removes an agent's in the transaction
# that deletes or disables it, and every Kamailio sharing the database sees the same ones.
modparam("usrloc", "db_url", DBURL)
modparam("usrloc", "db_mode", 3)
modparam("usrloc", "use_domain", 1)
modparam("registrar", "min_expires", 60)
modparam("registrar", "max_expires", 3600)

# Digest authentication against the agents' HA1 (never a secret): MD5(username:domain:secret), so the
# realm is the agent's domain. Nonce counting refuses a replayed response.
modparam("auth", "qop", "auth")
modparam("auth", "nonce_count", 1)
modparam("auth", "nonce_expire", 300)
modparam("auth_db", "db_url", DBURL)
modparam("auth_db", "calculate_ha1", 0)
modparam("auth_db", "password_column", "ha1")
modparam("auth_db", "password_column_2", "ha1b")
modparam("auth_db", "use_domain", 1)

modparam("sqlops", "sqlcon", {sql_connection})

# More than {flood_requests} requests from one address in 2 s is a flood: it is dropped until it calms down.
modparam("pike", "sampling_time_unit", 2)
modparam("pike", "reqs_density_per_unit", {flood_requests})
modparam("pike", "remove_latency", 4)
# Failed authentications by source address, forgotten after the window.
modparam("htable", "htable", "authfail=>size=10;autoexpire={auth_failure_window};")

####### routing #########
request_route {{
	if ({from_gateway}) {{
		$var(source) = "gateway";
	}}{from_trunk} else {{
		$var(source) = "phone";
		if (!pike_check_req()) {{
			xlog("L_ALERT", "pike: flood from $si:$sp, dropped\\n");
			exit;
		}}
	}}
	if (!mf_process_maxfwd_header("10")) {{
		sl_send_reply("483", "Too Many Hops");
		exit;
	}}
	if (!sanity_check("17895", "7")) {{
		xlog("L_WARN", "malformed SIP from $si:$sp\\n");
		exit;
	}}
	if (is_method("CANCEL")) {{
		if (t_check_trans()) route(RELAY);
		exit;
	}}
	if (has_totag()) {{
		route(WITHINDLG);
		exit;
	}}
	t_check_trans();
	remove_hf("Route");

	if (is_method("REGISTER")) {{
		route(REGISTRAR);
		exit;
	}}
	if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
		sl_send_reply("200", "OK");
		exit;
	}}
	if (!is_method("INVITE")) {{
		sl_send_reply("405", "Method Not Allowed");
		exit;
	}}
	if ($rU == $null) {{
		sl_send_reply("484", "Address Incomplete");
		exit;
	}}
	record_route();
	if ($var(source) == "gateway") route(FROM_GATEWAY);
	if ($var(source) == "trunk") route(FROM_TRUNK);
	route(AUTHENTICATE);
	route(FROM_AGENT);
}}

route[WITHINDLG] {{
	if (loose_route()) {{
		# re-INVITEs too: a UA that takes the route set from their 2xx keeps the proxy in the path.
		if (is_method("INVITE|UPDATE")) record_route();
		route(RELAY);
	}}
	if (is_method("ACK")) {{
		if (t_check_trans()) route(RELAY);
		exit;
	}}
	sl_send_reply("404", "Not Here");
	exit;
}}

route[REGISTRAR] {{
	if (uri != myself) {{
		sl_send_reply("403", "Domain Not Served");
		exit;
	}}
	route(AUTHENTICATE);
	# 0x2: no reply yet. Kamailio 5.6's SQLite driver does not wait for a lock: while voxplane commits, the
	# save fails, and is tried again shortly. The reply is that of the last attempt.
	$var(attempts) = 1;
	while (!save("location", "0x2") && $var(attempts) < {save_attempts}) {{
		$var(attempts) = $var(attempts) + 1;
		usleep("50000");
	}}
	reg_send_reply();
	exit;
}}

# Passes only a request whose credentials match an enabled agent's HA1 in one of our domains (the From
# domain, which is the realm); challenges one without credentials and refuses wrong ones.
route[AUTHENTICATE] {{
	if ($sht(authfail=>$si) != $null && $sht(authfail=>$si) >= {max_auth_failures}) {{
		xlog("L_NOTICE", "$rm from $si:$sp refused: too many failed authentications\\n");
		sl_send_reply("403", "Too Many Failed Authentications");
		exit;
	}}
	if (from_uri != myself) {{
		sl_send_reply("403", "Domain Not Served");
		exit;
	}}
	auth_check("$fd", "sip_subscribers", "1");
	$var(rc) = $rc;
	if ($var(rc) == -2 || $var(rc) == -3 || $var(rc) == -8) {{
		# wrong secret, no such (enabled) agent, or credentials of another user than From/To
		if ($sht(authfail=>$si) == $null) {{
			$sht(authfail=>$si) = 1;
		}} else {{
			$var(failures) = $shtinc(authfail=>$si);
		}}
		xlog("L_NOTICE", "$rm from $si:$sp for $fu: authentication failed ($var(rc))\\n");
		sl_send_reply("403", "Forbidden");
		exit;
	}}
	if ($var(rc) < 0) {{
		auth_challenge("$fd", "1");
		exit;
	}}
	consume_credentials();
}}

# The gateway's legs: to agents (their AORs: where they registered) and to forward targets and carrier
# trunks (as addressed).
route[FROM_GATEWAY] {{
	if (uri == myself) route(LOCATION);
	route(RELAY);
}}

route[FROM_TRUNK] {{
	if (route(VOXPLANE_NUMBER)) route(TO_GATEWAY);
	sl_send_reply("404", "Not Found");
	exit;
}}

# Every call to a number goes through the gateway, so Calls sees it (and answers 404 for a number it does
# not have); agent to agent goes to the contacts.
route[FROM_AGENT] {{
	if ($rU =~ {e164}) route(TO_GATEWAY);
	if (uri == myself) route(LOCATION);
	sl_send_reply("403", "Relaying Denied");
	exit;
}}

route[VOXPLANE_NUMBER] {{
	if (!($rU =~ {e164})) return -1;
	# $rU matched the E.164 pattern above: it is safe in the statement.
	sql_query("voxplane", "select 1 from number_routes where e164_number = '$rU'", "number");
	$var(found) = $dbr(number=>rows);
	sql_result_free("number");
	if ($var(found) > 0) return 1;
	return -1;
}}

route[LOCATION] {{
	if (!lookup("location")) {{
		sl_send_reply("480", "Temporarily Unavailable");
		exit;
	}}
	route(RELAY);
}}

route[TO_GATEWAY] {{
{to_gateway}
	route(RELAY);
}}

route[RELAY] {{
	if (!t_relay()) sl_reply_error();
	exit;
}}
"""
