// `prepare`: build dist/ wherever npm installs this package from its source: `npm ci` here,
// `npm pack`, and `npm install <path to clients/typescript>` in another project. For a path, npm
// installs none of the package's devDependencies, so the compiler and the types it checks
// against are first installed here, from the lockfile.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";

if (!existsSync(tsc)) {
  console.error("@killb-broker/client: installing its build tools (npm ci) to build dist/");
  execFileSync(npm, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], {
    cwd: root,
    stdio: "inherit",
  });
}
execFileSync(process.execPath, [tsc, "-p", "tsconfig.json"], { cwd: root, stdio: "inherit" });
