/**
 * What can go wrong when asking the broker for headers, or when sending them. No message, stack
 * or JSON form of these errors ever holds a token, an API key or an AWS secret.
 *
 * BrokerError                    the broker refused, sent an unexpected answer, or was not reached
 * ├── BrokerRequestInvalidError  400 BROKER.0001: minTtl or another parameter the broker rejects
 * ├── BrokerAccessDeniedError    403 BROKER.0002 (or API Gateway's 403): this caller may not have headers
 * ├── BrokerUnavailableError     503 BROKER.0003 or 429, after the retries; retryAfter in seconds
 * └── InsecureRequestError       a request the headers must not travel on (plain http to another host)
 */

export interface BrokerErrorDetails {
  /** The HTTP status of the broker's answer, when there was one. */
  statusCode?: number | undefined;
  /** The broker's `errorCode` (`BROKER.NNNN`), when its answer carried one. */
  errorCode?: string | undefined;
}

export class BrokerError extends Error {
  override name = "BrokerError";
  readonly statusCode: number | undefined;
  readonly errorCode: string | undefined;

  constructor(message: string, details: BrokerErrorDetails = {}) {
    const shown = [details.errorCode, details.statusCode ? `HTTP ${details.statusCode}` : undefined]
      .filter(Boolean)
      .join(", ");
    super(shown ? `${message} (${shown})` : message);
    this.statusCode = details.statusCode;
    this.errorCode = details.errorCode;
  }

  toJSON(): { name: string; message: string; statusCode?: number; errorCode?: string } {
    return {
      name: this.name,
      message: this.message,
      ...(this.statusCode === undefined ? {} : { statusCode: this.statusCode }),
      ...(this.errorCode === undefined ? {} : { errorCode: this.errorCode }),
    };
  }
}

/** The broker rejected the request's parameters (400). */
export class BrokerRequestInvalidError extends BrokerError {
  override name = "BrokerRequestInvalidError";
}

/** No IAM identity reached the broker, or the caller is not in its allowed principals (403). */
export class BrokerAccessDeniedError extends BrokerError {
  override name = "BrokerAccessDeniedError";
}

/** No token valid long enough can be had now (503), or the API throttled the caller (429). */
export class BrokerUnavailableError extends BrokerError {
  override name = "BrokerUnavailableError";
  /** Seconds the broker asked to wait (its Retry-After), when it said. */
  readonly retryAfter: number | undefined;

  constructor(message: string, details: BrokerErrorDetails & { retryAfter?: number | undefined }) {
    super(message, details);
    this.retryAfter = details.retryAfter;
  }

  override toJSON(): ReturnType<BrokerError["toJSON"]> & { retryAfter?: number } {
    return {
      ...super.toJSON(),
      ...(this.retryAfter === undefined ? {} : { retryAfter: this.retryAfter }),
    };
  }
}

/** The KillB headers were not put on a request whose destination could read them in transit. */
export class InsecureRequestError extends BrokerError {
  override name = "InsecureRequestError";
}
