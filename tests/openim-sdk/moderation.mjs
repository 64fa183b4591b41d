// Scenario 7: a before-send callback that blocks (the gateway's moderation) makes the SDK's send
// fail with the configured errCode; a clean message goes through. Arguments: {alice, bob, banned}.
import { Client, loadSDK, run, settle } from './harness.mjs';

run(async ({ alice: aliceLogin, bob: bobLogin, banned }) => {
  const mod = await loadSDK();
  const alice = new Client(mod, 'alice');
  const bob = new Client(mod, 'bob');
  await Promise.all([alice.loginAndSync(aliceLogin), bob.loginAndSync(bobLogin)]);
  const send = async (content) => {
    const message = (await alice.sdk.createTextMessage(content)).data;
    return settle(alice.sdk.sendMessage({ recvID: 'bob', groupID: '', message }));
  };
  const blocked = await send(`this is a ${banned}`);
  const clean = await send('good morning');
  const received = (await bob.waitFor('OnRecvNewMessages')).data.map((m) => m.textElem?.content);
  return {
    blocked: { ok: blocked.ok, errCode: blocked.errCode, errMsg: blocked.errMsg },
    clean: { ok: clean.ok, errCode: clean.errCode },
    received,
    bobNewMessageEvents: bob.events.filter((e) => e.event === 'OnRecvNewMessages').length,
  };
});
