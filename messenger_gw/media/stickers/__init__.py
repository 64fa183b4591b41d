"""The sticker catalog: packs from reviewed TOML files, validated, re-read when they change; its routes."""

from .catalog import EXAMPLE_PACKS, STICKER_CATALOG, Snapshot, StickerCatalog, StickerCatalogError
from .routes import add_routes

__all__ = ["EXAMPLE_PACKS", "STICKER_CATALOG", "Snapshot", "StickerCatalog", "StickerCatalogError", "add_routes"]
