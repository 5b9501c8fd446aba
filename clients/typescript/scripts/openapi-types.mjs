// TypeScript types from openapi/broker.yaml (openapi-typescript), shared by `npm run generate`
// and the test that fails when the checked-in file no longer matches the document.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

import openapiTS, { astToString } from "openapi-typescript";
import { parse } from "yaml";

export const DOCUMENT = fileURLToPath(new URL("../../../openapi/broker.yaml", import.meta.url));
export const GENERATED = fileURLToPath(new URL("../src/broker-api.ts", import.meta.url));

const HEADER = `/**
 * The broker API's types, generated from openapi/broker.yaml by openapi-typescript.
 * Do not edit: run \`npm run generate\` in clients/typescript after changing the document.
 */

`;

/** The generated module's text for a parsed document. */
export async function typesFor(document) {
  return HEADER + astToString(await openapiTS(document));
}

/** The document as parsed from openapi/broker.yaml. */
export async function brokerDocument() {
  return parse(await readFile(DOCUMENT, "utf8"));
}
