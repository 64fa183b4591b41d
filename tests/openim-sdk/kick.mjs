// Scenario 5: how the SDK learns that it is logged out. Arguments: {mode, user, admin}:
//   "second-login": a second login of the user on the same platform (a fresh token);
//   "force-logout": the app's server calls /auth/force_logout;
//   "bad-token":    the login's own token is refused at the handshake.
// The app's server calls OpenIM at user.openimAddr, else at user.apiAddr; a second login behind the
// gateway hands out user.secondToken, else the app's server mints one.
import { Client, loadSDK, rest, run, settle } from './harness.mjs';

const TOKEN_EVENTS = ['OnConnectFailed', 'OnUserTokenExpired', 'OnUserTokenInvalid', 'OnKickedOffline'];

run(async ({ mode, user, admin }) => {
  const openim = user.openimAddr ?? user.apiAddr;
  const mod = await loadSDK();
  const first = new Client(mod, 'first');
  const summary = (client) => client.events.filter((e) => TOKEN_EVENTS.includes(e.event))
    .map((e) => ({ event: e.event, errCode: e.errCode, errMsg: e.errMsg }));
  if (mode === 'bad-token') {
    const login = await settle(first.login(user));
    await first.waitFor('OnConnectFailed');
    await Promise.race([first.waitFor('OnUserTokenExpired'), first.waitFor('OnUserTokenInvalid')]);
    return { login: { ok: login.ok, errCode: login.errCode }, events: summary(first) };
  }
  await first.loginAndSync(user);
  if (mode === 'second-login') {
    const token = user.secondToken
      ?? (await rest(openim, '/auth/get_user_token', { userID: user.userID, platformID: user.platformID }, admin)).data.token;
    const second = new Client(mod, 'second');
    await second.loginAndSync({ ...user, token });
    await first.waitFor('OnKickedOffline');
    const status = await settle(second.sdk.getLoginStatus());
    return { first: summary(first), second: summary(second), secondStatus: status.data };
  }
  const reply = await rest(openim, '/auth/force_logout', { userID: user.userID, platformID: user.platformID }, admin);
  await first.waitFor('OnKickedOffline');
  return { forceLogout: reply.errCode, first: summary(first) };
});
