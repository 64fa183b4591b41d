"""GIF search: the providers (GIPHY, KLIPY), the shared cache and single-flight fetch, the routes."""

from .providers import PROVIDERS, Gif, Page, Picture, Provider, ProviderError, ProviderTimeout, Query
from .routes import add_routes
from .search import GIF_SEARCH, BadGifProvider, GifProviderTimeout, GifSearch, GifSearchOff, gif_search

__all__ = [
    "GIF_SEARCH",
    "PROVIDERS",
    "BadGifProvider",
    "Gif",
    "GifProviderTimeout",
    "GifSearch",
    "GifSearchOff",
    "Page",
    "Picture",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "Query",
    "add_routes",
    "gif_search",
]
