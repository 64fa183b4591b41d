// Forged requests, built as any client could build them: the `ws` package and @openim/protocol's own codec
// (PbCoder), no SDK. Each frame goes on a connection of its own, so one that closes it says nothing of the next.
// Arguments: {url, login: {userID, token, platformID}, frames: [{name, reqIdentifier, type, value, padTo}]}:
// `type` names a PbCoder message encoded from `value` (bytes as {"$bytes": "<base64>"}), `padTo` grows the frame
// to that many bytes. Result: {answers: {name: {answer} | {closed: code}}}.
import WS from 'ws';
import { PbCoder } from '@openim/protocol';
import { run } from './harness.mjs';

const MSG_DATA = {
  sendID: '', recvID: '', groupID: '', clientMsgID: '', serverMsgID: '', senderPlatformID: 0, senderNickname: '',
  senderFaceURL: '', sessionType: 0, msgFrom: 0, contentType: 0, content: new Uint8Array(), seq: 0, sendTime: 0,
  createTime: 0, status: 0, isRead: false, options: {}, offlinePushInfo: undefined, atUserIDList: [], attachedInfo: '',
  ex: '', keyVersion: 0, dstUserIDs: [],
};

const fromJSON = (value) => {
  if (value && typeof value === 'object' && '$bytes' in value) return new Uint8Array(Buffer.from(value.$bytes, 'base64'));
  if (Array.isArray(value)) return value.map(fromJSON);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJSON(v)]));
  return value;
};

function encode({ type, value }) {
  if (!type) return '';
  const message = type === 'MsgData' ? { ...MSG_DATA, ...fromJSON(value) } : fromJSON(value);
  return Buffer.from(PbCoder[type].encode(message).finish()).toString('base64');
}

function once(url, login, frame) {
  const query = `sendID=${login.userID}&token=${login.token}&platformID=${login.platformID}`
    + `&operationID=forge&isBackground=false&isMsgResp=true&sdkType=js`;
  return new Promise((resolve) => {
    const ws = new WS(`${url}?${query}`);
    const timer = setTimeout(() => { ws.terminate(); resolve({ timedOut: true }); }, 4000);
    const done = (result) => { clearTimeout(timer); ws.terminate(); resolve(result); };
    let greeted = false;
    ws.on('message', (data, isBinary) => {
      if (!isBinary) {
        if (!greeted) {
          greeted = true;
          const request = { reqIdentifier: frame.reqIdentifier, msgIncr: frame.name, sendID: login.userID,
            operationID: `forge-${frame.name}`, data: encode(frame) };
          let text = JSON.stringify(request);
          if (frame.padTo) text = text.slice(0, -1) + `,"pad":"${'x'.repeat(Math.max(0, frame.padTo - text.length))}"}`;
          ws.send(Buffer.from(text));
        }
        return;
      }
      const answer = JSON.parse(Buffer.from(data).toString('utf8'));
      if (answer.msgIncr === frame.name) done({ answer });
    });
    ws.on('close', (code) => done({ closed: code }));
    ws.on('error', () => done({ closed: 'error' }));
  });
}

run(async ({ url, login, frames }) => {
  const answers = {};
  for (const frame of frames) answers[frame.name] = await once(url, login, frame);
  return { answers };
});
