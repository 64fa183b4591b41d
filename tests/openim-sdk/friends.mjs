// Scenario 4: alice adds bob as a friend, bob sees the application and accepts it, and both
// friend lists show the other. Arguments: {alice, bob} (login parameters each).
import { Client, loadSDK, run, settle } from './harness.mjs';

// SDK results are live cache objects that later events change: each is summarised at once.
const request = (r) => ({ fromUserID: r.fromUserID, toUserID: r.toUserID, reqMsg: r.reqMsg, handleResult: r.handleResult });
const friend = (f) => ({ userID: f.userID, nickname: f.nickname, ownerUserID: f.ownerUserID });
const FRIEND_EVENTS = ['OnFriendApplicationAdded', 'OnFriendApplicationAccepted', 'OnFriendApplicationRejected',
  'OnFriendAdded', 'OnFriendDeleted', 'OnFriendInfoChanged'];
const friendEvents = (client) => client.events.filter((e) => FRIEND_EVENTS.includes(e.event)).map((e) => e.event);

run(async ({ alice: aliceLogin, bob: bobLogin }) => {
  const mod = await loadSDK();
  const alice = new Client(mod, 'alice');
  const bob = new Client(mod, 'bob');
  await Promise.all([alice.loginAndSync(aliceLogin), bob.loginAndSync(bobLogin)]);

  const before = (await alice.sdk.checkFriend(['bob'])).data;
  const added = await settle(alice.sdk.addFriend({ toUserID: 'bob', reqMsg: 'hi bob, alice here' }));
  const application = request((await bob.waitFor('OnFriendApplicationAdded')).data);
  const aliceApplication = request((await alice.waitFor('OnFriendApplicationAdded')).data);
  const inbox = (await bob.sdk.getFriendApplicationListAsRecipient({ offset: 0, count: 10 })).data.map(request);
  const outbox = (await alice.sdk.getFriendApplicationListAsApplicant({ offset: 0, count: 10 })).data.map(request);

  const accepted = await settle(bob.sdk.acceptFriendApplication({ toUserID: 'alice', handleMsg: 'welcome' }));
  const aliceAccepted = request((await alice.waitFor('OnFriendApplicationAccepted')).data);
  // The applicant's SDK hears of the approval but never syncs its friends on it (0.0.14 puts an
  // async function into Promise.all without calling it), so only bob gets OnFriendAdded.
  const bobAdded = friend((await bob.waitFor('OnFriendAdded')).data);
  const aliceFriends = (await alice.sdk.getFriendListPage({ offset: 0, count: 10 })).data.map(friend);
  const bobFriends = (await bob.sdk.getFriendListPage({ offset: 0, count: 10 })).data.map(friend);
  const after = (await alice.sdk.checkFriend(['bob'])).data;
  return {
    before,
    added: { ok: added.ok, errCode: added.errCode },
    application,
    aliceApplication,
    inbox,
    outbox,
    accepted: { ok: accepted.ok, errCode: accepted.errCode },
    aliceAccepted,
    bobAdded,
    aliceFriends,
    bobFriends,
    after,
    friendEvents: { alice: friendEvents(alice), bob: friendEvents(bob) },
    failures: [...alice.events, ...bob.events].filter((e) => e.event === 'OnSyncServerFailed' || e.event === 'OnConnectFailed'),
  };
});
