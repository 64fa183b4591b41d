// Bundles the page's script (src/app.js) with the gateway's JavaScript client and the OpenIM SDK
// into public/build/, which `messenger-gw dev` serves at /demo/. The SDK (GPL-3.0) comes from
// npm at dev time and only ever lands in that git-ignored folder.
//
//   npm ci && node build.mjs        (`make run` and `make test` do both)
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";

const client = fileURLToPath(new URL("../../clients/js/dist/index.js", import.meta.url));
if (!existsSync(client)) {
  console.error("build the JavaScript client first: make js-client (or npm ci && npm run build in clients/js)");
  process.exit(1);
}

await build({
  entryPoints: [fileURLToPath(new URL("src/app.js", import.meta.url))],
  outdir: fileURLToPath(new URL("public/build/", import.meta.url)),
  bundle: true,
  splitting: true, // the client's @noble fallback stays a chunk of its own, fetched only if needed
  format: "esm",
  platform: "browser",
  target: "es2022",
  sourcemap: true,
  // The client as this checkout builds it, as an app would import its package.
  alias: { "@messenger-gw/client": client },
  logLevel: "warning",
});
