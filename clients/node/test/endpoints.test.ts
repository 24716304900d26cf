// Where a client connects: a dns:/// target and several endpoints (names among them) reach the real
// server, balanced with round_robin. Two replicas sharing the calls: balanced.ts, run by
// tests/test_node_client.py on PostgreSQL.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Numbers } from "../src";
import { target } from "../src/client";
import * as contract from "./contract";

const { server } = contract;
const port = server?.endpoint.split(":").pop();
const apiKey = server?.endpointApiKey;

async function createAndGet(numbers: Numbers, e164: string): Promise<void> {
  try {
    const made = await numbers.createNumber(contract.newNumber(e164));
    assert.equal((await numbers.getNumber(contract.byRef(made.ref))).e164Number, made.e164Number);
  } finally {
    numbers.close();
  }
}

test("a dns:/// target of localhost reaches the server", { skip: contract.skip }, async () => {
  await createAndGet(new Numbers({ endpoint: `dns:///localhost:${port}`, apiKey }), server?.endpointE164s[0] as string);
});

test("several endpoints, a name among them, are one balanced channel", { skip: contract.skip }, async () => {
  const endpoint = [`localhost:${port}`, `127.0.0.1:${port}`];
  await createAndGet(new Numbers({ endpoint, apiKey }), server?.endpointE164s[1] as string);
});

test("an endpoint list is one round_robin target, as the Python clients read it", () => {
  assert.deepEqual(target("10.0.0.5:50051"), { target: "10.0.0.5:50051", balanced: false });
  const several = { target: "voxplane-endpoints:10.0.0.5:50051,voxplane.internal:50051", balanced: true };
  assert.deepEqual(target(["10.0.0.5:50051", "voxplane.internal:50051"]), several);
  assert.deepEqual(target(" 10.0.0.5:50051, voxplane.internal:50051 "), several);
  assert.deepEqual(target("dns:///voxplane.internal:50051"), { target: "dns:///voxplane.internal:50051", balanced: true });
  assert.deepEqual(target("ipv4:10.0.0.5:1,10.0.0.6:1"), { target: "ipv4:10.0.0.5:1,10.0.0.6:1", balanced: true });
  assert.throws(() => target("10.0.0.5:50051,voxplane.internal"), /"voxplane.internal" is not host:port/);
});
