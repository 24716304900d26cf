// Run by tests/test_rate_limits.py (not a node:test file: it needs a workspace held to 3 requests a
// second): ten reads in a row all succeed, the client waiting out each RESOURCE_EXHAUSTED's RetryInfo.
// Prints the milliseconds they took.

import { Numbers } from "../src";

async function main(): Promise<void> {
  const numbers = new Numbers({ endpoint: process.env.VOXPLANE_ENDPOINT, apiKey: process.env.VOXPLANE_API_KEY });
  const started = Date.now();
  try {
    for (let i = 0; i < 10; i++) {
      await numbers.listNumbers({});
    }
  } finally {
    numbers.close();
  }
  console.log(Date.now() - started);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
