// The JS signer and key agreement against the gateway's Python code, for fixed inputs: byte for byte.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  LowOrderPublicKey,
  base64urlDecode,
  base64urlEncode,
  nobleCrypto,
  signRequest,
  webCrypto,
} from "../dist/index.js";
import { pythonJSON } from "./helpers.mjs";

const backends = { webcrypto: async () => webCrypto(), noble: nobleCrypto };

// The Python client's signed_headers for each case, with its clock and nonce fixed.
const PYTHON_SIGNER = `
import json, sys
from messenger_gw.auth import b64url_decode
from messenger_gw.sdk.client import GatewayClient, SessionState

async def main(cases):
    out = []
    for case in cases:
        state = SessionState(case["keyid"], b64url_decode(case["key"]), 5, 0)
        client = GatewayClient("http://127.0.0.1:8080", state=state, clock=lambda: case["created"] + 0.75)
        body = case["body"].encode()
        out.append(client.signed_headers(case["method"], case["path"], body, nonce=case["nonce"]))
        await client.close()
    return out

import asyncio
print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
`;

const CASES = [
  {
    method: "POST",
    path: "/auth/login",
    body: '{"credentials":{"userID":"alice","code":"000000"}}',
    keyid: "bncFxv08GG2WB-22vlMH0w",
    nonce: "3q2-7wdL0pJ9",
  },
  { method: "GET", path: "/auth/session", body: "", keyid: "bncFxv08GG2WB-22vlMH0w", nonce: "n" },
  {
    method: "post",
    path: "/im/user/get_users_info?a=1&b=%20x",
    body: '{"userIDs":["alice","bob"],"text":"h\u00e9llo \u2603"}',
    keyid: "Z_-9aa",
    nonce: "AAAAAAAAAAAAAAAAAAAAAA",
  },
  // Strings the structured-field serialiser must escape, as http_sf does.
  { method: "DELETE", path: "/x", body: "", keyid: 'a "quoted" \\ id', nonce: "n\\\"o" },
].map((c, i) => ({ ...c, key: base64urlEncode(new Uint8Array(32).map((_, j) => (j * 7 + i) & 0xff)), created: 1795308679 + i }));

describe("the signer matches the Python client byte for byte", async () => {
  const expected = await pythonJSON(PYTHON_SIGNER, CASES);
  for (const [name, backend] of Object.entries(backends)) {
    test(`with ${name}`, async () => {
      const crypto = await backend();
      for (const [i, c] of CASES.entries()) {
        const headers = await signRequest(
          crypto,
          base64urlDecode(c.key),
          c.method,
          new URL(`http://127.0.0.1:8080${c.path}`),
          new TextEncoder().encode(c.body),
          { keyid: c.keyid, created: c.created, nonce: c.nonce },
        );
        assert.deepEqual(headers, expected[i], `case ${i}: ${c.method} ${c.path}`);
      }
    });
  }
});

// The gateway's derive_session_key for a fixed client private key and server public key.
const PYTHON_AGREEMENT = `
import json, sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from messenger_gw.auth import b64url_decode, b64url_encode, decode_public_key, derive_session_key, public_key_text

case = json.loads(sys.argv[1])
client = X25519PrivateKey.from_private_bytes(b64url_decode(case["clientPrivate"]))
server = X25519PrivateKey.from_private_bytes(b64url_decode(case["serverPrivate"]))
key = derive_session_key(server, decode_public_key(public_key_text(client)), case["sessionId"])
print(json.dumps({"clientPublic": public_key_text(client), "serverPublic": public_key_text(server), "key": b64url_encode(key)}))
`;

describe("the session key matches the gateway's for fixed keys", async () => {
  const input = {
    clientPrivate: base64urlEncode(new Uint8Array(32).map((_, i) => i + 1)),
    serverPrivate: base64urlEncode(new Uint8Array(32).map((_, i) => 200 - i)),
    sessionId: "bncFxv08GG2WB-22vlMH0w",
  };
  const expected = await pythonJSON(PYTHON_AGREEMENT, input);
  for (const [name, backend] of Object.entries(backends)) {
    test(`with ${name}`, async () => {
      const crypto = await backend();
      const pair = await crypto.x25519(base64urlDecode(input.clientPrivate));
      assert.equal(base64urlEncode(pair.publicKey), expected.clientPublic);
      const shared = await pair.sharedSecret(base64urlDecode(expected.serverPublic));
      const enc = new TextEncoder();
      const key = await crypto.hkdfSha256(shared, enc.encode(input.sessionId), enc.encode("messenger-gw/v1/session"), 32);
      assert.equal(base64urlEncode(key), expected.key);
    });

    test(`a low-order server key is refused with ${name}`, async () => {
      const crypto = await backend();
      const pair = await crypto.x25519();
      for (const point of [new Uint8Array(32), Uint8Array.of(1, ...new Uint8Array(31))]) {
        await assert.rejects(pair.sharedSecret(point), LowOrderPublicKey);
      }
    });
  }
});

test("base64url decodes with or without padding and refuses other alphabets", () => {
  assert.deepEqual(base64urlDecode("_-8"), Uint8Array.of(0xff, 0xef));
  assert.deepEqual(base64urlDecode("_-8="), Uint8Array.of(0xff, 0xef));
  assert.throws(() => base64urlDecode("/+8="), TypeError);
  assert.throws(() => base64urlDecode("a"), TypeError);
});
