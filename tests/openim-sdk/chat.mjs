// Scenario 1: alice and bob log in; alice sends bob a text; bob receives it, sees it in his
// conversation list with its unread count, marks it read, reads the history; bob answers and
// alice receives. Arguments: {alice, bob} (login parameters each).
import { Client, loadSDK, run, settle } from './harness.mjs';

// SDK results are live cache objects that later events change: each is summarised at once.
const brief = (m) => ({ sendID: m.sendID, recvID: m.recvID, seq: m.seq, text: m.textElem?.content, msgFrom: m.msgFrom });
const conversation = (c) => ({ conversationID: c.conversationID, showName: c.showName, unreadCount: c.unreadCount,
  latest: JSON.parse(c.latestMsg || '{}').textElem?.content ?? null });

run(async ({ alice: aliceLogin, bob: bobLogin }) => {
  const mod = await loadSDK();
  const alice = new Client(mod, 'alice');
  const bob = new Client(mod, 'bob');
  await Promise.all([alice.loginAndSync(aliceLogin), bob.loginAndSync(bobLogin)]);
  const conversationID = 'si_alice_bob';

  const text = (await alice.sdk.createTextMessage('hello bob')).data;
  const sent = await settle(alice.sdk.sendMessage({ recvID: 'bob', groupID: '', message: text }));
  const received = (await bob.waitFor('OnRecvNewMessages')).data.map(brief);
  await bob.waitFor('OnNewConversation');
  const listed = (await bob.sdk.getConversationListSplit({ offset: 0, count: 20 })).data.map(conversation);

  const marked = await settle(bob.sdk.markConversationMessageAsRead(conversationID));
  await bob.waitFor('OnConversationChanged', (e) => e.data?.some((c) => c.unreadCount === 0));
  const afterRead = (await bob.sdk.getConversationListSplit({ offset: 0, count: 20 })).data.map(conversation);
  const history = (await bob.sdk.getAdvancedHistoryMessageList({ conversationID, count: 20, startClientMsgID: '' }))
    .data.messageList.map(brief);

  const answer = (await bob.sdk.createTextMessage('hi alice')).data;
  const answered = await settle(bob.sdk.sendMessage({ recvID: 'alice', groupID: '', message: answer }));
  const aliceGot = (await alice.waitFor('OnRecvNewMessages')).data.map(brief);
  const aliceList = (await alice.sdk.getConversationListSplit({ offset: 0, count: 20 })).data.map(conversation);
  return {
    sent: { ok: sent.ok, serverMsgID: sent.data?.serverMsgID, status: sent.data?.status },
    bobReceived: received,
    bobList: listed,
    marked: { ok: marked.ok, errCode: marked.errCode },
    bobListAfterRead: afterRead,
    history,
    answered: { ok: answered.ok },
    aliceReceived: aliceGot,
    aliceList,
    // alice's own message came back to her as a push too: it must not surface as a new message
    aliceNewMessageEvents: alice.events.filter((e) => e.event === 'OnRecvNewMessages').map((e) => e.data.map(brief)),
    failures: [...alice.events, ...bob.events].filter((e) => e.event === 'OnSyncServerFailed' || e.event === 'OnConnectFailed'),
  };
});
