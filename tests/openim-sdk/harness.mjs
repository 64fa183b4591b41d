// What every scenario script shares: the WebSocket polyfill the SDK needs in Node, a bound on
// time, the SDK's events recorded per client, and one JSON result line for pytest.
//
// A script is `node <script>.mjs '<JSON arguments>'`. It prints `RESULT {...}` once and exits:
// the SDK never exits by itself (its typing caches keep timers alive) and rejects promises that
// nobody awaits, so the harness records those rejections instead of dying on them and ends the
// process itself (tests/sdk.py kills the process group as well).
import WS from 'ws';

const sockets = [];
const unhandled = [];

// The SDK reads binary frames as ArrayBuffer; ws hands over Buffers unless told otherwise.
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) {
    super(url, protocols);
    this.binaryType = 'arraybuffer';
    sockets.push(this);
  }
};

process.on('unhandledRejection', (reason) => {
  unhandled.push(reason instanceof Error ? `${reason.name}: ${reason.message}` : JSON.stringify(reason));
});

/** Every WebSocket the SDK opened in this process, oldest first. */
export function openedSockets() {
  return sockets;
}

/** The SDK module: the CommonJS build by default, the ES2017 build with 'modern'
 *  (only that one catches up after a reconnect: its CJS build has a transpilation bug). */
export async function loadSDK(build = 'cjs') {
  const mod = build === 'modern'
    ? await import('@openim/client-sdk/lib/index.modern.mjs')
    : await import('@openim/client-sdk');
  return mod.getSDK ? mod : mod.default;
}

/** One SDK instance with every event it emits recorded in order. */
export class Client {
  constructor(mod, name) {
    this.name = name;
    this.sdk = mod.getSDK();
    this.events = [];
    this.waiters = [];
    for (const event of Object.values(mod.CbEvents)) {
      this.sdk.on(event, (payload) => this.record(event, payload));
    }
  }

  record(event, payload) {
    const entry = { event, errCode: payload?.errCode ?? 0, errMsg: payload?.errMsg ?? '', data: payload?.data };
    this.events.push(entry);
    this.waiters = this.waiters.filter((waiter) => !waiter(entry));
  }

  /** Resolves with the first event (past or future) named `event` that `match` accepts. */
  waitFor(event, match = () => true, timeoutMs = 8000) {
    const seen = this.events.find((e) => e.event === event && match(e));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${event} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push((entry) => {
        if (entry.event !== event || !match(entry)) return false;
        clearTimeout(timer);
        resolve(entry);
        return true;
      });
    });
  }

  /** The names of the events recorded so far, in order. */
  names() {
    return this.events.map((e) => e.event);
  }

  async login({ userID, token, wsAddr, apiAddr, platformID = 5 }) {
    // login() resolves when the socket opens; the account is usable after the sync.
    const reply = await this.sdk.login({ userID, token, wsAddr, apiAddr, platformID, logLevel: 5 });
    return reply;
  }

  async loginAndSync(params) {
    await this.login(params);
    await this.waitFor('OnSyncServerFinish');
  }
}

/** An SDK call's outcome without throwing: the SDK rejects with the same {errCode, errMsg} shape. */
export async function settle(promise) {
  try {
    const reply = await promise;
    return { ok: true, errCode: reply.errCode, errMsg: reply.errMsg, data: reply.data };
  } catch (error) {
    return { ok: false, errCode: error?.errCode ?? -1, errMsg: error?.errMsg ?? String(error) };
  }
}

/** A POST to OpenIM's REST API, as the app's server would make it. */
export async function rest(apiAddr, path, body, token, operationID = `rest-${Date.now()}`) {
  const headers = { 'Content-Type': 'application/json', operationID };
  if (token) headers.token = token;
  const response = await fetch(apiAddr + path, { method: 'POST', headers, body: JSON.stringify(body) });
  return response.json();
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Run `main(args)`, print its result (or its error) as one `RESULT` line, and exit. */
export function run(main) {
  const args = JSON.parse(process.argv[2] ?? '{}');
  const finish = (result) => {
    process.stdout.write(`\nRESULT ${JSON.stringify({ ...result, unhandled })}\n`, () => process.exit(0));
  };
  const timer = setTimeout(() => finish({ ok: false, error: 'scenario timed out' }), args.timeoutMs ?? 20000);
  main(args).then(
    (result) => { clearTimeout(timer); finish({ ok: true, ...result }); },
    (error) => { clearTimeout(timer); finish({ ok: false, error: error?.stack ?? JSON.stringify(error) }); },
  );
}
