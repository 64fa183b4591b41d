// An imported user logs in with the official SDK and sees what the import made: the groups they are
// in, their friends, and the history of a single chat and of a group, in order with the original send
// times. Arguments: {user (login parameters), single, group (conversation IDs)}.
import { Client, loadSDK, run } from './harness.mjs';

const text = (m) => ({ sendID: m.sendID, sendTime: m.sendTime, text: m.textElem?.content });

run(async ({ user, single, group }) => {
  const mod = await loadSDK();
  const client = new Client(mod, user.userID);
  await client.loginAndSync(user);
  const groups = (await client.sdk.getJoinedGroupListPage({ offset: 0, count: 50 })).data
    .map((g) => ({ groupID: g.groupID, groupName: g.groupName, ownerUserID: g.ownerUserID, memberCount: g.memberCount }));
  const friends = (await client.sdk.getFriendListPage({ offset: 0, count: 50 })).data.map((f) => f.userID);
  const history = async (conversationID) => (await client.sdk.getAdvancedHistoryMessageList(
    { conversationID, count: 50, startClientMsgID: '' })).data.messageList.filter((m) => m.contentType === 101).map(text);
  return {
    groups,
    friends,
    single: await history(single),
    group: await history(group),
    failures: client.events.filter((e) => e.event === 'OnSyncServerFailed' || e.event === 'OnConnectFailed'),
  };
});
