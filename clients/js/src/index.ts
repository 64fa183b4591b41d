export {
  ErrCode,
  GatewayClient,
  GatewayError,
  HKDF_INFO,
  LoggedOut,
  type Credentials,
  type GatewayClientOptions,
  type LoggedOutReason,
  type LoginResult,
  type OpenIMLoginParams,
  type SessionInfo,
  type SessionState,
} from "./client.js";
export {
  LowOrderPublicKey,
  defaultCrypto,
  nobleCrypto,
  webCrypto,
  webCryptoHasX25519,
  type CryptoBackend,
  type X25519KeyPair,
} from "./crypto.js";
export { base64urlDecode, base64urlEncode } from "./base64.js";
export {
  ALGORITHM,
  COMPONENTS,
  contentDigest,
  signRequest,
  signatureBase,
  type SignatureParameters,
  type SignedHeaders,
} from "./signing.js";
export type { ConversationElem, ConversationMessageInfo, ImRoutes, UserInfo } from "./routes.js";
