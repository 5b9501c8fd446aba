// src/broker-api.ts must be what openapi-typescript makes of openapi/broker.yaml today.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { it } from "node:test";

import { PACKAGE_ROOT } from "./support.js";

interface OpenApiTypes {
  GENERATED: string;
  brokerDocument(): Promise<unknown>;
  typesFor(document: unknown): Promise<string>;
}

const generator = (await import(
  pathToFileURL(join(PACKAGE_ROOT, "scripts", "openapi-types.mjs")).href
)) as OpenApiTypes;

it("src/broker-api.ts matches openapi/broker.yaml (run `npm run generate` if not)", async () => {
  const checkedIn = await readFile(generator.GENERATED, "utf8");
  const document = await generator.brokerDocument();

  const generated = await generator.typesFor(document);

  assert.ok(
    checkedIn === generated,
    "src/broker-api.ts is not what openapi/broker.yaml generates: run `npm run generate`",
  );
});
