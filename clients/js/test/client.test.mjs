// GatewayClient against a real `messenger-gw dev` (the gateway and its embedded OpenIM sandbox).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { GatewayClient, GatewayError, LoggedOut, base64urlEncode, nobleCrypto, webCrypto } from "../dist/index.js";
import { DEV_ADMIN_KEY, DEV_OTP_CODE, startDevGateway } from "./helpers.mjs";

let gateway;
before(async () => {
  // The shortest session the gateway allows, for the clock-skew test; the others finish well within it.
  gateway = await startDevGateway({ HANDSHAKE_RATE_LIMIT: "0", SESSION_TTL: "60" });
});
after(async () => {
  await gateway?.stop();
});

/** A fetch that records the path and status of every request the client makes. */
function recordingFetch() {
  const seen = [];
  const fetchImpl = async (input, init) => {
    const response = await fetch(input, init);
    seen.push({ path: new URL(String(input)).pathname, status: response.status });
    return response;
  };
  return { seen, fetch: fetchImpl };
}

function client(options = {}) {
  return new GatewayClient({ baseURL: gateway.url, platformID: 5, ...options });
}

let users = 0;
const newUser = () => `js_${process.pid}_${++users}`;

async function ban(userID) {
  const response = await fetch(`${gateway.url}/admin/users/${userID}/ban`, {
    method: "POST",
    headers: { Authorization: `Bearer ${DEV_ADMIN_KEY}`, "Content-Type": "application/json" },
    body: JSON.stringify({ reason: "test" }),
  });
  assert.equal(response.status, 200, await response.text());
}

for (const [name, crypto] of [
  ["webcrypto", async () => webCrypto()],
  ["noble", nobleCrypto],
]) {
  test(`handshake, login, signed calls and logout with ${name}`, async () => {
    const userID = newUser();
    const gw = client({ crypto: await crypto() });
    const login = await gw.login({ userID, code: DEV_OTP_CODE });
    assert.equal(login.userID, userID);
    assert.match(login.imToken, /^eyJ/);
    assert.match(login.wsURL, /^wss?:\/\//);
    assert.deepEqual(gw.openIM, {
      userID,
      token: login.imToken,
      wsAddr: login.wsURL,
      apiAddr: `${gateway.url}/im`,
      platformID: 5,
    });
    const info = await gw.sessionInfo();
    assert.equal(info.userID, userID);
    assert.equal(info.sessionId, gw.state.sessionId);
    const self = await gw.call("/im/user/get_self_user_info", {});
    assert.equal(self.userID, userID);
    const { usersInfo } = await gw.call("/im/user/get_users_info", { userIDs: [userID] });
    assert.equal(usersInfo[0].userID, userID);

    const saved = gw.state;
    await gw.logout();
    assert.equal(gw.state, undefined);
    // The saved session is dead at the gateway: a client restored from it, with no hook, is logged out.
    const recorded = recordingFetch();
    const restored = client({ crypto: await crypto(), state: saved, fetch: recorded.fetch });
    await assert.rejects(restored.request("GET", "/auth/session"), { name: "LoggedOut", reason: "no_credentials" });
    assert.deepEqual(recorded.seen, [{ path: "/auth/session", status: 401 }]);
  });
}

test("a runtime with getRandomValues but no crypto.subtle (React Native's Hermes) logs in with noble", async () => {
  // A process of its own: the backend is probed once per process.
  const script = `
    const { getRandomValues } = globalThis.crypto;
    Object.defineProperty(globalThis, "crypto", { value: { getRandomValues: getRandomValues.bind(globalThis.crypto) } });
    const { GatewayClient, webCryptoHasX25519 } = await import(${JSON.stringify(new URL("../dist/index.js", import.meta.url).href)});
    const gw = new GatewayClient({ baseURL: process.argv[1], platformID: 2 });
    const login = await gw.login({ userID: "hermes_user", code: "${DEV_OTP_CODE}" });
    const self = await gw.call("/im/user/get_self_user_info", {});
    console.log(JSON.stringify({ probe: await webCryptoHasX25519(), backend: (await gw.crypto()).name, user: self.userID, login: login.userID }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script, gateway.url], {
    timeout: 20_000,
  });
  assert.deepEqual(JSON.parse(stdout), { probe: false, backend: "noble", user: "hermes_user", login: "hermes_user" });
});

test("a body and a query are signed as sent", async () => {
  const gw = client();
  await gw.login({ userID: newUser(), code: DEV_OTP_CODE });
  const answer = await gw.request("GET", "/auth/session?x=1&y=%C3%A9");
  assert.equal(answer.status, 200, await answer.clone().text());
  const bytes = new TextEncoder().encode(JSON.stringify({ userIDs: ["z"], text: "h\u00e9llo \u2603" }));
  assert.equal((await gw.request("POST", "/im/user/get_users_info", bytes)).status, 200);
});

test("errors come back as GatewayError with the gateway's errCode", async () => {
  const gw = client();
  await gw.login({ userID: newUser(), code: DEV_OTP_CODE });
  await assert.rejects(gw.call("/im/no/such_route", {}), (error) => {
    assert.ok(error instanceof GatewayError);
    assert.equal(error.status, 404);
    assert.equal(error.errCode, 40400);
    return true;
  });
  await assert.rejects(client().login({ userID: newUser(), code: "999999" }), { errCode: 40101, status: 401 });
});

describe("session renewal", () => {
  test("a session the gateway no longer knows is renewed, the request sent again, once", async () => {
    const userID = newUser();
    const first = await client().login({ userID, code: DEV_OTP_CODE });
    const recorded = recordingFetch();
    const logins = [];
    let hookCalls = 0;
    // A logged-in session as an expiry leaves it: still in the client's hands, gone from the
    // gateway's store (a key and ID the gateway never issued stand for it).
    const forgotten = { sessionId: "expired-session-0123456789", key: base64urlEncode(new Uint8Array(32).fill(7)) };
    const gw = client({
      fetch: recorded.fetch,
      state: { sessionId: forgotten.sessionId, key: forgotten.key, platformID: 5, expiresAt: 4102444800, login: first },
      relogin: () => {
        hookCalls += 1;
        return { userID, code: DEV_OTP_CODE };
      },
      onLogin: (login, renewed) => logins.push({ login, renewed }),
    });

    // Several at once: one renewal serves them all.
    const results = await Promise.all([1, 2, 3].map(() => gw.call("/im/user/get_self_user_info", {})));
    assert.ok(results.every((r) => r.userID === userID));
    assert.equal(hookCalls, 1);
    assert.deepEqual(
      recorded.seen.map((r) => `${r.path} ${r.status}`).sort(),
      [
        ...Array(3).fill("/im/user/get_self_user_info 401"),
        "/auth/handshake 200",
        "/auth/login 200",
        ...Array(3).fill("/im/user/get_self_user_info 200"),
      ].sort(),
    );
    assert.notEqual(gw.state.sessionId, forgotten.sessionId);
    assert.deepEqual(logins.map((l) => l.renewed), [true]);
    // The stored imToken is reused, so an OpenIM SDK holding it carries on undisturbed.
    assert.equal(gw.openIM.token, first.imToken);
    assert.equal((await gw.sessionInfo()).sessionId, gw.state.sessionId);
  });

  test("a session revoked by a logout elsewhere is renewed, and onLogin hands over a live imToken", async () => {
    const userID = newUser();
    const renewed = [];
    const gw = client({
      relogin: () => ({ userID, code: DEV_OTP_CODE }),
      onLogin: (login, isRenewal) => isRenewal && renewed.push(login),
    });
    await gw.login({ userID, code: DEV_OTP_CODE });
    const before = gw.state.sessionId;
    await client({ state: gw.state }).logout(); // the logout also ends the imToken it handed out
    assert.equal((await gw.call("/im/user/get_self_user_info", {})).userID, userID);
    assert.notEqual(gw.state.sessionId, before);
    assert.equal(renewed.length, 1);
    // The logout ended the imToken it handed out; the one the renewal handed the app is the live one.
    const asSDK = await fetch(`${gateway.url}/im/user/get_self_user_info`, {
      method: "POST",
      headers: { token: renewed[0].imToken, operationID: "js-client-test", "Content-Type": "application/json" },
      body: "{}",
    });
    assert.equal((await asSDK.json()).errCode, 0);
    assert.equal(gw.openIM.token, renewed[0].imToken);
  });

  test("a session past its expiry is renewed before the request, not after a 401", async () => {
    const userID = newUser();
    const gw = client();
    await gw.login({ userID, code: DEV_OTP_CODE });
    // The gateway would take this session for a day still; the state the client holds says it is over.
    const expired = { ...gw.state, expiresAt: Math.floor(Date.now() / 1000) };
    const recorded = recordingFetch();
    const stale = client({ fetch: recorded.fetch, state: expired, relogin: () => ({ userID, code: DEV_OTP_CODE }) });
    await stale.sessionInfo();
    assert.deepEqual(
      recorded.seen.map((r) => `${r.path} ${r.status}`),
      ["/auth/handshake 200", "/auth/login 200", "/auth/session 200"],
    );
    assert.notEqual(stale.state.sessionId, gw.state.sessionId);
  });

  test("a clock ahead of the gateway's by more than a session's life renews once per request, not forever", async () => {
    const userID = newUser();
    const recorded = recordingFetch();
    // 120 s ahead: within the signatures' ±300 s, past the 60 s sessions' expiry as soon as they start.
    const gw = client({ fetch: recorded.fetch, now: () => Date.now() + 120_000, relogin: () => ({ userID, code: DEV_OTP_CODE }) });
    await gw.login({ userID, code: DEV_OTP_CODE });
    recorded.seen.length = 0;
    assert.equal((await gw.sessionInfo()).userID, userID);
    assert.deepEqual(
      recorded.seen.map((r) => r.path),
      ["/auth/handshake", "/auth/login", "/auth/session"],
    );
  });

  test("a banned user's renewal ends the session and says why", async () => {
    const userID = newUser();
    const ended = [];
    const gw = client({
      relogin: () => ({ userID, code: DEV_OTP_CODE }),
      onLoggedOut: (reason, error) => ended.push({ reason, errCode: error?.errCode }),
    });
    await gw.login({ userID, code: DEV_OTP_CODE });
    await ban(userID); // revokes the user's sessions; the login that follows is refused
    await assert.rejects(gw.call("/im/user/get_self_user_info", {}), (error) => {
      assert.ok(error instanceof LoggedOut);
      assert.equal(error.reason, "banned");
      return true;
    });
    assert.deepEqual(ended, [{ reason: "banned", errCode: 40301 }]);
    assert.equal(gw.state, undefined);
    // Until the app logs in again, nothing is sent.
    await assert.rejects(gw.sessionInfo(), { name: "LoggedOut", reason: "banned" });
    assert.equal(ended.length, 1);
  });

  test("without a login hook a logged-in session that ends is not renewed", async () => {
    const ended = [];
    const gw = client({ onLoggedOut: (reason) => ended.push(reason) });
    await gw.login({ userID: newUser(), code: DEV_OTP_CODE });
    await client({ state: gw.state }).logout();
    await assert.rejects(gw.sessionInfo(), { name: "LoggedOut", reason: "no_credentials" });
    assert.deepEqual(ended, ["no_credentials"]);
  });

  test("credentials the verifier now refuses end the session", async () => {
    const userID = newUser();
    const ended = [];
    const gw = client({ relogin: () => ({ userID, code: "999999" }), onLoggedOut: (reason) => ended.push(reason) });
    await gw.login({ userID, code: DEV_OTP_CODE });
    await client({ state: gw.state }).logout();
    await assert.rejects(gw.call("/im/user/get_self_user_info", {}), { reason: "credentials_refused" });
    assert.deepEqual(ended, ["credentials_refused"]);
  });

  test("an anonymous session that ends is replaced by a new one", async () => {
    const gw = client();
    await gw.handshake();
    const before = gw.state.sessionId;
    await client({ state: gw.state }).logout();
    const info = await gw.sessionInfo();
    assert.equal(info.userID, null);
    assert.notEqual(info.sessionId, before);
  });
});
