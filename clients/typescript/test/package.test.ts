// What `npm pack` would publish (the compiled module, its types, the README and the LICENSE),
// and the build an install from the source runs.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

  const modules = ["auth", "broker-api", "brokers", "errors", "fetch", "index", "signing"];
  const expected = [
    "LICENSE",
    "README.md",
    ...modules.flatMap((name) => [`dist/${name}.d.ts`, `dist/${name}.js`]),
    "package.json",
  ].sort();
  assert.deepEqual(files, expected);
});

it("builds dist/ from a source copy that has none: what `npm install <path>` runs (prepare)", async () => {
  // Given the package's sources alone, as in a fresh clone (its build tools linked in, so no
  // registry is needed here)
  const copy = await mkdtemp(join(tmpdir(), "killb-client-source-"));
  try {
    for (const entry of ["package.json", "tsconfig.json", "scripts", "src"]) {
      await cp(join(PACKAGE_ROOT, entry), join(copy, entry), { recursive: true });
    }
    await symlink(join(PACKAGE_ROOT, "node_modules"), join(copy, "node_modules"));

    // When npm runs the lifecycle script it runs for an install from a path
    execFileSync("npm", ["run", "--silent", "prepare"], { cwd: copy, stdio: "pipe" });

    // Then the entry point and its types are there
    const built = await readdir(join(copy, "dist"));
    assert.ok(built.includes("index.js") && built.includes("index.d.ts"), built.join(", "));
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
});
