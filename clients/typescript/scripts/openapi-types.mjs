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

/** The same document without its `rejected` query parameter, for the drift check's tolerance. */
export function withoutRejected(document) {
  const copy = structuredClone(document);
  const operation = copy.paths?.["/v1/auth-headers"]?.get;
  const isRejected = (parameter) => {
    const resolved = parameter?.$ref
      ? copy.components?.parameters?.[parameter.$ref.split("/").pop()]
      : parameter;
    return resolved?.name === "rejected" && resolved?.in === "query";
  };
  if (operation?.parameters) {
    const rejected = operation.parameters.filter(isRejected);
    operation.parameters = operation.parameters.filter((parameter) => !isRejected(parameter));
    for (const parameter of rejected) {
      if (parameter.$ref) delete copy.components.parameters[parameter.$ref.split("/").pop()];
    }
  }
  return copy;
}
