// Two users of the official OpenIM JavaScript SDK exchange a message, against `make run`'s
// embedded OpenIM sandbox (REST on 10002, msg-gateway WebSocket on 10001).
//
//   cd examples/two-users && npm install && npm start
//
// OPENIM_API_URL, OPENIM_WS_URL and OPENIM_SECRET override the dev defaults.
import WS from 'ws';

// The SDK needs a browser-like WebSocket that hands binary frames over as ArrayBuffers.
globalThis.WebSocket = class extends WS {
  constructor(url, protocols) {
    super(url, protocols);
    this.binaryType = 'arraybuffer';
  }
};
// The SDK fires some promises without awaiting them; keep Node from dying on one.
process.on('unhandledRejection', (reason) => console.error('SDK rejection:', reason?.message ?? reason));

const { getSDK, CbEvents } = (await import('@openim/client-sdk')).default;
const apiAddr = process.env.OPENIM_API_URL ?? 'http://127.0.0.1:10002';
const wsAddr = process.env.OPENIM_WS_URL ?? 'ws://127.0.0.1:10001';
const secret = process.env.OPENIM_SECRET ?? 'openIM123';

// What the app's server does: an admin token, the users, one token per user (never in a client).
async function openim(path, body, token) {
  const headers = { 'Content-Type': 'application/json', operationID: `example-${Date.now()}` };
  if (token) headers.token = token;
  const reply = await (await fetch(apiAddr + path, { method: 'POST', headers, body: JSON.stringify(body) })).json();
  if (reply.errCode !== 0 && reply.errCode !== 1102) throw new Error(`${path}: ${reply.errCode} ${reply.errMsg}`);
  return reply.data;
}
const admin = (await openim('/auth/get_admin_token', { secret, userID: 'imAdmin' })).token;
await openim('/user/user_register', { users: [{ userID: 'alice', nickname: 'Alice' }, { userID: 'bob', nickname: 'Bob' }] }, admin);
const tokenOf = async (userID) => (await openim('/auth/get_user_token', { userID, platformID: 5 }, admin)).token;

// Each user logs in; the account is usable once the SDK has synced.
async function login(userID) {
  const sdk = getSDK();
  const synced = new Promise((resolve) => sdk.on(CbEvents.OnSyncServerFinish, resolve));
  await sdk.login({ userID, token: await tokenOf(userID), wsAddr, apiAddr, platformID: 5, logLevel: 5 });
  await synced;
  return sdk;
}
const alice = await login('alice');
const bob = await login('bob');
console.log('alice and bob are logged in');

const received = (sdk) => new Promise((resolve) => sdk.on(CbEvents.OnRecvNewMessages, ({ data }) => resolve(data[0])));
const bobGets = received(bob);
await alice.sendMessage({ recvID: 'bob', groupID: '', message: (await alice.createTextMessage('hello bob')).data });
console.log(`bob received: "${(await bobGets).textElem.content}" from ${(await bobGets).sendID}`);

const aliceGets = received(alice);
await bob.sendMessage({ recvID: 'alice', groupID: '', message: (await bob.createTextMessage('hi alice')).data });
console.log(`alice received: "${(await aliceGets).textElem.content}" from ${(await aliceGets).sendID}`);
process.exit(0); // the SDK keeps timers running forever
