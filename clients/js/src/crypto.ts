/**
 * The primitives the client needs: X25519, HKDF-SHA256, SHA-256, HMAC-SHA256 and random bytes.
 *
 * Two backends, one interface. {@link webCrypto} uses the runtime's own WebCrypto, which has
 * X25519 in `subtle.deriveBits` in Node 20 and in current Chromium, Firefox and Safari; nothing
 * is downloaded for it. {@link nobleCrypto} uses `@noble/curves` and `@noble/hashes` (audited,
 * no dependencies), for runtimes without WebCrypto's `subtle`: React Native (Hermes has only
 * `getRandomValues`, through `react-native-get-random-values`), a page served over plain HTTP
 * from a host other than localhost (`subtle` exists only in secure contexts), older browsers.
 * {@link defaultCrypto} picks WebCrypto when X25519 works there, and loads noble only otherwise,
 * so a browser bundle that never needs it fetches it as a separate chunk, if at all.
 */

export interface X25519KeyPair {
  /** The raw 32-byte public key. */
  readonly publicKey: Uint8Array;
  /** The raw 32-byte shared secret with a peer's public key; refuses a low-order point. */
  sharedSecret(peerPublicKey: Uint8Array): Promise<Uint8Array>;
}

export interface CryptoBackend {
  readonly name: string;
  /** A new key pair, or (for known-answer tests) the one of a given 32-byte private key. */
  x25519(privateKey?: Uint8Array): Promise<X25519KeyPair>;
  hkdfSha256(secret: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Promise<Uint8Array>;
  sha256(data: Uint8Array): Promise<Uint8Array>;
  hmacSha256(key: Uint8Array, data: Uint8Array): Promise<Uint8Array>;
  randomBytes(length: number): Uint8Array;
}

/** Thrown when the peer's key makes an all-zero shared secret (RFC 7748 section 6.1). */
export class LowOrderPublicKey extends Error {
  constructor() {
    super("the peer's X25519 public key is a low-order point");
    this.name = "LowOrderPublicKey";
  }
}

/** WebCrypto wants ArrayBuffer-backed views; copy only when a view is backed by something else. */
export function arrayBufferBytes(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes.buffer instanceof ArrayBuffer ? (bytes as Uint8Array<ArrayBuffer>) : new Uint8Array(bytes);
}

export function checkSharedSecret(secret: Uint8Array): Uint8Array {
  if (secret.every((byte) => byte === 0)) throw new LowOrderPublicKey();
  return secret;
}

// PKCS #8 for an X25519 private key: the fixed DER prefix (RFC 8410) and the 32 key bytes.
// WebCrypto imports private keys only as PKCS #8 or JWK, never raw.
const PKCS8_X25519_PREFIX = new Uint8Array([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20,
]);

export function webCrypto(subtle: SubtleCrypto = globalThis.crypto.subtle): CryptoBackend {
  const X25519 = { name: "X25519" };
  const sharedSecret = (privateKey: CryptoKey) => async (peer: Uint8Array) => {
    let bits: ArrayBuffer;
    try {
      const publicKey = await subtle.importKey("raw", arrayBufferBytes(peer), X25519, false, []);
      bits = await subtle.deriveBits({ name: "X25519", public: publicKey }, privateKey, 256);
    } catch (error) {
      // Node and Chromium refuse an all-zero result themselves, as an OperationError.
      if (error instanceof Error && error.name === "OperationError") throw new LowOrderPublicKey();
      throw error;
    }
    return checkSharedSecret(new Uint8Array(bits));
  };
  return {
    name: "webcrypto",
    async x25519(privateKey?: Uint8Array): Promise<X25519KeyPair> {
      let pair: CryptoKeyPair;
      if (privateKey === undefined) {
        pair = (await subtle.generateKey(X25519, true, ["deriveBits"])) as CryptoKeyPair;
      } else {
        const pkcs8 = new Uint8Array(PKCS8_X25519_PREFIX.length + 32);
        pkcs8.set(PKCS8_X25519_PREFIX);
        pkcs8.set(privateKey, PKCS8_X25519_PREFIX.length);
        const secret = await subtle.importKey("pkcs8", pkcs8, X25519, true, ["deriveBits"]);
        // WebCrypto has no "public key of this private key"; its JWK form carries it as `x`.
        const jwk = await subtle.exportKey("jwk", secret);
        const publicKey = await subtle.importKey("jwk", { kty: "OKP", crv: "X25519", x: jwk.x! }, X25519, true, []);
        pair = { privateKey: secret, publicKey };
      }
      return {
        publicKey: new Uint8Array(await subtle.exportKey("raw", pair.publicKey)),
        sharedSecret: sharedSecret(pair.privateKey),
      };
    },
    async hkdfSha256(secret, salt, info, length) {
      const key = await subtle.importKey("raw", arrayBufferBytes(secret), "HKDF", false, ["deriveBits"]);
      const params = { name: "HKDF", hash: "SHA-256", salt: arrayBufferBytes(salt), info: arrayBufferBytes(info) };
      return new Uint8Array(await subtle.deriveBits(params, key, length * 8));
    },
    async sha256(data) {
      return new Uint8Array(await subtle.digest("SHA-256", arrayBufferBytes(data)));
    },
    async hmacSha256(key, data) {
      const hmacKey = await subtle.importKey("raw", arrayBufferBytes(key), { name: "HMAC", hash: "SHA-256" }, false, [
        "sign",
      ]);
      return new Uint8Array(await subtle.sign("HMAC", hmacKey, arrayBufferBytes(data)));
    },
    randomBytes: (length) => globalThis.crypto.getRandomValues(new Uint8Array(length)),
  };
}

/** The `@noble/*` backend, loaded on first use so that bundles which never need it leave it out. */
export async function nobleCrypto(): Promise<CryptoBackend> {
  return (await import("./noble.js")).noble;
}

let detected: Promise<CryptoBackend> | undefined;

/** WebCrypto when this runtime's `subtle` does X25519, otherwise noble. Probed once. */
export function defaultCrypto(): Promise<CryptoBackend> {
  detected ??= (async () => ((await webCryptoHasX25519()) ? webCrypto() : nobleCrypto()))();
  return detected;
}

/** Whether `crypto.subtle` exists and does X25519 key agreement (there is no way to ask but to try). */
export async function webCryptoHasX25519(): Promise<boolean> {
  const subtle = globalThis.crypto?.subtle;
  if (subtle === undefined) return false;
  try {
    const pair = (await subtle.generateKey({ name: "X25519" }, false, ["deriveBits"])) as CryptoKeyPair;
    await subtle.deriveBits({ name: "X25519", public: pair.publicKey }, pair.privateKey, 256);
    return true;
  } catch {
    return false;
  }
}
