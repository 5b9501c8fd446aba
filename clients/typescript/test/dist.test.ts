// `make dist` at the repository root: the npm tarball of this package and the Python client's
// wheel, side by side, ready to install elsewhere. Here because it needs Node and the venv both.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";

import { REPO_ROOT } from "./support.js";

// The set-up stamps count as done: this suite already runs inside the installed tree.
const INSTALLED = ["-o", ".venv/bin/.installed", "-o", "clients/typescript/node_modules/.installed"];

it("`make dist` writes the npm tarball and the Python wheel, nothing else", async () => {
  const dist = await mkdtemp(join(tmpdir(), "killb-dist-"));
  try {
    // When make dist runs, into a folder of this test's
    execFileSync("make", ["--no-print-directory", "-s", ...INSTALLED, "dist", `DIST=${dist}`], {
      cwd: REPO_ROOT,
      stdio: "pipe",
    });

    // Then it holds the two installables
    const files = (await readdir(dist)).sort();
    assert.deepEqual(files, ["killb-broker-client-0.1.0.tgz", "killb_broker_client-0.1.0-py3-none-any.whl"]);
    const packed = execFileSync("tar", ["-tzf", join(dist, "killb-broker-client-0.1.0.tgz")], { encoding: "utf8" });
    assert.ok(packed.split("\n").includes("package/dist/index.js"), packed);
  } finally {
    await rm(dist, { recursive: true, force: true });
  }
});
