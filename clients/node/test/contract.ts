// The contract's field names, as the protos spell them, for the tests against a real server: the
// one place to change when the protos do (v1 renamed CreateCallRequest's `from`/`to` to
// `source`/`destination`: this file and nothing else changed; tsc names each field that no longer is).

import { randomBytes } from "node:crypto";
import { calls, DeepPartial, numbers } from "../src";

/** What the pytest driver (tests/test_node_client.py) hands the tests; undefined when run alone. */
export const server = process.env.VOXPLANE_TEST_E164S
  ? {
      endpoint: process.env.VOXPLANE_ENDPOINT as string,
      apiKey: process.env.VOXPLANE_API_KEY as string,
      e164s: process.env.VOXPLANE_TEST_E164S.split(","), // valid numbers no other test uses
      // endpoints.test.ts's own numbers, in a workspace of its own (the other files list theirs)
      endpointE164s: (process.env.VOXPLANE_TEST_ENDPOINT_E164S ?? "").split(","),
      endpointApiKey: process.env.VOXPLANE_TEST_ENDPOINT_API_KEY as string,
      flakyEndpoint: process.env.VOXPLANE_TEST_FLAKY_ENDPOINT, // a Numbers server failing UNAVAILABLE twice
      faxPdf: process.env.VOXPLANE_TEST_FAX_PDF as string, // a real PDF of faxPages pages, over 1 MB
      faxPages: Number(process.env.VOXPLANE_TEST_FAX_PAGES),
    }
  : undefined;

export const skip = server ? false : "needs a server: run by tests/test_node_client.py (make test)";

export const newNumber = (e164: string, name = "node") => ({
  name,
  providerRef: "trunk-node",
  e164Number: e164,
  aorLink: "sip:1001@sip.local",
});
export const badNumber = { providerRef: "trunk-node", e164Number: "+1785", aorLink: "sip:1@sip.local" };
export const badNumberField = "e164_number"; // the violation's path names the proto field
export const renamed = (number: numbers.Number, name: string, etag = number.etag) => ({ ref: number.ref, name, etag });
export const recording = (number: numbers.Number) => ({ ref: number.ref, settings: { recordingEnabled: true } });
export const isRecording = (number: numbers.Number) => number.recordingEnabled;
export const stale = (number: numbers.Number, etag: string) => ({ ref: number.ref, etag });
export const byRef = (ref: string) => ({ ref });
export const firstPage = (pageSize: number): DeepPartial<numbers.ListNumbersRequest> => ({ pageSize });

// A username is unique in its SIP domain across workspaces: a domain of this run's own.
const domain = `node-${randomBytes(4).toString("hex")}.example.com`;
export const newAgent = (username: string) => ({
  name: `Agent ${username}`,
  username,
  secret: "s3cret-pass",
  domains: [domain],
});

export const newCall = (agentRef: string) => ({ source: agentRef, destination: "+15005550001" });
export const caller = (call: calls.Call) => call.source;
export const everyCall = {}; // ExportCalls' request: no filter
export const csvHeader = "ref,direction,status,hangup_cause,source,destination";

// An SMS from an alphanumeric sender ID to the simulated carrier's number that delivers.
export const sms = (body: string) => ({ source: "Node", destination: "+15005550001", body });

// A faxline on a number of the workspace, and a fax from it to the simulated carrier's number that takes it.
export const newFaxline = (number: string) => ({ number, alias: "Node office" });
export const faxFrom = (faxlineRef: string) => ({ faxlineRef, destination: "+15005550001" });
