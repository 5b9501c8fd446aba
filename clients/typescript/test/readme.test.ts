// The README's TypeScript example must compile, strictly, against the package as published.

import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { it } from "node:test";

import ts from "typescript";

import { PACKAGE_ROOT } from "./support.js";

it("README.md's TypeScript example compiles against the package's own types", async () => {
  const readme = await readFile(join(PACKAGE_ROOT, "README.md"), "utf8");
  const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] ?? "");
  assert.ok(examples.length > 0, "the README shows no TypeScript example");

  // Inside the package, so that "@killb-broker/client" resolves to it by its own name (dist/).
  const file = join(PACKAGE_ROOT, "build", "readme-example.ts");
  await writeFile(file, examples.join("\n") + "\nexport {};\n");
  const config = ts.getParsedCommandLineOfConfigFile(join(PACKAGE_ROOT, "tsconfig.json"), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: () => undefined,
  });
  assert.ok(config);
  const program = ts.createProgram([file], { ...config.options, noEmit: true, rootDir: PACKAGE_ROOT });
  const problems = ts
    .getPreEmitDiagnostics(program)
    .map((diagnostic) => ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"));

  assert.deepEqual(problems, []);
});
