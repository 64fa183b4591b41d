// A ban while the SDK is connected: the admin API bans the user, the SDK reports OnKickedOffline, and a new login
// with the same token is refused. Arguments: {user (login parameters), ban: {url, key}}.
import { Client, loadSDK, run, settle } from './harness.mjs';

const TOKEN_EVENTS = ['OnConnectFailed', 'OnUserTokenExpired', 'OnUserTokenInvalid', 'OnKickedOffline'];

run(async ({ user, ban }) => {
  const mod = await loadSDK();
  const first = new Client(mod, 'first');
  await first.loginAndSync(user);
  const started = Date.now();
  const banned = await fetch(`${ban.url}/admin/users/${user.userID}/ban`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${ban.key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ reason: 'spam' }),
  });
  await first.waitFor('OnKickedOffline', () => true, 3000);
  const kickedAfterMs = Date.now() - started;
  const again = new Client(mod, 'again');
  const login = await settle(again.login(user));
  await again.waitFor('OnConnectFailed');
  const summary = (client) => client.events.filter((e) => TOKEN_EVENTS.includes(e.event))
    .map((e) => ({ event: e.event, errCode: e.errCode, errMsg: e.errMsg }));
  return { banStatus: banned.status, kickedAfterMs, first: summary(first), again: summary(again), login };
});
