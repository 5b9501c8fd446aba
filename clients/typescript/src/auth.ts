/**
 * BrokerAuth: KillB auth headers from the broker, kept until the token has less than minTtl left.
 *
 * One broker call at a time: when many requests find the cache empty, one asks the broker and
 * the others wait for its answer (or its error). Which broker of a list answers is brokers.ts's
 * business; a 503 or 429 from the list as a whole is retried here a bounded number of times,
 * after the Retry-After the broker sent. A token KillB refused is reported to the broker
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
import { BrokerList, brokersOf, type BrokerUrls } from "./brokers.js";
import { defaultCredentials, mayCarryCredentials, type Credentials } from "./signing.js";

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
const BROKER_TIMEOUT_SECONDS = 31;
// A 503 without Retry-After: wait this long (seconds), doubling each time.
const FIRST_RETRY_DELAY = 0.5;
const FINGERPRINT = /^[0-9a-f]{12}$/;
// An HTTP header name (RFC 9110 token) and a value of visible ASCII and spaces only: CR, LF,
// NUL or non-ASCII from the broker would let its answer smuggle headers into KillB requests.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
const BEARER = /^Bearer [\x21-\x7e]+$/;

export interface BrokerAuthOptions {
  /**
   * The broker API's URL, stage included: https://{api-id}.execute-api.{region}.amazonaws.com/{stage};
   * or an ordered list of them (several regions): a connection error, a timeout or a 5xx moves on
   * to the next, and the one that answered is kept first for 60 s.
   */
  brokerUrl: BrokerUrls;
  /** Seconds the token must still be valid for whenever headers are handed out (0..1800, default 300). */
  minTtl?: number;
  /** Region to sign for, for every broker; default: the URL's, else AWS_REGION, else AWS_DEFAULT_REGION. */
  region?: string;
  /**
   * The API's id, sent as x-apigw-api-id: needed when the URL's host is a VPC endpoint's own
   * name ({vpce-id}-{suffix}.execute-api.{region}.vpce.amazonaws.com).
   */
  apiId?: string;
  /** Seconds to wait for one broker's answer before moving on (default 31). */
  timeout?: number;
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

/** The broker's whole current answer: the headers, when the token expires, and where KillB is. */
export interface IssuedHeaders {
  readonly headers: KillBHeaders;
  /** When the token expires, as the broker said (RFC 3339 UTC). */
  readonly expiresAt: string;
  /** The KillB API root the token belongs to (send it there only); undefined when the broker did not say. */
  readonly killbBaseUrl: string | undefined;
}

interface Issued {
  readonly headers: Readonly<KillBHeaders>;
  readonly expiresAt: string;
  readonly killbBaseUrl: string | undefined;
  readonly fingerprint: string;
  /** performance.now() after which these headers are not handed out. */
  readonly useUntil: number;
}

export class BrokerAuth {
  readonly minTtl: number;
  private readonly retries: number;
  private readonly maxRetryAfter: number;
  private readonly brokers: BrokerList;
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
    const timeout = options.timeout ?? BROKER_TIMEOUT_SECONDS;
    if (!Number.isInteger(retries) || retries < 0 || !(maxRetryAfter >= 0) || !(timeout > 0)) {
      throw new RangeError("retries must be a whole number, maxRetryAfter not negative and timeout positive");
    }
    this.minTtl = minTtl;
    this.retries = retries;
    this.maxRetryAfter = maxRetryAfter;
    const brokers = brokersOf(options.brokerUrl, {
      region: options.region,
      apiId: options.apiId,
      credentials: options.credentials ?? defaultCredentials(),
    });
    this.brokers = new BrokerList(brokers, {
      fetch: options.fetch ?? globalThis.fetch,
      timeoutMs: timeout * 1000,
    });
  }

  /** Authorization (and x-api-key when the account has one), from cache or the broker. */
  async headers(request?: HeadersRequest): Promise<KillBHeaders> {
    return { ...(await this.current(request)).headers };
  }

  /** The broker's whole current answer (headers, expiresAt, killbBaseUrl), from cache or the broker. */
  async issued(request?: HeadersRequest): Promise<IssuedHeaders> {
    const issued = await this.current(request);
    return { headers: { ...issued.headers }, expiresAt: issued.expiresAt, killbBaseUrl: issued.killbBaseUrl };
  }

  toJSON(): { brokers: { url: string; region: string }[]; minTtl: number } {
    return { brokers: this.brokers.brokers.map((broker) => broker.toJSON()), minTtl: this.minTtl };
  }

  private async current(request: HeadersRequest | undefined): Promise<Issued> {
    if (request?.rejected !== undefined) this.noteRejected(request.rejected);
    const issued = this.#issued;
    if (issued !== undefined && performance.now() < issued.useUntil) return issued;
    return this.singleFlight();
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
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query)) search.set(name, String(value));
    const pathAndQuery = `${AUTH_HEADERS_PATH}?${search.toString()}`;
    for (let attempt = 0; ; attempt += 1) {
      const sentAt = performance.now();
      const response = await this.brokers.get(pathAndQuery);
      if (response.status === 200) return this.issuedFrom(response, sentAt);
      const error = await errorFrom(response);
      if (!(error instanceof BrokerUnavailableError) || attempt >= this.retries) throw error;
      const delay = error.retryAfter ?? FIRST_RETRY_DELAY * 2 ** attempt;
      // The broker says not soon: let the caller decide instead of blocking its request.
      if (delay > this.maxRetryAfter) throw error;
      await sleep(delay * 1000);
    }
  }

  private async issuedFrom(response: Response, sentAt: number): Promise<Issued> {
    const body: unknown = await response.json().catch(() => undefined);
    const headers = killbHeadersOf(body);
    const expiresIn = isRecord(body) ? body["expiresIn"] : undefined;
    const expiresAt = isRecord(body) ? body["expiresAt"] : undefined;
    const namedKillB = isRecord(body) ? body["killbBaseUrl"] : undefined;
    // A KillB over plain http beyond loopback is one only a container can reach (a refresher
    // under `sam local` calls http://host.docker.internal): the headers are good, the URL unused.
    const killbBaseUrl = onlyAContainerReaches(namedKillB) ? undefined : namedKillB;
    if (
      headers === undefined ||
      !Number.isInteger(expiresIn) ||
      (expiresIn as number) < 0 ||
      typeof expiresAt !== "string" ||
      !(killbBaseUrl === undefined || isKillBBaseUrl(killbBaseUrl))
    ) {
      throw new BrokerError("the broker's answer is not the documented JSON", { statusCode: 200 });
    }
    const token = headers.Authorization.slice("Bearer ".length);
    // expiresIn counts from the broker's answer; measured from when the call was sent, on the
    // monotonic clock, a wall clock that jumps cannot keep an expired token in use.
    const useUntil = sentAt + ((expiresIn as number) - this.minTtl) * 1000;
    return {
      headers: Object.freeze(headers),
      expiresAt,
      killbBaseUrl,
      fingerprint: fingerprint(token),
      useUntil,
    };
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

/**
 * A KillB API root a token may be sent to: https:// (or http:// to loopback), without user
 * info, query or fragment. Anything else makes the answer an error: the client never guesses.
 */
function onlyAContainerReaches(value: unknown): boolean {
  if (typeof value !== "string" || !URL.canParse(value)) return false;
  const url = new URL(value);
  return (
    url.protocol === "http:" && !mayCarryCredentials(url) && !url.username && !url.password && !url.search && !url.hash
  );
}

function isKillBBaseUrl(value: unknown): value is string {
  if (typeof value !== "string" || !URL.canParse(value)) return false;
  const url = new URL(value);
  return mayCarryCredentials(url) && !url.username && !url.password && !url.search && !url.hash;
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
  /** One broker URL, or an ordered list (see BrokerAuthOptions.brokerUrl). */
  brokerUrl: BrokerUrls;
  minTtl?: number;
  region?: string;
  apiId?: string;
}

/** The broker's current headers, cached per process (one BrokerAuth per URLs, minTtl, region, apiId). */
export async function getAuthHeaders(options: GetAuthHeadersOptions): Promise<KillBHeaders> {
  const minTtl = options.minTtl ?? DEFAULT_MIN_TTL;
  const urls = typeof options.brokerUrl === "string" ? options.brokerUrl : JSON.stringify(options.brokerUrl);
  // Keyed by the options as given: a cache hit costs a string and a map lookup, no URL parsing.
  const key = `${urls}\n${minTtl}\n${options.region ?? ""}\n${options.apiId ?? ""}`;
  let auth = shared.get(key);
  if (auth === undefined) {
    auth = new BrokerAuth({
      brokerUrl: options.brokerUrl,
      minTtl,
      ...(options.region ? { region: options.region } : {}),
      ...(options.apiId ? { apiId: options.apiId } : {}),
    });
    shared.set(key, auth);
  }
  return auth.headers(options.rejected === undefined ? undefined : { rejected: options.rejected });
}
