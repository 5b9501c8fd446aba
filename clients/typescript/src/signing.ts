/**
 * Where the broker is and how a call to it is signed: SigV4 by the AWS SDK's own signer, with
 * the SDK's default credential chain (environment, SSO, profile, web identity, container, IMDS).
 *
 * API Gateway checks the signature (AWS_IAM authorization) with service `execute-api` and the
 * region the API lives in, which its default URL names:
 * https://{api-id}.execute-api.{region}.amazonaws.com/{stage}.
 */

import { isIPv4, isIPv6 } from "node:net";

import { Sha256 } from "@aws-crypto/sha256-js";
import { SignatureV4 } from "@smithy/signature-v4";
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from "@smithy/types";

export const SERVICE = "execute-api";

// The regional and the private (VPC endpoint) host names of a REST API.
const EXECUTE_API_HOST =
  /^[a-z0-9-]+\.execute-api\.(?<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.(?:vpce\.)?amazonaws\.com(?:\.cn)?$/;

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

/** The region to sign for: given, else the URL's, else AWS_REGION, else AWS_DEFAULT_REGION. */
export function regionOf(brokerUrl: string, explicit?: string): string {
  if (explicit) return explicit;
  const match = EXECUTE_API_HOST.exec(new URL(brokerUrl).hostname);
  if (match?.groups?.["region"]) return match.groups["region"];
  // A custom domain or a loopback URL names no region: Lambda, ECS and most CI set AWS_REGION.
  const configured = process.env["AWS_REGION"] || process.env["AWS_DEFAULT_REGION"];
  if (!configured) {
    throw new TypeError("no region for the broker URL: pass region or set AWS_REGION");
  }
  return configured;
}

/** Signs GET requests to one API with SigV4, credentials from `credentials` or the default chain. */
export class BrokerSigner {
  readonly region: string;
  private signer: SignatureV4 | undefined;
  private readonly credentials: Credentials | undefined;

  constructor(region: string, credentials?: Credentials) {
    this.region = region;
    this.credentials = credentials;
  }

  /** The headers (Authorization, X-Amz-Date, X-Amz-Security-Token...) that sign a GET of `url`. */
  async headersFor(url: URL): Promise<Record<string, string>> {
    const signer = this.signer ?? (this.signer = await this.createSigner());
    const query: Record<string, string> = {};
    for (const [name, value] of url.searchParams) query[name] = value;
    const signed = await signer.sign({
      method: "GET",
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { host: url.host },
    });
    // fetch sends Host itself, from the same URL, so the signed value and the sent one agree.
    const headers = { ...signed.headers };
    delete headers["host"];
    return headers;
  }

  private async createSigner(): Promise<SignatureV4> {
    // Imported on first use: its providers are many modules, and callers who pass credentials
    // (or never call the broker) should not load them.
    const credentials =
      this.credentials ?? (await import("@aws-sdk/credential-provider-node")).defaultProvider();
    return new SignatureV4({ service: SERVICE, region: this.region, credentials, sha256: Sha256 });
  }
}
