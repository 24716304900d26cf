"""The npm `standardwebhooks` package verifies one of our real deliveries (clients/node/test/
verify_delivery.ts, built by `make test`), and refuses it once its body is tampered with."""

from __future__ import annotations

import json
import shutil
import subprocess

from voxplane.services.persistence.base import new_ref

from .test_node_client import NODE_CLIENT, TESTS
from .test_webhooks import allowed, receiver, secret, store_event  # noqa: F401  # fixtures


def test_a_node_receiver_verifies_a_real_delivery_with_standardwebhooks(db, tenant, secret, allowed, receiver):  # noqa: F811
    node = shutil.which("node")
    assert node, "needs node (20 or later) on PATH"
    event_id = store_event(db, tenant, new_ref(), 1, "HANGUP", webhook=receiver.url(), hangupCause="HANGUP_CAUSE_BUSY")
    (got,) = receiver.wait_for(1)
    delivery = {"secret": secret, "headers": got.headers, "body": got.body.decode()}
    done = subprocess.run([node, str(TESTS / "verify_delivery.js")], cwd=NODE_CLIENT, input=json.dumps(delivery),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"type": "call.hangup", "eventId": event_id, "tamperedRefused": True}
