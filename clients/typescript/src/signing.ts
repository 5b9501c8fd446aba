/**
 * Where a broker is and how a call to it is signed: SigV4 by the AWS SDK's own signer, with
 * the SDK's default credential chain (environment, SSO, profile, web identity, container, IMDS).
 *
 * API Gateway checks the signature (AWS_IAM authorization) with service `execute-api` and the
 * region the API lives in, which each of its host names for a REST API names:
 *
 *   {api-id}.execute-api.{region}.amazonaws.com                 the regional endpoint
 *   {api-id}-{vpce-id}.execute-api.{region}.amazonaws.com       a private API's endpoint alias
 *   {vpce-id}-{suffix}.execute-api.{region}.vpce.amazonaws.com  a VPC endpoint's own name: it names
 *                                                               no API, so the API id travels in
 *                                                               the x-apigw-api-id header
 */

import { isIPv4, isIPv6 } from "node:net";

import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";

export const SERVICE = "execute-api";
export const API_ID_HEADER = "x-apigw-api-id";

const EXECUTE_API_HOST =
  /^[a-z0-9-]+\.execute-api\.(?<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.(?<vpce>vpce\.)?amazonaws\.com(?:\.cn)?$/;
// API Gateway's API ids are short lowercase alphanumerics; anything else cannot be one.
const API_ID = /^[a-z0-9]{1,64}$/;

export type Credentials = AwsCredentialIdentity | AwsCredentialIdentityProvider;

/** localhost, 127.0.0.0/8 or ::1: a host whose traffic never leaves this machine. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (host === "localhost") return true;
  if (isIPv4(host)) return host.startsWith("127.");
  if (isIPv6(host)) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/** True for https://, and for http:// to a loopback host: where a token may travel. */
export function mayCarryCredentials(url: URL): boolean {
  return url.protocol === "https:" || (url.protocol === "http:" && isLoopbackHost(url.hostname));
}

/** The API's root (stage included) without a trailing slash; https, or http to loopback. */
export function brokerBaseUrl(brokerUrl: string): string {
  let url: URL;
  try {
    url = new URL(brokerUrl.trim());
  } catch {
    throw new TypeError("the broker URL must be an absolute https:// URL");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new TypeError("the broker URL must be an absolute https:// URL");
  }
  if (!mayCarryCredentials(url)) {
    throw new TypeError("the broker URL must use https:// (http only to a loopback host)");
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new TypeError("the broker URL must not carry a query, a fragment or user info");
  }
  return `${url.origin}${url.pathname}`.replace(/\/+$/, "");
}

/** What an API Gateway host name says: the region, and whether it is a VPC endpoint's own name. */
export interface ExecuteApiHost {
  region: string;
  /** `{vpce-id}-{suffix}.execute-api.{region}.vpce.amazonaws.com`: the API id must be sent apart. */
  vpcEndpoint: boolean;
}

/** The region (and form) of an API Gateway host name; undefined for any other host. */
export function executeApiHost(hostname: string): ExecuteApiHost | undefined {
  const match = EXECUTE_API_HOST.exec(hostname.toLowerCase());
  const region = match?.groups?.["region"];
  if (region === undefined) return undefined;
  return { region, vpcEndpoint: match?.groups?.["vpce"] !== undefined };
}

/** The region to sign for: given, else the URL's, else AWS_REGION, else AWS_DEFAULT_REGION. */
export function regionOf(brokerUrl: string, explicit?: string): string {
  if (explicit) return explicit;
  const host = executeApiHost(new URL(brokerUrl).hostname);
  if (host !== undefined) return host.region;
  // A custom domain or a loopback URL names no region: Lambda, ECS and most CI set AWS_REGION.
  const configured = process.env["AWS_REGION"] || process.env["AWS_DEFAULT_REGION"];
  if (!configured) {
    throw new TypeError("no region for the broker URL: pass region or set AWS_REGION");
  }
  return configured;
}

/**
 * The API id to send as x-apigw-api-id, checked: required when the URL's host is a VPC
 * endpoint's own name, which does not say which API is meant.
 */
export function apiIdFor(brokerUrl: string, apiId?: string): string | undefined {
  if (apiId !== undefined && !API_ID.test(apiId)) {
    throw new TypeError("apiId must be an API Gateway API id (lowercase letters and digits)");
  }
  if (apiId === undefined && executeApiHost(new URL(brokerUrl).hostname)?.vpcEndpoint) {
    throw new TypeError(
      "the broker URL is a VPC endpoint's host name, which names no API: pass apiId (sent as x-apigw-api-id)",
    );
  }
  return apiId;
}

/**
 * The AWS SDK's default credential chain, imported on first use: its providers are many modules,
 * and callers who pass credentials (or never call the broker) should not load them. One chain
 * for every broker of a list, so an SSO or IMDS lookup is made once.
 */
export function defaultCredentials(): AwsCredentialIdentityProvider {
  let chain: Promise<AwsCredentialIdentityProvider> | undefined;
  return async (...args) => {
    chain ??= import("@aws-sdk/credential-provider-node").then((module) => module.defaultProvider());
    return (await chain)(...args);
  };
}

/** Signs GET requests to one API with SigV4. */
export class BrokerSigner {
  readonly region: string;
  private readonly signer: SignatureV4;

  constructor(region: string, credentials: Credentials) {
    this.region = region;
    this.signer = new SignatureV4({ service: SERVICE, region, credentials, sha256: Sha256 });
  }

  /**
   * The headers (Authorization, X-Amz-Date, X-Amz-Security-Token...) that sign a GET of `url`
   * carrying `headers` (signed too), those included.
   */
  async headersFor(url: URL, headers: Readonly<Record<string, string>> = {}): Promise<Record<string, string>> {
    const query: Record<string, string> = {};
    for (const [name, value] of url.searchParams) query[name] = value;
    const signed = await this.signer.sign({
      method: "GET",
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { ...headers, host: url.host },
    });
    // fetch sends Host itself, from the same URL, so the signed value and the sent one agree.
    const sent = { ...signed.headers };
    delete sent["host"];
    return sent;
  }
}
