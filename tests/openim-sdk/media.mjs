// Media messages as docs/media.md says a client sends them: alice sends bob a GIF the gateway found
// (a picture message, 102, built from the answer's renditions with createImageMessageByURL and sent
// with sendMessageNotOss) and a sticker of the catalog (a custom message, 110, naming its pack and
// sticker); bob receives both.
// Arguments: {alice, bob, picture, sticker} (login parameters; the answer's `picture`; the custom elem).
import { Client, loadSDK, run, settle } from './harness.mjs';

const brief = (m) => ({ sendID: m.sendID, contentType: m.contentType, pictureElem: m.pictureElem ?? null,
  customElem: m.customElem ?? null });

run(async ({ alice: aliceLogin, bob: bobLogin, picture, sticker }) => {
  const mod = await loadSDK();
  const alice = new Client(mod, 'alice');
  const bob = new Client(mod, 'bob');
  await Promise.all([alice.loginAndSync(aliceLogin), bob.loginAndSync(bobLogin)]);

  const gif = (await alice.sdk.createImageMessageByURL({ sourcePath: '', ...picture })).data;
  // sendMessageNotOss: the pictures are hosted already (sendMessage would look for a file to upload).
  const sentGif = await settle(alice.sdk.sendMessageNotOss({ recvID: 'bob', groupID: '', message: gif }));
  const gotGif = (await bob.waitFor('OnRecvNewMessages')).data.map(brief);

  const custom = (await alice.sdk.createCustomMessage(sticker)).data;
  const sentSticker = await settle(alice.sdk.sendMessage({ recvID: 'bob', groupID: '', message: custom }));
  const gotSticker = (await bob.waitFor('OnRecvNewMessages', (e) => e.data.some((m) => m.contentType === 110)))
    .data.map(brief);
  return {
    sentGif: { ok: sentGif.ok, errCode: sentGif.errCode },
    sentSticker: { ok: sentSticker.ok, errCode: sentSticker.errCode },
    received: [...gotGif, ...gotSticker],
  };
});
