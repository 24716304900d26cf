// What the wrapper makes of plain objects, for any RPC: no server needed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { serviceConfig } from "../src/client";
import { numbers } from "../src";
import { buildRequest, itemsField, MessageType, withUpdateMask } from "../src/requests";

/** A message type with these fields (as ts-proto's `create()` lists them), its messages plain objects. */
function type(fields: Record<string, unknown>): MessageType {
  return {
    create: () => structuredClone(fields),
    fromPartial: (object: object) => ({ ...structuredClone(fields), ...object }),
    encode: () => ({ finish: () => new Uint8Array() }),
    decode: () => ({}),
  };
}

const aip134 = type({ thing: undefined, updateMask: undefined, validateOnly: false });

test("an AIP-134 update takes the resource's fields and masks those given", () => {
  assert.deepEqual(withUpdateMask("updateThing", aip134, { ref: "t1", displayName: "x", etag: "e", validateOnly: true }), {
    validateOnly: true,
    thing: { ref: "t1", displayName: "x", etag: "e" },
    updateMask: ["display_name"],
  });
  assert.deepEqual(withUpdateMask("updateThing", aip134, { thing: { ref: "t1", aorLink: "sip:1@x" } }), {
    thing: { ref: "t1", aorLink: "sip:1@x" },
    updateMask: ["aor_link"],
  });
  const explicit = { thing: { ref: "t1", addressLine1: "x" }, updateMask: ["address_line_1"] };
  assert.deepEqual(withUpdateMask("updateThing", aip134, explicit), explicit);
});

test("a request type without update_mask is sent as given (every Update of today's contract)", () => {
  const request = { ref: "n1", name: "x", etag: "e" };
  assert.deepEqual(withUpdateMask("updateNumber", numbers.UpdateNumberRequest, request), request);
  assert.deepEqual(withUpdateMask("getThing", aip134, { thing: {} }), { thing: {} });
  const { message } = buildRequest("updateNumber", numbers.UpdateNumberRequest, request);
  assert.equal(message.name, "x");
  assert.equal(message.etag, "e");
});

test("a request_id is filled in when empty, and makes the request safe to repeat", () => {
  const made = buildRequest("createNumber", numbers.CreateNumberRequest, { e164Number: "+14155550100" });
  assert.match(made.message.requestId, /^[0-9a-f]{32}$/);
  assert.equal(made.idempotent, true);
  const given = buildRequest("createNumber", numbers.CreateNumberRequest, { requestId: "mine" });
  assert.equal(given.message.requestId, "mine");
  const batch = buildRequest("batchCreateNumbers", numbers.BatchCreateNumbersRequest, {
    requests: [{ requestId: "a" }, {}],
  });
  assert.equal(batch.message.requests[0].requestId, "a");
  assert.match(batch.message.requests[1].requestId, /^[0-9a-f]{32}$/);
  assert.equal(batch.idempotent, true);
  assert.equal(buildRequest("updateNumber", numbers.UpdateNumberRequest, {}).idempotent, false);
});

test("an unknown field is a TypeError naming it", () => {
  assert.throws(() => buildRequest("getNumber", numbers.GetNumberRequest, { reff: "n1" }), /GetNumber|reff/);
  assert.throws(() => buildRequest("getNumber", numbers.GetNumberRequest, "n1"), TypeError);
});

test("a List response's items are the repeated field named after it, else its only one", () => {
  assert.equal(itemsField("listNumbers", numbers.ListNumbersResponse), "numbers");
  assert.equal(itemsField("listThings", type({ items: [], nextPageToken: "" })), "items");
  assert.equal(itemsField("listThings", type({ a: [], b: [], nextPageToken: "" })), undefined);
});

test("the service config retries reads only, within the client's attempts, with no deadline of its own", () => {
  const config = JSON.parse(serviceConfig(3));
  const retried = config.methodConfig.filter((m: { retryPolicy?: object }) => m.retryPolicy);
  const names = retried.flatMap((m: { name: { method: string }[] }) => m.name.map((n) => n.method));
  assert.ok(names.includes("GetNumber") && names.includes("ListCalls") && names.includes("ExportCalls"));
  assert.ok(!names.some((name: string) => /^(Create|Update|Delete|Batch)/.test(name)), names.join());
  assert.ok(retried.every((m: { retryPolicy: { maxAttempts: number } }) => m.retryPolicy.maxAttempts === 3));
  assert.ok(config.methodConfig.every((m: object) => !("timeout" in m)));
  assert.equal(JSON.parse(serviceConfig(9)).methodConfig[1].retryPolicy.maxAttempts, 5); // gRPC's limit
  assert.ok(JSON.parse(serviceConfig(1)).methodConfig.every((m: object) => !("retryPolicy" in m)));
});
