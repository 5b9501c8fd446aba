// The client against the real broker handler (functions/broker/app.py) served over loopback by
// local/broker_server.py, with moto's Secrets Manager and the local KillB sandbox behind it.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  BrokerAccessDeniedError,
  BrokerAuth,
  BrokerUnavailableError,
  createKillBFetch,
  fingerprint,
  getAuthHeaders,
} from "../src/index.js";
import { startLocalStack, useFakeAwsCredentials, type LocalStack } from "./support.js";

useFakeAwsCredentials();

const API_KEY = "ak-NodeClient-90c4f2";

async function authHeadersQueries(stack: LocalStack): Promise<Record<string, string>[]> {
  return (await stack.command<{ queries: Record<string, string>[] }>("queries")).queries;
}

describe("with a token in the access-token secret and an allowed caller", () => {
  let stack: LocalStack;
  before(async () => {
    stack = await startLocalStack();
  });
  after(async () => {
    await stack.stop();
  });

  it("hands out the stored token and API key, and KillB accepts them", async () => {
    // Given the refresher logged in to the sandbox, so the secret holds a live token
    const [issued] = (await stack.command<{ tokens: string[] }>("access-tokens")).tokens;

    // When a Node service asks for headers, and calls KillB through the fetch wrapper
    const headers = await getAuthHeaders({ brokerUrl: stack.brokerUrl, minTtl: 300 });
    const killbFetch = createKillBFetch({ brokerUrl: stack.brokerUrl });
    const users = await killbFetch(`${stack.killbUrl}/api/v2/users`);

    // Then the headers are the stored ones, signed for by SigV4, and KillB answers 200
    assert.deepEqual(headers, { Authorization: `Bearer ${issued}`, "x-api-key": API_KEY });
    assert.equal(users.status, 200);
  });

  it("makes exactly one broker request for 100 concurrent first calls", async () => {
    // Given a client that has no headers yet
    const auth = new BrokerAuth({ brokerUrl: stack.brokerUrl, minTtl: 600 });
    const before = (await authHeadersQueries(stack)).length;

    // When 100 requests want headers at once
    const answers = await Promise.all(Array.from({ length: 100 }, () => auth.headers()));

    // Then the broker was asked once, and every caller got the same headers
    const queries = (await authHeadersQueries(stack)).slice(before);
    assert.deepEqual(queries, [{ minTtl: "600" }]);
    assert.equal(new Set(answers.map((headers) => headers.Authorization)).size, 1);
  });

  it("answers from its cache while the token lasts minTtl", async () => {
    // Given a client that already has headers
    const auth = new BrokerAuth({ brokerUrl: stack.brokerUrl, minTtl: 300 });
    await auth.headers();
    const before = (await authHeadersQueries(stack)).length;

    // When it is asked again
    await auth.headers();

    // Then the broker is not asked again
    assert.equal((await authHeadersQueries(stack)).length, before);
  });

  it("reports a token KillB revoked; the broker forces one refresh and the retried call succeeds", async () => {
    // Given a service holding the live token, and KillB revoking it early
    const auth = new BrokerAuth({ brokerUrl: stack.brokerUrl });
    const killbFetch = createKillBFetch({ auth });
    const revokedToken = (await auth.headers()).Authorization.replace(/^Bearer /, "");
    await stack.command("revoke", { token: revokedToken });
    const refreshesBefore = (await stack.command<{ count: number }>("killb-count", { endpoint: "refresh" })).count;

    // When the service calls KillB
    const users = await killbFetch(`${stack.killbUrl}/api/v2/users`);

    // Then the call got 200 on its retry, with a new token: the broker heard the report and ran
    // the refresher once with it, and KillB saw one refresh
    assert.equal(users.status, 200);
    assert.equal((await authHeadersQueries(stack)).at(-1)?.["rejected"], fingerprint(revokedToken));
    const invokes = await stack.command<{ payloads: unknown[] }>("refresher-invokes");
    assert.deepEqual(invokes.payloads, [{ force: true, rejected: fingerprint(revokedToken) }]);
    const refreshes = (await stack.command<{ count: number }>("killb-count", { endpoint: "refresh" })).count;
    assert.equal(refreshes - refreshesBefore, 1);
    assert.notEqual((await auth.headers()).Authorization, `Bearer ${revokedToken}`);
  });
});

describe("with a caller ALLOWED_PRINCIPALS does not name", () => {
  let stack: LocalStack;
  before(async () => {
    stack = await startLocalStack(["--caller", "other"]);
  });
  after(async () => {
    await stack.stop();
  });

  it("raises BrokerAccessDeniedError carrying 403 and BROKER.0002", async () => {
    const auth = new BrokerAuth({ brokerUrl: stack.brokerUrl });

    const error = await auth.headers().then(
      () => assert.fail("headers were handed out"),
      (raised: unknown) => raised,
    );

    assert.ok(error instanceof BrokerAccessDeniedError);
    assert.equal(error.statusCode, 403);
    assert.equal(error.errorCode, "BROKER.0002");
  });
});

describe("with a token that lasts less than minTtl and no refresher", () => {
  let stack: LocalStack;
  before(async () => {
    stack = await startLocalStack(["--no-refresher", "--token-lifetime-ms", "120000"]);
  });
  after(async () => {
    await stack.stop();
  });

  it("raises BrokerUnavailableError with BROKER.0003 and the broker's Retry-After, without waiting it out", async () => {
    // Given a client that will not wait as long as the broker asks
    const auth = new BrokerAuth({ brokerUrl: stack.brokerUrl, minTtl: 300, maxRetryAfter: 1 });

    // When it asks for five minutes of a two-minute token
    const error = await auth.headers().then(
      () => assert.fail("headers were handed out"),
      (raised: unknown) => raised,
    );

    // Then it gets the 503 at once: one broker request, the code and the Retry-After
    assert.ok(error instanceof BrokerUnavailableError);
    assert.equal(error.statusCode, 503);
    assert.equal(error.errorCode, "BROKER.0003");
    assert.ok(error.retryAfter !== undefined && error.retryAfter > 1);
    assert.equal((await authHeadersQueries(stack)).length, 1);
  });
});
