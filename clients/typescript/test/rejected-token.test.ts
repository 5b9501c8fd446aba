// A 401 from KillB to the broker's token: the fingerprint goes to the broker with the next call,
// and the request is sent once more with the new token. A scripted broker (replacing the token
// in hand when told it was rejected, as the broker does) and a KillB that accepts only some
// tokens, both on loopback.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import { BrokerAuth, createKillBFetch, fingerprint, getAuthHeaders } from "../src/index.js";
import { LoopbackServer, ScriptedBroker, startKillB, useFakeAwsCredentials } from "./support.js";

useFakeAwsCredentials();

const OLD = "tok-Old-8b2f61d0";
const NEW = "tok-New-4a97c3e5";

describe("when KillB refuses the token in hand", () => {
  let broker: ScriptedBroker;
  let killb: LoopbackServer;
  let accepted: Set<string>;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([OLD, NEW]);
    accepted = new Set([NEW]);
    killb = await startKillB(accepted);
  });
  afterEach(async () => {
    await broker.server.stop();
    await killb.stop();
  });

  it("reports its fingerprint to the broker and retries once with the new token", async () => {
    // Given a service whose client holds a token KillB no longer accepts
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    // When it calls KillB
    const response = await killbFetch(`${killb.url}/api/v2/users`);

    // Then the broker heard which token was refused, and the retry with its new one succeeded
    assert.equal(response.status, 200);
    assert.deepEqual(
      broker.queries.map((query) => query.get("rejected")),
      [null, fingerprint(OLD)],
    );
    assert.deepEqual(
      killb.requests.map((request) => request.headers.authorization),
      [`Bearer ${OLD}`, `Bearer ${NEW}`],
    );
  });

  it("sends a POST body again on the retry", async () => {
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    const response = await killbFetch(`${killb.url}/api/v2/quotations`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ amount: 100 }),
    });

    assert.equal(response.status, 200);
    assert.deepEqual(
      killb.requests.map((request) => request.body),
      ['{"amount":100}', '{"amount":100}'],
    );
  });

  it("retries only once: a second 401 is the caller's answer", async () => {
    // Given KillB refuses the new token too
    accepted.clear();
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    // When the service calls KillB
    const response = await killbFetch(`${killb.url}/api/v2/users`);

    // Then it gets KillB's 401 after two requests, not a third
    assert.equal(response.status, 401);
    assert.equal(killb.requests.length, 2);
  });

  it("reports but does not resend a body that is a stream", async () => {
    const auth = new BrokerAuth({ brokerUrl: broker.url });
    const killbFetch = createKillBFetch({ auth });
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("chunk"));
        controller.close();
      },
    });

    const response = await killbFetch(`${killb.url}/api/v2/uploads`, {
      method: "POST",
      body,
      duplex: "half",
    });

    // Then the 401 is returned as it came, and the client already holds the new token
    assert.equal(response.status, 401);
    assert.equal(killb.requests.length, 1);
    assert.equal((await auth.headers()).Authorization, `Bearer ${NEW}`);
  });

  it("makes one report for many requests refused at once", async () => {
    // Given a client with the old token, and twenty requests in flight with it
    const auth = new BrokerAuth({ brokerUrl: broker.url });
    await auth.headers();
    const killbFetch = createKillBFetch({ auth });

    const responses = await Promise.all(
      Array.from({ length: 20 }, () => killbFetch(`${killb.url}/api/v2/users`)),
    );

    // Then every request succeeded on its retry, and the broker heard one report
    assert.deepEqual(new Set(responses.map((response) => response.status)), new Set([200]));
    assert.equal(broker.queries.filter((query) => query.has("rejected")).length, 1);
  });
});

describe("getAuthHeaders with a rejected fingerprint", () => {
  let broker: ScriptedBroker;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([OLD, NEW]);
  });
  afterEach(async () => {
    await broker.server.stop();
  });

  it("asks the broker again, with the report, when it names the token in hand", async () => {
    const first = await getAuthHeaders({ brokerUrl: broker.url });

    const second = await getAuthHeaders({ brokerUrl: broker.url, rejected: fingerprint(OLD) });

    assert.equal(first.Authorization, `Bearer ${OLD}`);
    assert.equal(second.Authorization, `Bearer ${NEW}`);
    assert.equal(broker.queries.at(-1)?.get("rejected"), fingerprint(OLD));
  });

  it("answers from the cache when it names a token already replaced", async () => {
    const auth = new BrokerAuth({ brokerUrl: broker.url });
    await auth.headers();

    const headers = await auth.headers({ rejected: fingerprint("tok-Older-000000") });

    assert.equal(headers.Authorization, `Bearer ${OLD}`);
    assert.equal(broker.queries.length, 1);
  });

  it("refuses a fingerprint that is not 12 lowercase hex digits, before any call", async () => {
    const auth = new BrokerAuth({ brokerUrl: broker.url });

    await assert.rejects(auth.headers({ rejected: "ABC" }), TypeError);
    assert.equal(broker.queries.length, 0);
  });
});
