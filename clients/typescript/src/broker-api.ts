/**
 * The broker API's types, generated from openapi/broker.yaml by openapi-typescript.
 * Do not edit: run `npm run generate` in clients/typescript after changing the document.
 */

export interface paths {
    "/v1/auth-headers": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The headers a KillB request needs, with a token valid for at least minTtl.
         * @description `x-api-key` is there only when the KillB account has an API key. When the token in hand
         *     has less than `minTtl` left, the broker reads the secret again, then asks the refresher
         *     once, before answering 503.
         *
         *     `killbBaseUrl` is the KillB API root the token was issued by (the refresher's
         *     `KILLB_BASE_URL`): send the token there and nowhere else, so that a sandbox token never
         *     goes to production or the reverse. A token published before the broker knew it comes
         *     without the field.
         *
         *     `rejected`: when KillB refused (401) a token the broker handed out, send its fingerprint
         *     with the next request. If the token in hand (read afresh) has that fingerprint, this
         *     request does not get it: the broker has the refresher replace it (once a minute at most,
         *     however many callers report it at the same time) and answers with another token, or 503
         *     with `Retry-After`. A fingerprint of any other token changes nothing. A request without
         *     `rejected` is still given the token in hand, whatever was reported of it, until the
         *     refresher has replaced it; a token the refresher revoked is never handed out again.
         */
        get: operations["getAuthHeaders"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/health": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * The state of the token in hand, without the token.
         * @description The state of the token in hand, measured against minTtl's default (300 s):
         *
         *     - `ok`: more than 300 s left; a request with the default minTtl gets it as it is.
         *     - `refreshing`: valid, but 300 s or less left; a request with the default minTtl makes
         *       the broker refresh it first (the name says what the next such request does, not that
         *       a refresh is running now).
         *     - `expired`: a token is stored, but its expiry has passed; no request gets it.
         *     - `missing`: no usable token can be read now: none stored yet, a stored value that is
         *       not a usable token (an expiresAt that is not a whole number or lies more than 24 hours
         *       ahead, a token or API key a header cannot carry), or Secrets Manager failing.
         *       `expiresAt` and `expiresIn` are null.
         *
         *     `checkedAt`: when KillB last confirmed the token in hand (it issued it, or answered
         *     `GET /api/v2/auth/me` with it); null when unknown.
         */
        get: operations["getHealth"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        AuthHeaders: {
            headers: {
                Authorization: string;
                "x-api-key"?: string;
            };
            expiresAt: components["schemas"]["Rfc3339Utc"];
            /** @description Whole seconds the token is still valid for, at least minTtl. */
            expiresIn: number;
            /**
             * @description The KillB API root this token belongs to; absent for a token published before the broker knew it.
             * @example https://killb.app
             */
            killbBaseUrl?: string;
        };
        Health: {
            /** @enum {string} */
            status: "ok" | "refreshing" | "expired" | "missing";
            /** Format: date-time */
            expiresAt: string | null;
            expiresIn: number | null;
            /**
             * Format: date-time
             * @description When KillB last confirmed the token in hand; null when unknown.
             */
            checkedAt?: string | null;
        };
        /**
         * Format: date-time
         * @example 2026-11-28T02:00:00Z
         */
        Rfc3339Utc: string;
        Error: {
            errorCode: string;
            message: string[];
            statusCode: string;
        };
    };
    responses: {
        /** @description BROKER.0001: minTtl is not a whole number from 0 to 1800, rejected is not 12 lowercase hex digits, a query parameter is unknown, or the invocation is not an API Gateway REST (v1) proxy event. */
        InvalidRequest: {
            headers: {
                "Cache-Control": components["headers"]["CacheControl"];
                [name: string]: unknown;
            };
            content: {
                /**
                 * @example {
                 *       "errorCode": "BROKER.0001",
                 *       "message": [
                 *         "minTtl must be a whole number from 0 to 1800"
                 *       ],
                 *       "statusCode": "400"
                 *     }
                 */
                "application/json": components["schemas"]["Error"] & {
                    /** @enum {unknown} */
                    errorCode?: "BROKER.0001";
                    /** @enum {unknown} */
                    statusCode?: "400";
                };
            };
        };
        /** @description BROKER.0002: no IAM caller identity, or a caller not in ALLOWED_PRINCIPALS. */
        Forbidden: {
            headers: {
                "Cache-Control": components["headers"]["CacheControl"];
                [name: string]: unknown;
            };
            content: {
                /**
                 * @example {
                 *       "errorCode": "BROKER.0002",
                 *       "message": [
                 *         "caller not allowed"
                 *       ],
                 *       "statusCode": "403"
                 *     }
                 */
                "application/json": components["schemas"]["Error"] & {
                    /** @enum {unknown} */
                    errorCode?: "BROKER.0002";
                    /** @enum {unknown} */
                    statusCode?: "403";
                };
            };
        };
        /** @description BROKER.0004: no such route (any path other than the two above, any method). */
        NotFound: {
            headers: {
                "Cache-Control": components["headers"]["CacheControl"];
                [name: string]: unknown;
            };
            content: {
                /**
                 * @example {
                 *       "errorCode": "BROKER.0004",
                 *       "message": [
                 *         "no such route"
                 *       ],
                 *       "statusCode": "404"
                 *     }
                 */
                "application/json": components["schemas"]["Error"] & {
                    /** @enum {unknown} */
                    errorCode?: "BROKER.0004";
                    /** @enum {unknown} */
                    statusCode?: "404";
                };
            };
        };
        /** @description BROKER.0005: a method other than GET on a known route. */
        MethodNotAllowed: {
            headers: {
                "Cache-Control": components["headers"]["CacheControl"];
                Allow: components["headers"]["Allow"];
                [name: string]: unknown;
            };
            content: {
                /**
                 * @example {
                 *       "errorCode": "BROKER.0005",
                 *       "message": [
                 *         "method not allowed"
                 *       ],
                 *       "statusCode": "405"
                 *     }
                 */
                "application/json": components["schemas"]["Error"] & {
                    /** @enum {unknown} */
                    errorCode?: "BROKER.0005";
                    /** @enum {unknown} */
                    statusCode?: "405";
                };
            };
        };
        /** @description BROKER.0003: no token valid for minTtl can be had now; ask again after Retry-After. */
        TokenUnavailable: {
            headers: {
                "Cache-Control": components["headers"]["CacheControl"];
                "Retry-After": components["headers"]["RetryAfter"];
                [name: string]: unknown;
            };
            content: {
                /**
                 * @example {
                 *       "errorCode": "BROKER.0003",
                 *       "message": [
                 *         "no access token valid for minTtl can be had now; retry later"
                 *       ],
                 *       "statusCode": "503"
                 *     }
                 */
                "application/json": components["schemas"]["Error"] & {
                    /** @enum {unknown} */
                    errorCode?: "BROKER.0003";
                    /** @enum {unknown} */
                    statusCode?: "503";
                };
            };
        };
        /** @description BROKER.0000: anything unexpected; the details are only in the broker's log. */
        InternalError: {
            headers: {
                "Cache-Control": components["headers"]["CacheControl"];
                [name: string]: unknown;
            };
            content: {
                /**
                 * @example {
                 *       "errorCode": "BROKER.0000",
                 *       "message": [
                 *         "internal error"
                 *       ],
                 *       "statusCode": "500"
                 *     }
                 */
                "application/json": components["schemas"]["Error"] & {
                    /** @enum {unknown} */
                    errorCode?: "BROKER.0000";
                    /** @enum {unknown} */
                    statusCode?: "500";
                };
            };
        };
        /** @description API Gateway's own answers (a missing or bad signature, throttling), in the same shape. */
        GatewayError: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["Error"];
            };
        };
    };
    parameters: {
        /** @description Whole seconds the token must still be valid for. */
        MinTtl: number;
        /**
         * @description The fingerprint of a token KillB refused: the first 12 hex digits (lowercase) of the
         *     SHA-256 of the access token.
         * @example 5f2b1c9a7e34
         */
        Rejected: string;
    };
    requestBodies: never;
    headers: {
        /** @description Tokens never sit in a cache; neither do errors. */
        CacheControl: "no-store";
        /**
         * @description Whole seconds to wait before asking again: a few seconds after the broker had the
         *     refresher run (or found it running) or Secrets Manager briefly failing; longer when only
         *     the schedule or an operator can help (no refresher configured, the secret missing or
         *     unreadable).
         */
        RetryAfter: number;
        /** @description The method the route accepts. */
        Allow: string;
    };
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    getAuthHeaders: {
        parameters: {
            query?: {
                /** @description Whole seconds the token must still be valid for. */
                minTtl?: components["parameters"]["MinTtl"];
                /**
                 * @description The fingerprint of a token KillB refused: the first 12 hex digits (lowercase) of the
                 *     SHA-256 of the access token.
                 * @example 5f2b1c9a7e34
                 */
                rejected?: components["parameters"]["Rejected"];
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Headers to put on KillB requests, and when the token expires. */
            200: {
                headers: {
                    "Cache-Control": components["headers"]["CacheControl"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "headers": {
                     *         "Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
                     *         "x-api-key": "kb_live_0123456789abcdef"
                     *       },
                     *       "expiresAt": "2026-11-28T02:00:00Z",
                     *       "expiresIn": 3540,
                     *       "killbBaseUrl": "https://killb.app"
                     *     }
                     */
                    "application/json": components["schemas"]["AuthHeaders"];
                };
            };
            400: components["responses"]["InvalidRequest"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            405: components["responses"]["MethodNotAllowed"];
            500: components["responses"]["InternalError"];
            503: components["responses"]["TokenUnavailable"];
            default: components["responses"]["GatewayError"];
        };
    };
    getHealth: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The token's state and expiry. */
            200: {
                headers: {
                    "Cache-Control": components["headers"]["CacheControl"];
                    [name: string]: unknown;
                };
                content: {
                    /**
                     * @example {
                     *       "status": "ok",
                     *       "expiresAt": "2026-11-28T02:00:00Z",
                     *       "expiresIn": 3540,
                     *       "checkedAt": "2026-11-28T01:30:00Z"
                     *     }
                     */
                    "application/json": components["schemas"]["Health"];
                };
            };
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            405: components["responses"]["MethodNotAllowed"];
            500: components["responses"]["InternalError"];
            default: components["responses"]["GatewayError"];
        };
    };
}
