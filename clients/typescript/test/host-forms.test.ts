// Every API Gateway host form: the region to sign for, the API id a VPC endpoint's own host name
// needs (x-apigw-api-id, signed), and an explicit region winning over the URL's.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import { BrokerAuth } from "../src/index.js";
import { apiIdFor, executeApiHost, regionOf } from "../src/signing.js";
import { ScriptedBroker, useFakeAwsCredentials } from "./support.js";

useFakeAwsCredentials();

const TOKEN = "tok-HostForms-0e7a55";
const REGIONAL = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/api";
const PRIVATE_ALIAS = "https://a1b2c3d4e5-vpce-0123456789abcdef0.execute-api.ap-southeast-2.amazonaws.com/api";
const VPC_ENDPOINT = "https://vpce-0123456789abcdef0-4f5g6h7i.execute-api.ca-central-1.vpce.amazonaws.com/api";

describe("the region each host form names", () => {
  for (const [form, url, region] of [
    ["{api-id}.execute-api.{region}.amazonaws.com", REGIONAL, "eu-west-1"],
    ["{api-id}-{vpce-id}.execute-api.{region}.amazonaws.com", PRIVATE_ALIAS, "ap-southeast-2"],
    ["{vpce-id}-{suffix}.execute-api.{region}.vpce.amazonaws.com", VPC_ENDPOINT, "ca-central-1"],
    ["a China region's {api-id}.execute-api.{region}.amazonaws.com.cn", "https://a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn/api", "cn-north-1"],
    ["a GovCloud region", "https://a1b2c3d4e5.execute-api.us-gov-west-1.amazonaws.com/api", "us-gov-west-1"],
  ] as const) {
    it(`signs for the region of ${form}`, () => {
      assert.equal(regionOf(url), region);
    });
  }

  it("lets an explicit region win over every host form", () => {
    for (const url of [REGIONAL, PRIVATE_ALIAS, VPC_ENDPOINT]) assert.equal(regionOf(url, "sa-east-1"), "sa-east-1");
  });

  it("tells a VPC endpoint's own host name from the two that name the API", () => {
    assert.equal(executeApiHost(new URL(VPC_ENDPOINT).hostname)?.vpcEndpoint, true);
    assert.equal(executeApiHost(new URL(PRIVATE_ALIAS).hostname)?.vpcEndpoint, false);
    assert.equal(executeApiHost(new URL(REGIONAL).hostname)?.vpcEndpoint, false);
    assert.equal(executeApiHost("broker.example.test"), undefined);
  });

  it("refuses a VPC endpoint's host name without apiId, before any call", () => {
    assert.throws(() => new BrokerAuth({ brokerUrl: VPC_ENDPOINT }), /names no API: pass apiId/);
    assert.equal(apiIdFor(VPC_ENDPOINT, "a1b2c3d4e5"), "a1b2c3d4e5");
  });

  it("refuses an apiId that cannot be an API id (it would go into a header)", () => {
    assert.throws(() => new BrokerAuth({ brokerUrl: VPC_ENDPOINT, apiId: "a1b2\r\nX-Injected: 1" }), TypeError);
  });

  it("signs each broker of a list for its own region, and a broker's own region wins", () => {
    const auth = new BrokerAuth({
      brokerUrl: [REGIONAL, { url: PRIVATE_ALIAS }, { url: VPC_ENDPOINT, apiId: "a1b2c3d4e5", region: "us-east-2" }],
    });

    assert.deepEqual(
      auth.toJSON().brokers.map((broker) => broker.region),
      ["eu-west-1", "ap-southeast-2", "us-east-2"],
    );
  });
});

describe("a call through a VPC endpoint's own host name", () => {
  let broker: ScriptedBroker;
  beforeEach(async () => {
    broker = await ScriptedBroker.start([TOKEN]);
  });
  afterEach(async () => {
    await broker.server.stop();
  });

  /** A fetch that sends what the client addressed to `url`'s origin to the scripted broker instead. */
  function toScriptedBroker(addressed: URL[]): typeof globalThis.fetch {
    return (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      addressed.push(url);
      return globalThis.fetch(`${broker.url}${url.pathname}${url.search}`, init);
    };
  }

  it("sends the API id as x-apigw-api-id, signed, for the endpoint's region", async () => {
    // Given a private API reached through its VPC endpoint's own DNS name
    const addressed: URL[] = [];
    const auth = new BrokerAuth({ brokerUrl: VPC_ENDPOINT, apiId: "a1b2c3d4e5", fetch: toScriptedBroker(addressed) });

    // When headers are wanted
    const headers = await auth.headers();

    // Then the call went to the endpoint's host, with the API id in its signed headers
    assert.equal(headers.Authorization, `Bearer ${TOKEN}`);
    assert.equal(addressed[0]?.hostname, new URL(VPC_ENDPOINT).hostname);
    const call = broker.server.requests[0];
    assert.ok(call);
    assert.equal(call.headers["x-apigw-api-id"], "a1b2c3d4e5");
    assert.match(
      String(call.headers.authorization),
      /^AWS4-HMAC-SHA256 Credential=testing\/\d{8}\/ca-central-1\/execute-api\/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-apigw-api-id, /,
    );
  });

  it("sends no x-apigw-api-id when no apiId is given", async () => {
    await new BrokerAuth({ brokerUrl: broker.url }).headers();

    assert.equal(broker.server.requests[0]?.headers["x-apigw-api-id"], undefined);
  });
});
