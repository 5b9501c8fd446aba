// `npm run generate`: rewrite src/broker-api.ts from openapi/broker.yaml.
import { writeFile } from "node:fs/promises";

import { GENERATED, brokerDocument, typesFor } from "./openapi-types.mjs";

await writeFile(GENERATED, await typesFor(await brokerDocument()));
console.log(`wrote ${GENERATED}`);
