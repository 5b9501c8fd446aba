/**
 * Which broker to ask, when there are several (one per region, say): the list in its order, and
 * the one that last answered after those before it failed, kept for a while.
 *
 * A connection error, a timeout or a 5xx from one broker moves on to the next; any other answer
 * (a 200, a 4xx: the broker is up and has spoken) is the answer. The broker that gave it is kept
 * first for 60 s, then the list's first is tried again. Whether to ask again after a 503 or 429
 * (Retry-After) is not decided here but by the caller, around one whole pass over the list.
 */

import { performance } from "node:perf_hooks";

import { BrokerError } from "./errors.js";
import {
  API_ID_HEADER,
  BrokerSigner,
  apiIdFor,
  brokerBaseUrl,
  regionOf,
  type Credentials,
} from "./signing.js";

/** One broker, when it needs a region or API id of its own; a plain URL otherwise. */
export interface BrokerEndpoint {
  /** The broker API's URL, stage included. */
  url: string;
  /** Region to sign for; default: the client's `region`, else the URL's, else the environment's. */
  region?: string;
  /** The API's id, sent as x-apigw-api-id; default: the client's `apiId`. */
  apiId?: string;
}

/** One broker URL, or an ordered list of them (the first is preferred). */
export type BrokerUrls = string | BrokerEndpoint | readonly (string | BrokerEndpoint)[];

/** How long a broker that answered when those before it failed stays first. */
export const KEEP_ANSWERING_MS = 60_000;
// Names the client in API Gateway's access log and the broker's events.
export const USER_AGENT = "killb-broker-client-js/0.1.0";

/** A broker of the list: where it is, and how a call to it is signed. */
export class Broker {
  readonly url: string;
  readonly region: string;
  private readonly apiId: string | undefined;
  private readonly signer: BrokerSigner;

  constructor(endpoint: BrokerEndpoint, credentials: Credentials) {
    this.url = brokerBaseUrl(endpoint.url);
    this.region = regionOf(this.url, endpoint.region);
    this.apiId = apiIdFor(this.url, endpoint.apiId);
    this.signer = new BrokerSigner(this.region, credentials);
  }

  /** The signed headers of a GET of `url`, x-apigw-api-id included when there is an API id. */
  async signedHeaders(url: URL): Promise<Record<string, string>> {
    const apiId: Record<string, string> = this.apiId === undefined ? {} : { [API_ID_HEADER]: this.apiId };
    try {
      return { ...apiId, ...(await this.signer.headersFor(url, apiId)) };
    } catch (error) {
      const kind = error instanceof Error ? error.name : "unknown error";
      throw new BrokerError(`no AWS credentials to sign the broker call (${kind})`);
    }
  }

  toJSON(): { url: string; region: string } {
    return { url: this.url, region: this.region };
  }
}

export interface BrokerListOptions {
  /** The fetch used for broker calls. */
  fetch: typeof globalThis.fetch;
  /** How long to wait for one broker's answer before moving on, in milliseconds. */
  timeoutMs: number;
  /** The monotonic clock, in milliseconds (performance.now). */
  now?: () => number;
}

/** The brokers in their order, and the one kept first after it answered for those that failed. */
export class BrokerList {
  readonly brokers: readonly Broker[];
  private readonly fetchImpl: typeof globalThis.fetch;
  private readonly timeoutMs: number;
  private readonly now: () => number;
  #kept: { broker: Broker; until: number } | undefined;

  constructor(brokers: readonly Broker[], options: BrokerListOptions) {
    if (brokers.length === 0) throw new TypeError("at least one broker URL is needed");
    this.brokers = brokers;
    this.fetchImpl = options.fetch;
    this.timeoutMs = options.timeoutMs;
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * GET `pathAndQuery` of the first broker, in the order of `order()`, that answers with less
   * than a 5xx. When none does: the last 5xx answer (its Retry-After may say when to ask
   * again), else a BrokerError naming how each call failed (never the request itself).
   */
  async get(pathAndQuery: string): Promise<Response> {
    let lastServerError: Response | undefined;
    const failures: string[] = [];
    for (const broker of this.order()) {
      const url = new URL(`${broker.url}${pathAndQuery}`);
      // No credentials is no fault of the broker's: the next one would be signed with the same.
      const signed = await broker.signedHeaders(url).catch(async (error: unknown) => {
        await lastServerError?.body?.cancel();
        throw error;
      });
      let response: Response;
      try {
        response = await this.fetchImpl(url, {
          headers: { Accept: "application/json", "User-Agent": USER_AGENT, ...signed },
          // A signed call answered elsewhere is no answer of the broker's.
          redirect: "manual",
          signal: AbortSignal.timeout(this.timeoutMs),
        });
      } catch (error) {
        failures.push(transportErrorKind(error));
        continue;
      }
      if (response.status >= 500) {
        await lastServerError?.body?.cancel();
        lastServerError = response;
        continue;
      }
      // An earlier broker's 5xx is no longer the answer: its connection may go back to the pool.
      await lastServerError?.body?.cancel();
      this.answeredBy(broker);
      return response;
    }
    if (lastServerError !== undefined) return lastServerError;
    const which = this.brokers.length === 1 ? "the broker could not" : "no broker could";
    throw new BrokerError(`${which} be reached (${failures.join(", ")})`);
  }

  /** The brokers in the order to try them now: the kept one first while it is kept. */
  order(): readonly Broker[] {
    const kept = this.#kept;
    if (kept === undefined) return this.brokers;
    if (this.now() >= kept.until) {
      this.#kept = undefined;
      return this.brokers;
    }
    return [kept.broker, ...this.brokers.filter((broker) => broker !== kept.broker)];
  }

  private answeredBy(broker: Broker): void {
    if (broker === this.brokers[0]) this.#kept = undefined;
    // Kept from when it first answered in place of the first: answering again does not extend it.
    else if (this.#kept?.broker !== broker) this.#kept = { broker, until: this.now() + KEEP_ANSWERING_MS };
  }
}

/** The brokers of `urls`, each with its region and API id (its own, else the client's). */
export function brokersOf(
  urls: BrokerUrls,
  defaults: { region?: string | undefined; apiId?: string | undefined; credentials: Credentials },
): Broker[] {
  const list: readonly (string | BrokerEndpoint)[] = typeof urls === "string" || !isList(urls) ? [urls] : urls;
  return list.map((entry) => {
    const endpoint = typeof entry === "string" ? { url: entry } : entry;
    const region = endpoint.region ?? defaults.region;
    const apiId = endpoint.apiId ?? defaults.apiId;
    return new Broker(
      { url: endpoint.url, ...(region ? { region } : {}), ...(apiId ? { apiId } : {}) },
      defaults.credentials,
    );
  });
}

function isList(urls: BrokerUrls): urls is readonly (string | BrokerEndpoint)[] {
  return Array.isArray(urls);
}

/** A transport failure's kind (ECONNREFUSED, TimeoutError...): its message could quote the request. */
function transportErrorKind(error: unknown): string {
  if (!(error instanceof Error)) return "unknown error";
  if (error.name === "TimeoutError" || error.name === "AbortError") return error.name;
  const cause: unknown = error.cause;
  const code =
    typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
      ? cause.code
      : undefined;
  return code ?? error.name;
}
