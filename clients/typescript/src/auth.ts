/**
 * BrokerAuth: KillB auth headers from the broker, kept until the token has less than minTtl left.
 *
 * One broker call at a time: when many requests find the cache empty, one asks the broker and
 * the others wait for its answer (or its error). A 503 or 429 is retried a bounded number of
 * times, after the Retry-After the broker sent. A token KillB refused is reported to the broker
 * (`rejected=F`) with the next call, so the broker replaces it instead of handing it out again.
 */

import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";

import type { components, operations } from "./broker-api.js";
import {
  BrokerAccessDeniedError,
  BrokerError,
  BrokerRequestInvalidError,
  BrokerUnavailableError,
} from "./errors.js";
import { BrokerSigner, brokerBaseUrl, regionOf, type Credentials } from "./signing.js";

/** The broker's 200 body, as openapi/broker.yaml describes it. */
export type AuthHeadersResponse = components["schemas"]["AuthHeaders"];
/** The broker's error body (KillB's shape). */
export type BrokerErrorBody = components["schemas"]["Error"];
/** The query of `GET /v1/auth-headers`: minTtl, and rejected (a refused token's fingerprint). */
export type AuthHeadersQuery = NonNullable<operations["getAuthHeaders"]["parameters"]["query"]>;
/** The headers to put on a KillB request: Authorization, and x-api-key when the account has one. */
export type KillBHeaders = AuthHeadersResponse["headers"] & Record<string, string>;

export const AUTH_HEADERS_PATH = "/v1/auth-headers";
export const DEFAULT_MIN_TTL = 300;
export const MIN_TTL_LIMIT = 1800; // the broker's own bound on minTtl
// Longer than API Gateway's 29 s integration timeout, so the gateway's answer arrives first.
const BROKER_TIMEOUT_MS = 31_000;
// Names the client in API Gateway's access log and the broker's events.
export const USER_AGENT = "killb-broker-client-js/0.1.0";
// A 503 without Retry-After: wait this long (seconds), doubling each time.
const FIRST_RETRY_DELAY = 0.5;
const FINGERPRINT = /^[0-9a-f]{12}$/;
// An HTTP header name (RFC 9110 token) and a value of visible ASCII and spaces only: CR, LF,
// NUL or non-ASCII from the broker would let its answer smuggle headers into KillB requests.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
const BEARER = /^Bearer [\x21-\x7e]+$/;

export interface BrokerAuthOptions {
  /** The broker API's URL, stage included: https://{api-id}.execute-api.{region}.amazonaws.com/{stage}. */
  brokerUrl: string;
  /** Seconds the token must still be valid for whenever headers are handed out (0..1800, default 300). */
  minTtl?: number;
  /** Region to sign for; default: the URL's, else AWS_REGION, else AWS_DEFAULT_REGION. */
  region?: string;
  /** AWS credentials (or a provider) to sign with; default: the AWS SDK's default chain. */
  credentials?: Credentials;
  /** Further attempts after a 503 or 429 (default 2). */
  retries?: number;
  /** Longest Retry-After, in seconds, worth waiting for (default 10); a longer one fails at once. */
  maxRetryAfter?: number;
  /** The fetch used for broker calls (default: the global fetch). */
  fetch?: typeof globalThis.fetch;
}

export interface HeadersRequest {
  /** Fingerprint of a token KillB refused: reported to the broker when it is the one in hand. */
  rejected?: string | undefined;
}

/** The first 12 hex digits of the token's SHA-256, as the broker logs it. */
export function fingerprint(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 12);
}

/** The fingerprint of the token in an `Authorization: Bearer ...` header. */
export function fingerprintOf(headers: Readonly<Record<string, string>>): string | undefined {
  const authorization = headers["Authorization"];
  return authorization === undefined ? undefined : fingerprint(authorization.replace(/^Bearer /, ""));
}

interface Issued {
  readonly headers: Readonly<KillBHeaders>;
  readonly fingerprint: string;
  /** performance.now() after which these headers are not handed out. */
  readonly useUntil: number;
}

export class BrokerAuth {
  readonly brokerUrl: string;
  readonly minTtl: number;
  readonly region: string;
  private readonly retries: number;
  private readonly maxRetryAfter: number;
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly signer: BrokerSigner;
  // ES private fields: neither util.inspect nor JSON.stringify shows them, so logging a
  // BrokerAuth cannot print the token it holds.
  #issued: Issued | undefined;
  #inFlight: Promise<Issued> | undefined;
  /** A refused token's fingerprint, to report with the next broker call. */
  #pendingRejected: string | undefined;

  constructor(options: BrokerAuthOptions) {
    const minTtl = options.minTtl ?? DEFAULT_MIN_TTL;
    if (!Number.isInteger(minTtl) || minTtl < 0 || minTtl > MIN_TTL_LIMIT) {
      throw new RangeError(`minTtl must be a whole number of seconds from 0 to ${MIN_TTL_LIMIT}`);
    }
    const retries = options.retries ?? 2;
    const maxRetryAfter = options.maxRetryAfter ?? 10;
    if (!Number.isInteger(retries) || retries < 0 || !(maxRetryAfter >= 0)) {
      throw new RangeError("retries must be a whole number and maxRetryAfter not negative");
    }
    this.brokerUrl = brokerBaseUrl(options.brokerUrl);
    this.minTtl = minTtl;
    this.region = regionOf(this.brokerUrl, options.region);
    this.retries = retries;
    this.maxRetryAfter = maxRetryAfter;
    this.fetchImpl = options.fetch ?? globalThis.fetch;
    this.signer = new BrokerSigner(this.region, options.credentials);
  }

  /** Authorization (and x-api-key when the account has one), from cache or the broker. */
  async headers(request?: HeadersRequest): Promise<KillBHeaders> {
    if (request?.rejected !== undefined) this.noteRejected(request.rejected);
    const issued = this.#issued;
    if (issued !== undefined && performance.now() < issued.useUntil) return { ...issued.headers };
    return { ...(await this.singleFlight()).headers };
  }

  toJSON(): { brokerUrl: string; minTtl: number; region: string } {
    return { brokerUrl: this.brokerUrl, minTtl: this.minTtl, region: this.region };
  }

  [inspect.custom](): string {
    return `BrokerAuth ${JSON.stringify(this.toJSON())}`;
  }

  private noteRejected(rejected: string): void {
    if (!FINGERPRINT.test(rejected)) {
      throw new TypeError("rejected must be a token fingerprint: 12 lowercase hex digits");
    }
    const issued = this.#issued;
    // Another fingerprint in hand: that token was already replaced, so the report is moot.
    if (issued !== undefined && issued.fingerprint !== rejected) return;
    this.#issued = undefined;
    this.#pendingRejected = rejected;
  }

  private singleFlight(): Promise<Issued> {
    if (this.#inFlight === undefined) {
      this.#inFlight = this.fetchUntilNotRejected().finally(() => {
        this.#inFlight = undefined;
      });
    }
    return this.#inFlight;
  }

  private async fetchUntilNotRejected(): Promise<Issued> {
    // A report that arrives while a call without it is in flight may name the very token that
    // call brings back: then ask once more, with the report.
    for (;;) {
      const rejected = this.#pendingRejected;
      const issued = await this.fetch(rejected);
      const reportedMeanwhile = this.#pendingRejected;
      this.#pendingRejected = undefined;
      if (reportedMeanwhile !== undefined && reportedMeanwhile !== rejected) {
        if (issued.fingerprint === reportedMeanwhile) {
          this.#pendingRejected = reportedMeanwhile;
          continue;
        }
      }
      this.#issued = issued;
      return issued;
    }
  }

  private async fetch(rejected: string | undefined): Promise<Issued> {
    const query: AuthHeadersQuery = { minTtl: this.minTtl, ...(rejected ? { rejected } : {}) };
    const url = new URL(`${this.brokerUrl}${AUTH_HEADERS_PATH}`);
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, String(value));
    for (let attempt = 0; ; attempt += 1) {
      const sentAt = performance.now();
      const response = await this.get(url);
      if (response.status === 200) return this.issuedFrom(response, sentAt);
      const error = await errorFrom(response);
      if (!(error instanceof BrokerUnavailableError) || attempt >= this.retries) throw error;
      const delay = error.retryAfter ?? FIRST_RETRY_DELAY * 2 ** attempt;
      // The broker says not soon: let the caller decide instead of blocking its request.
      if (delay > this.maxRetryAfter) throw error;
      await sleep(delay * 1000);
    }
  }

  private async get(url: URL): Promise<Response> {
    const signed = await this.signedHeaders(url);
    try {
      return await this.fetchImpl(url, {
        headers: { Accept: "application/json", "User-Agent": USER_AGENT, ...signed },
        // A signed call answered elsewhere is no answer of the broker's.
        redirect: "manual",
        signal: AbortSignal.timeout(BROKER_TIMEOUT_MS),
      });
    } catch (error) {
      // Only the error's kind: its message or cause could quote the request.
      throw new BrokerError(`the broker could not be reached (${transportErrorKind(error)})`);
    }
  }

  private async signedHeaders(url: URL): Promise<Record<string, string>> {
    try {
      return await this.signer.headersFor(url);
    } catch (error) {
      const kind = error instanceof Error ? error.name : "unknown error";
      throw new BrokerError(`no AWS credentials to sign the broker call (${kind})`);
    }
  }

  private async issuedFrom(response: Response, sentAt: number): Promise<Issued> {
    const body: unknown = await response.json().catch(() => undefined);
    const headers = killbHeadersOf(body);
    const expiresIn = isRecord(body) ? body["expiresIn"] : undefined;
    if (headers === undefined || !Number.isInteger(expiresIn) || (expiresIn as number) < 0) {
      throw new BrokerError("the broker's answer is not the documented JSON", { statusCode: 200 });
    }
    const token = headers.Authorization.slice("Bearer ".length);
    // expiresIn counts from the broker's answer; measured from when the call was sent, on the
    // monotonic clock, a wall clock that jumps cannot keep an expired token in use.
    const useUntil = sentAt + ((expiresIn as number) - this.minTtl) * 1000;
    return { headers: Object.freeze(headers), fingerprint: fingerprint(token), useUntil };
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The `headers` of a 200 body, when every one of them is a header a request can carry. */
function killbHeadersOf(body: unknown): KillBHeaders | undefined {
  const headers = isRecord(body) ? body["headers"] : undefined;
  if (!isRecord(headers)) return undefined;
  const checked: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== "string") return undefined;
    if (!HEADER_NAME.test(name) || !HEADER_VALUE.test(value)) {
      throw new BrokerError(
        "the broker sent a header a request cannot carry (CR, LF, NUL or non-ASCII)",
        { statusCode: 200 },
      );
    }
    checked[name] = value;
  }
  const authorization = checked["Authorization"];
  if (authorization === undefined || !BEARER.test(authorization)) return undefined;
  return checked as KillBHeaders;
}

function transportErrorKind(error: unknown): string {
  if (!(error instanceof Error)) return "unknown error";
  if (error.name === "TimeoutError" || error.name === "AbortError") return error.name;
  const cause: unknown = error.cause;
  const code = isRecord(cause) && typeof cause["code"] === "string" ? cause["code"] : undefined;
  return code ?? error.name;
}

/** Retry-After as seconds: delta-seconds (fractions accepted) or an HTTP date. */
export function retryAfterSeconds(value: string | null): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  let seconds = /^\d+(?:\.\d+)?$/.test(trimmed) ? Number(trimmed) : Number.NaN;
  if (Number.isNaN(seconds)) seconds = (Date.parse(trimmed) - Date.now()) / 1000;
  return Number.isNaN(seconds) ? undefined : Math.max(seconds, 0);
}

/** The typed error for a broker (or API Gateway) error answer, with its errorCode. */
export async function errorFrom(response: Response): Promise<BrokerError> {
  const body: unknown = await response.json().catch(() => undefined);
  let errorCode: string | undefined;
  let message: string | undefined;
  if (isRecord(body)) {
    const code = body["errorCode"];
    const text = body["message"];
    errorCode = typeof code === "string" ? code : undefined;
    if (Array.isArray(text)) message = text.map(String).join("; ");
    else if (typeof text === "string") message = text; // API Gateway's own answers
  }
  const statusCode = response.status;
  message = (message || `the broker answered HTTP ${statusCode}`).slice(0, 300);
  if (statusCode === 429 || statusCode === 503) {
    const retryAfter = retryAfterSeconds(response.headers.get("Retry-After"));
    return new BrokerUnavailableError(message, { statusCode, errorCode, retryAfter });
  }
  if (statusCode === 400) return new BrokerRequestInvalidError(message, { statusCode, errorCode });
  if (statusCode === 403) return new BrokerAccessDeniedError(message, { statusCode, errorCode });
  return new BrokerError(message, { statusCode, errorCode });
}

const shared = new Map<string, BrokerAuth>();

export interface GetAuthHeadersOptions extends HeadersRequest {
  brokerUrl: string;
  minTtl?: number;
  region?: string;
}

/** The broker's current headers, cached per process (one BrokerAuth per URL, minTtl and region). */
export async function getAuthHeaders(options: GetAuthHeadersOptions): Promise<KillBHeaders> {
  const minTtl = options.minTtl ?? DEFAULT_MIN_TTL;
  // Keyed by the options as given: a cache hit costs a string and a map lookup, no URL parsing.
  const key = `${options.brokerUrl}\n${minTtl}\n${options.region ?? ""}`;
  let auth = shared.get(key);
  if (auth === undefined) {
    auth = new BrokerAuth({
      brokerUrl: options.brokerUrl,
      minTtl,
      ...(options.region ? { region: options.region } : {}),
    });
    shared.set(key, auth);
  }
  return auth.headers(options.rejected === undefined ? undefined : { rejected: options.rejected });
}
