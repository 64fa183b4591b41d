/**
 * `GatewayClient`: the handshake, signed requests, login and logout, session renewal, `/im` calls,
 * and the values the OpenIM SDK's `login()` takes.
 *
 * A session that the gateway no longer knows (expired, revoked, or refused as unknown after a
 * restart of a gateway without Redis) is answered 401 / 40100. The client then makes a new
 * handshake, logs in again with the credentials its `relogin` hook gives, and sends the request
 * once more: 40100 is the gateway's authentication step, the first of every route, so nothing of
 * the refused request reached OpenIM. Concurrent requests share one renewal. A renewal whose login
 * is refused (banned, or credentials no longer accepted) ends the session: `onLoggedOut` is told why.
 */
import { base64urlDecode, base64urlEncode } from "./base64.js";
import { type CryptoBackend, LowOrderPublicKey, arrayBufferBytes, defaultCrypto } from "./crypto.js";
import { signRequest } from "./signing.js";
import type { ImRoutes } from "./routes.js";

export const HKDF_INFO = "messenger-gw/v1/session";

/** The gateway's errCodes the client acts on (docs/errors.md). */
export const ErrCode = {
  UNAUTHENTICATED: 40100,
  CREDENTIALS_REFUSED: 40101,
  BANNED: 40301,
  SESSION_OF_ANOTHER_USER: 40302,
} as const;

/** An error envelope `{errCode, errMsg, errDlt}` from the gateway, or from OpenIM behind it. */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly errCode: number,
    readonly errMsg: string,
    readonly errDlt: string = "",
  ) {
    super(`HTTP ${status}, errCode ${errCode}: ${errMsg}`);
    this.name = "GatewayError";
  }
}

/** Why a session ended without the app asking for it. */
export type LoggedOutReason = "banned" | "credentials_refused" | "no_credentials";

/** The session ended (see {@link LoggedOutReason}); the app must log in again. */
export class LoggedOut extends Error {
  constructor(
    readonly reason: LoggedOutReason,
    override readonly cause?: GatewayError,
  ) {
    super(`logged out: ${reason}`);
    this.name = "LoggedOut";
  }
}

/** A session as it can be saved and given back to a new client (it holds the session key: store it as a secret). */
export interface SessionState {
  sessionId: string;
  /** The session key, base64url. */
  key: string;
  platformID: number;
  /** Unix seconds. */
  expiresAt: number;
  /** Set once the session is logged in. */
  login?: LoginResult;
}

/** `/auth/login`'s answer. */
export interface LoginResult {
  userID: string;
  imToken: string;
  wsURL: string;
  /** The public base of `/im`; absent from gateways that predate it. */
  apiAddr?: string;
  /** The imToken's expiry, unix seconds. */
  expiresAt: number;
}

/** What the OpenIM SDK's `login()` takes, as its parameters are named. */
export interface OpenIMLoginParams {
  userID: string;
  token: string;
  wsAddr: string;
  apiAddr: string;
  platformID: number;
}

export interface SessionInfo {
  userID: string | null;
  platformID: number;
  via: string;
  sessionId?: string;
  expiresAt?: number;
}

/** What `/auth/login` passes to the identity verifier, e.g. `{userID, code}` for an OTP. */
export type Credentials = Record<string, unknown>;

export interface GatewayClientOptions {
  /** The gateway, e.g. `https://chat.example.com`. */
  baseURL: string;
  /** OpenIM's platform: 1 iOS, 2 Android, 3 Windows, 4 OSX, 5 Web, 6 MiniWeb, 7 Linux, 8 APad, 9 IPad. */
  platformID: number;
  /** Defaults to WebCrypto where it does X25519, else `@noble/*` (see crypto.ts). */
  crypto?: CryptoBackend;
  fetch?: typeof fetch;
  /** Milliseconds since the epoch (`Date.now`). */
  now?: () => number;
  /** A saved session to carry on with. */
  state?: SessionState;
  /**
   * The login hook: credentials to log in again once the session has ended (expired or revoked).
   * Answer null to give up; the session then ends with "no_credentials". Without a hook, a
   * logged-in session that ends is not renewed.
   */
  relogin?: () => Credentials | null | Promise<Credentials | null>;
  /** A login, the first or a renewal's; hand `client.openIM` to the SDK again if the imToken changed. */
  onLogin?: (login: LoginResult, renewed: boolean) => void;
  /** The session ended without the app asking (see {@link LoggedOutReason}). */
  onLoggedOut?: (reason: LoggedOutReason, error?: GatewayError) => void;
  /** The session changed (a handshake, a login, a logout): save it here to restore it later. */
  onState?: (state: SessionState | null) => void;
}

/** A session is renewed this long before its expiry rather than sent and refused. */
const EXPIRY_MARGIN_MS = 5_000;
const JSON_TYPE = "application/json";
const encoder = new TextEncoder();

interface Session {
  readonly state: SessionState;
  readonly key: Uint8Array;
}

export class GatewayClient {
  readonly baseURL: string;
  readonly platformID: number;
  private readonly options: GatewayClientOptions;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;
  private cryptoBackend: CryptoBackend | undefined;
  private session: Session | undefined;
  private renewal: Promise<void> | undefined;
  /** Why the session ended, until the app logs in again: requests fail with LoggedOut meanwhile. */
  private ended: LoggedOutReason | undefined;

  constructor(options: GatewayClientOptions) {
    this.options = options;
    this.baseURL = options.baseURL.replace(/\/+$/, "");
    this.platformID = options.platformID;
    this.cryptoBackend = options.crypto;
    // Called unbound: a browser's fetch throws "Illegal invocation" when called as a method of another object.
    const fetchImpl = options.fetch ?? globalThis.fetch;
    this.fetchImpl = (input, init) => fetchImpl(input, init);
    this.now = options.now ?? Date.now;
    if (options.state !== undefined) {
      const { login, ...rest } = options.state;
      const state: SessionState = login === undefined ? { ...rest } : { ...rest, login: { ...login } };
      this.setSession({ state, key: base64urlDecode(state.key) }, false);
    }
  }

  /** The current session, to save (it holds the key), or undefined before the first handshake. */
  get state(): Readonly<SessionState> | undefined {
    return this.session?.state;
  }

  /** The current login, or undefined while logged out. */
  get loginResult(): LoginResult | undefined {
    return this.session?.state.login;
  }

  /** The OpenIM SDK's `login()` parameters for the logged-in user. */
  get openIM(): OpenIMLoginParams {
    const login = this.loginResult;
    if (login === undefined) throw new Error("not logged in: call login() first");
    return {
      userID: login.userID,
      token: login.imToken,
      wsAddr: login.wsURL,
      apiAddr: login.apiAddr ?? `${this.baseURL}/im`,
      platformID: this.platformID,
    };
  }

  /** The crypto backend in use (detected on first use unless given). */
  async crypto(): Promise<CryptoBackend> {
    this.cryptoBackend ??= await defaultCrypto();
    return this.cryptoBackend;
  }

  /** A new anonymous session: `POST /auth/handshake`, then X25519 and HKDF-SHA256. */
  async handshake(): Promise<SessionState> {
    const crypto = await this.crypto();
    const pair = await crypto.x25519();
    const reply = await this.send("POST", "/auth/handshake", {
      clientPublicKey: base64urlEncode(pair.publicKey),
      platformID: this.platformID,
    });
    const answer = (await checked(reply)) as { sessionId: string; serverPublicKey: string; expiresAt: number };
    const serverKey = base64urlDecode(answer.serverPublicKey);
    if (serverKey.length !== 32) throw new LowOrderPublicKey();
    const shared = await pair.sharedSecret(serverKey);
    const key = await crypto.hkdfSha256(shared, encoder.encode(answer.sessionId), encoder.encode(HKDF_INFO), 32);
    const state: SessionState = {
      sessionId: answer.sessionId,
      key: base64urlEncode(key),
      platformID: this.platformID,
      expiresAt: answer.expiresAt,
    };
    this.ended = undefined;
    this.setSession({ state, key });
    return state;
  }

  /** Log in with `credentials`, on a new session unless the current one is anonymous and live. */
  async login(credentials: Credentials): Promise<LoginResult> {
    if (this.session === undefined || this.session.state.login !== undefined || this.expiring(this.session)) {
      await this.handshake();
    }
    let login: LoginResult;
    try {
      login = await this.loginOnSession(credentials);
    } catch (error) {
      if (!(error instanceof GatewayError && error.errCode === ErrCode.UNAUTHENTICATED)) throw error;
      // The new session ended before it was used (a gateway restarted without Redis): once more.
      await this.handshake();
      login = await this.loginOnSession(credentials);
    }
    this.options.onLogin?.(login, false);
    return login;
  }

  /** End the session at the gateway (`POST /auth/logout`) and forget it. */
  async logout(): Promise<void> {
    const session = this.session;
    if (session === undefined) return;
    try {
      const response = await this.signedSend(session, "POST", "/auth/logout", undefined);
      // A session the gateway no longer knows is as logged out as it gets.
      if (!response.ok && response.status !== 401) await checked(response);
    } finally {
      if (this.session === session) this.setSession(undefined);
    }
  }

  /** `GET /auth/session`: who the gateway takes this session for. */
  async sessionInfo(): Promise<SessionInfo> {
    return (await checked(await this.request("GET", "/auth/session"))) as SessionInfo;
  }

  /**
   * `POST` a JSON body to an `/im` route; answers the envelope's `data`, or throws a
   * {@link GatewayError} for the gateway's errors and for OpenIM's (errCode not 0, HTTP 200).
   */
  call<P extends keyof ImRoutes>(path: P, body: ImRoutes[P]["request"]): Promise<ImRoutes[P]["response"]>;
  // Any other /im route; a typed route's literal path never matches here, so its body stays checked.
  call<T = unknown, P extends `/im/${string}` = `/im/${string}`>(
    path: P & (P extends keyof ImRoutes ? never : unknown),
    body?: object,
  ): Promise<T>;
  async call(path: string, body: object = {}): Promise<unknown> {
    const envelope = (await checked(await this.request("POST", path, body))) as { data?: unknown } | null;
    return envelope?.data;
  }

  /**
   * A signed request; the session is renewed first when it has expired, and once more on a
   * 401 / 40100 (then the request is sent again). `body` is sent as JSON unless it is bytes.
   */
  async request(method: string, path: string, body?: object | Uint8Array): Promise<Response> {
    let session = await this.liveSession();
    const response = await this.signedSend(session, method, path, body);
    if (response.status !== 401 || (await errCodeOf(response)) !== ErrCode.UNAUTHENTICATED) return response;
    await this.renew(session);
    session = await this.liveSession();
    return this.signedSend(session, method, path, body);
  }

  private async liveSession(): Promise<Session> {
    if (this.renewal !== undefined) await this.renewal;
    const session = this.session;
    if (session === undefined) {
      if (this.ended !== undefined) throw new LoggedOut(this.ended);
      await this.handshake();
      return this.session!;
    }
    if (!this.expiring(session)) return session;
    await this.renew(session);
    // Not checked for expiry again: a clock far ahead of the gateway's would renew forever.
    if (this.session === undefined) throw new LoggedOut(this.ended ?? "no_credentials");
    return this.session;
  }

  private expiring(session: Session): boolean {
    return session.state.expiresAt * 1000 - EXPIRY_MARGIN_MS <= this.now();
  }

  /** A new session in place of `failed`, logged in again if `failed` was; one renewal at a time. */
  private renew(failed: Session): Promise<void> {
    if (this.session !== failed) return Promise.resolve(); // renewed already, by another request
    this.renewal ??= this.renewing(failed).finally(() => {
      this.renewal = undefined;
    });
    return this.renewal;
  }

  private async renewing(failed: Session): Promise<void> {
    if (failed.state.login === undefined) {
      await this.handshake();
      return;
    }
    const credentials = this.options.relogin === undefined ? null : await this.options.relogin();
    if (credentials === null) throw this.loggedOut("no_credentials");
    let login: LoginResult;
    try {
      await this.handshake();
      login = await this.loginOnSession(credentials);
    } catch (error) {
      if (error instanceof GatewayError && error.errCode === ErrCode.BANNED) throw this.loggedOut("banned", error);
      if (error instanceof GatewayError && error.errCode === ErrCode.CREDENTIALS_REFUSED) {
        throw this.loggedOut("credentials_refused", error);
      }
      // Anything else may pass (the gateway or OpenIM unreachable): the next request renews again.
      this.setSession(failed);
      throw error;
    }
    this.options.onLogin?.(login, true);
  }

  private loggedOut(reason: LoggedOutReason, error?: GatewayError): LoggedOut {
    this.setSession(undefined);
    this.ended = reason;
    this.options.onLoggedOut?.(reason, error);
    return new LoggedOut(reason, error);
  }

  private async loginOnSession(credentials: Credentials): Promise<LoginResult> {
    const session = this.session!;
    const response = await this.signedSend(session, "POST", "/auth/login", { credentials });
    const login = (await checked(response)) as LoginResult;
    if (this.session === session) this.setSession({ state: { ...session.state, login }, key: session.key });
    return login;
  }

  private setSession(session: Session | undefined, notify = true): void {
    // Handed out as it is (state, onState): frozen, so no caller can change the client's own copy.
    if (session !== undefined) {
      if (session.state.login !== undefined) Object.freeze(session.state.login);
      Object.freeze(session.state);
    }
    this.session = session;
    if (notify) this.options.onState?.(session?.state ?? null);
  }

  private async signedSend(
    session: Session,
    method: string,
    path: string,
    body: object | Uint8Array | undefined,
  ): Promise<Response> {
    const crypto = await this.crypto();
    const raw = arrayBufferBytes(
      body === undefined ? new Uint8Array() : body instanceof Uint8Array ? body : encoder.encode(JSON.stringify(body)),
    );
    const url = new URL(this.baseURL + path);
    const signed = await signRequest(crypto, session.key, method, url, raw, {
      keyid: session.state.sessionId,
      created: Math.floor(this.now() / 1000),
      nonce: base64urlEncode(crypto.randomBytes(16)),
    });
    const headers: Record<string, string> = { ...signed };
    if (raw.length > 0) headers["Content-Type"] = JSON_TYPE;
    return this.fetchImpl(url, { method, headers, ...(raw.length > 0 ? { body: raw } : {}) });
  }

  private send(method: string, path: string, body: object): Promise<Response> {
    return this.fetchImpl(this.baseURL + path, {
      method,
      headers: { "Content-Type": JSON_TYPE },
      body: JSON.stringify(body),
    });
  }
}

async function errCodeOf(response: Response): Promise<number | undefined> {
  try {
    const body = (await response.clone().json()) as { errCode?: unknown };
    return typeof body.errCode === "number" ? body.errCode : undefined;
  } catch {
    return undefined;
  }
}

/** The JSON answer, or a {@link GatewayError} for a non-2xx status or an envelope whose errCode is not 0. */
async function checked(response: Response): Promise<unknown> {
  const text = await response.text();
  let body: unknown = null;
  try {
    body = text === "" ? null : JSON.parse(text);
  } catch {
    // not JSON: reported below with the status
  }
  const envelope = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : undefined;
  const code = typeof envelope?.errCode === "number" ? envelope.errCode : undefined;
  if (!response.ok || (code !== undefined && code !== 0)) {
    const message = typeof envelope?.errMsg === "string" ? envelope.errMsg : text.slice(0, 200);
    const detail = typeof envelope?.errDlt === "string" ? envelope.errDlt : "";
    throw new GatewayError(response.status, code ?? 0, message, detail);
  }
  return body;
}
