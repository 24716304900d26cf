"""Settings read from the environment, with defaults that make `make run` work on a fresh clone."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

DATA_DIR = Path(os.environ.get("VOXPLANE_DATA_DIR", "data"))


def database_url() -> str:
    """`VOXPLANE_DATABASE_URL`, or a SQLite file under the data folder."""
    url = os.environ.get("VOXPLANE_DATABASE_URL")
    if url:
        return url
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DATA_DIR / 'voxplane.db'}"


@dataclass(frozen=True)
class ServerSettings:
    host: str = os.environ.get("VOXPLANE_HOST", "127.0.0.1")
    port: int = int(os.environ.get("VOXPLANE_PORT", "50051"))
    # Seconds SIGTERM waits for in-flight calls before cancelling them.
    shutdown_grace: float = float(os.environ.get("VOXPLANE_SHUTDOWN_GRACE", "10"))
    # Threads that run database work off the event loop.
    db_threads: int = int(os.environ.get("VOXPLANE_DB_THREADS", "8"))


def release_aging() -> timedelta:
    """How long a released number stays RELEASED (unroutable, not acquirable) before it is free again."""
    return timedelta(days=float(os.environ.get("VOXPLANE_RELEASE_AGING_DAYS", "30")))


def home_region() -> str:
    """The deployment's own country (ISO 3166-1): national-form numbers are read in it."""
    return os.environ.get("VOXPLANE_HOME_REGION", "US").upper()


def service_endpoint(service: str) -> str | None:
    """Where another service is reached (`VOXPLANE_NUMBERS_ENDPOINT`, `VOXPLANE_AGENTS_ENDPOINT`, …).

    None when unset: the caller then uses its own server's address, right for `serve all`.
    """
    return os.environ.get(f"VOXPLANE_{service.upper()}_ENDPOINT") or None


def simulated_call_delays() -> tuple[float, float]:
    """Seconds the simulated network takes to ring (`VOXPLANE_SIM_RING_DELAY`) and then to answer
    (`VOXPLANE_SIM_ANSWER_DELAY`)."""
    return (
        float(os.environ.get("VOXPLANE_SIM_RING_DELAY", "0.05")),
        float(os.environ.get("VOXPLANE_SIM_ANSWER_DELAY", "0.1")),
    )


def calls_lookup_ttl() -> float:
    """Seconds the Calls service reuses what Numbers and Agents said about a caller's agent or number
    (`VOXPLANE_CALLS_LOOKUP_TTL`; 0 asks every time)."""
    return float(os.environ.get("VOXPLANE_CALLS_LOOKUP_TTL", "1"))


def calls_heartbeat() -> float:
    """Seconds between a Calls process's heartbeats (`VOXPLANE_CALLS_HEARTBEAT`, the same on every
    replica); a process silent for six of them is taken for stopped, and its running calls are ended."""
    return float(os.environ.get("VOXPLANE_CALLS_HEARTBEAT", "5"))
