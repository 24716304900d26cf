// Run by tests/test_node_client.py (not a node:test file: it needs two replicas on PostgreSQL, over TLS):
// one client given both endpoints (VOXPLANE_ENDPOINT, comma-separated) creates each number of
// VOXPLANE_TEST_E164S and reads it back; the driver counts what each replica answered.

import assert from "node:assert/strict";
import { Numbers } from "../src";
import * as contract from "./contract";

async function main(): Promise<void> {
  const numbers = new Numbers(); // endpoints, key and CA from the environment
  try {
    for (const e164 of contract.server?.e164s ?? []) {
      const made = await numbers.createNumber(contract.newNumber(e164));
      assert.equal((await numbers.getNumber(contract.byRef(made.ref))).e164Number, made.e164Number);
    }
  } finally {
    numbers.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
