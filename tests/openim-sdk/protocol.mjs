// The protobuf cross-check's Node side: decodes what Python encoded, and encodes what Python
// will decode, with the SDK's own codec (@openim/protocol's PbCoder).
// Argument: [{"op": "decode", "type": "MsgData", "hex": "..."} | {"op": "encode", "type": ..., "value": {...}}]
// Bytes travel as {"$bytes": "<base64>"} both ways; int64 values come out as JS numbers.
import { PbCoder } from '@openim/protocol';

const toJSON = (value) => {
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(toJSON);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJSON(v)]));
  return value;
};

const fromJSON = (value) => {
  if (value && typeof value === 'object' && '$bytes' in value) return new Uint8Array(Buffer.from(value.$bytes, 'base64'));
  if (Array.isArray(value)) return value.map(fromJSON);
  if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJSON(v)]));
  return value;
};

const results = JSON.parse(process.argv[2]).map(({ op, type, hex, value }) => {
  const coder = PbCoder[type];
  if (op === 'decode') return toJSON(coder.decode(new Uint8Array(Buffer.from(hex, 'hex'))));
  return Buffer.from(coder.encode(fromJSON(value)).finish()).toString('hex');
});
process.stdout.write(`RESULT ${JSON.stringify(results)}\n`);
