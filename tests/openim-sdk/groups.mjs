// Scenario 3: alice creates a group with bob and carol from the SDK; a group message reaches
// both; the member list is right; carol quits, the others see her go, and she stops receiving.
// Arguments: {alice, bob, carol} (login parameters each).
import { Client, loadSDK, run, settle, sleep } from './harness.mjs';

// SDK results are live cache objects that later events change: each is summarised at once.
const texts = (event, groupID) => event.data
  .filter((m) => m.groupID === groupID && m.contentType === 101).map((m) => m.textElem.content);
const received = (client, groupID) => client.events.filter((e) => e.event === 'OnRecvNewMessages')
  .flatMap((e) => texts(e, groupID));
const member = (m) => ({ userID: m.userID, roleLevel: m.roleLevel, nickname: m.nickname });
const GROUP_EVENTS = ['OnJoinedGroupAdded', 'OnJoinedGroupDeleted', 'OnGroupMemberAdded', 'OnGroupMemberDeleted',
  'OnGroupInfoChanged', 'OnGroupDismissed'];
const groupEvents = (client) => client.events.filter((e) => GROUP_EVENTS.includes(e.event))
  .map((e) => e.event + (e.data?.userID ? `:${e.data.userID}` : ''));

run(async ({ alice: aliceLogin, bob: bobLogin, carol: carolLogin }) => {
  const mod = await loadSDK();
  const alice = new Client(mod, 'alice');
  const bob = new Client(mod, 'bob');
  const carol = new Client(mod, 'carol');
  const everyone = [alice, bob, carol];
  await Promise.all([alice.loginAndSync(aliceLogin), bob.loginAndSync(bobLogin), carol.loginAndSync(carolLogin)]);

  const created = await settle(alice.sdk.createGroup({ memberUserIDs: ['bob', 'carol'], groupInfo: { groupName: 'trio' } }));
  const groupID = created.data.groupID;
  const joined = await Promise.all(everyone.map((c) => c.waitFor('OnJoinedGroupAdded', (e) => e.data.groupID === groupID)))
    .then((events) => events.map((e) => ({ groupName: e.data.groupName, ownerUserID: e.data.ownerUserID })));
  const bobGroups = (await bob.sdk.getJoinedGroupListPage({ offset: 0, count: 10 })).data.map((g) => g.groupID);

  const hello = (await alice.sdk.createTextMessage('hello trio')).data;
  const sent = await settle(alice.sdk.sendMessage({ recvID: '', groupID, message: hello }));
  const heard = (e) => texts(e, groupID).includes('hello trio');
  await Promise.all([bob.waitFor('OnRecvNewMessages', heard), carol.waitFor('OnRecvNewMessages', heard)]);
  const members = (await alice.sdk.getGroupMemberList({ groupID, offset: 0, count: 10 })).data.map(member);

  const quit = await settle(carol.sdk.quitGroup(groupID));
  await carol.waitFor('OnJoinedGroupDeleted', (e) => e.data.groupID === groupID);
  const gone = (e) => e.data.groupID === groupID && e.data.userID === 'carol';
  await Promise.all([alice.waitFor('OnGroupMemberDeleted', gone), bob.waitFor('OnGroupMemberDeleted', gone)]);
  const membersAfterQuit = (await bob.sdk.getGroupMemberList({ groupID, offset: 0, count: 10 })).data.map(member);
  const carolGroups = (await carol.sdk.getJoinedGroupListPage({ offset: 0, count: 10 })).data.map((g) => g.groupID);

  const later = (await alice.sdk.createTextMessage('without carol')).data;
  const sentLater = await settle(alice.sdk.sendMessage({ recvID: '', groupID, message: later }));
  await bob.waitFor('OnRecvNewMessages', (e) => texts(e, groupID).includes('without carol'));
  await sleep(300); // carol's copy, were there one, left with bob's
  return {
    created: { ok: created.ok, groupName: created.data.groupName, ownerUserID: created.data.ownerUserID,
      memberCount: created.data.memberCount },
    joined,
    bobGroups,
    sent: { ok: sent.ok, sessionType: sent.data?.sessionType },
    members,
    quit: { ok: quit.ok, errCode: quit.errCode },
    membersAfterQuit,
    carolGroups,
    sentLater: { ok: sentLater.ok },
    received: Object.fromEntries(everyone.map((c) => [c.name, received(c, groupID)])),
    groupEvents: Object.fromEntries(everyone.map((c) => [c.name, groupEvents(c)])),
    failures: everyone.flatMap((c) => c.events).filter((e) => e.event === 'OnSyncServerFailed' || e.event === 'OnConnectFailed'),
  };
});
