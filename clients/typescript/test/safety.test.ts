// Where the headers may go, what the client accepts from the broker, how it signs and retries,
// and what its errors may show: against a scripted broker and a KillB stand-in on loopback.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";
import { inspect } from "node:util";

import {
  BrokerAuth,
  BrokerError,
  BrokerRequestInvalidError,
  BrokerUnavailableError,
  InsecureRequestError,
  createKillBFetch,
  fingerprint,
} from "../src/index.js";
import { brokerBaseUrl, regionOf } from "../src/signing.js";
import { LoopbackServer, ScriptedBroker, json, startKillB, useFakeAwsCredentials } from "./support.js";

useFakeAwsCredentials();

const TOKEN = "tok-Safety-71e0b2c4";

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => assert.fail("expected an error"),
    (error: unknown) => error,
  );
}

/** Everything an error shows: message, stack, JSON and util.inspect. */
function everythingShown(error: unknown): string {
  return [String(error), (error as Error).stack, JSON.stringify(error), inspect(error)].join("\n");
}

describe("against a scripted broker", () => {
  let broker: ScriptedBroker;
  let killb: LoopbackServer;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([TOKEN]);
    killb = await startKillB(new Set([TOKEN]));
  });
  afterEach(async () => {
    await broker.server.stop();
    await killb.stop();
  });

  it("signs the broker call with SigV4 for execute-api, with the default chain's credentials", async () => {
    await new BrokerAuth({ brokerUrl: broker.url }).headers();

    const call = broker.server.requests[0];
    assert.ok(call);
    assert.match(
      String(call.headers.authorization),
      /^AWS4-HMAC-SHA256 Credential=testing\/\d{8}\/us-east-1\/execute-api\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/,
    );
    assert.equal(call.headers["x-amz-security-token"], "testing-session");
    assert.equal(call.url, "/v1/auth-headers?minTtl=300");
  });

  it("retries a 503 after its Retry-After, then hands out the headers", async () => {
    broker.scripted.push((_request, response) => {
      json(response, 503, { errorCode: "BROKER.0003", message: ["retry later"], statusCode: "503" }, { "Retry-After": "0" });
    });

    const headers = await new BrokerAuth({ brokerUrl: broker.url }).headers();

    assert.equal(headers.Authorization, `Bearer ${TOKEN}`);
    assert.equal(broker.queries.length, 2);
  });

  it("waits the broker's Retry-After before asking again", async () => {
    broker.scripted.push((_request, response) => {
      json(response, 429, { message: "Too Many Requests" }, { "Retry-After": "1" });
    });

    await new BrokerAuth({ brokerUrl: broker.url }).headers();

    const [first, second] = broker.server.requests;
    assert.ok(first && second);
    assert.ok(second.at - first.at >= 1000, `asked again after ${second.at - first.at} ms`);
  });

  it("gives up at once on a 429 whose Retry-After is longer than it will wait", async () => {
    broker.scripted.push((_request, response) => {
      json(response, 429, { message: "Too Many Requests" }, { "Retry-After": "120" });
    });
    const auth = new BrokerAuth({ brokerUrl: broker.url, maxRetryAfter: 5 });

    const error = await rejection(auth.headers());

    assert.ok(error instanceof BrokerUnavailableError);
    assert.equal(error.statusCode, 429);
    assert.equal(error.retryAfter, 120);
    assert.equal(broker.queries.length, 1);
  });

  it("stops after its retries when the broker keeps answering 503", async () => {
    for (let i = 0; i < 5; i += 1) {
      broker.scripted.push((_request, response) => {
        json(response, 503, { errorCode: "BROKER.0003", message: ["retry later"], statusCode: "503" }, { "Retry-After": "0" });
      });
    }

    const error = await rejection(new BrokerAuth({ brokerUrl: broker.url, retries: 2 }).headers());

    assert.ok(error instanceof BrokerUnavailableError);
    assert.equal(error.errorCode, "BROKER.0003");
    assert.equal(broker.queries.length, 3);
  });

  it("asks again once the cached token has less than minTtl left", async () => {
    // Given the broker's token lasts one second more than minTtl
    broker.expiresIn = 301;
    const auth = new BrokerAuth({ brokerUrl: broker.url, minTtl: 300 });
    await auth.headers();
    await auth.headers();
    assert.equal(broker.queries.length, 1);

    // When that second has passed
    await new Promise((done) => setTimeout(done, 1100));
    await auth.headers();

    // Then the client asked the broker again
    assert.equal(broker.queries.length, 2);
  });

  for (const [what, headers] of [
    ["a CR LF in Authorization", { Authorization: `Bearer ${TOKEN}\r\nX-Injected: 1` }],
    ["a NUL in Authorization", { Authorization: `Bearer ${TOKEN}\u0000` }],
    ["a CR LF in x-api-key", { Authorization: `Bearer ${TOKEN}`, "x-api-key": "ak-1\r\nX-Injected: 1" }],
    ["a non-ASCII x-api-key", { Authorization: `Bearer ${TOKEN}`, "x-api-key": "ak-é" }],
  ] as const) {
    it(`refuses broker headers holding ${what}, and its error does not show the token`, async () => {
      broker.scripted.push((_request, response) => {
        json(response, 200, { headers, expiresAt: "2026-11-28T02:00:00Z", expiresIn: 3600 });
      });

      const error = await rejection(new BrokerAuth({ brokerUrl: broker.url }).headers());

      assert.ok(error instanceof BrokerError);
      assert.match(error.message, /a header a request cannot carry/);
      assert.equal(error.statusCode, 200);
      assert.ok(!everythingShown(error).includes(TOKEN));
    });
  }

  it("does not follow a broker redirect with its signature", async () => {
    broker.scripted.push((_request, response) => {
      response.writeHead(302, { Location: `${killb.url}/v1/auth-headers` });
      response.end();
    });

    const error = await rejection(new BrokerAuth({ brokerUrl: broker.url }).headers());

    assert.ok(error instanceof BrokerError);
    assert.equal(error.statusCode, 302);
    assert.equal(killb.requests.length, 0);
  });

  it("keeps the headers on a redirect within the same origin", async () => {
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });
    killb.route = (request, response) => {
      if (request.url === "/old") {
        response.writeHead(307, { Location: "/api/v2/users" });
        response.end();
      } else json(response, 200, { authorization: request.headers.authorization });
    };

    const response = await killbFetch(`${killb.url}/old`);

    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { authorization: `Bearer ${TOKEN}` });
  });

  it("drops the headers when a redirect leads to another origin", async () => {
    // Given KillB redirects to another host
    const elsewhere = await LoopbackServer.start((_request, response) => {
      json(response, 200, {});
    });
    const other = elsewhere.url.replace("127.0.0.1", "localhost");
    killb.route = (_request, response) => {
      response.writeHead(302, { Location: `${other}/landing` });
      response.end();
    };
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    // When the service calls KillB
    const response = await killbFetch(`${killb.url}/api/v2/users`, { headers: { "x-api-key": "mine" } });

    // Then the other host got the request, without the token or the API key
    assert.equal(response.status, 200);
    const landed = elsewhere.requests[0];
    assert.ok(landed);
    assert.equal(landed.url, "/landing");
    assert.equal(landed.headers.authorization, undefined);
    assert.equal(landed.headers["x-api-key"], undefined);
    await elsewhere.stop();
  });

  it("does not take a 401 from another origin for KillB refusing the token", async () => {
    const elsewhere = await LoopbackServer.start((_request, response) => {
      json(response, 401, {});
    });
    killb.route = (_request, response) => {
      response.writeHead(302, { Location: `${elsewhere.url.replace("127.0.0.1", "localhost")}/` });
      response.end();
    };
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    const response = await killbFetch(`${killb.url}/api/v2/users`);

    assert.equal(response.status, 401);
    assert.deepEqual(broker.queries.map((query) => query.get("rejected")), [null]);
    await elsewhere.stop();
  });

  it("refuses to send the headers over plain http to a host that is not loopback", async () => {
    const killbFetch = createKillBFetch({ brokerUrl: broker.url });

    const error = await rejection(killbFetch("http://killb.example.test/api/v2/users"));

    assert.ok(error instanceof InsecureRequestError);
    assert.equal(broker.queries.length, 0);
  });

  it("raises a BrokerError naming the failure, not the request, when the broker is unreachable", async () => {
    const url = broker.url;
    await broker.server.stop();

    const error = await rejection(new BrokerAuth({ brokerUrl: url }).headers());

    assert.ok(error instanceof BrokerError);
    assert.match(error.message, /could not be reached \(ECONNREFUSED\)/);
    assert.ok(!everythingShown(error).includes("testing-session"));
    broker = await ScriptedBroker.start([TOKEN]);
  });

  it("shows no token when the client itself is logged or serialised", async () => {
    const auth = new BrokerAuth({ brokerUrl: broker.url });
    await auth.headers();

    const shown = [inspect(auth, { showHidden: true, depth: null }), JSON.stringify(auth)].join("\n");

    assert.ok(!shown.includes(TOKEN));
    assert.ok(!shown.includes("ak-Scripted-3c9d1e"));
    assert.match(shown, /minTtl/);
  });

  it("raises BrokerRequestInvalidError with BROKER.0001 for a 400", async () => {
    broker.scripted.push((_request, response) => {
      json(response, 400, { errorCode: "BROKER.0001", message: ["unknown query parameter"], statusCode: "400" });
    });

    const error = await rejection(new BrokerAuth({ brokerUrl: broker.url }).headers());

    assert.ok(error instanceof BrokerRequestInvalidError);
    assert.equal(error.errorCode, "BROKER.0001");
    assert.match(error.message, /unknown query parameter/);
  });

  it("raises a BrokerError without the provider's message when no AWS credentials can be had", async () => {
    const credentials = (): Promise<never> => Promise.reject(new Error("profile secret-key-7d1f is broken"));
    const auth = new BrokerAuth({ brokerUrl: broker.url, credentials });

    const error = await rejection(auth.headers());

    assert.ok(error instanceof BrokerError);
    assert.match(error.message, /no AWS credentials/);
    assert.ok(!everythingShown(error).includes("secret-key-7d1f"));
    assert.equal(broker.queries.length, 0);
  });

  it("computes the broker's fingerprint: the first 12 hex digits of the token's SHA-256", () => {
    assert.equal(fingerprint("abc"), "ba7816bf8f01");
  });
});

describe("the broker URL and the region", () => {
  it("accepts https, and http only to a loopback host", () => {
    assert.equal(brokerBaseUrl("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/api/"), "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/api");
    assert.equal(brokerBaseUrl("http://[::1]:8080/local"), "http://[::1]:8080/local");
    assert.throws(() => brokerBaseUrl("http://broker.example.test/api"), TypeError);
    assert.throws(() => brokerBaseUrl("https://me:pw@broker.example.test/api"), /user info/);
  });

  it("signs for the region the URL names, before the environment's", () => {
    assert.equal(regionOf("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/api"), "eu-west-1");
    assert.equal(regionOf("https://a1b2c3-vpce-0abc.execute-api.ap-southeast-2.vpce.amazonaws.com/api"), "ap-southeast-2");
    assert.equal(regionOf("https://broker.example.test/api"), "us-east-1");
    assert.equal(regionOf("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/api", "sa-east-1"), "sa-east-1");
  });

  it("refuses a minTtl out of the broker's range before any call", () => {
    assert.throws(() => new BrokerAuth({ brokerUrl: "https://broker.example.test/api", minTtl: 1801 }), RangeError);
    assert.throws(() => new BrokerAuth({ brokerUrl: "https://broker.example.test/api", minTtl: 1.5 }), RangeError);
  });
});
