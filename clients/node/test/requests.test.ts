// What the wrapper makes of plain objects, for any RPC: no server needed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { serviceConfig } from "../src/client";
import { numbers } from "../src";
import { buildRequest, itemsField, maskPaths, MessageType, withUpdateMask } from "../src/requests";

/** A message type with these fields (as ts-proto's `create()` lists them), its messages plain objects. */
function type(fields: Record<string, unknown>): MessageType {
  return {
    create: () => structuredClone(fields),
    fromPartial: (object: object) => ({ ...structuredClone(fields), ...object }),
    encode: () => ({ finish: () => new Uint8Array() }),
    decode: () => ({}),
  };
}

const UPDATE_NUMBER = "voxplane.numbers.v1.Numbers/UpdateNumber";

test("an update's mask names the fields given, a sub-message's one by one, a oneof's whole", () => {
  const { message } = buildRequest(UPDATE_NUMBER, numbers.UpdateNumberRequest, {
    ref: "n1",
    name: "", // given its default: cleared, which only the mask can say
    etag: "e1",
    settings: { recordingEnabled: false, callerIdPrefix: "ABZ:" },
    ingressInfo: { webhook: "https://hooks.example.com/voice" },
    providerRef: undefined, // not given
  });
  assert.deepEqual(message.updateMask, [
    "name",
    "settings.recording_enabled",
    "settings.caller_id_prefix",
    "ingress_info",
  ]);
  assert.equal(message.etag, "e1");
});

test("a mask given is sent as it is; a request without update_mask gets none", () => {
  const given = buildRequest(UPDATE_NUMBER, numbers.UpdateNumberRequest, { ref: "n1", name: "x", updateMask: [] });
  assert.deepEqual(given.message.updateMask, []);
  const paths = { ref: "ref", line1: "address_line_1", part: { path: "part", fields: { aB: "a_b" } } };
  assert.deepEqual(maskPaths(paths, { ref: "r", line1: "x", part: { aB: 1 } }), ["address_line_1", "part.a_b"]);
  const request = { ref: "n1", reason: "x" };
  assert.deepEqual(withUpdateMask(undefined, request), request);
  assert.ok(!("updateMask" in buildRequest("voxplane.numbers.v1.Numbers/GetNumber", numbers.GetNumberRequest, { ref: "n1" }).message));
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
  assert.equal(buildRequest(UPDATE_NUMBER, numbers.UpdateNumberRequest, {}).idempotent, false);
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
