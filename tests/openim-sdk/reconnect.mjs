// Scenario 6: bob's socket drops, alice sends meanwhile, bob's SDK reconnects and receives the
// message (pull by seq range, WS 1002). The ES2017 build: only it catches up after a reconnect.
// Arguments: {alice, bob}.
import { Client, loadSDK, openedSockets, run, sleep } from './harness.mjs';

run(async ({ alice: aliceLogin, bob: bobLogin }) => {
  const mod = await loadSDK('modern');
  const alice = new Client(mod, 'alice');
  const bob = new Client(mod, 'bob');
  await Promise.all([alice.loginAndSync(aliceLogin), bob.loginAndSync(bobLogin)]);
  // The SDK waits 5 s before reconnecting; the scenario is about what it does then, not the wait.
  // 1.5 s still leaves alice's send well inside the time bob is away.
  bob.sdk.wsManager.reconnectInterval = 1500;
  const bobSocket = openedSockets().find((s) => s.url.includes('sendID=bob'));
  const before = bob.events.length;
  const closed = new Promise((resolve) => bobSocket.once('close', resolve));
  bobSocket._socket.destroy(); // the network drops: no close frame
  await closed;

  const text = (await alice.sdk.createTextMessage('while you were away')).data;
  const sent = await alice.sdk.sendMessage({ recvID: 'bob', groupID: '', message: text });
  await sleep(100); // the push would have arrived by now
  // The SDK announces the reconnect (OnConnecting) only when its timer fires.
  const stillAway = !bob.events.slice(before).some((e) => e.event === 'OnConnecting');
  const missedWhileDown = bob.events.slice(before).filter((e) => e.event === 'OnRecvNewMessages').length;

  await bob.waitFor('OnSyncServerFinish', (e) => bob.events.indexOf(e) >= before);
  const received = (await bob.waitFor('OnRecvNewMessages')).data
    .map((m) => ({ sendID: m.sendID, seq: m.seq, text: m.textElem?.content }));
  return {
    sent: sent.data.serverMsgID.length,
    stillAway,
    missedWhileDown,
    reconnectEvents: bob.events.slice(before).map((e) => e.event)
      .filter((e) => ['OnConnecting', 'OnConnectSuccess', 'OnSyncServerStart', 'OnSyncServerFinish'].includes(e)),
    received,
  };
});
