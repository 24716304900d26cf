// Against a Numbers server that fails every RPC UNAVAILABLE twice before answering (the pytest
// driver's FlakyNumbers, which counts the attempts): reads are retried by the channel, per the
// service config, and creates by the client, with one request_id for every attempt.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Numbers, status } from "../src";
import * as contract from "./contract";

const endpoint = contract.server?.flakyEndpoint;

test("a read and a create are retried on UNAVAILABLE, an update is not", { skip: endpoint ? false : contract.skip }, async () => {
  const numbers = new Numbers({ endpoint, apiKey: "k" });
  try {
    assert.equal((await numbers.getNumber(contract.byRef("n1"))).ref, "n1");
    assert.equal((await numbers.createNumber(contract.newNumber("+14155550100"))).ref, "n1");
    await assert.rejects(numbers.updateNumber(contract.renamed({ ref: "n1", etag: "" } as never, "x")), {
      code: status.UNAVAILABLE,
    });
  } finally {
    numbers.close();
  }
});
