// Several brokers: a closed port, a timeout or a 5xx moves on to the next; a 4xx never does;
// the one that answered is kept first for 60 s. Real HTTP on loopback, brokers scripted here.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import {
  BrokerAccessDeniedError,
  BrokerAuth,
  BrokerError,
  BrokerUnavailableError,
  createKillBFetch,
  fingerprint,
  getAuthHeaders,
} from "../src/index.js";
import { Broker, BrokerList, KEEP_ANSWERING_MS } from "../src/brokers.js";
import { LoopbackServer, ScriptedBroker, json, startKillB, useFakeAwsCredentials } from "./support.js";

useFakeAwsCredentials();

const FIRST = "tok-First-4a1c9e";
const SECOND = "tok-Second-b70d22";

function brokerError(status: number, code: string): (request: unknown, response: Parameters<typeof json>[0]) => void {
  return (_request, response) => {
    json(response, status, { errorCode: code, message: ["scripted"], statusCode: String(status) }, { "Retry-After": "0" });
  };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail("expected an error"),
    (error: unknown) => error,
  );
}

/** The URL of a loopback port nothing listens on any more. */
async function closedPortUrl(): Promise<string> {
  const server = await LoopbackServer.start(() => undefined);
  const url = server.url;
  await server.stop();
  return url;
}

describe("with two brokers", () => {
  let first: ScriptedBroker;
  let second: ScriptedBroker;
  beforeEach(async () => {
    first = await ScriptedBroker.start([FIRST, `${FIRST}-next`]);
    second = await ScriptedBroker.start([SECOND, `${SECOND}-next`]);
  });
  afterEach(async () => {
    await first.server.stop();
    await second.server.stop();
  });

  it("asks only the first while it answers", async () => {
    const auth = new BrokerAuth({ brokerUrl: [first.url, second.url] });

    const headers = await auth.headers();

    assert.equal(headers.Authorization, `Bearer ${FIRST}`);
    assert.equal(second.queries.length, 0);
  });

  it("moves on to the second when the first's port is closed", async () => {
    // Given a first broker that is down
    const auth = new BrokerAuth({ brokerUrl: [await closedPortUrl(), second.url] });

    // When headers are wanted
    const headers = await auth.headers();

    // Then the second broker's token comes back
    assert.equal(headers.Authorization, `Bearer ${SECOND}`);
    assert.equal(second.queries.length, 1);
  });

  it("moves on to the second when the first does not answer in time", async () => {
    // Given a first broker that accepts the call and never answers
    const silent = await LoopbackServer.start(() => new Promise<void>(() => undefined));
    const auth = new BrokerAuth({ brokerUrl: [silent.url, second.url], timeout: 0.3 });

    // When headers are wanted
    const headers = await auth.headers().finally(() => silent.stop());

    // Then the first was asked, and the second answered
    assert.equal(silent.requests.length, 1);
    assert.equal(headers.Authorization, `Bearer ${SECOND}`);
  });

  for (const [status, code] of [
    [500, "BROKER.0000"],
    [502, "BROKER.0000"],
    [503, "BROKER.0003"],
  ] as const) {
    it(`moves on to the second when the first answers ${status}`, async () => {
      first.scripted.push(brokerError(status, code));
      const auth = new BrokerAuth({ brokerUrl: [first.url, second.url] });

      const headers = await auth.headers();

      assert.equal(headers.Authorization, `Bearer ${SECOND}`);
      assert.equal(first.queries.length, 1);
      assert.equal(second.queries.length, 1);
    });
  }

  it("does not move on after a 403: the error is the first broker's", async () => {
    // Given a first broker that refuses this caller
    first.scripted.push(brokerError(403, "BROKER.0002"));
    const auth = new BrokerAuth({ brokerUrl: [first.url, second.url] });

    // When headers are wanted
    const error = await rejection(auth.headers());

    // Then the 403 is the answer, and the second broker was never asked
    assert.ok(error instanceof BrokerAccessDeniedError);
    assert.equal(error.errorCode, "BROKER.0002");
    assert.equal(second.queries.length, 0);
  });

  it("does not move on after a 429: it waits the Retry-After and asks the same broker again", async () => {
    first.scripted.push((_request, response) => {
      json(response, 429, { message: "Too Many Requests" }, { "Retry-After": "0" });
    });
    const auth = new BrokerAuth({ brokerUrl: [first.url, second.url] });

    const headers = await auth.headers();

    assert.equal(headers.Authorization, `Bearer ${FIRST}`);
    assert.equal(first.queries.length, 2);
    assert.equal(second.queries.length, 0);
  });

  it("keeps the broker that answered: the next call goes to it, not to the first", async () => {
    // Given the first broker failed once and the second answered
    first.scripted.push(brokerError(503, "BROKER.0003"));
    const auth = new BrokerAuth({ brokerUrl: [first.url, second.url] });
    await auth.headers();

    // When the next call is needed (KillB refused the second's token)
    const headers = await auth.headers({ rejected: fingerprint(SECOND) });

    // Then it went straight to the second broker, which is up again
    assert.equal(headers.Authorization, `Bearer ${SECOND}-next`);
    assert.equal(first.queries.length, 1);
    assert.deepEqual(second.queries.map((query) => query.get("rejected")), [null, fingerprint(SECOND)]);
  });

  it("retries the whole list after a 503 from every broker, with the Retry-After it was given", async () => {
    // Given a first broker that is down, and a second that asks to wait once
    second.scripted.push(brokerError(503, "BROKER.0003"));
    const auth = new BrokerAuth({ brokerUrl: [await closedPortUrl(), second.url] });

    // When headers are wanted
    const headers = await auth.headers();

    // Then the second's 503 was retried, and its token came on the second pass
    assert.equal(headers.Authorization, `Bearer ${SECOND}`);
    assert.equal(second.queries.length, 2);
  });

  it("raises the last broker's 503 when every broker keeps failing", async () => {
    for (let i = 0; i < 3; i += 1) second.scripted.push(brokerError(503, "BROKER.0003"));
    const auth = new BrokerAuth({ brokerUrl: [await closedPortUrl(), second.url], retries: 2 });

    const error = await rejection(auth.headers());

    assert.ok(error instanceof BrokerUnavailableError);
    assert.equal(error.errorCode, "BROKER.0003");
    assert.equal(second.queries.length, 3);
  });

  it("says how each broker failed, and nothing of the request, when none can be reached", async () => {
    const auth = new BrokerAuth({ brokerUrl: [await closedPortUrl(), await closedPortUrl()] });

    const error = await rejection(auth.headers());

    assert.ok(error instanceof BrokerError);
    assert.equal(error.message, "no broker could be reached (ECONNREFUSED, ECONNREFUSED)");
  });

  it("fails over for getAuthHeaders and createKillBFetch alike", async () => {
    // Given a first broker that is down
    const down = await closedPortUrl();
    const killb = await startKillB(new Set([SECOND]));

    // When both entry points are given the list
    const headers = await getAuthHeaders({ brokerUrl: [down, second.url] });
    const response = await createKillBFetch({ brokerUrl: [down, second.url] })(`${killb.url}/api/v2/users`);
    await killb.stop();

    // Then both got the second broker's token
    assert.equal(headers.Authorization, `Bearer ${SECOND}`);
    assert.equal(response.status, 200);
  });
});

describe("which broker comes first, over time", () => {
  let first: ScriptedBroker;
  let second: ScriptedBroker;
  let now: number;
  let list: BrokerList;
  beforeEach(async () => {
    first = await ScriptedBroker.start([FIRST]);
    second = await ScriptedBroker.start([SECOND]);
    now = 1_000;
    const brokers = [first.url, second.url].map((url) => new Broker({ url }, { accessKeyId: "testing", secretAccessKey: "testing" }));
    list = new BrokerList(brokers, { fetch: globalThis.fetch, timeoutMs: 5_000, now: () => now });
  });
  afterEach(async () => {
    await first.server.stop();
    await second.server.stop();
  });

  async function answeredBy(): Promise<string> {
    const response = await list.get("/v1/auth-headers?minTtl=300");
    const body = (await response.json()) as { headers: { Authorization: string } };
    return body.headers.Authorization;
  }

  it("keeps the second first for 60 s after it answered for the first, then tries the first again", async () => {
    // Given the first broker failed once, and the second answered
    first.scripted.push(brokerError(503, "BROKER.0003"));
    assert.equal(await answeredBy(), `Bearer ${SECOND}`);

    // When calls follow within 60 s, and after
    now += KEEP_ANSWERING_MS - 1;
    const within = await answeredBy();
    now += 1;
    const after = await answeredBy();

    // Then the second answered while kept, and the first (up again) once the 60 s had passed
    assert.equal(within, `Bearer ${SECOND}`);
    assert.equal(after, `Bearer ${FIRST}`);
    assert.equal(first.queries.length, 2);
  });

  it("does not extend the 60 s because the kept broker keeps answering", async () => {
    first.scripted.push(brokerError(503, "BROKER.0003"));
    await answeredBy();

    for (let step = 0; step < 6; step += 1) {
      now += KEEP_ANSWERING_MS / 6;
      await answeredBy();
    }

    assert.equal(first.queries.length, 2);
  });

  it("moves on from the kept broker when it fails in its turn", async () => {
    first.scripted.push(brokerError(503, "BROKER.0003"));
    await answeredBy();
    second.scripted.push(brokerError(500, "BROKER.0000"));

    const answer = await answeredBy();

    assert.equal(answer, `Bearer ${FIRST}`);
  });
});
