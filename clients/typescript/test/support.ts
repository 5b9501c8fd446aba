// What the tests share: fake AWS credentials, the Python local stack (the real broker on
// loopback), and two small loopback servers a test scripts itself (a broker and a KillB).

import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { dirname, join, resolve } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
// build/test/ when compiled: the package root is two levels up, the repository's five.
export const PACKAGE_ROOT = resolve(HERE, "..", "..");
export const REPO_ROOT = resolve(PACKAGE_ROOT, "..", "..");
const LAUNCHER = join(PACKAGE_ROOT, "test", "local_stack.py");

/** Fake AWS credentials in the environment, so the SDK's default chain signs with them. */
export function useFakeAwsCredentials(): void {
  delete process.env["AWS_PROFILE"];
  // No shared config or credentials file of this machine's: only the variables below count.
  process.env["AWS_CONFIG_FILE"] = "/nonexistent";
  process.env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent";
  process.env["AWS_ACCESS_KEY_ID"] = "testing";
  process.env["AWS_SECRET_ACCESS_KEY"] = "testing";
  process.env["AWS_SESSION_TOKEN"] = "testing-session";
  process.env["AWS_REGION"] = "us-east-1";
  process.env["AWS_EC2_METADATA_DISABLED"] = "true";
}

export interface LocalStack {
  brokerUrl: string;
  killbUrl: string;
  command<T>(command: string, fields?: Record<string, unknown>): Promise<T>;
  stop(): Promise<void>;
}

// What a newcomer runs when the launcher cannot start: the venv with the pinned packages.
const SETUP_HINT =
  "the local stack needs the repository's Python venv: run `make .venv/bin/.installed` " +
  "(or `make ts`) at the repository root, or set PYTHON to a Python 3.13 that has requirements/dev.txt";

/** Why the launcher exited before it printed its first line, and what fixes it. */
export function launcherFailure(python: string, stderr: string, spawnError: Error | undefined): string {
  const code = spawnError && "code" in spawnError ? String(spawnError.code) : undefined;
  const missing = /No module named '([^']+)'/.exec(stderr)?.[1];
  const reason =
    code === "ENOENT"
      ? `there is no Python at ${python}`
      : missing !== undefined
        ? `the Python at ${python} has no ${missing} module`
        : stderr.trim()
          ? `it said:\n${stderr.trim()}`
          : "it printed nothing";
  return `the local stack exited: ${reason}\n${SETUP_HINT}`;
}

/** test/local_stack.py started with `args`: moto, the KillB sandbox, the refresher, the broker. */
export async function startLocalStack(
  args: string[] = [],
  python: string = process.env["PYTHON"] ?? join(REPO_ROOT, ".venv", "bin", "python"),
): Promise<LocalStack> {
  const child: ChildProcessWithoutNullStreams = spawn(python, [LAUNCHER, ...args], {
    cwd: REPO_ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  });
  // After a failed spawn too: then "error" comes first, and no stderr.
  const closed = new Promise((done) => child.on("close", done));
  let spawnError: Error | undefined;
  child.on("error", (error) => {
    spawnError = error;
  });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const lines: Interface = createInterface({ input: child.stdout });
  const iterator = lines[Symbol.asyncIterator]();
  const next = async (): Promise<unknown> => {
    const line = await iterator.next();
    if (line.done) throw new Error(`the local stack exited: ${stderr}`);
    return JSON.parse(line.value);
  };
  const started = (await next().catch(async (error: unknown) => {
    if (error instanceof SyntaxError) throw error;
    // It exited without its first line: say why, and what fixes it, once its stderr is all in.
    await closed;
    throw new Error(launcherFailure(python, stderr, spawnError));
  })) as { brokerUrl: string; killbUrl: string };
  let queue = Promise.resolve<unknown>(undefined);
  return {
    ...started,
    command<T>(command: string, fields: Record<string, unknown> = {}): Promise<T> {
      const answer = queue.then(() => {
        child.stdin.write(JSON.stringify({ command, ...fields }) + "\n");
        return next();
      });
      queue = answer.catch(() => undefined);
      return answer as Promise<T>;
    },
    async stop(): Promise<void> {
      const exited = once(child, "exit");
      child.stdin.end();
      await exited;
    },
  };
}

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage["headers"];
  body: string;
  /** performance.now() when the request arrived. */
  at: number;
}

export type Route = (request: Recorded, response: ServerResponse) => void | Promise<void>;

/** A loopback HTTP server answering every request with `route`, recording each one. */
export class LoopbackServer {
  readonly requests: Recorded[] = [];
  private readonly server: Server;
  route: Route;

  private constructor(route: Route) {
    this.route = route;
    this.server = createServer((request, response) => {
      void this.handle(request, response);
    });
  }

  static async start(route: Route): Promise<LoopbackServer> {
    const server = new LoopbackServer(route);
    server.server.listen(0, "127.0.0.1");
    await once(server.server, "listening");
    return server;
  }

  get url(): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    this.server.close();
    await once(this.server, "close");
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const at = performance.now();
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const recorded: Recorded = {
      method: request.method ?? "GET",
      url: request.url ?? "/",
      headers: request.headers,
      body: Buffer.concat(chunks).toString("utf8"),
      at,
    };
    this.requests.push(recorded);
    await this.route(recorded, response);
  }
}

export function json(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { "Content-Type": "application/json", ...headers });
  response.end(JSON.stringify(body));
}

/**
 * A broker that answers as docs/spec.md says, from a list of tokens: the first is in hand;
 * `rejected=` naming the token in hand replaces it with the next one.
 */
export class ScriptedBroker {
  /** Answers to give before the normal ones (a 503, a bad header...), first in first out. */
  readonly scripted: Route[] = [];
  expiresIn = 3600;
  apiKey: string | undefined = "ak-Scripted-3c9d1e";
  /** Sent as the answer's killbBaseUrl when set. */
  killbBaseUrl: string | undefined;
  delayMs = 0;
  private index = 0;

  private constructor(
    readonly server: LoopbackServer,
    readonly tokens: string[],
  ) {}

  static async start(tokens: string[]): Promise<ScriptedBroker> {
    const holder: { broker?: ScriptedBroker } = {};
    const server = await LoopbackServer.start((request, response) => holder.broker?.answer(request, response));
    holder.broker = new ScriptedBroker(server, tokens);
    return holder.broker;
  }

  get url(): string {
    return this.server.url;
  }

  get current(): string {
    return this.tokens[this.index] as string;
  }

  /** The queries of the GET /v1/auth-headers requests the broker was asked. */
  get queries(): URLSearchParams[] {
    return this.server.requests
      .filter((request) => request.url.startsWith("/v1/auth-headers"))
      .map((request) => new URL(request.url, this.url).searchParams);
  }

  private async answer(request: Recorded, response: ServerResponse): Promise<void> {
    if (this.delayMs) await new Promise((done) => setTimeout(done, this.delayMs));
    const scripted = this.scripted.shift();
    if (scripted) return scripted(request, response);
    const query = new URL(request.url, this.url).searchParams;
    const rejected = query.get("rejected");
    if (rejected !== null && rejected === fingerprintHex(this.current)) this.index += 1;
    const headers: Record<string, string> = { Authorization: `Bearer ${this.current}` };
    if (this.apiKey) headers["x-api-key"] = this.apiKey;
    const expiresAt = new Date(Date.now() + this.expiresIn * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    const killbBaseUrl = this.killbBaseUrl === undefined ? {} : { killbBaseUrl: this.killbBaseUrl };
    json(response, 200, { headers, expiresAt, expiresIn: this.expiresIn, ...killbBaseUrl }, { "Cache-Control": "no-store" });
  }
}

function fingerprintHex(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 12);
}

/** A KillB that accepts only the tokens in `accepted`: 401 AUTH.0003 for any other. */
export async function startKillB(accepted: Set<string>): Promise<LoopbackServer> {
  return LoopbackServer.start((request, response) => {
    const token = (request.headers.authorization ?? "").replace(/^Bearer /, "");
    if (!accepted.has(token)) {
      json(response, 401, { errorCode: "AUTH.0003", message: ["Invalid token"], statusCode: "401" });
      return;
    }
    json(response, 200, { users: [], echo: request.body });
  });
}
