// The demo web chat in a real headless Chromium (Debian's, driven by playwright-core; nothing
// downloads a browser), against a `messenger-gw dev` started on free loopback ports.
//
// The pages are served by the gateway's /demo/ under other host names than the gateway's API
// (`app.localhost`, `evil.localhost`: Chromium resolves *.localhost to loopback, and treats it as
// a secure context, so WebCrypto is there), so every call to the gateway is cross-origin: the
// preflights and the origin allowlist are the browser's, not a test's imitation of them.
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { GatewayClient } from "../../../clients/js/dist/index.js";
import { DEV_ADMIN_KEY, startDevGateway } from "../../../clients/js/test/helpers.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// As root, without a user namespace for its sandbox; and no traffic of its own to Google's hosts.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // A host that is no secure context (plain HTTP, not localhost): a page without crypto.subtle.
  "--host-resolver-rules=MAP plain.test 127.0.0.1",
];
const ARTIFACTS = fileURLToPath(new URL("../test-artifacts/", import.meta.url));
const REAL_TIME_MS = 1000;

let gateway;
let browser;
const pages = [];

before(async () => {
  gateway = await startDevGateway(({ port }) => ({
    CORS_ALLOWED_ORIGINS: `http://app.localhost:${port},http://plain.test:${port}`,
    HANDSHAKE_RATE_LIMIT: "0",
    SESSION_TTL: "60", // the shortest the gateway allows: the expiry test waits it out
  }));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

function demoURL(host) {
  // The SDK takes the login's wsURL and apiAddr, as dev mode hands them out.
  return `http://${host}:${gateway.port}/demo/?${new URLSearchParams({ gateway: gateway.url })}`;
}

/** A fresh browser context (no shared storage) on the demo page, from `host`. */
async function openPage(host = "app.localhost") {
  const context = await browser.newContext({ viewport: { width: 1000, height: 620 } });
  const page = await context.newPage();
  const record = { page, errors: [], console: [], requests: [], sockets: [] };
  page.on("websocket", (socket) => record.sockets.push(new URL(socket.url())));
  page.on("pageerror", (error) => record.errors.push(error.message));
  page.on("console", (message) => record.console.push(`${message.type()}: ${message.text()}`));
  page.on("request", (request) => record.requests.push(`${request.method()} ${new URL(request.url()).pathname}`));
  await page.goto(demoURL(host));
  pages.push(record);
  return record;
}

async function logIn(userID, host) {
  const record = await openPage(host);
  await record.page.fill("#user-id", userID);
  await record.page.click("#login-form button");
  await record.page.locator("#chat").waitFor({ state: "visible", timeout: 15_000 });
  return record;
}

async function openChatWith(page, peer) {
  await page.fill("#peer-id", peer);
  await page.click("#new-chat button");
  // The page empties the field once the gateway has answered and the conversation is open, or
  // says why not: the composer alone may be showing an earlier conversation still.
  await page.waitForFunction(
    () => document.querySelector("#peer-id").value === "" || !document.querySelector("#new-chat-error").hidden,
    null,
    { timeout: 5_000 },
  );
  assert.equal(await page.locator("#new-chat-error").isHidden(), true, await page.locator("#new-chat-error").textContent());
  await page.locator("#composer").waitFor({ state: "visible", timeout: 5_000 });
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#composer button");
}

const listEntry = (page, conversationID) => page.locator(`#conversations li[data-conversation-id="${conversationID}"]`);
const message = (page, text) => page.locator("#messages li", { hasText: text });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** A fetch that records the path and status of every request made with it. */
function recordingFetch() {
  const seen = [];
  const recording = async (input, init) => {
    const response = await fetch(input, init);
    seen.push({ path: new URL(String(input)).pathname, status: response.status });
    return response;
  };
  return { seen, fetch: recording };
}

/** How long until `locator` shows, failing past `limit` ms. */
async function shownWithin(locator, limit) {
  const started = performance.now();
  await locator.waitFor({ state: "visible", timeout: limit });
  return performance.now() - started;
}

describe("the demo web chat in Chromium", () => {
  let alice;
  let bob;

  test("alice and bob chat in real time and both conversation lists follow", async () => {
    alice = await logIn("alice");
    bob = await logIn("bob");
    await openChatWith(alice.page, "bob");

    await send(alice.page, "hello bob");
    const toBob = await shownWithin(listEntry(bob.page, "si_alice_bob").locator(".latest", { hasText: "hello bob" }), REAL_TIME_MS);
    assert.equal(await listEntry(bob.page, "si_alice_bob").locator(".unread").textContent(), "1");
    await message(alice.page, "hello bob").waitFor();
    assert.match(await message(alice.page, "hello bob").getAttribute("class"), /mine/);

    await listEntry(bob.page, "si_alice_bob").click();
    await message(bob.page, "hello bob").waitFor();
    await send(bob.page, "hi alice");
    const toAlice = await shownWithin(message(alice.page, "hi alice"), REAL_TIME_MS);

    for (const { page } of [alice, bob]) {
      await listEntry(page, "si_alice_bob").locator(".latest", { hasText: "hi alice" }).waitFor({ timeout: 2_000 });
      assert.equal(await page.locator("#conversations li").count(), 1);
    }
    await listEntry(bob.page, "si_alice_bob").locator(".unread").waitFor({ state: "detached", timeout: 2_000 });
    console.log(`alice -> bob shown in ${toBob.toFixed(0)} ms, bob -> alice in ${toAlice.toFixed(0)} ms`);

    // The SDK went through the gateway: its REST calls to /im, its socket to the /ws guard.
    for (const { requests, sockets } of [alice, bob]) {
      assert.ok(requests.includes("POST /im/jssdk/get_active_conversations"), requests.join("\n"));
      assert.deepEqual(
        sockets.map((url) => `${url.origin}${url.pathname}`),
        [`${gateway.url.replace(/^http/, "ws")}/ws`],
      );
    }

    await alice.page.screenshot({ path: `${ARTIFACTS}alice.png` });
    await bob.page.screenshot({ path: `${ARTIFACTS}bob.png` });
    assert.deepEqual([...alice.errors, ...bob.errors], []);
  });

  test("every call to the gateway was cross-origin: the browser sent preflights", async () => {
    const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
    const preflights = metrics
      .split("\n")
      .filter((line) => line.startsWith("messenger_gw_http_requests_total{") && line.includes('method="OPTIONS"'))
      .reduce((sum, line) => sum + Number(line.split(" ").pop()), 0);
    assert.ok(preflights > 0, "no OPTIONS request reached the gateway");
  });

  test("a banned user's page shows that it was logged out", async () => {
    const carol = await logIn("carol");
    const response = await fetch(`${gateway.url}/admin/users/carol/ban`, {
      method: "POST",
      headers: { Authorization: `Bearer ${DEV_ADMIN_KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ reason: "spam" }),
    });
    assert.equal(response.status, 200, await response.text());
    const notice = carol.page.locator('#notice[data-reason="banned"]');
    await notice.waitFor({ state: "visible", timeout: 10_000 });
    assert.match(await notice.textContent(), /banned/);
    assert.equal(await carol.page.locator("#chat").isHidden(), true);
    await carol.page.screenshot({ path: `${ARTIFACTS}carol-banned.png` });
  });

  test("a second page of the same user on the same platform logs the first one out", async () => {
    const first = await logIn("erin");
    const second = await logIn("erin");
    const notice = first.page.locator('#notice[data-reason="elsewhere"]');
    await notice.waitFor({ state: "visible", timeout: 10_000 });
    assert.equal(await second.page.locator("#chat").isVisible(), true);
    await openChatWith(second.page, "alice");
    await send(second.page, "only here");
    await shownWithin(listEntry(alice.page, "si_alice_erin").locator(".latest", { hasText: "only here" }), REAL_TIME_MS);
  });

  test("a page without WebCrypto (plain HTTP off localhost) logs in with the noble fallback", async () => {
    const dave = await logIn("dave", "plain.test");
    assert.equal(await dave.page.evaluate(() => isSecureContext), false);
    assert.equal(await dave.page.evaluate(async () => (await window.webChat.gw.crypto()).name), "noble");
    assert.ok(dave.requests.some((r) => /^GET \/demo\/build\/noble-.*\.js$/.test(r)), dave.requests.join("\n"));
    // The pages that have WebCrypto never fetched it.
    assert.ok(!alice.requests.concat(bob.requests).some((r) => r.includes("noble")));
    await openChatWith(dave.page, "alice");
    await send(dave.page, "from a plain page");
    await shownWithin(listEntry(alice.page, "si_alice_dave").locator(".latest", { hasText: "from a plain page" }), REAL_TIME_MS);
    assert.deepEqual(dave.errors, []);
  });

  test("a page from an origin not in the allowlist cannot call the gateway", async () => {
    const mallory = await openPage("evil.localhost");
    await mallory.page.fill("#user-id", "mallory");
    await mallory.page.click("#login-form button");
    const error = mallory.page.locator("#login-error");
    await error.waitFor({ state: "visible", timeout: 5_000 });
    assert.match(await error.textContent(), /Cannot reach the gateway/);
    assert.ok(
      mallory.console.some((line) => line.includes("blocked by CORS policy")),
      mallory.console.join("\n"),
    );
    assert.equal(await mallory.page.evaluate(() => window.webChat ?? null), null);
    assert.equal(await mallory.page.locator("#chat").isHidden(), true);
  });
  test("a session that expires is renewed by the client without the page noticing", { timeout: 120_000 }, async () => {
    const before = await alice.page.evaluate(() => window.webChat.gw.state);
    // Sessions live 60 s here (SESSION_TTL): wait out alice's, in which her page asks the gateway nothing.
    await sleep(before.expiresAt * 1000 + 1500 - Date.now());
    const probe = recordingFetch();
    const stale = { ...before, login: undefined, expiresAt: before.expiresAt + 3600 };
    await new GatewayClient({ baseURL: gateway.url, platformID: 5, state: stale, fetch: probe.fetch }).sessionInfo();
    assert.deepEqual(probe.seen[0], { path: "/auth/session", status: 401 }, "the gateway has let the session go");

    const mark = alice.requests.length;
    await openChatWith(alice.page, "bob"); // a signed /im call through the client
    assert.deepEqual(
      alice.requests.slice(mark).filter((r) => r.includes("/auth/") || r.includes("get_users_info")),
      ["POST /auth/handshake", "POST /auth/login", "POST /im/user/get_users_info"],
    );
    const after = await alice.page.evaluate(() => window.webChat.gw.state);
    assert.notEqual(after.sessionId, before.sessionId);
    assert.equal(after.login.imToken, before.login.imToken, "the SDK keeps its imToken");
    assert.equal(await alice.page.locator("#new-chat-error").isHidden(), true);
    assert.equal(await alice.page.locator("#notice").isHidden(), true);

    await send(alice.page, "still here");
    await shownWithin(listEntry(bob.page, "si_alice_bob").locator(".latest", { hasText: "still here" }), REAL_TIME_MS);
    assert.deepEqual(alice.errors, []);
  });
});
