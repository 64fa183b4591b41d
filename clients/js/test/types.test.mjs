// The shipped declarations, as an app's TypeScript reads them: test/types/usage.ts must compile,
// its typed routes' bodies checked and each @ts-expect-error an error.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

test("an app's use of the package type-checks against dist/*.d.ts", async () => {
  const tsc = fileURLToPath(new URL("../node_modules/typescript/bin/tsc", import.meta.url));
  const project = fileURLToPath(new URL("types/tsconfig.json", import.meta.url));
  const run = await promisify(execFile)(process.execPath, [tsc, "-p", project], { timeout: 60_000 }).catch((e) => e);
  assert.equal(run.code ?? 0, 0, `${run.stdout}${run.stderr}`);
});
