"""`voxplane webhooks …` as operators use it: subprocesses on a SQLite file of their own. And
`voxplane serve webhooks` alone delivers what the outbox holds."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from voxplane.services.events import outbox
from voxplane.services.persistence.base import new_ref, utcnow
from voxplane.services.persistence.db import Database
from voxplane.services.persistence.tenancy import Workspace
from voxplane.webhooks import verify

from .test_cli import Served, cli, env  # noqa: F401  # env is a fixture
from .webhook_receiver import Receiver


def test_secret_settings_and_deliveries_from_the_command_line(env, tmp_path):  # noqa: F811
    cli(env, "migrate")
    cli(env, "workspaces", "create", "acme")
    secret = cli(env, "webhooks", "secret", "create", "--workspace", "acme").stdout.strip()
    assert secret.startswith("whsec_")
    again = cli(env, "webhooks", "secret", "create", "--workspace", "acme", check=False)
    assert again.returncode != 0 and "rotate" in again.stderr
    rotated = cli(env, "webhooks", "secret", "rotate", "--workspace", "acme")
    assert rotated.stdout.strip().startswith("whsec_") and rotated.stdout.strip() != secret
    assert "previous secret signs deliveries too until" in rotated.stderr

    cli(env, "webhooks", "settings", "set", "--workspace", "acme", "--incoming-url", "https://example.com/in",
        "--whitelist", "+1 415 555 0100", "--keep-delivery-log", "on")
    shown = cli(env, "webhooks", "settings", "get", "--workspace", "acme").stdout
    assert "incoming_url\thttps://example.com/in" in shown and "whitelist\t+14155550100" in shown
    assert "keep_delivery_log\ton" in shown and "outgoing_url\t\n" in shown
    bad = cli(env, "webhooks", "settings", "set", "--workspace", "acme", "--outgoing-url", "ftp://x", check=False)
    assert bad.returncode != 0 and "outgoing_url" in bad.stderr
    cleared = cli(env, "webhooks", "settings", "clear", "--workspace", "acme").stdout
    assert "incoming_url\t\n" in cleared

    listed = cli(env, "webhooks", "deliveries", "list", "--workspace", "acme").stdout
    assert listed.splitlines() == ["REF\tSTATUS\tATTEMPTS\tEVENT\tRESOURCE\tURL\tLAST_ERROR"]
    neither = cli(env, "webhooks", "deliveries", "retry", "--workspace", "acme", check=False)
    assert neither.returncode != 0 and "--since" in neither.stderr
    unknown = cli(env, "webhooks", "deliveries", "retry", "--workspace", "acme", new_ref(), check=False)
    assert unknown.returncode != 0 and "No webhook delivery" in unknown.stderr
    retried = cli(env, "webhooks", "deliveries", "retry", "--workspace", "acme", "--since", "2026-01-01T00:00:00")
    assert "0 failed deliveries" in retried.stderr


def test_serve_webhooks_alone_delivers_the_outbox(env, tmp_path):  # noqa: F811
    env = dict(env, VOXPLANE_WEBHOOK_ALLOW="127.0.0.1")
    cli(env, "migrate")
    cli(env, "workspaces", "create", "acme")
    secret = cli(env, "webhooks", "secret", "create", "--workspace", "acme").stdout.strip()
    receiver = Receiver()
    db = Database(f"sqlite:///{Path(env['VOXPLANE_DATA_DIR']) / 'voxplane.db'}", threads=1)
    server = Served(env, "serve", "webhooks")
    try:
        def write(session):  # type: ignore[no-untyped-def]
            workspace = session.scalar(select(Workspace.id).where(Workspace.name == "acme"))
            event = outbox.NewEvent(workspace, "call", new_ref(), 1, "NEW_CALL", utcnow(), "INBOUND", receiver.url(), {})
            return outbox.append(session, [event])[0]

        event_id = db.transaction(write, write=True)
        (got,) = receiver.wait_for(1)
        assert got.event_id == event_id
        verify(got.headers, got.body, secret)
    finally:
        assert server.stop() == 0
        receiver.close()
        db.close()
