// The Webhooks service from Node (tests/test_node_client.py runs this against a real server); how a
// Node receiver verifies a delivery with the npm `standardwebhooks` package is verify_delivery.ts.

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { status, VoxplaneError, Webhooks } from "../src";
import * as contract from "./contract";

const options = { endpoint: contract.server?.endpoint, apiKey: contract.server?.apiKey };

describe("Webhooks", { skip: contract.skip }, () => {
  const webhooks = new Webhooks(options);
  after(() => webhooks.close());

  test("a signing secret is shown once, then described without it", async () => {
    const made = await webhooks.createSigningSecret({});
    assert.match(made.secret, /^whsec_[A-Za-z0-9+/=]{44}$/);
    const described = await webhooks.getSigningSecret({});
    assert.equal(described.secret, "");
    assert.deepEqual(described.createTime, made.createTime);
    await assert.rejects(webhooks.createSigningSecret({}), (e: VoxplaneError) => e.code === status.ALREADY_EXISTS);
  });

  test("settings are set, read back and cleared", async () => {
    await webhooks.updateWebhookSettings({ incomingUrl: "https://example.com/in", keepDeliveryLog: true });
    const shown = await webhooks.getWebhookSettings({});
    assert.equal(shown.incomingUrl, "https://example.com/in");
    assert.equal(shown.keepDeliveryLog, true);
    const cleared = await webhooks.clearWebhookSettings({});
    assert.equal(cleared.incomingUrl, "");
    await assert.rejects(
      webhooks.updateWebhookSettings({ outgoingUrl: "ftp://example.com" }),
      (e: VoxplaneError) => e.code === status.INVALID_ARGUMENT && e.fieldViolations[0].field === "outgoing_url",
    );
  });
});
