/**
 * Client for Node services that call the KillB credential broker: fresh KillB auth headers,
 * signed with SigV4, cached and fetched one at a time.
 *
 *   const killbFetch = createKillBFetch({ brokerUrl: "https://abc123.execute-api.us-east-1.amazonaws.com/api" });
 *   const users = await killbFetch("https://killb.app/api/v2/users");
 *   const same = await killbFetch("/api/v2/users"); // on the broker's killbBaseUrl
 */

export {
  BrokerAuth,
  fingerprint,
  getAuthHeaders,
  type AuthHeadersQuery,
  type AuthHeadersResponse,
  type BrokerAuthOptions,
  type BrokerErrorBody,
  type GetAuthHeadersOptions,
  type HeadersRequest,
  type IssuedHeaders,
  type KillBHeaders,
} from "./auth.js";
export type { BrokerEndpoint, BrokerUrls } from "./brokers.js";
export {
  BrokerAccessDeniedError,
  BrokerError,
  BrokerRequestInvalidError,
  BrokerUnavailableError,
  InsecureRequestError,
  type BrokerErrorDetails,
} from "./errors.js";
export { createKillBFetch, type KillBFetch, type KillBFetchOptions } from "./fetch.js";
export type { Credentials } from "./signing.js";
