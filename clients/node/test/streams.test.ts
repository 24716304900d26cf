// Server streams as async iterables, against a grpc-js server of this test's own.

import * as grpc from "@grpc/grpc-js";
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Calls, calls, status, VoxplaneError } from "../src";

let server: grpc.Server;
let endpoint: string;
let cancelled = false;
let failNext = false; // the next export fails NOT_FOUND

before(async () => {
  server = new grpc.Server();
  const exportCalls: grpc.handleServerStreamingCall<calls.ExportCallsRequest, calls.ExportCallsChunk> = (call) => {
    if (failNext) {
      failNext = false;
      call.emit("error", { code: status.NOT_FOUND, details: "No such number." });
      return;
    }
    call.on("cancelled", () => (cancelled = true));
    let sent = 0;
    const next = () => {
      if (!call.cancelled && sent++ < 10_000) {
        call.write({ data: Buffer.from(`row ${sent}\n`) }, next);
      }
    };
    next();
  };
  server.addService(calls.CallsService, { exportCalls } as unknown as grpc.UntypedServiceImplementation);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  endpoint = `127.0.0.1:${port}`;
});

after(() => server.forceShutdown());

test("breaking out of a stream cancels it, and nothing is thrown", async () => {
  const client = new Calls({ endpoint, apiKey: "k" });
  let received = 0;
  for await (const chunk of client.exportCalls({})) {
    assert.ok(chunk.data.length);
    if (++received === 3) {
      break;
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.ok(cancelled, "the server saw the call cancelled");
  client.close();
});

test("a stream's failure is a VoxplaneError", async () => {
  const client = new Calls({ endpoint, apiKey: "k" });
  failNext = true;
  await assert.rejects(
    (async () => {
      for await (const chunk of client.exportCalls({})) {
        assert.fail(`no chunk was expected: ${chunk.data}`);
      }
    })(),
    (error: unknown) => error instanceof VoxplaneError && error.code === status.NOT_FOUND && error.message === "No such number.",
  );
  client.close();
});
