"""Media for messages: GIF search through a provider (GIPHY, KLIPY) and the sticker catalog, with their routes.

Clients send what they chose as OpenIM messages of their own (docs/media.md): a GIF as a picture
message (contentType 102), a sticker as a custom message (110) naming its pack and sticker.
"""

from aiohttp import web

from . import gifs, stickers
from .gifs import GIF_SEARCH, PROVIDERS, GifSearch, gif_search
from .stickers import EXAMPLE_PACKS, STICKER_CATALOG, StickerCatalog, StickerCatalogError


def add_routes(app: web.Application) -> None:
    gifs.add_routes(app)
    stickers.add_routes(app)


__all__ = [
    "EXAMPLE_PACKS",
    "GIF_SEARCH",
    "PROVIDERS",
    "STICKER_CATALOG",
    "GifSearch",
    "StickerCatalog",
    "StickerCatalogError",
    "add_routes",
    "gif_search",
]
