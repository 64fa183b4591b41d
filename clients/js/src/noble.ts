// The audited pure-JS primitives, for runtimes whose WebCrypto lacks X25519 or `subtle` (see crypto.ts).
import { x25519 } from "@noble/curves/ed25519.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { hmac } from "@noble/hashes/hmac.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { randomBytes } from "@noble/hashes/utils.js";

import { type CryptoBackend, LowOrderPublicKey, checkSharedSecret } from "./crypto.js";

export const noble: CryptoBackend = {
  name: "noble",
  async x25519(privateKey?: Uint8Array) {
    const secret = privateKey ?? x25519.utils.randomSecretKey();
    return {
      publicKey: x25519.getPublicKey(secret),
      async sharedSecret(peer: Uint8Array) {
        let shared: Uint8Array;
        try {
          shared = x25519.getSharedSecret(secret, peer);
        } catch (error) {
          // noble refuses the low-order points (RFC 7748 section 6.1) before the ladder runs.
          if (error instanceof Error && error.message === "invalid private or public key received") {
            throw new LowOrderPublicKey();
          }
          throw error;
        }
        return checkSharedSecret(shared);
      },
    };
  },
  hkdfSha256: async (secret, salt, info, length) => hkdf(sha256, secret, salt, info, length),
  sha256: async (data) => sha256(data),
  hmacSha256: async (key, data) => hmac(sha256, key, data),
  randomBytes: (length) => randomBytes(length),
};
