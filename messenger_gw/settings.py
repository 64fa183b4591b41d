"""Configuration: one typed, immutable object read from ``MESSENGER_GW_*`` variables.

A bad value raises :class:`ConfigError`, whose text is the single line the
command line prints before exiting: it names the variable and what is wrong
with it, and never repeats a secret's value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

PREFIX = "MESSENGER_GW_"
SENTINEL_SUFFIX = "+sentinel"
SENTINEL_PORT = 26379

OPENIM_DEFAULT_SECRET = "openIM123"  # OpenIM's published default, for dev mode only
OPENIM_DEFAULT_ADMIN_USER_ID = "imAdmin"
# Dev mode's admin API key, so `make run` can show the admin API; production has none by default.
DEV_ADMIN_KEY = "dev-admin-key"
DEV_ADMIN_KEYS = f"dev:{hashlib.sha256(DEV_ADMIN_KEY.encode()).hexdigest()}"
# Dev mode's webhook secret: the embedded sandbox calls the gateway's receiver with it.
DEV_WEBHOOK_SECRET = "dev-webhook-secret-0001"
# Dev mode's wsURL: the gateway's own WebSocket guard, at LISTEN (this is LISTEN's default).

# OpenIM moves older admin tokens to a 5-minute grace state whenever a new one
# is minted (contract, section 11), so a cached admin token must be younger.
ADMIN_TOKEN_MAX_AGE_LIMIT = 300.0

# The classes of rate-limited routes: /im routes name theirs in the route table (`class`), and the
# WebSocket guard takes from the same buckets; gifs is GET /gifs/* (docs/media.md). Each is configured in
# RATE_LIMITS.
RATE_CLASSES = ("send", "sync", "group_write", "upload", "gifs")
DEFAULT_RATE_LIMITS = "send=5/s:20,sync=20/s:100,group_write=2/s:20,upload=5/s:30,gifs=1/s:20"

# The seeds' migration phases: 3 and 4 move messages, then conversations and groups, to OpenIM; from 6
# the legacy chat service is off (docs/legacy-chat.md).
MAX_PHASE = 6

T = TypeVar("T")
N = TypeVar("N", int, float)


class ConfigError(Exception):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(variable, problem)
        self.variable = variable
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.variable}: {self.problem}"


class Secret:
    """A string that does not show itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self}"


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamTimeouts:
    """Bounds for one call to OpenIM, in seconds."""

    connect: float  # TCP connect
    pool: float  # waiting for a free pooled connection
    read: float  # between two reads of the response
    total: float  # the whole call, connection to last byte


PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True, slots=True)
class JWTSettings:
    """The JWT bearer authenticator; enabled when a secret or a public key is configured."""

    hs256_secret: Secret | None
    public_keys: tuple[PublicKey, ...]
    issuer: str | None
    audience: str | None
    leeway: float
    platform_claim: str | None

    @property
    def enabled(self) -> bool:
        return self.hs256_secret is not None or bool(self.public_keys)


@dataclasses.dataclass(frozen=True, slots=True)
class LoginSettings:
    user_service_url: str | None
    user_service_token: Secret | None
    user_service_timeout: float
    dev_otp_code: Secret | None  # dev mode only
    internal_service_token: Secret | None  # unset: /internal/provision is off
    im_token_min_remaining: float  # a stored imToken with less left than this is replaced at login


@dataclasses.dataclass(frozen=True, slots=True)
class AdminKey:
    """An admin API key, known only by the SHA-256 of its value, and the name audit records show."""

    name: str
    sha256: bytes = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class AdminSettings:
    api_keys: tuple[AdminKey, ...]
    jwt_role: str  # an admin JWT carries this role ...
    jwt_role_claim: str  # ... in this claim (a string or a list of strings)
    audit_max_entries: int


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookSettings:
    secrets: tuple[Secret, ...]  # none: the receiver is off (every path 404)
    allowed_networks: tuple[Network, ...]  # none: any sender address
    max_body_bytes: int
    block_errcode: int  # what OpenIM's API caller receives when a before-callback blocks
    fail_open: bool  # when a rule cannot be evaluated (the store is down)
    banned_words_file: Path | None
    flagged_words_file: Path | None
    max_messages_per_minute: int  # per sender, across replicas; 0 = no limit
    spool_dir: Path


@dataclasses.dataclass(frozen=True, slots=True)
class LegacySettings:
    """The legacy chat service behind ``/legacy/`` (docs/legacy-chat.md); off while ``url`` is None."""

    url: str | None
    route_table: Path | None  # required with url
    user_header: str  # carries the caller's userID to the old service
    platform_header: str | None  # carries the caller's platformID; None: not sent
    headers: Secret  # JSON object of header fields sent with every request (a service key, say); "{}" for none
    timeouts: UpstreamTimeouts
    max_connections: int

    def extra_headers(self) -> list[tuple[str, str]]:
        """The configured header fields, as name and value pairs (validated at start-up)."""
        return _legacy_headers(self.headers.reveal())


@dataclasses.dataclass(frozen=True, slots=True)
class BucketLimit:
    """A token bucket: ``burst`` tokens at most, ``rate`` more each second."""

    rate: float
    burst: int
    text: str  # as configured, e.g. 5/s:20

    def __str__(self) -> str:
        return self.text


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitSettings:
    classes: Mapping[str, BucketLimit | None]  # every class of RATE_CLASSES; None: off
    fail_open: bool  # when the store cannot take a token: let the request through, or refuse it (503)


@dataclasses.dataclass(frozen=True, slots=True)
class CORSSettings:
    """Browser origins allowed on /auth/*, /im/* and /ws; none: no CORS answers at all."""

    origins: frozenset[str]  # normalised (scheme://host[:port], the default port left out)
    any_origin: bool  # configured as *
    allow_credentials: bool

    @property
    def enabled(self) -> bool:
        return self.any_origin or bool(self.origins)


GIF_PROVIDERS = {"giphy": "https://api.giphy.com", "klipy": "https://api.klipy.com"}
GIF_RATINGS = ("g", "pg", "pg-13", "r")


@dataclasses.dataclass(frozen=True, slots=True)
class GifSettings:
    """GIF search through one provider; off until its API key is configured."""

    provider: str  # a key of GIF_PROVIDERS
    api_key: Secret | None  # None: GIF search is off
    api_url: str  # the provider's base URL
    rating: str  # the most mature content rating served, one of GIF_RATINGS
    cache_ttl: float  # seconds an answer is kept in the store and shared by every replica
    timeout: float  # one call to the provider, connection to last byte
    max_connections: int

    @property
    def enabled(self) -> bool:
        return self.api_key is not None


@dataclasses.dataclass(frozen=True, slots=True)
class StickerSettings:
    packs: Path | None  # a file or a directory of *.toml; None: the shipped example in dev mode, none in production
    max_age: int  # Cache-Control max-age of the catalog's answers, seconds


@dataclasses.dataclass(frozen=True, slots=True)
class WsGuardSettings:
    """The WebSocket guard (``/ws``, docs/websocket-guard.md)."""

    upstream_url: str | None  # OPENIM_WS_URL_INTERNAL: OpenIM's msg-gateway as the gateway reaches it; None: /ws off
    max_connections: int  # per worker process
    max_connections_per_user: int  # per worker process
    handshake_timeout: float  # the upgrade: the token, then OpenIM's msg-gateway connected and upgraded
    idle_timeout: float  # a connection with no frame from its client for this long is closed
    max_refusals: int  # refused frames within a minute after which the connection is closed


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    dev: bool
    listen: HostPort
    redis_url: Secret | None
    openim_api_url: str | None
    openim_secret: Secret
    openim_admin_user_id: str
    openim_ws_url: str
    public_im_url: str  # the public base of /im: the SDK's apiAddr at login, OpenIM's X-Request-Api
    openim_timeouts: UpstreamTimeouts
    openim_max_connections: int
    admin_token_max_age: float
    shutdown_timeout: float
    log_level: str
    dev_sandbox_listen: HostPort
    dev_sandbox_ws_listen: HostPort
    session_ttl: float
    handshake_rate_limit: int
    trusted_proxies: tuple[Network, ...]
    jwt: JWTSettings
    im_token_auth: bool  # clients of the OpenIM SDK may authenticate /im with `token: <imToken>`
    login: LoginSettings
    phase: int
    route_table: Path | None  # None: the table shipped in the package
    max_body_bytes: int
    client_write_timeout: float  # for each part of a streamed /im answer
    admin: AdminSettings
    webhooks: WebhookSettings
    rate_limits: RateLimitSettings
    cors: CORSSettings
    legacy: LegacySettings
    gifs: GifSettings
    stickers: StickerSettings
    ws_guard: WsGuardSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, dev: bool) -> Settings:
        env = _Reader(environ)
        production = not dev
        listen = env.read("LISTEN", _host_port, default="127.0.0.1:8080" if dev else "0.0.0.0:8080")
        sandbox_ws = env.read("DEV_SANDBOX_WS_LISTEN", _host_port, default="127.0.0.1:10001")
        settings = cls(
            dev=dev,
            listen=listen,
            redis_url=env.read_optional(
                "REDIS_URL",
                _redis_url,
                required_because="production mode needs Redis; the in-memory store is only for `messenger-gw dev`"
                if production
                else None,
            ),
            openim_api_url=env.read_optional(
                "OPENIM_API_URL",
                _url(("http", "https")),
                required_because="set it to OpenIM's REST address, e.g. http://openim-api:10002"
                if production
                else None,
            ),
            openim_secret=env.read(
                "OPENIM_SECRET",
                _secret,
                default=OPENIM_DEFAULT_SECRET if dev else None,
            ),
            openim_admin_user_id=env.read("OPENIM_ADMIN_USER_ID", _user_id, default=OPENIM_DEFAULT_ADMIN_USER_ID),
            openim_ws_url=env.read(
                "OPENIM_WS_URL",
                _url(("ws", "wss")),
                default=f"ws://{listen}/ws" if dev else None,  # dev's guard, at LISTEN
            ),
            # Dev mode serves /im itself, at LISTEN.
            public_im_url=env.read(
                "PUBLIC_IM_URL", _url(("http", "https")), default=f"{listen.url}/im" if dev else None
            ),
            openim_timeouts=UpstreamTimeouts(
                connect=env.read("OPENIM_CONNECT_TIMEOUT", _seconds(0.01, 60), default="2"),
                pool=env.read("OPENIM_POOL_TIMEOUT", _seconds(0.01, 60), default="1"),
                read=env.read("OPENIM_READ_TIMEOUT", _seconds(0.01, 300), default="10"),
                total=env.read("OPENIM_TOTAL_TIMEOUT", _seconds(0.01, 600), default="15"),
            ),
            openim_max_connections=env.read("OPENIM_MAX_CONNECTIONS", _integer(1, 10_000), default="100"),
            admin_token_max_age=env.read(
                "ADMIN_TOKEN_MAX_AGE",
                _seconds(30, ADMIN_TOKEN_MAX_AGE_LIMIT - 1),
                default="240",
            ),
            shutdown_timeout=env.read("SHUTDOWN_TIMEOUT", _seconds(0, 600), default="15"),
            log_level=env.read("LOG_LEVEL", _choice("debug", "info", "warning", "error"), default="info"),
            dev_sandbox_listen=env.read("DEV_SANDBOX_LISTEN", _host_port, default="127.0.0.1:10002"),
            dev_sandbox_ws_listen=sandbox_ws,
            session_ttl=env.read("SESSION_TTL", _seconds(60, 30 * 86400), default="86400"),
            handshake_rate_limit=env.read("HANDSHAKE_RATE_LIMIT", _integer(0, 1_000_000), default="20"),
            trusted_proxies=env.read("TRUSTED_PROXIES", _networks, default=""),
            jwt=JWTSettings(
                hs256_secret=env.read_optional("JWT_HS256_SECRET", _hmac_secret, required_because=None),
                public_keys=env.read("JWT_PUBLIC_KEY_FILES", _public_key_files, default=""),
                issuer=env.read_optional("JWT_ISSUER", str, required_because=None),
                audience=env.read_optional("JWT_AUDIENCE", str, required_because=None),
                leeway=env.read("JWT_LEEWAY", _seconds(0, 300), default="30"),
                platform_claim=env.read_optional("JWT_PLATFORM_CLAIM", str, required_because=None),
            ),
            im_token_auth=env.read("IM_TOKEN_AUTH", _choice("on", "off"), default="on") == "on",
            login=LoginSettings(
                user_service_url=env.read_optional(
                    "USER_SERVICE_URL",
                    _url(("http", "https")),
                    required_because="it verifies users at login" if production else None,
                ),
                user_service_token=env.read_optional(
                    "USER_SERVICE_TOKEN",
                    _secret,
                    required_because="the user-service expects it" if production else None,
                ),
                user_service_timeout=env.read("USER_SERVICE_TIMEOUT", _seconds(0.1, 60), default="5"),
                dev_otp_code=env.read_optional("DEV_OTP_CODE", _secret, required_because=None)
                or (Secret("000000") if dev else None),
                internal_service_token=env.read_optional(
                    "INTERNAL_SERVICE_TOKEN", _service_token, required_because=None
                ),
                im_token_min_remaining=env.read("IM_TOKEN_MIN_REMAINING", _seconds(0, 30 * 86400), default="86400"),
            ),
            phase=env.read("PHASE", _integer(1, MAX_PHASE), default="4" if dev else "1"),
            route_table=env.read_optional("ROUTE_TABLE", _readable_file, required_because=None),
            max_body_bytes=env.read("MAX_BODY_BYTES", _integer(1024, 64 * 1024 * 1024), default=str(1024 * 1024)),
            client_write_timeout=env.read("CLIENT_WRITE_TIMEOUT", _seconds(0.01, 600), default="10"),
            admin=AdminSettings(
                api_keys=env.read("ADMIN_API_KEYS", _admin_keys, default=DEV_ADMIN_KEYS if dev else ""),
                jwt_role=env.read("ADMIN_JWT_ROLE", _claim_value, default="admin"),
                jwt_role_claim=env.read("ADMIN_JWT_ROLE_CLAIM", _claim_value, default="roles"),
                audit_max_entries=env.read("AUDIT_MAX_ENTRIES", _integer(1000, 100_000_000), default="1000000"),
            ),
            webhooks=WebhookSettings(
                secrets=env.read("WEBHOOK_SECRETS", _webhook_secrets, default=DEV_WEBHOOK_SECRET if dev else ""),
                allowed_networks=env.read("WEBHOOK_ALLOWED_CIDRS", _networks, default=""),
                max_body_bytes=env.read("WEBHOOK_MAX_BODY_BYTES", _integer(1024, 16 * 1024 * 1024), default="6291456"),
                block_errcode=env.read("WEBHOOK_BLOCK_ERRCODE", _integer(1, 2_000_000_000), default="20001"),
                fail_open=env.read("WEBHOOK_FAIL_POLICY", _choice("open", "closed"), default="open") == "open",
                banned_words_file=env.read_optional("WEBHOOK_BANNED_WORDS_FILE", _readable_file, required_because=None),
                flagged_words_file=env.read_optional(
                    "WEBHOOK_FLAGGED_WORDS_FILE", _readable_file, required_because=None
                ),
                max_messages_per_minute=env.read(
                    "WEBHOOK_MAX_MESSAGES_PER_MINUTE", _integer(0, 1_000_000), default="0"
                ),
                spool_dir=env.read("WEBHOOK_SPOOL_DIR", Path, default="webhook-spool"),
            ),
            rate_limits=RateLimitSettings(
                classes=env.read("RATE_LIMITS", _rate_limits, default=DEFAULT_RATE_LIMITS),
                fail_open=env.read("RATE_LIMIT_FAIL_POLICY", _choice("open", "closed"), default="open") == "open",
            ),
            cors=CORSSettings(
                *env.read("CORS_ALLOWED_ORIGINS", _origins, default=""),
                allow_credentials=env.read("CORS_ALLOW_CREDENTIALS", _choice("true", "false"), default="false")
                == "true",
            ),
            legacy=_legacy_settings(env),
            gifs=_gif_settings(env),
            stickers=StickerSettings(
                packs=env.read_optional("STICKER_PACKS", _file_or_directory, required_because=None),
                max_age=env.read("STICKER_MAX_AGE", _integer(0, 86400), default="300"),
            ),
            ws_guard=_ws_guard_settings(env, sandbox=f"ws://{sandbox_ws}" if dev else None),
        )
        if settings.cors.any_origin and settings.cors.allow_credentials:
            raise ConfigError(
                PREFIX + "CORS_ALLOWED_ORIGINS",
                "* cannot be combined with CORS_ALLOW_CREDENTIALS=true (browsers refuse it): list the origins",
            )
        if production and settings.login.dev_otp_code is not None:
            raise ConfigError(PREFIX + "DEV_OTP_CODE", "is only allowed in dev mode (`messenger-gw dev`)")
        timeouts = settings.openim_timeouts
        if timeouts.total < max(timeouts.connect + timeouts.pool, timeouts.read):
            raise ConfigError(
                PREFIX + "OPENIM_TOTAL_TIMEOUT",
                "must be at least OPENIM_CONNECT_TIMEOUT + OPENIM_POOL_TIMEOUT and at least OPENIM_READ_TIMEOUT",
            )
        env.reject_unknown()
        return settings

    def describe(self) -> Iterator[tuple[str, str]]:
        """The effective configuration as (variable, value) pairs, secrets masked."""
        t = self.openim_timeouts
        yield "mode", "dev" if self.dev else "production"
        yield PREFIX + "LISTEN", str(self.listen)
        yield PREFIX + "REDIS_URL", _mask_url(self.redis_url) if self.redis_url else "(unset: in-memory store)"
        yield PREFIX + "OPENIM_API_URL", self.openim_api_url or "(unset: embedded OpenIM sandbox)"
        yield PREFIX + "OPENIM_SECRET", "********"
        yield PREFIX + "OPENIM_ADMIN_USER_ID", self.openim_admin_user_id
        yield PREFIX + "OPENIM_WS_URL", self.openim_ws_url
        yield PREFIX + "PUBLIC_IM_URL", self.public_im_url
        yield PREFIX + "OPENIM_CONNECT_TIMEOUT", f"{t.connect:g}"
        yield PREFIX + "OPENIM_POOL_TIMEOUT", f"{t.pool:g}"
        yield PREFIX + "OPENIM_READ_TIMEOUT", f"{t.read:g}"
        yield PREFIX + "OPENIM_TOTAL_TIMEOUT", f"{t.total:g}"
        yield PREFIX + "OPENIM_MAX_CONNECTIONS", str(self.openim_max_connections)
        yield PREFIX + "ADMIN_TOKEN_MAX_AGE", f"{self.admin_token_max_age:g}"
        yield PREFIX + "SHUTDOWN_TIMEOUT", f"{self.shutdown_timeout:g}"
        yield PREFIX + "LOG_LEVEL", self.log_level
        yield PREFIX + "SESSION_TTL", f"{self.session_ttl:g}"
        yield PREFIX + "HANDSHAKE_RATE_LIMIT", f"{self.handshake_rate_limit} per minute per client IP"
        yield PREFIX + "TRUSTED_PROXIES", ",".join(map(str, self.trusted_proxies)) or "(none)"
        jwt = self.jwt
        yield PREFIX + "JWT_HS256_SECRET", "********" if jwt.hs256_secret else "(unset)"
        yield PREFIX + "JWT_PUBLIC_KEY_FILES", f"{len(jwt.public_keys)} key(s)"
        yield PREFIX + "JWT_ISSUER", jwt.issuer or "(not checked)"
        yield PREFIX + "JWT_AUDIENCE", jwt.audience or "(not checked)"
        yield PREFIX + "JWT_LEEWAY", f"{jwt.leeway:g}"
        yield PREFIX + "JWT_PLATFORM_CLAIM", jwt.platform_claim or "(unset: X-Platform-ID header)"
        yield PREFIX + "IM_TOKEN_AUTH", "on" if self.im_token_auth else "off"
        login = self.login
        yield PREFIX + "USER_SERVICE_URL", login.user_service_url or "(unset)"
        yield PREFIX + "USER_SERVICE_TOKEN", "********" if login.user_service_token else "(unset)"
        yield PREFIX + "USER_SERVICE_TIMEOUT", f"{login.user_service_timeout:g}"
        if self.dev:
            yield PREFIX + "DEV_OTP_CODE", "********"
        yield PREFIX + "INTERNAL_SERVICE_TOKEN", "********" if login.internal_service_token else "(unset: off)"
        yield PREFIX + "IM_TOKEN_MIN_REMAINING", f"{login.im_token_min_remaining:g}"
        yield PREFIX + "PHASE", str(self.phase)
        yield PREFIX + "ROUTE_TABLE", str(self.route_table) if self.route_table else "(the packaged im/routes.toml)"
        yield PREFIX + "MAX_BODY_BYTES", str(self.max_body_bytes)
        yield PREFIX + "CLIENT_WRITE_TIMEOUT", f"{self.client_write_timeout:g}"
        admin = self.admin
        yield PREFIX + "ADMIN_API_KEYS", ", ".join(k.name for k in admin.api_keys) or "(none)"
        yield PREFIX + "ADMIN_JWT_ROLE", f"{admin.jwt_role} in claim {admin.jwt_role_claim}"
        yield PREFIX + "AUDIT_MAX_ENTRIES", str(admin.audit_max_entries)
        hooks = self.webhooks
        yield PREFIX + "WEBHOOK_SECRETS", f"{len(hooks.secrets)} secret(s)" if hooks.secrets else "(none: receiver off)"
        yield PREFIX + "WEBHOOK_ALLOWED_CIDRS", ",".join(map(str, hooks.allowed_networks)) or "(any sender)"
        yield PREFIX + "WEBHOOK_MAX_BODY_BYTES", str(hooks.max_body_bytes)
        yield PREFIX + "WEBHOOK_BLOCK_ERRCODE", str(hooks.block_errcode)
        yield PREFIX + "WEBHOOK_FAIL_POLICY", "open" if hooks.fail_open else "closed"
        yield PREFIX + "WEBHOOK_BANNED_WORDS_FILE", str(hooks.banned_words_file or "(none)")
        yield PREFIX + "WEBHOOK_FLAGGED_WORDS_FILE", str(hooks.flagged_words_file or "(none)")
        yield PREFIX + "WEBHOOK_MAX_MESSAGES_PER_MINUTE", str(hooks.max_messages_per_minute or "(no limit)")
        yield PREFIX + "WEBHOOK_SPOOL_DIR", str(hooks.spool_dir)
        gifs = self.gifs
        yield PREFIX + "GIF_PROVIDER", gifs.provider
        yield PREFIX + "GIF_API_KEY", "********" if gifs.enabled else "(unset: GIF search off)"
        yield PREFIX + "GIF_API_URL", gifs.api_url
        yield PREFIX + "GIF_RATING", gifs.rating
        yield PREFIX + "GIF_CACHE_TTL", f"{gifs.cache_ttl:g}"
        yield PREFIX + "GIF_TIMEOUT", f"{gifs.timeout:g}"
        yield PREFIX + "GIF_MAX_CONNECTIONS", str(gifs.max_connections)
        default_packs = "(the shipped example pack)" if self.dev else "(none)"
        yield PREFIX + "STICKER_PACKS", str(self.stickers.packs) if self.stickers.packs else default_packs
        yield PREFIX + "STICKER_MAX_AGE", str(self.stickers.max_age)
        limits = self.rate_limits
        yield PREFIX + "RATE_LIMITS", ",".join(f"{name}={limits.classes[name] or 'off'}" for name in RATE_CLASSES)
        yield PREFIX + "RATE_LIMIT_FAIL_POLICY", "open" if limits.fail_open else "closed"
        cors = self.cors
        yield PREFIX + "CORS_ALLOWED_ORIGINS", "*" if cors.any_origin else ",".join(sorted(cors.origins)) or "(none)"
        yield PREFIX + "CORS_ALLOW_CREDENTIALS", str(cors.allow_credentials).lower()
        legacy = self.legacy
        yield PREFIX + "LEGACY_CHAT_URL", legacy.url or "(unset: the legacy chat service is off)"
        if legacy.url is not None:
            lt = legacy.timeouts
            yield PREFIX + "LEGACY_ROUTE_TABLE", str(legacy.route_table)
            yield PREFIX + "LEGACY_USER_HEADER", legacy.user_header
            yield PREFIX + "LEGACY_PLATFORM_HEADER", legacy.platform_header or "(none: not sent)"
            names = [name for name, _ in legacy.extra_headers()]
            yield PREFIX + "LEGACY_HEADERS", f"{', '.join(names)} (values masked)" if names else "(none)"
            yield PREFIX + "LEGACY_CONNECT_TIMEOUT", f"{lt.connect:g}"
            yield PREFIX + "LEGACY_POOL_TIMEOUT", f"{lt.pool:g}"
            yield PREFIX + "LEGACY_READ_TIMEOUT", f"{lt.read:g}"
            yield PREFIX + "LEGACY_TOTAL_TIMEOUT", f"{lt.total:g}"
            yield PREFIX + "LEGACY_MAX_CONNECTIONS", str(legacy.max_connections)
        guard = self.ws_guard
        yield PREFIX + "OPENIM_WS_URL_INTERNAL", guard.upstream_url or "(unset: /ws off; clients go to OpenIM directly)"
        yield PREFIX + "WS_MAX_CONNECTIONS", f"{guard.max_connections} per worker"
        yield PREFIX + "WS_MAX_CONNECTIONS_PER_USER", f"{guard.max_connections_per_user} per worker"
        yield PREFIX + "WS_HANDSHAKE_TIMEOUT", f"{guard.handshake_timeout:g}"
        yield PREFIX + "WS_IDLE_TIMEOUT", f"{guard.idle_timeout:g}"
        yield PREFIX + "WS_MAX_REFUSALS", f"{guard.max_refusals} per minute"
        if self.dev:
            yield PREFIX + "DEV_SANDBOX_LISTEN", str(self.dev_sandbox_listen)
            yield PREFIX + "DEV_SANDBOX_WS_LISTEN", str(self.dev_sandbox_ws_listen)


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)


def _gif_settings(env: _Reader) -> GifSettings:
    provider = env.read("GIF_PROVIDER", _choice(*GIF_PROVIDERS), default="giphy")
    return GifSettings(
        provider=provider,
        api_key=env.read_optional("GIF_API_KEY", _secret, required_because=None),
        api_url=env.read("GIF_API_URL", _provider_url, default=GIF_PROVIDERS[provider]),
        rating=env.read("GIF_RATING", _choice(*GIF_RATINGS), default="g"),
        cache_ttl=env.read("GIF_CACHE_TTL", _seconds(1, 86400), default="300"),
        timeout=env.read("GIF_TIMEOUT", _seconds(0.1, 60), default="5"),
        max_connections=env.read("GIF_MAX_CONNECTIONS", _integer(1, 1000), default="20"),
    )


def _provider_url(raw: str) -> str:
    # The API key travels in the URL (GIPHY's query, KLIPY's path): never over plain HTTP beyond
    # this machine. Plain HTTP on a loopback host is for stand-ins.
    url = _url(("http", "https"))(raw)
    parts = urlsplit(url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname or ""):
        raise ValueError("must be https:// (http:// only for a loopback host): the URL carries the API key")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _ws_guard_settings(env: _Reader, *, sandbox: str | None) -> WsGuardSettings:
    # Dev mode relays to the embedded sandbox's msg-gateway (``sandbox``); production only to the one it is told of.
    upstream = env.read_optional("OPENIM_WS_URL_INTERNAL", _url(("ws", "wss")), required_because=None)
    return WsGuardSettings(
        upstream_url=upstream or sandbox,
        max_connections=env.read("WS_MAX_CONNECTIONS", _integer(1, 1_000_000), default="20000"),
        max_connections_per_user=env.read("WS_MAX_CONNECTIONS_PER_USER", _integer(1, 1000), default="10"),
        handshake_timeout=env.read("WS_HANDSHAKE_TIMEOUT", _seconds(0.1, 60), default="10"),
        # OpenIM's own read deadline (pongWait); the SDK pings every 10 s.
        idle_timeout=env.read("WS_IDLE_TIMEOUT", _seconds(1, 3600), default="30"),
        max_refusals=env.read("WS_MAX_REFUSALS", _integer(1, 10_000), default="20"),
    )


class _Reader:
    """Reads prefixed variables and remembers which ones it knows."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._known: set[str] = set()

    def read(self, name: str, parse: Callable[[str], T], *, default: str | None) -> T:
        raw = self._raw(name)
        if raw is None:
            if default is None:
                raise ConfigError(PREFIX + name, "is required")
            raw = default
        return self._parse(name, parse, raw)

    def read_optional(self, name: str, parse: Callable[[str], T], *, required_because: str | None) -> T | None:
        raw = self._raw(name)
        if raw is None:
            if required_because:
                raise ConfigError(PREFIX + name, f"is required: {required_because}")
            return None
        return self._parse(name, parse, raw)

    def reject_unknown(self) -> None:
        for key in sorted(self._environ):
            if key.startswith(PREFIX) and key[len(PREFIX) :] not in self._known:
                raise ConfigError(key, "is not a known setting (a typo?); see `messenger-gw check-config --help`")

    def _raw(self, name: str) -> str | None:
        self._known.add(name)
        raw = self._environ.get(PREFIX + name)
        if raw is None or not raw.strip():
            return None
        return raw.strip()

    @staticmethod
    def _parse(name: str, parse: Callable[[str], T], raw: str) -> T:
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(PREFIX + name, str(exc)) from None


def _host_port(raw: str) -> HostPort:
    host, sep, port_text = raw.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected host:port, got {raw!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"write an IPv6 host in brackets, e.g. [::1]:8080, got {raw!r}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535, got {port_text!r}")
    return HostPort(host, int(port_text))


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not parts.hostname:
            raise ValueError(f"expected a {' or '.join(s + '://' for s in schemes)} URL with a host, got {raw!r}")
        if parts.query or parts.fragment:
            raise ValueError("must not carry a query or fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials (user:password@)")
        try:
            parts.port  # noqa: B018 - urlsplit validates the port lazily
        except ValueError:
            raise ValueError(f"has an invalid port: {raw!r}") from None
        return raw.rstrip("/")

    return parse


REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel")


def _redis_url(raw: str) -> Secret:
    # The URL may carry a password: errors describe it without echoing it.
    parts = urlsplit(raw)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in REDIS_SCHEMES)}")
    if parts.scheme.endswith("+sentinel"):
        SentinelURL.parse(raw)
        return Secret(raw)
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs a socket path")
    elif not parts.hostname:
        raise ValueError("needs a host")
    try:
        parts.port  # noqa: B018
    except ValueError:
        raise ValueError("has an invalid port") from None
    return Secret(raw)


def _mask_url(url: Secret) -> str:
    parts = urlsplit(url.reveal())
    userinfo, _, hosts = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        return url.reveal()
    return urlunsplit(parts._replace(netloc=f"{userinfo.partition(':')[0]}:********@{hosts}"))


def _secret(raw: str) -> Secret:
    return Secret(raw)


_ADMIN_KEY = re.compile(r"([A-Za-z0-9_.-]{1,64}):([0-9a-fA-F]{64})")


def _admin_keys(raw: str) -> tuple[AdminKey, ...]:
    keys = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        match = _ADMIN_KEY.fullmatch(part)
        if match is None:
            raise ValueError("expected name:sha256hex pairs, comma-separated (see docs/admin-api.md)")
        keys.append(AdminKey(match.group(1), bytes.fromhex(match.group(2))))
    if len({k.name for k in keys}) != len(keys):
        raise ValueError("each admin key needs its own name")
    return tuple(keys)


def _webhook_secrets(raw: str) -> tuple[Secret, ...]:
    secrets = tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())
    for secret in secrets:
        value = secret.reveal()
        if len(value) < 16 or not all(c.isalnum() or c in "-_" for c in value):
            raise ValueError(
                "each secret must be at least 16 characters of letters, digits, '-' or '_' (a URL path segment)"
            )
    return secrets


def _legacy_settings(env: _Reader) -> LegacySettings:
    url = env.read_optional("LEGACY_CHAT_URL", _url(("http", "https")), required_because=None)
    table = env.read_optional(
        "LEGACY_ROUTE_TABLE",
        _readable_file,
        required_because="the legacy chat service's routes are configuration (docs/legacy-chat.md)"
        if url is not None
        else None,
    )
    platform_header = env.read("LEGACY_PLATFORM_HEADER", _header_name_or_none, default="X-Platform-ID")
    legacy = LegacySettings(
        url=url,
        route_table=table,
        user_header=env.read("LEGACY_USER_HEADER", _header_name, default="X-User-ID"),
        platform_header=platform_header,
        headers=env.read("LEGACY_HEADERS", _legacy_headers_secret, default="{}"),
        timeouts=UpstreamTimeouts(
            connect=env.read("LEGACY_CONNECT_TIMEOUT", _seconds(0.01, 60), default="2"),
            pool=env.read("LEGACY_POOL_TIMEOUT", _seconds(0.01, 60), default="1"),
            read=env.read("LEGACY_READ_TIMEOUT", _seconds(0.01, 300), default="10"),
            total=env.read("LEGACY_TOTAL_TIMEOUT", _seconds(0.01, 600), default="15"),
        ),
        max_connections=env.read("LEGACY_MAX_CONNECTIONS", _integer(1, 10_000), default="50"),
    )
    t = legacy.timeouts
    if t.total < max(t.connect + t.pool, t.read):
        raise ConfigError(
            PREFIX + "LEGACY_TOTAL_TIMEOUT",
            "must be at least LEGACY_CONNECT_TIMEOUT + LEGACY_POOL_TIMEOUT and at least LEGACY_READ_TIMEOUT",
        )
    names = {name.lower() for name, _ in legacy.extra_headers()}
    identity = {legacy.user_header.lower(), (legacy.platform_header or "").lower()}
    if names & identity:
        raise ConfigError(PREFIX + "LEGACY_HEADERS", "must not set the identity headers: the gateway sets them")
    return legacy


# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Set by the gateway or the pool on every forwarded request, or hop-by-hop: never configurable.
_RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "te", "trailer", "upgrade",
     "content-type", "x-forwarded-for", "x-forwarded-proto", "x-request-id"}
)  # fmt: skip


def _header_name(raw: str) -> str:
    if not _TOKEN.fullmatch(raw):
        raise ValueError(f"{raw!r} is not an HTTP header field name")
    if raw.lower() in _RESERVED_HEADERS or raw.lower().startswith("proxy-"):
        raise ValueError(f"{raw} is set by the gateway itself")
    return raw


def _header_name_or_none(raw: str) -> str | None:
    return None if raw.lower() == "none" else _header_name(raw)


def _legacy_headers(raw: str) -> list[tuple[str, str]]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError('expected a JSON object of header fields, e.g. {"X-Service-Key": "..."}') from None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError('expected a JSON object of header fields with string values, e.g. {"X-Service-Key": "..."}')
    for name, field in value.items():
        _header_name(name)
        if not field.isprintable():  # never echoed: it may be a key
            raise ValueError(f"the value of {name} holds a control character")
    return list(value.items())


def _legacy_headers_secret(raw: str) -> Secret:
    _legacy_headers(raw)
    return Secret(raw)


def _claim_value(raw: str) -> str:
    if not raw or len(raw) > 128:
        raise ValueError("must be 1 to 128 characters")
    return raw


def _readable_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"{raw} is not a readable file")
    return path


def _file_or_directory(raw: str) -> Path:
    path = Path(raw)
    if not (path.is_file() or path.is_dir()):
        raise ValueError(f"{raw} is neither a readable file nor a directory")
    return path


def _hmac_secret(raw: str) -> Secret:
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes (RFC 7518, section 3.2)")
    return Secret(raw)


def _service_token(raw: str) -> Secret:
    if len(raw) < 16:
        raise ValueError("must be at least 16 characters")
    return Secret(raw)


def _networks(raw: str) -> tuple[Network, ...]:
    networks = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR block") from None
    return tuple(networks)


_PEM_BLOCK = re.compile(rb"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def _public_key_files(raw: str) -> tuple[PublicKey, ...]:
    keys: list[PublicKey] = []
    for path in filter(None, (p.strip() for p in raw.split(","))):
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from None
        blocks = _PEM_BLOCK.findall(pem)
        if not blocks:
            raise ValueError(f"{path} holds no PEM public key (-----BEGIN PUBLIC KEY-----)")
        for block in blocks:
            key = serialization.load_pem_public_key(block)
            rs256 = isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048
            es256 = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
            if not (rs256 or es256):
                raise ValueError(
                    f"{path}: only RSA keys of 2048 bits or more (RS256) and P-256 keys (ES256) are accepted"
                )
            keys.append(key)  # type: ignore[arg-type]  # narrowed by rs256/es256 above
    return tuple(keys)


_RATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)/([smh]):([0-9]+)")
_PER_SECOND = {"s": 1.0, "m": 60.0, "h": 3600.0}


def _rate_limits(raw: str) -> dict[str, BucketLimit | None]:
    """``class=<rate>/<s|m|h>:<burst>`` or ``class=off``, comma-separated, over the defaults."""
    classes: dict[str, BucketLimit | None] = {}
    for source in (DEFAULT_RATE_LIMITS, raw):
        given: set[str] = set()
        for part in filter(None, (p.strip() for p in source.split(","))):
            name, sep, spec = (s.strip() for s in part.partition("="))
            if not sep or name not in RATE_CLASSES:
                raise ValueError(f"{part!r}: expected class=<rate>/<s|m|h>:<burst> or class=off, the classes being "
                                 f"{', '.join(RATE_CLASSES)}")  # fmt: skip
            if name in given:
                raise ValueError(f"the class {name} is given twice")
            given.add(name)
            if spec == "off":
                classes[name] = None
                continue
            match = _RATE.fullmatch(spec)
            if match is None:
                raise ValueError(f"{part!r}: expected <rate>/<s|m|h>:<burst>, e.g. {name}=5/s:20, or off")
            count, unit, burst = float(match.group(1)), match.group(2), int(match.group(3))
            rate = count / _PER_SECOND[unit]
            if not 0 < rate <= 1_000_000 or not 1 <= burst <= 1_000_000:
                raise ValueError(f"{part!r}: the rate must be above 0 and the burst from 1 to 1000000")
            classes[name] = BucketLimit(rate, burst, spec)
    return classes


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origins(raw: str) -> tuple[frozenset[str], bool]:
    """The allowed origins, normalised as browsers send them, and whether ``*`` was given."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if "*" in parts:
        if len(parts) > 1:
            raise ValueError("* allows every origin: give it alone, or list origins without it")
        return frozenset(), True
    return frozenset(_origin(part) for part in parts), False


def _origin(raw: str) -> str:
    """``scheme://host[:port]`` as a browser's ``Origin`` header has it: lower case, the host in
    IDNA (punycode), the scheme's default port left out."""
    if raw == "null":
        raise ValueError("null is the origin of sandboxed and file:// pages: any page can send it, never allow it")
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme) or not parts.netloc or not parts.hostname:
        raise ValueError(f"{raw!r} is not an origin (scheme://host[:port], e.g. https://app.example.com)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{raw!r}: an origin has no path, query, fragment or user, only scheme://host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} has an invalid port") from None
    host = parts.hostname
    if ":" in host:
        host = f"[{ipaddress.IPv6Address(host).compressed}]"
    elif not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"{raw!r}: the host is not a valid internationalised domain name") from None
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}:{port}"
    return f"{scheme}://{host}"


def _user_id(raw: str) -> str:
    # OpenIM accepts user IDs of Unicode letters, digits and underscores only.
    if not all(ch.isalnum() or ch == "_" for ch in raw):
        raise ValueError(f"must contain only letters, digits and '_', got {raw!r}")
    return raw


def _seconds(low: float, high: float) -> Callable[[str], float]:
    return _bounded(float, low, high, expected="a number of seconds", unit=" seconds")


def _integer(low: int, high: int) -> Callable[[str], int]:
    return _bounded(int, low, high, expected="a whole number")


def _bounded(kind: type[N], low: N, high: N, *, expected: str, unit: str = "") -> Callable[[str], N]:
    def parse(raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"expected {expected}, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low:g} and {high:g}{unit}, got {raw}")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<master name>[/<db>]``.

    The sentinels to ask (port 26379 unless given) and the name they know the master by; the
    credentials are for the master and the sentinels alike; ``rediss+sentinel://`` speaks TLS
    to both.
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> SentinelURL:
        """The parts of a Sentinel URL; a ``ValueError`` that never quotes the password."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("redis" + SENTINEL_SUFFIX, "rediss" + SENTINEL_SUFFIX):
            raise ValueError("a Sentinel URL starts with redis+sentinel:// or rediss+sentinel://")
        netloc, _, path = rest.partition("/")
        userinfo, at, hosts = netloc.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username, password = unquote(user) or None, unquote(secret) if colon else None
        sentinels = tuple(_host_and_port(item) for item in hosts.split(","))
        master, _, db = path.strip("/").partition("/")
        if not master:
            raise ValueError("a Sentinel URL names the master after the hosts: .../<master name>[/<db>]")
        if db and not db.isdigit():
            raise ValueError(f"the database after the master's name must be a number, not {db!r}")
        return cls(sentinels, unquote(master), int(db or 0), username, password, scheme.startswith("rediss"))


def _host_and_port(item: str) -> tuple[str, int]:
    host, port = item, ""
    if item.startswith("["):  # [IPv6]:port
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    elif ":" in item:
        host, _, port = item.rpartition(":")
    if not host:
        raise ValueError("every sentinel needs a host")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("a sentinel's port must be a number from 1 to 65535")  # not echoed: it may be a password
    return host, int(port or SENTINEL_PORT)
