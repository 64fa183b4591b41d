// Scenario 2: a message the app's server sends over REST (/msg/send_msg, admin token) reaches
// bob's SDK as a push. Arguments: {bob, admin}; the app's server calls OpenIM at bob.openimAddr, else
// at his apiAddr (where his SDK's REST calls go: OpenIM itself, or the gateway's /im).
import { Client, loadSDK, rest, run } from './harness.mjs';

run(async ({ bob: bobLogin, admin }) => {
  const bob = new Client((await loadSDK()), 'bob');
  await bob.loginAndSync(bobLogin);
  const body = { sendID: 'alice', recvID: 'bob', contentType: 101, sessionType: 1, content: { content: 'from rest' } };
  const reply = await rest(bobLogin.openimAddr ?? bobLogin.apiAddr, '/msg/send_msg', body, admin, 'op-rest-1');
  const received = (await bob.waitFor('OnRecvNewMessages')).data
    .map((m) => ({ sendID: m.sendID, seq: m.seq, text: m.textElem?.content, msgFrom: m.msgFrom }));
  const conversation = (await bob.waitFor('OnNewConversation')).data
    .map((c) => ({ conversationID: c.conversationID, showName: c.showName, unreadCount: c.unreadCount }));
  return { reply: { errCode: reply.errCode, serverMsgID: reply.data?.serverMsgID }, received, conversation };
});
