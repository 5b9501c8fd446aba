// Without the repository's venv the tests cannot start the real broker: the launcher's failure
// must say what is missing and the command that fixes it, not just "exited".

import assert from "node:assert/strict";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { it } from "node:test";

import { REPO_ROOT, startLocalStack } from "./support.js";

async function launchFailure(python: string): Promise<string> {
  return startLocalStack([], python).then(
    async (stack) => {
      await stack.stop();
      return assert.fail("the local stack started");
    },
    (error: unknown) => String(error),
  );
}

it("says there is no Python, and the make command that sets up the venv, when PYTHON names none", async () => {
  // Given a clone whose venv was never made
  const python = join(REPO_ROOT, "no-such-venv", "bin", "python");

  // When a test starts the local stack
  const message = await launchFailure(python);

  // Then the error says what is missing and how to get it
  assert.match(message, /the local stack exited: there is no Python at .*no-such-venv\/bin\/python/);
  assert.match(message, /make \.venv\/bin\/\.installed/);
  assert.match(message, /make ts/);
});

it("names the missing module when the Python lacks the repository's packages", async () => {
  // Given a Python that has none of requirements/dev.txt (the venv's own, without site-packages)
  const dir = await mkdtemp(join(tmpdir(), "killb-launcher-"));
  const python = join(dir, "python");
  const venvPython = process.env["PYTHON"] ?? join(REPO_ROOT, ".venv", "bin", "python");
  await writeFile(python, `#!/bin/sh\nexec "${venvPython}" -S "$@"\n`);
  await chmod(python, 0o755);

  // When a test starts the local stack with it
  const message = await launchFailure(python);
  await rm(dir, { recursive: true });

  // Then the error names the module and the command
  assert.match(message, /the local stack exited: the Python at .* has no \S+ module/);
  assert.match(message, /make \.venv\/bin\/\.installed/);
});
