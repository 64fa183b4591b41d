"""The provider interface: one page of GIFs for a query, in the shape of the message that sends one.

A provider turns a :class:`Query` into a :class:`Page` of :class:`Gif`; each GIF carries three
renditions shaped as OpenIM's ``PictureBaseInfo`` (``sourcePicture``, ``bigPicture``,
``snapshotPicture`` of a picture message, contentType 102), so a client sends what it was shown.
Every failure is a :class:`ProviderError` (a :class:`ProviderTimeout` when the provider was too
slow) whose text never holds the API key, which the providers put in the URL.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from messenger_gw.settings import Secret

Kind = Literal["search", "trending"]
MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a page of 50 GIFs with every rendition is about 200 KiB
MAX_TITLE_CHARS = 200
GIF_TYPE = "image/gif"


class ProviderError(Exception):
    """The provider failed, refused or answered something else than its documented shape."""


class ProviderTimeout(ProviderError):
    """The provider did not answer within the gateway's timeout."""


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    kind: Kind
    q: str  # "" for trending
    limit: int
    pos: str | None  # the cursor of a previous page's ``next``; None for the first page


@dataclasses.dataclass(frozen=True, slots=True)
class Picture:
    """One rendition, as OpenIM's ``PictureBaseInfo``: what a picture message carries."""

    uuid: str
    type: str
    size: int  # bytes; 0 when the provider does not say
    width: int
    height: int
    url: str

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Gif:
    id: str
    title: str
    source: Picture  # the full GIF
    big: Picture  # the GIF a conversation shows
    snapshot: Picture  # the small animated GIF a picker and a message bubble show

    def as_json(self) -> dict[str, Any]:
        picture = {"sourcePicture": self.source, "bigPicture": self.big, "snapshotPicture": self.snapshot}
        return {"id": self.id, "title": self.title, "picture": {k: v.as_json() for k, v in picture.items()}}


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    gifs: list[Gif]
    next: str | None

    def as_json(self, provider: str) -> dict[str, Any]:
        return {"provider": provider, "results": [gif.as_json() for gif in self.gifs], "next": self.next}


class Provider(abc.ABC):
    """A GIF API: its name, the page sizes it takes, its cursor, its answers."""

    name: ClassVar[str]
    min_limit: ClassVar[int]
    max_limit: ClassVar[int]

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: Secret, rating: str) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._key = key
        self.rating = rating  # one of settings.GIF_RATINGS; each provider says it in its own terms

    @abc.abstractmethod
    def check_cursor(self, kind: Kind, pos: str) -> None:
        """Raise ``ValueError`` unless ``pos`` is a cursor this provider hands out for ``kind``."""

    @abc.abstractmethod
    async def fetch(self, query: Query) -> Page:
        """One page of GIFs; :class:`ProviderError` on any failure."""

    async def get_json(self, path: str, params: dict[str, str]) -> Any:
        """GET ``path`` below the base URL; the decoded JSON of a 200, bounded in size."""
        try:
            # No redirects: the key is in the URL, and the provider's answer is right here or nowhere.
            async with self._session.get(self._base_url + path, params=params, allow_redirects=False) as response:
                status = response.status
                body = await _read_bounded(response) if status == 200 else b""
        except TimeoutError:
            raise ProviderTimeout(f"{self.name} did not answer in time") from None
        except (aiohttp.ClientError, ValueError) as exc:
            raise ProviderError(self.redact(f"{self.name}: {type(exc).__name__}: {exc}")) from None
        if status != 200:
            raise ProviderError(f"{self.name} answered HTTP {status}")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ProviderError(f"{self.name} answered something that is not JSON") from None

    def redact(self, text: str) -> str:
        """``text`` with the API key, as written or URL-encoded, masked (an exception may quote the URL)."""
        key = self._key.reveal()
        for form in {key, quote(key, safe=""), quote(key)}:
            if form:
                text = text.replace(form, "********")
        return text


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    if (response.content_length or 0) > MAX_ANSWER_BYTES:
        raise ValueError(f"the answer declares {response.content_length} bytes, over {MAX_ANSWER_BYTES}")
    parts, total = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):  # decoded: a gzip answer counts expanded
        total += len(chunk)
        if total > MAX_ANSWER_BYTES:
            raise ValueError(f"the answer is over {MAX_ANSWER_BYTES} bytes")
        parts.append(chunk)
    return b"".join(parts)


def number(value: object) -> int:
    """A dimension or size the provider wrote as a number or a string of digits; 0 otherwise."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        return int(value)
    return 0


def picture(rendition: object, uuid: str) -> Picture | None:
    """A rendition object ``{url, width, height, size}`` as a picture OpenIM accepts (https URL, sizes)."""
    if not isinstance(rendition, dict):
        return None
    url, width, height = rendition.get("url"), number(rendition.get("width")), number(rendition.get("height"))
    if not isinstance(url, str) or not _is_https(url) or not width or not height:
        return None  # OpenIM refuses a picture without its url, width and height
    return Picture(uuid=uuid, type=GIF_TYPE, size=number(rendition.get("size")), width=width, height=height, url=url)


def title(value: object) -> str:
    return value[:MAX_TITLE_CHARS] if isinstance(value, str) else ""


def _is_https(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and len(url) <= 2048


def first(*candidates: Picture | None) -> Picture | None:
    return next((c for c in candidates if c is not None), None)
