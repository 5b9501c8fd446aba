/**
 * createKillBFetch: a fetch that puts the broker's headers on every KillB request.
 *
 * The headers travel only to https:// or loopback hosts, and never follow a redirect to another
 * origin (redirects are followed here, by hand, and the headers dropped when the origin changes).
 * A 401 from KillB to a request that carried the broker's token means KillB refused that token:
 * its fingerprint goes to the broker with the next call, and the request is sent once more with
 * the new token (when its body can be sent twice: a ReadableStream body is sent only once).
 *
 * A relative path ("/api/v2/users") is resolved against the broker's `killbBaseUrl`, the KillB
 * API root the token belongs to, so a sandbox token never goes to production or the reverse.
 */

import { BrokerAuth, fingerprintOf, type BrokerAuthOptions, type KillBHeaders } from "./auth.js";
import { BrokerError, InsecureRequestError } from "./errors.js";
import { mayCarryCredentials } from "./signing.js";

export type KillBFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export type KillBFetchOptions =
  | (BrokerAuthOptions & { auth?: undefined })
  | { auth: BrokerAuth; fetch?: typeof globalThis.fetch };

// The fetch standard's own bound.
const MAX_REDIRECTS = 20;
// Headers that describe a body, dropped with it when a redirect turns the request into a GET.
const BODY_HEADERS = ["content-encoding", "content-language", "content-location", "content-type"];

interface Sent {
  response: Response;
  /** Whether the request that got this response carried the broker's headers. */
  carriedHeaders: boolean;
}

/** A fetch-compatible function whose requests carry the broker's current KillB headers. */
export function createKillBFetch(options: KillBFetchOptions): KillBFetch {
  const auth = options.auth ?? new BrokerAuth(options);
  const fetchImpl = options.fetch ?? globalThis.fetch;

  return async function killbFetch(input, init) {
    const relative = typeof input === "string" && !URL.canParse(input);
    // An absolute URL is checked before the broker is asked; a relative one once its base is known.
    if (!relative) checkDestination(input instanceof Request ? input.url : String(input));
    const issued = await auth.issued();
    const request = new Request(relative ? onKillB(issued.killbBaseUrl, input) : input, init);
    if (relative) checkDestination(request.url);
    const replayable = !isStream(init?.body);
    const headers = issued.headers;
    const first = await send(fetchImpl, request, headers, replayable);
    if (first.response.status !== 401 || !first.carriedHeaders) return first.response;

    // KillB refused the token it was sent: report it, and take whatever replaces it.
    const fresh = await auth.headers({ rejected: fingerprintOf(headers) });
    if (!replayable || fresh["Authorization"] === headers["Authorization"]) return first.response;
    await first.response.body?.cancel();
    return (await send(fetchImpl, request, fresh, replayable)).response;
  };
}

function checkDestination(url: string): void {
  if (!mayCarryCredentials(new URL(url))) {
    throw new InsecureRequestError(
      "KillB headers go only to https:// or loopback hosts, not to " + new URL(url).origin,
    );
  }
}

/** `path` (with its query) under the KillB API root, as the broker named it. */
function onKillB(killbBaseUrl: string | undefined, path: string): string {
  if (killbBaseUrl === undefined) {
    throw new BrokerError("a relative KillB path needs the broker's killbBaseUrl, and its answer had none");
  }
  return `${killbBaseUrl.replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`;
}

function isStream(body: RequestInit["body"] | undefined): boolean {
  if (body === null || body === undefined) return false;
  return body instanceof ReadableStream || Symbol.asyncIterator in Object(body);
}

/** One request, its redirects followed by hand; the headers only while the origin stays. */
async function send(
  fetchImpl: typeof globalThis.fetch,
  request: Request,
  headers: Readonly<KillBHeaders>,
  replayable: boolean,
): Promise<Sent> {
  const origin = new URL(request.url).origin;
  // A body that can be sent again is cloned for each send; a stream goes once, as it is.
  const take = (): Request => (replayable ? request.clone() : request);
  let hop = withHeaders(take(), headers);
  let carriedHeaders = true;
  for (let redirects = 0; ; redirects += 1) {
    const response = await fetchImpl(hop);
    const location = response.headers.get("Location");
    if (!isRedirect(response.status) || location === null || request.redirect === "manual") {
      return { response, carriedHeaders };
    }
    if (request.redirect === "error") {
      await response.body?.cancel();
      throw new TypeError("fetch failed: a redirect, and the request's redirect mode is error");
    }
    if (redirects >= MAX_REDIRECTS) {
      await response.body?.cancel();
      throw new TypeError("fetch failed: too many redirects");
    }
    const target = new URL(location, hop.url);
    // Once the origin changed, whoever answers there chose where the request goes next.
    carriedHeaders = carriedHeaders && target.origin === origin;
    const keepsBody =
      response.status === 307 || response.status === 308
        ? true
        : !(response.status === 303 ? hop.method !== "HEAD" : hop.method === "POST");
    if (keepsBody && hop.body !== null && !replayable) return { response, carriedHeaders };
    await response.body?.cancel();
    hop = redirected(take(), target, keepsBody, carriedHeaders ? headers : undefined);
  }
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function withHeaders(request: Request, headers: Readonly<KillBHeaders>): Request {
  const merged = new Headers(request.headers);
  for (const [name, value] of Object.entries(headers)) merged.set(name, value);
  return new Request(request, { headers: merged, redirect: "manual" });
}

/** The request for the next hop: same method and body, or a GET without a body (303, POST on 301/302). */
function redirected(
  request: Request,
  target: URL,
  keepsBody: boolean,
  headers: Readonly<KillBHeaders> | undefined,
): Request {
  const next = new Headers(request.headers);
  if (headers === undefined) {
    // Another origin: neither the broker's headers nor a caller's own credentials go there.
    next.delete("Authorization");
    next.delete("x-api-key");
    next.delete("Cookie");
  } else {
    for (const [name, value] of Object.entries(headers)) next.set(name, value);
  }
  if (!keepsBody) for (const name of BODY_HEADERS) next.delete(name);
  const init: RequestInit & { duplex?: "half" } = {
    method: keepsBody ? request.method : request.method === "HEAD" ? "HEAD" : "GET",
    headers: next,
    redirect: "manual",
    signal: request.signal,
  };
  if (keepsBody && request.body !== null) {
    init.body = request.body;
    init.duplex = "half";
  }
  return new Request(target, init);
}
