// What `npm pack` would publish: the compiled module, its types, the README and the LICENSE.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { it } from "node:test";

import { PACKAGE_ROOT } from "./support.js";

interface PackReport {
  files: { path: string }[];
}

it("packs dist/ (JavaScript and .d.ts), README.md, LICENSE and package.json, nothing else", () => {
  const output = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: PACKAGE_ROOT,
    encoding: "utf8",
  });
  const [report] = JSON.parse(output) as PackReport[];
  const files = (report?.files ?? []).map((file) => file.path).sort();

  const modules = ["auth", "broker-api", "errors", "fetch", "index", "signing"];
  const expected = [
    "LICENSE",
    "README.md",
    ...modules.flatMap((name) => [`dist/${name}.d.ts`, `dist/${name}.js`]),
    "package.json",
  ].sort();
  assert.deepEqual(files, expected);
});
