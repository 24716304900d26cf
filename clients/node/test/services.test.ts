// Every service of a real server, driven from Node through the wrapper (tests/test_node_client.py
// starts the server and a fresh workspace, and runs these on each database backend).

import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { Agents, Calls, calls as pb, Messaging, messaging, Numbers, status, VoxplaneError } from "../src";
import { readFileSync } from "node:fs";
import { FAX_CHUNK, faxRequests } from "../src/messaging";
import * as contract from "./contract";

const { server } = contract;
const e164s = [...(server?.e164s ?? [])];
const options = { endpoint: server?.endpoint, apiKey: server?.apiKey };

describe("Numbers", { skip: contract.skip }, () => {
  const numbers = new Numbers(options);
  after(() => numbers.close());

  test("creates, gets, and lists every page", async () => {
    const made = [];
    for (let i = 0; i < 5; i++) {
      made.push(await numbers.createNumber(contract.newNumber(e164s.pop() as string, `node ${i}`)));
    }
    const got = await numbers.getNumber(contract.byRef(made[0].ref));
    assert.equal(got.e164Number, made[0].e164Number);
    assert.ok(got.createTime instanceof Date);

    const firstPage = await numbers.listNumbers(contract.firstPage(2));
    assert.equal(firstPage.numbers.length, 2);
    assert.ok(firstPage.nextPageToken, "5 numbers in pages of 2: there is a next page");
    const seen = [];
    for await (const number of numbers.iterNumbers(contract.firstPage(2))) {
      seen.push(number.ref);
    }
    assert.deepEqual(seen.sort(), made.map((n) => n.ref).sort());
  });

  test("a bad field is INVALID_ARGUMENT naming it", async () => {
    await assert.rejects(numbers.createNumber(contract.badNumber), (error: unknown) => {
      assert.ok(error instanceof VoxplaneError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.equal(error.codeName, "INVALID_ARGUMENT");
      assert.ok(error.message.includes("+1785"), error.message);
      assert.deepEqual(
        error.fieldViolations.map((v) => v.field),
        [contract.badNumberField],
      );
      assert.ok(error.fieldViolations[0].description);
      return true;
    });
  });

  test("an update changes the fields given; a stale etag is ABORTED", async () => {
    const number = await numbers.createNumber(contract.newNumber(e164s.pop() as string));
    const renamed = await numbers.updateNumber(contract.renamed(number, "renamed"));
    assert.equal(renamed.name, "renamed");
    assert.notEqual(renamed.etag, number.etag);
    for (const call of [
      () => numbers.updateNumber(contract.renamed(number, "again", number.etag)),
      () => numbers.deleteNumber(contract.stale(number, number.etag)),
    ]) {
      await assert.rejects(call(), (error: VoxplaneError) => error.code === status.ABORTED);
    }
    // The mask names the fields given: one setting changes and the name stays; a name given "" is cleared.
    const recording = await numbers.updateNumber(contract.recording(renamed));
    assert.ok(contract.isRecording(recording));
    assert.equal(recording.name, "renamed");
    const unnamed = await numbers.updateNumber(contract.renamed(recording, ""));
    assert.equal(unnamed.name, "");
    assert.ok(contract.isRecording(unnamed));
    await numbers.deleteNumber(contract.stale(unnamed, unnamed.etag));
    await assert.rejects(numbers.getNumber(contract.byRef(number.ref)), { code: status.NOT_FOUND });
  });

  test("a misspelt field is refused before anything is sent", async () => {
    await assert.rejects(numbers.getNumber({ reff: "x" } as never), TypeError);
  });
});

describe("Agents", { skip: contract.skip }, () => {
  const agents = new Agents(options);
  after(() => agents.close());

  test("creates, gets, and lists every page", async () => {
    const made = [];
    for (const username of ["ann", "bob", "cid"]) {
      made.push(await agents.createAgent(contract.newAgent(username)));
    }
    assert.equal((await agents.getAgent(contract.byRef(made[1].ref))).username, "bob");
    const seen = [];
    for await (const agent of agents.iterAgents(contract.firstPage(2))) {
      seen.push(agent.username);
    }
    assert.deepEqual(seen.sort(), ["ann", "bob", "cid"]);
  });
});

describe("Calls", { skip: contract.skip }, () => {
  const agents = new Agents(options);
  const calls = new Calls(options);
  after(() => {
    agents.close();
    calls.close();
  });

  test("creates and gets a call, and streams the history as CSV", async () => {
    const agent = await agents.createAgent(contract.newAgent("caller"));
    const call = await calls.createCall(contract.newCall(agent.ref));
    assert.equal(contract.caller(call), agent.ref);
    assert.equal((await calls.getCall(contract.byRef(call.ref))).ref, call.ref);

    const chunks: Buffer[] = [];
    for await (const chunk of calls.exportCalls(contract.everyCall)) {
      chunks.push(chunk.data);
    }
    const [header, ...rows] = Buffer.concat(chunks).toString("utf8").trim().split(/\r?\n/);
    assert.ok(header.startsWith(contract.csvHeader), header);
    assert.ok(rows.some((row) => row.startsWith(`${call.ref},`)), rows.join("\n"));

    for await (const chunk of calls.exportCalls(contract.everyCall)) {
      assert.ok(chunk.data.length);
      break; // cancels the call: nothing may be thrown, now or later
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  });

  test("streams a call's recording; the simulated network records none", async () => {
    const agent = await agents.createAgent(contract.newAgent("recorded"));
    const call = await calls.createCall(contract.newCall(agent.ref));
    const fetch = async () => {
      for await (const chunk of calls.getCallRecording(contract.byRef(call.ref))) {
        assert.fail(`a chunk of ${chunk.data.length} bytes`);
      }
    };
    await assert.rejects(fetch(), (error: unknown) =>
      error instanceof VoxplaneError && error.code === status.NOT_FOUND && /records no audio/.test(error.message));
  });
});

// Call events: watchCallEvents as an async iterable, createCall's track option, resuming from a cursor.
const BUSY = "+15005550002"; // the simulated network: rings, then BUSY

async function eventsUntilHangup(stream: AsyncIterable<pb.WatchCallEventsResponse>): Promise<pb.WatchCallEventsResponse[]> {
  const seen: pb.WatchCallEventsResponse[] = [];
  for await (const response of stream) {
    if (response.event) {
      seen.push(response);
      if (response.event.type === "CALL_EVENT_TYPE_HANGUP") {
        break; // cancels the stream
      }
    }
  }
  return seen;
}

describe("Call events", { skip: contract.skip }, () => {
  const agents = new Agents(options);
  const calls = new Calls(options);
  after(() => {
    agents.close();
    calls.close();
  });

  test("createCall with track streams the call's events from its first", async () => {
    const agent = await agents.createAgent(contract.newAgent("tracked"));
    const { call, events } = await calls.createCall({ source: agent.ref, destination: BUSY }, { track: true });
    const seen = await eventsUntilHangup(events);
    assert.deepEqual(
      seen.map((r) => [r.event?.type, r.event?.sequence, r.event?.callRef]),
      [
        ["CALL_EVENT_TYPE_NEW_CALL", 1, call.ref],
        ["CALL_EVENT_TYPE_RINGING", 2, call.ref],
        ["CALL_EVENT_TYPE_HANGUP", 3, call.ref],
      ],
    );
    assert.equal(seen[2].event?.hangupCause, "HANGUP_CAUSE_BUSY");
    assert.ok(seen[0].event?.networkTime instanceof Date);

    // Resuming after the first event's cursor: the two after it, and nothing else.
    const resumed = await eventsUntilHangup(calls.watchCallEvents({ callRef: call.ref, cursor: seen[0].cursor }));
    assert.deepEqual(resumed.map((r) => r.event?.eventId), [seen[1].event?.eventId, seen[2].event?.eventId]);
  });

  test("a heartbeat carries the cursor while nothing happens, and a bad cursor is INVALID_ARGUMENT", async () => {
    for await (const response of calls.watchCallEvents({ heartbeatInterval: { seconds: 1, nanos: 0 } })) {
      assert.ok(response.heartbeat && response.cursor);
      break;
    }
    await assert.rejects(
      async () => {
        for await (const _ of calls.watchCallEvents({ cursor: "not-a-cursor" })) {
          // never reached
        }
      },
      (error: unknown) => error instanceof VoxplaneError && error.code === status.INVALID_ARGUMENT,
    );
  });
});

describe("Messaging", { skip: contract.skip }, () => {
  const client = new Messaging(options);
  after(() => client.close());

  test("sends an SMS, which the simulated carrier delivers", async () => {
    const sent = await client.sendMessage(contract.sms("Hello from Node"));
    assert.equal(sent.status, messaging.MessageStatus.MESSAGE_STATUS_QUEUED);
    assert.equal(sent.encoding, messaging.Encoding.ENCODING_GSM7);
    assert.equal(sent.numSegments, 1);
    const deadline = Date.now() + 10_000;
    let got = await client.getMessage(contract.byRef(sent.ref));
    while (got.status !== messaging.MessageStatus.MESSAGE_STATUS_DELIVERED) {
      assert.ok(Date.now() < deadline, `still ${got.status}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      got = await client.getMessage(contract.byRef(sent.ref));
    }
    await assert.rejects(client.sendMessage(contract.sms("")), (error: VoxplaneError) =>
      error.code === status.INVALID_ARGUMENT && error.fieldViolations[0].field === "body");
  });

  test("sends a fax, its PDF streamed in chunks of at most 1 MB, and reads it back", async () => {
    const numbers = new Numbers(options);
    const number = await numbers.createNumber(contract.newNumber(e164s.pop() as string));
    numbers.close();
    const line = await client.createFaxline(contract.newFaxline(number.e164Number));
    const pdf = readFileSync(server?.faxPdf as string);
    const sizes = [...faxRequests(pdf, contract.faxFrom(line.ref))].map((request) => request.chunk?.length);
    assert.ok(sizes.length >= 2 && sizes.every((size) => size !== undefined && size <= FAX_CHUNK), `${sizes}`);

    const fax = await client.sendFax(server?.faxPdf as string, contract.faxFrom(line.ref)); // a path: read, named
    assert.equal(fax.status, messaging.MessageStatus.MESSAGE_STATUS_PENDING);
    assert.deepEqual([fax.pageCount, fax.sizeBytes, fax.filename, fax.source], [server?.faxPages, pdf.length,
      "offer.pdf", number.e164Number]);
    const deadline = Date.now() + 10_000;
    let got = await client.getFax(contract.byRef(fax.ref));
    while (got.status !== messaging.MessageStatus.MESSAGE_STATUS_SENT) {
      assert.ok(Date.now() < deadline, `still ${got.status}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      got = await client.getFax(contract.byRef(fax.ref));
    }
    assert.equal(got.ref, fax.ref);
    assert.equal(got.attempts, 1);

    const bytes = await client.sendFax(pdf, { ...contract.faxFrom(line.ref), filename: "bytes.pdf" });
    assert.equal(bytes.filename, "bytes.pdf");
    await assert.rejects(client.sendFax(Buffer.from("%PDF-1.4 not really"), contract.faxFrom(line.ref)),
      (error: VoxplaneError) => error.code === status.INVALID_ARGUMENT && error.message.includes("not a readable PDF"));
  });
});
