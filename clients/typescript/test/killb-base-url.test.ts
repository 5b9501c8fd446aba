// The broker's killbBaseUrl: handed to the caller with the headers, and the root a relative KillB
// path is resolved against, so a sandbox token never goes to production or the reverse.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import { BrokerAuth, BrokerError, createKillBFetch } from "../src/index.js";
import { LoopbackServer, ScriptedBroker, json, startKillB, useFakeAwsCredentials } from "./support.js";

useFakeAwsCredentials();

const TOKEN = "tok-BaseUrl-5d02f1";

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail("expected an error"),
    (error: unknown) => error,
  );
}

describe("a broker whose answer names KillB", () => {
  let broker: ScriptedBroker;
  let killb: LoopbackServer;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([TOKEN]);
    killb = await startKillB(new Set([TOKEN]));
    broker.killbBaseUrl = killb.url;
  });
  afterEach(async () => {
    await broker.server.stop();
    await killb.stop();
  });

  it("hands out killbBaseUrl and expiresAt with the headers", async () => {
    const issued = await new BrokerAuth({ brokerUrl: broker.url }).issued();

    assert.equal(issued.killbBaseUrl, killb.url);
    assert.equal(issued.headers.Authorization, `Bearer ${TOKEN}`);
    assert.match(issued.expiresAt, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
  });

  it("sends a relative KillB path to killbBaseUrl, with the headers and the query", async () => {
    // Given a fetch wrapper over a broker that names the KillB it belongs to
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    // When the service asks for a path, not a URL
    const response = await killbFetch("/api/v2/users?page=2", { method: "POST", body: "{}" });

    // Then that KillB got it, with the token
    assert.equal(response.status, 200);
    const [request] = killb.requests;
    assert.equal(request?.url, "/api/v2/users?page=2");
    assert.equal(request.method, "POST");
    assert.equal(request.headers.authorization, `Bearer ${TOKEN}`);
  });

  it("keeps the path of a killbBaseUrl that has one", async () => {
    broker.killbBaseUrl = `${killb.url}/gateway`;

    await createKillBFetch({ brokerUrl: broker.url })("/api/v2/users");

    assert.equal(killb.requests[0]?.url, "/gateway/api/v2/users");
  });

  for (const [what, value] of [
    ["not a URL", "killb.app"],
    ["an ftp URL", "ftp://killb.app"],
    ["a URL with user info", "https://me:pw@killb.app"],
    ["a URL with a query", "https://killb.app/?env=prod"],
    ["a number", 42],
  ] as const) {
    it(`refuses an answer whose killbBaseUrl is ${what}`, async () => {
      broker.scripted.push((_request, response) => {
        json(response, 200, {
          headers: { Authorization: `Bearer ${TOKEN}` },
          expiresAt: "2026-11-28T02:00:00Z",
          expiresIn: 3600,
          killbBaseUrl: value,
        });
      });

      const error = await rejection(new BrokerAuth({ brokerUrl: broker.url }).issued());

      assert.ok(error instanceof BrokerError);
      assert.match(error.message, /not the documented JSON/);
      assert.equal(killb.requests.length, 0);
    });
  }
});

describe("a broker naming a KillB only a container reaches", () => {
  let broker: ScriptedBroker;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([TOKEN]);
  });
  afterEach(async () => {
    await broker.server.stop();
  });

  it("keeps the headers and gives no KillB URL for plain http beyond loopback (sam local)", async () => {
    broker.killbBaseUrl = "http://host.docker.internal:4010";

    const issued = await new BrokerAuth({ brokerUrl: broker.url }).issued();

    assert.equal(issued.headers.Authorization, `Bearer ${TOKEN}`);
    assert.equal(issued.killbBaseUrl, undefined);
  });
});

describe("a broker whose answer does not name KillB", () => {
  let broker: ScriptedBroker;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([TOKEN]);
  });
  afterEach(async () => {
    await broker.server.stop();
  });

  it("hands out killbBaseUrl as undefined", async () => {
    const issued = await new BrokerAuth({ brokerUrl: broker.url }).issued();

    assert.equal(issued.killbBaseUrl, undefined);
  });

  it("raises a BrokerError for a relative path: there is nowhere to send it", async () => {
    const error = await rejection(createKillBFetch({ brokerUrl: broker.url })("/api/v2/users"));

    assert.ok(error instanceof BrokerError);
    assert.match(error.message, /needs the broker's killbBaseUrl/);
  });
});
