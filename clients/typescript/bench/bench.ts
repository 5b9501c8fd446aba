// `npm run bench` (`make bench-ts`): the TypeScript client's two figures, side by side in one run.
//
// T1: a cached getAuthHeaders call costs at most 5% of a plain fetch to a loopback server
//     (rounds of each, interleaved, so both see the same machine load).
// T2: 100 concurrent first calls make exactly one broker request, counted by the real broker's
//     stand-in (test/local_stack.py), not by the client.

import { performance } from "node:perf_hooks";

import { BrokerAuth, getAuthHeaders } from "../src/index.js";
import { LoopbackServer, json, startLocalStack, useFakeAwsCredentials } from "../test/support.js";

const ROUNDS = 7;
const FETCHES_PER_ROUND = 300;
const CACHED_CALLS_PER_ROUND = 20_000;
const CONCURRENT_FIRST_CALLS = 100;
const MAX_CACHED_SHARE = 0.05;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function meanMicroseconds(calls: number, call: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  for (let i = 0; i < calls; i += 1) await call();
  return ((performance.now() - started) * 1000) / calls;
}

useFakeAwsCredentials();
const stack = await startLocalStack();
const plain = await LoopbackServer.start((_request, response) => {
  json(response, 200, { users: [] });
});
let failed = false;
try {
  // T2 first: these are the first calls this process makes to the broker.
  const auth = new BrokerAuth({ brokerUrl: stack.brokerUrl, minTtl: 300 });
  await Promise.all(Array.from({ length: CONCURRENT_FIRST_CALLS }, () => auth.headers()));
  const { queries } = await stack.command<{ queries: unknown[] }>("queries");

  const options = { brokerUrl: stack.brokerUrl, minTtl: 300 };
  await getAuthHeaders(options); // fills the per-process cache: what follows is all hits
  const plainFetch = async (): Promise<void> => {
    const response = await fetch(`${plain.url}/api/v2/users`);
    await response.arrayBuffer();
  };
  await meanMicroseconds(100, plainFetch); // warm the connection pool and the JIT
  await meanMicroseconds(1000, () => getAuthHeaders(options));
  const fetchRounds: number[] = [];
  const cachedRounds: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    fetchRounds.push(await meanMicroseconds(FETCHES_PER_ROUND, plainFetch));
    cachedRounds.push(await meanMicroseconds(CACHED_CALLS_PER_ROUND, () => getAuthHeaders(options)));
  }
  const fetchUs = median(fetchRounds);
  const cachedUs = median(cachedRounds);
  const share = cachedUs / fetchUs;

  const t1 = share <= MAX_CACHED_SHARE;
  const t2 = queries.length === 1;
  failed = !t1 || !t2;
  console.log(
    `T1 cached getAuthHeaders ${cachedUs.toFixed(2)} us, plain loopback fetch ${fetchUs.toFixed(1)} us: ` +
      `ratio ${(share * 100).toFixed(2)}% (bound ${MAX_CACHED_SHARE * 100}%) ${t1 ? "ok" : "FAIL"}`,
  );
  console.log(
    `T2 ${CONCURRENT_FIRST_CALLS} concurrent first calls: ${queries.length} broker request(s) (bound 1) ${t2 ? "ok" : "FAIL"}`,
  );
  console.log(
    JSON.stringify({ cachedMicroseconds: cachedUs, plainFetchMicroseconds: fetchUs, ratio: share, brokerRequests: queries.length }),
  );
} finally {
  await plain.stop();
  await stack.stop();
}
process.exitCode = failed ? 1 : 0;
