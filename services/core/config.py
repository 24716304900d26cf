"""Every setting the servers read from the environment, with defaults that make `make run` work on a
fresh clone.

pydantic-settings reads `VOXPLANE_<NAME>` into `Settings` once and checks every value's type, so a
bad one stops a command with the setting's name rather than failing later in a request.
`settings()` is that one reading; `reload()` reads the environment again (tests change it).
"""

from __future__ import annotations

import functools
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# How long a webhook delivery is retried (the Standard Webhooks schedule ends after about 3 days).
WEBHOOK_RETRY_WINDOW = timedelta(days=3)
RETENTION_MARGIN = timedelta(days=1)
LONGEST_RETENTION_DAYS = 3650


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VOXPLANE_", frozen=True)

    # Where the embedded SQLite database and the development API key live.
    data_dir: Path = Path("data")
    # The database; empty: a SQLite file under data_dir.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 50051
    # Seconds SIGTERM waits for in-flight calls before cancelling them.
    shutdown_grace: float = 10
    # Processes `serve` runs on one port (SO_REUSEPORT; PostgreSQL only), and, set by `serve` in each, the
    # worker's index (0 to workers - 1).
    workers: int = 1
    worker_index: int = 0
    # Threads that run database work off the event loop.
    db_threads: int = 8
    # Seconds a request waits for an answer from the database (a connection, a query's result) before
    # it fails UNAVAILABLE and the connection is discarded: a partitioned database fails fast, not at
    # the caller's deadline. Well above any one statement's time (a unit of work may take longer, as
    # long as every statement of it is answered within this).
    db_timeout: float = 2
    log_level: str = "INFO"
    # The port of the Prometheus /metrics endpoint, at `host`; 0: none (`make run` serves it at 9464).
    metrics_port: int = 0
    # Where OpenTelemetry spans of the RPCs go: `off`, `otlp` (OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317)
    # or `console` (stdout); anything but `off` needs the `tracing` extra.
    tracing: Literal["off", "otlp", "console"] = "off"
    # PEM files; with both set, the servers speak TLS (core/tls.py). Off loopback, `serve` needs them, or
    # --plaintext.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A PEM file of CA certificates: with it, the servers speak mutual TLS, and take only clients that
    # present a certificate it signed.
    tls_client_ca: Path | None = None
    # The CA certificates (PEM) a service trusts when it asks another over TLS (Calls asking Numbers);
    # unset: tls_client_ca, else the system's roots.
    tls_ca: Path | None = None
    # Days a released number stays RELEASED (unroutable, not acquirable) before it is free again.
    release_aging_days: float = 30
    # The deployment's own country (ISO 3166-1): national-form numbers are read in it.
    home_region: str = "US"
    # A JSON file of number classifiers; empty: Kazoo's defaults.
    classifiers: str = ""
    # Where Calls reaches Numbers and Agents; empty: its own server's address, right for `serve all`.
    numbers_endpoint: str = ""
    agents_endpoint: str = ""
    # Seconds the simulated network takes to ring, and then to answer.
    sim_ring_delay: float = 0.05
    sim_answer_delay: float = 0.1
    # Seconds Calls reuses what Numbers and Agents said about a caller's agent or number (0: ask every time).
    calls_lookup_ttl: float = 1
    # Seconds between a Calls process's heartbeats, the same on every replica: a process silent for six
    # of them is taken for stopped, and its running calls are ended.
    calls_heartbeat: float = 5
    # How many calls a workspace may have running at once when its call settings' max_concurrent_calls
    # is 0 (the default): 0, no cap (the deployment's capacity is its carrier's to say; README, "Toll-fraud
    # guards").
    calls_max_concurrent: int = Field(default=0, ge=0)
    # The network calls are carried on: `simulated` (the default, no phone is reached) or `sip` (real calls:
    # sippy for SIP, rtpengine for the media; README, "The SIP gateway").
    call_gateway: Literal["simulated", "sip"] = "simulated"
    # Where the SIP gateway listens, and the address its Via and Contact headers give.
    sip_host: str = "127.0.0.1"
    sip_port: int = 5070
    # host[:port] of the outbound proxy (Kamailio) every leg is sent through; empty: each leg goes straight
    # to its URI's host (an agent's AOR domain, a SIP URI destination).
    sip_proxy: str = ""
    # The carrier trunk E.164 destinations are sent to, host[:port] or a SIP URI (sip:host[:port]); empty: the
    # outbound proxy.
    sip_trunk: str = ""
    # host[:port] of rtpengine's NG control socket (UDP), which anchors every call's media. Announcements
    # (PlayAudio) are sent over TCP to the same address: run rtpengine with --listen-tcp-ng there too.
    rtpengine_ng: str = "127.0.0.1:2223"
    # rtpengine's --recording-dir (with --recording-method=pcap), as this server sees it: where the SIP
    # gateway reads the pcaps of a recorded call (and removes them once the WAV is stored). Empty:
    # RecordCall on SIP is FAILED_PRECONDITION.
    rtpengine_recordings: str = ""
    # The largest announcement PlayAudio fetches, in bytes.
    play_max_bytes: int = Field(default=5_000_000, gt=0)
    # A `service` API key Calls asks Numbers with where an inbound call goes (any workspace's number);
    # empty: Calls makes one for itself, in the workspace `voxplane-calls`, revoked when it stops.
    calls_service_key: str = ""
    # Seconds an inbound call waits for a webhook's reply to NEW_CALL or DATA before it goes on without.
    steering_timeout: float = 5
    # Webhook URLs the server may post to although they resolve to loopback, private, link-local or
    # metadata addresses: comma-separated CIDRs ("127.0.0.0/8") and host names ("receiver.internal").
    # For development and tests; empty in production.
    webhook_allow: str = ""
    # Seconds one delivery attempt waits for the receiver's answer.
    webhook_timeout: float = 10
    # Seconds between a failed attempt and the next (a JSON list; each drawn ±20% for jitter); after
    # the last, the delivery fails. The default is Standard Webhooks' schedule, about three days.
    webhook_retry_schedule: list[float] = [5, 300, 1800, 7200, 18000, 36000, 36000, 36000, 36000, 36000, 36000, 36000]
    # The carrier off-net SMS and faxes go to: `simulated` is the only one so far.
    messaging_carrier: Literal["simulated"] = "simulated"
    # A `service` API key Messaging asks Numbers with where an SMS goes (any workspace's number); empty:
    # Messaging makes one for itself, in the workspace `voxplane-messaging`, revoked when it stops.
    messaging_service_key: str = ""
    # Seconds a Messaging worker's claim on a message lasts: a worker that stopped mid-send has its
    # messages taken back by another (or the next) after this long, and handed off again (idempotently).
    messaging_lease: float = 30
    # Seconds the simulated carrier takes to send a delivery receipt, and to send one for its slow number.
    sim_receipt_delay: float = 0.05
    sim_slow_receipt_delay: float = 3
    # Seconds between two attempts of a fax whose line was busy or did not answer.
    fax_retry_delay: float = 60
    # Days events are kept for streams to resume from (and webhooks to deliver): at least the webhook
    # retry window and a day, so that no delivery still being retried loses its event.
    event_retention_days: float = 7
    # Per-workspace limits (0: none), all replicas together (README, "Rate limits"): requests per second
    # (service keys' routing lookups aside), calls created and messages sent per minute. Far above what one
    # workspace of the benchmarks does (bench/messaging.py: thousands of sends a second; bench/calls.py:
    # 300 calls a second), so that a limit only stops a runaway client.
    rate_limit_requests: int = 10_000
    rate_limit_calls: int = 60_000
    rate_limit_messages: int = 600_000
    # Seconds a process keeps what it read of a workspace's own limits (`voxplane workspaces limits`) before
    # reading them again: how long a change takes to reach every replica.
    rate_limit_refresh: float = 5

    # The edge proxy (`voxplane edge config|run`): where Kamailio listens (IP:port, UDP and TCP), the SIP
    # domains it serves (comma-separated; agents register in them), where voxplane's SIP gateway is
    # (IP:port, its sip_host:sip_port: it and the carrier trunks are trusted by source address), and the
    # trunks' addresses (comma-separated IPs or networks, each with an optional port: "203.0.113.0/24:5060").
    edge_listen: str = "127.0.0.1:5060"
    edge_domains: str = "sip.local"
    edge_gateway: str = "127.0.0.1:5070"
    edge_trunks: str = ""
    # The gateway's processes (`serve calls --workers N`: worker i on edge_gateway's port + i), each trusted
    # and sent its share of the calls.
    edge_gateway_workers: int = 1
    # Failed digest authentications one source address may make in the window (seconds) before the edge
    # refuses its REGISTERs and INVITEs until the window has passed.
    edge_max_auth_failures: int = 10
    edge_auth_failure_window: int = 300
    # Requests one address (but the gateway's and the trunks') may send in 2 s before the edge drops them.
    edge_flood_requests: int = 16
    # The UDP ports rtpengine relays media on, when `voxplane edge run` starts it beside Kamailio (at
    # rtpengine_ng, the address the SIP gateway drives it at).
    edge_rtp_ports: str = "30000-30999"

    @field_validator("tls_cert", "tls_key", "tls_client_ca", "tls_ca", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # VOXPLANE_TLS_CERT= (a compose file's blank) is no file

    @field_validator("home_region")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("rate_limit_requests", "rate_limit_calls", "rate_limit_messages")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError(f"must be 0 (no limit) or more, got {value}")
        return value

    @field_validator("rate_limit_refresh")
    @classmethod
    def _not_negative_seconds(cls, value: float) -> float:
        if value < 0:
            raise ValueError(f"must be 0 (read every time) or more seconds, got {value:g}")
        return value

    @field_validator("event_retention_days")
    @classmethod
    def _longer_than_retries(cls, value: float) -> float:
        shortest = (WEBHOOK_RETRY_WINDOW + RETENTION_MARGIN).days
        if not shortest <= value <= LONGEST_RETENTION_DAYS:
            raise ValueError(f"must be {shortest} to {LONGEST_RETENTION_DAYS} days (at least the webhook retry "
                             f"window, {WEBHOOK_RETRY_WINDOW.days} days, and a day), got {value:g}")
        return value

    @property
    def event_retention(self) -> timedelta:
        return timedelta(days=self.event_retention_days)

    @property
    def release_aging(self) -> timedelta:
        return timedelta(days=self.release_aging_days)


@functools.cache
def settings() -> Settings:
    """The settings, read from the environment on first use."""
    return Settings()


def reload() -> None:
    """Forgets the settings read, so the next `settings()` reads the environment again."""
    settings.cache_clear()


def database_url() -> str:
    """`VOXPLANE_DATABASE_URL`, or a SQLite file under the data folder (made if missing)."""
    current = settings()
    if current.database_url:
        return current.database_url
    current.data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{current.data_dir / 'voxplane.db'}"
