// Shared by the tests: `messenger-gw dev` on free loopback ports, and the Python client beside it.
import { spawn, execFile } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

// The gateway's source: the checkout holding this package, unless MESSENGER_GW_CHECKOUT names another.
const checkout = process.env.MESSENGER_GW_CHECKOUT ?? fileURLToPath(new URL("../../../", import.meta.url));
// pytest passes the interpreter it runs under; by hand, the checkout's venv (`make test` makes it).
export const python =
  process.env.MESSENGER_GW_PYTHON ?? fileURLToPath(new URL("../../../.venv/bin/python", import.meta.url));

/** A loopback port free a moment ago (the gateway's own addresses, such as apiAddr, name its port). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * A dev-mode gateway with its embedded sandbox on free loopback ports; `stop()` ends it. `env`
 * holds more MESSENGER_GW_* settings, or is a function of the ports (`{port, sandboxPort, wsPort}`).
 */
export async function startDevGateway(env = {}) {
  const [port, sandboxPort, wsPort] = [await freePort(), await freePort(), await freePort()];
  const extra = typeof env === "function" ? env({ port, sandboxPort, wsPort }) : env;
  const child = spawn(python, ["-m", "messenger_gw", "dev"], {
    cwd: checkout,
    env: {
      // Only this test's settings: none inherited from whoever runs it.
      ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("MESSENGER_GW_"))),
      MESSENGER_GW_LISTEN: `127.0.0.1:${port}`,
      MESSENGER_GW_DEV_SANDBOX_LISTEN: `127.0.0.1:${sandboxPort}`,
      MESSENGER_GW_DEV_SANDBOX_WS_LISTEN: `127.0.0.1:${wsPort}`,
      MESSENGER_GW_LOG_LEVEL: "warning",
      ...Object.fromEntries(Object.entries(extra).map(([name, value]) => [`MESSENGER_GW_${name}`, value])),
    },
    stdio: ["ignore", "pipe", "pipe"],
    // In this process's group, so that whoever ends the group (pytest, on a timeout) ends it too.
  });
  // And ended with this process, however its tests end (a SIGKILL aside, which the group covers).
  const orphaned = () => child.kill("SIGKILL");
  process.on("exit", orphaned);
  let output = "";
  const banner = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`messenger-gw dev did not start in 20 s:\n${output}`)), 20_000);
    const read = (chunk) => {
      output += chunk;
      // The banner's first line that names the gateway's address: it is listening then.
      const gateway = /^\s+gateway\s+(\S+)\n/m.exec(output); // a whole line, not a chunk cut short
      if (gateway) {
        clearTimeout(timer);
        resolve({ url: gateway[1], port });
      }
    };
    child.stdout.setEncoding("utf8").on("data", read);
    child.stderr.setEncoding("utf8").on("data", read);
    child.on("exit", (code) => reject(new Error(`messenger-gw dev exited with ${code}:\n${output}`)));
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    ...banner,
    async stop() {
      process.off("exit", orphaned);
      if (child.exitCode !== null || child.signalCode !== null) return; // gone already
      child.kill("SIGTERM"); // drains, as in production
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

const run = promisify(execFile);

/** Runs Python code in the checkout's environment with `input` as JSON on argv; answers its JSON output. */
export async function pythonJSON(code, input) {
  const { stdout } = await run(python, ["-c", code, JSON.stringify(input)], { cwd: checkout, timeout: 20_000 });
  return JSON.parse(stdout);
}

/** The dev admin API key (settings.DEV_ADMIN_KEY), for the ban tests. */
export const DEV_ADMIN_KEY = "dev-admin-key";
export const DEV_OTP_CODE = "000000";
