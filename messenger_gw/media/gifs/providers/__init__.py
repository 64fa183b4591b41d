"""The GIF providers behind one interface: GIPHY and KLIPY."""

from .base import Gif, Kind, Page, Picture, Provider, ProviderError, ProviderTimeout, Query
from .giphy import Giphy
from .klipy import Klipy

PROVIDERS: dict[str, type[Provider]] = {Giphy.name: Giphy, Klipy.name: Klipy}

__all__ = [
    "PROVIDERS",
    "Gif",
    "Giphy",
    "Kind",
    "Klipy",
    "Page",
    "Picture",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "Query",
]
