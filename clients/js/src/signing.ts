/**
 * RFC 9421 HTTP Message Signatures (`hmac-sha256`) and the RFC 9530 `Content-Digest`, as the
 * gateway verifies them (docs/authentication.md): the components `"@method" "@path" "@query"
 * "content-digest"`, the parameters `created`, `keyid` (the session ID), `nonce` and `alg`, in
 * that order, under the label `sig1`. A request without a body signs the digest of the empty body.
 *
 * Written here rather than taken from an RFC 9421 package: the maintained one on npm
 * (`http-message-signatures`) is CommonJS built on Node's `crypto` and `Buffer`, so it does not
 * run in a browser or in React Native as it is. The structured fields are serialised by
 * `structured-headers` (RFC 9651), the signature base is the RFC's section 2.5, and the output
 * is checked byte for byte against the gateway's own Python signer and verified by the gateway.
 */
import { serializeDictionary, serializeInnerList, type InnerList, type Item } from "structured-headers";

import { base64Encode } from "./base64.js";
import type { CryptoBackend } from "./crypto.js";

export const ALGORITHM = "hmac-sha256";
export const COMPONENTS = ["@method", "@path", "@query", "content-digest"] as const;

export interface SignatureParameters {
  /** The session ID. */
  keyid: string;
  /** Unix seconds. */
  created: number;
  /** Unique per request within the session (the gateway remembers each for 605 s). */
  nonce: string;
  label?: string;
}

export interface SignedHeaders {
  "Content-Digest": string;
  "Signature-Input": string;
  Signature: string;
}

const encoder = new TextEncoder();

export async function contentDigest(crypto: CryptoBackend, body: Uint8Array): Promise<string> {
  return `sha-256=:${base64Encode(await crypto.sha256(body))}:`;
}

/** The signature's inner list: what `Signature-Input` carries under the label, and the base's last line. */
export function signatureParams(params: SignatureParameters): InnerList {
  const items: Item[] = COMPONENTS.map((name) => [name, new Map()]);
  return [
    items,
    new Map<string, string | number>([
      ["created", params.created],
      ["keyid", params.keyid],
      ["nonce", params.nonce],
      ["alg", ALGORITHM],
    ]),
  ];
}

/** The signature base (RFC 9421 section 2.5) of a request to `url` with the given digest. */
export function signatureBase(method: string, url: URL, digest: string, params: SignatureParameters): string {
  const values: Record<(typeof COMPONENTS)[number], string> = {
    "@method": method.toUpperCase(),
    "@path": url.pathname || "/",
    "@query": url.search || "?",
    "content-digest": digest,
  };
  const lines = COMPONENTS.map((name) => `"${name}": ${values[name]}`);
  lines.push(`"@signature-params": ${serializeInnerList(signatureParams(params))}`);
  return lines.join("\n");
}

/** `Content-Digest`, `Signature-Input` and `Signature` for one request. */
export async function signRequest(
  crypto: CryptoBackend,
  key: Uint8Array,
  method: string,
  url: URL,
  body: Uint8Array,
  params: SignatureParameters,
): Promise<SignedHeaders> {
  const label = params.label ?? "sig1";
  const digest = await contentDigest(crypto, body);
  const signature = await crypto.hmacSha256(key, encoder.encode(signatureBase(method, url, digest, params)));
  return {
    "Content-Digest": digest,
    "Signature-Input": serializeDictionary(new Map([[label, signatureParams(params)]])),
    Signature: serializeDictionary(new Map([[label, [signature, new Map()] as Item]])),
  };
}
