// A Node receiver's check of one real delivery, with the npm `standardwebhooks` package as any
// receiver would use it. tests/test_webhooks_node.py captures a delivery of a real server and pipes
// {secret, headers, body} in; this prints what it verified, and exits 1 if verification fails.

import { Webhook } from "standardwebhooks";

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const { secret, headers, body } = JSON.parse(input);
  const receiver = new Webhook(secret);
  const event = receiver.verify(body, headers) as { type: string; data: { eventId: string } };
  let tampered = false;
  try {
    receiver.verify(body.replace(event.data.eventId, "evt_forged"), headers);
  } catch {
    tampered = true;
  }
  console.log(JSON.stringify({ type: event.type, eventId: event.data.eventId, tamperedRefused: tampered }));
});
