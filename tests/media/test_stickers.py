"""The sticker catalog: packs from reviewed TOML files, served with ETags, validated, re-read when they change."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict

from messenger_gw import cli
from messenger_gw.app import create_app
from messenger_gw.media import STICKER_CATALOG, StickerCatalog, StickerCatalogError
from messenger_gw.media.stickers import catalog
from messenger_gw.metrics import METRICS, Metrics
from messenger_gw.sdk import GatewayClient
from messenger_gw.sdk.client import Response
from messenger_gw.settings import ConfigError, Settings
from tests.conftest import ENVELOPE_KEYS, StartGateway, gateway_settings, sample
from tests.media.conftest import LogIn

CLASSIC = """
[[pack]]
id = "classic"
title = "Classic"
attribution = "Drawn by the design team, CC0"

[[pack.sticker]]
id = "wave"
title = "Waving hand"
url = "https://cdn.example.com/stickers/classic/wave.webp"
width = 160
height = 160
size = 10240

[[pack.sticker]]
id = "ok"
url = "https://cdn.example.com/stickers/classic/ok.webp"
width = 160
height = 120
"""
CATS = """
[[pack]]
id = "cats"
title = "Cats"
cover = "sleepy"

[[pack.sticker]]
id = "grumpy"
url = "https://cdn.example.com/stickers/cats/grumpy.png"
width = 128
height = 128

[[pack.sticker]]
id = "sleepy"
title = "Sleepy cat"
url = "https://cdn.example.com/stickers/cats/sleepy.png"
width = 128
height = 96
"""


async def get(client: GatewayClient, path: str, **headers: str) -> Response:
    signed = client.signed_headers("GET", path, b"") | headers
    response = await client._send("GET", path, b"", signed)
    return Response(response.status, CIMultiDict(response.headers), response.body)  # aiohttp writes "Etag"


@pytest.fixture
def packs(tmp_path: Path) -> Path:
    directory = tmp_path / "packs"
    directory.mkdir()
    (directory / "10-classic.toml").write_text(CLASSIC)
    (directory / "20-cats.toml").write_text(CATS)
    (directory / "README.txt").write_text("not a pack: only *.toml files are read")
    return directory


@pytest.fixture
def every_look_rereads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog, "RECHECK_SECONDS", 0.0)


async def test_the_catalog_lists_its_packs_and_serves_each_with_an_etag_and_cache_headers(
    start_gateway: StartGateway, log_in: LogIn, packs: Path
) -> None:
    alice = await log_in(await start_gateway(STICKER_PACKS=str(packs), STICKER_MAX_AGE="600"), "alice")
    listed = await get(alice, "/stickers/packs")
    assert listed.status == 200
    assert listed.headers["Cache-Control"] == "private, max-age=600"
    index = listed.json()["packs"]
    assert [(p["id"], p["title"], p["count"]) for p in index] == [("classic", "Classic", 2), ("cats", "Cats", 2)]
    assert index[1]["cover"] == {"id": "sleepy", "url": "https://cdn.example.com/stickers/cats/sleepy.png",
                                 "width": 128, "height": 96}  # fmt: skip
    classic = await get(alice, "/stickers/packs/classic")
    assert classic.status == 200
    assert classic.headers["ETag"] == f'"{index[0]["version"]}"', "the list names each pack's current version"
    assert classic.headers["Cache-Control"] == "private, max-age=600"
    assert classic.json() == {
        "id": "classic",
        "title": "Classic",
        "attribution": "Drawn by the design team, CC0",
        "cover": "wave",
        "stickers": [
            {"id": "wave", "title": "Waving hand", "url": "https://cdn.example.com/stickers/classic/wave.webp",
             "width": 160, "height": 160, "size": 10240},
            {"id": "ok", "title": "ok", "url": "https://cdn.example.com/stickers/classic/ok.webp",
             "width": 160, "height": 120},
        ],
    }  # fmt: skip
    assert listed.headers["ETag"] not in (classic.headers["ETag"], f'"{index[1]["version"]}"')


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"stale", {etag}', "*", " {etag} "],
)
async def test_if_none_match_naming_the_current_version_is_304_with_its_etag_and_cache_headers(
    start_gateway: StartGateway, log_in: LogIn, packs: Path, if_none_match: str
) -> None:
    alice = await log_in(await start_gateway(STICKER_PACKS=str(packs)), "alice")
    for path in ("/stickers/packs", "/stickers/packs/cats"):
        first = await get(alice, path)
        etag = first.headers["ETag"]
        again = await get(alice, path, **{"If-None-Match": if_none_match.format(etag=etag)})
        assert (again.status, again.body) == (304, b"")
        assert again.headers["ETag"] == etag
        assert again.headers["Cache-Control"] == "private, max-age=300"


async def test_if_none_match_naming_another_version_gets_the_whole_answer(
    start_gateway: StartGateway, log_in: LogIn, packs: Path
) -> None:
    alice = await log_in(await start_gateway(STICKER_PACKS=str(packs)), "alice")
    response = await get(alice, "/stickers/packs/cats", **{"If-None-Match": '"0123456789abcdef"'})
    assert response.status == 200
    assert response.json()["id"] == "cats"


async def test_a_changed_file_is_served_with_new_etags_after_the_recheck(
    start_gateway: StartGateway, log_in: LogIn, packs: Path, every_look_rereads: None
) -> None:
    gateway = await start_gateway(STICKER_PACKS=str(packs))
    alice = await log_in(gateway, "alice")
    before = {p: (await get(alice, p)).headers["ETag"] for p in ("/stickers/packs", "/stickers/packs/cats",
                                                                  "/stickers/packs/classic")}  # fmt: skip
    (packs / "20-cats.toml").write_text(CATS.replace('title = "Sleepy cat"', 'title = "Very sleepy cat"'))
    after = {p: await get(alice, p, **{"If-None-Match": before[p]}) for p in before}
    assert after["/stickers/packs/classic"].status == 304, "an unchanged pack keeps its version"
    cats = after["/stickers/packs/cats"]
    assert (cats.status, cats.json()["stickers"][1]["title"]) == (200, "Very sleepy cat")
    assert after["/stickers/packs"].status == 200, "the list names the new version of the pack"
    assert after["/stickers/packs"].json()["packs"][1]["version"] == cats.headers["ETag"].strip('"')
    (packs / "30-more.toml").write_text(CLASSIC.replace('id = "classic"', 'id = "more"'))
    assert (await get(alice, "/stickers/packs/more")).status == 200
    assert sample(gateway.app[METRICS], "messenger_gw_sticker_catalog_loads_total", outcome="loaded") == 3


async def test_a_change_that_does_not_validate_keeps_the_catalog_and_is_logged_once(
    start_gateway: StartGateway,
    log_in: LogIn,
    packs: Path,
    every_look_rereads: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway = await start_gateway(STICKER_PACKS=str(packs))
    alice = await log_in(gateway, "alice")
    before = (await get(alice, "/stickers/packs/cats")).body
    (packs / "20-cats.toml").write_text(CATS.replace("width = 128", "width = 0", 1))
    for _ in range(3):
        response = await get(alice, "/stickers/packs/cats")
        assert (response.status, response.body) == (200, before)
    errors = [
        r for r in caplog.records if r.name == "messenger_gw.media.stickers.catalog" and r.levelno >= logging.ERROR
    ]
    assert len(errors) == 1
    assert (
        "20-cats.toml: pack 1 (cats): sticker 1: width: a whole number from 1 to 4096, got 0" in errors[0].getMessage()
    )
    assert sample(gateway.app[METRICS], "messenger_gw_sticker_catalog_loads_total", outcome="rejected") == 1
    (packs / "20-cats.toml").unlink()
    assert (await get(alice, "/stickers/packs/cats")).status == 404, "a valid catalog again: the pack is gone"


async def test_an_unknown_pack_is_404(start_gateway: StartGateway, log_in: LogIn, packs: Path) -> None:
    alice = await log_in(await start_gateway(STICKER_PACKS=str(packs)), "alice")
    response = await get(alice, "/stickers/packs/dogs")
    body: dict[str, Any] = response.json()
    assert (response.status, set(body), body["errCode"], body["errMsg"]) == (
        404, ENVELOPE_KEYS, 40400, "No such sticker pack"
    )  # fmt: skip


async def test_the_catalog_is_for_logged_in_users(start_gateway: StartGateway, packs: Path) -> None:
    gateway = await start_gateway(STICKER_PACKS=str(packs))
    async with gateway.client() as anonymous:
        assert (await anonymous._send("GET", "/stickers/packs", b"", {})).status == 401
        await anonymous.handshake(platform_id=5)
        assert (await get(anonymous, "/stickers/packs/cats")).status == 401


async def test_production_without_sticker_packs_has_an_empty_catalog(
    start_gateway: StartGateway, log_in: LogIn
) -> None:
    alice = await log_in(await start_gateway(), "alice")
    response = await get(alice, "/stickers/packs")
    assert (response.status, response.json()) == (200, {"packs": []})


def test_dev_mode_ships_an_example_pack_that_validates() -> None:
    shipped = StickerCatalog.of(Settings.from_env({}, dev=True), metrics=Metrics())
    assert shipped.path == catalog.EXAMPLE_PACKS
    index = orjson.loads(shipped.current().index.body)["packs"]
    assert [p["id"] for p in index] == ["twemoji-hello"]
    assert index[0]["count"] == 6


# -- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('id = "classic"', 'id = "class ic"'), "pack 1 (class ic): id: 1 to 64 letters, digits, '-' or '_'"),
        (('title = "Classic"\n', ""), "pack 1 (classic): title: 1 to 100 printable characters, got None"),
        (('id = "ok"', 'id = "wave"'), "sticker 2: the id 'wave' is used twice in the pack"),
        (
            ("https://cdn.example.com/stickers/classic/ok.webp", "http://cdn.example.com/ok.webp"),
            "sticker 2: url: an https:// URL with a host",
        ),
        (("https://cdn.example.com/stickers/classic/ok.webp", "javascript:alert(1)"), "sticker 2: url:"),
        (("height = 120", "height = 5000"), "sticker 2: height: a whole number from 1 to 4096, got 5000"),
        (("height = 120", 'height = "120"'), "sticker 2: height: a whole number from 1 to 4096, got '120'"),
        (("height = 120", "height = true"), "sticker 2: height: a whole number from 1 to 4096, got True"),
        (("size = 10240", "size = 0"), "sticker 1: size: a whole number from 1"),
        (("height = 120\n", ""), "sticker 2: height: a whole number from 1 to 4096, got None"),
        (("size = 10240", "sizes = 10240"), "sticker 1: unknown key(s) ['sizes']"),
        (('attribution = "', 'author = "'), "pack 1 (classic): unknown key(s) ['author']"),
        (('title = "Classic"', 'title = "Classic"\ncover = "nope"'), "cover: 'nope' is not one of the pack's"),
        (("[[pack]]", "[[packs]]"), "a sticker file holds [[pack]] tables and nothing else"),
        (("width = 160\n", "width = \n"), "not valid TOML"),
    ],
)
def test_a_catalog_that_does_not_validate_is_refused_naming_the_file_and_pack(
    tmp_path: Path, change: tuple[str, str], problem: str
) -> None:
    path = tmp_path / "classic.toml"
    path.write_text(CLASSIC.replace(*change, 1))
    with pytest.raises(StickerCatalogError) as error:
        StickerCatalog(path, max_age=300, metrics=Metrics())
    assert str(error.value).startswith(str(path))
    assert problem in str(error.value)


def test_a_pack_without_stickers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.toml"
    path.write_text('[[pack]]\nid = "empty"\ntitle = "Empty"\n')
    with pytest.raises(StickerCatalogError, match=r"pack 1 \(empty\): a pack needs at least one \[\[pack.sticker\]\]"):
        StickerCatalog(path, max_age=300, metrics=Metrics())


def test_a_pack_id_used_by_two_files_names_both(packs: Path) -> None:
    (packs / "30-again.toml").write_text(CATS)
    with pytest.raises(StickerCatalogError) as error:
        StickerCatalog(packs, max_age=300, metrics=Metrics())
    assert str(error.value) == (
        f"{packs / '30-again.toml'}: pack 1 (cats): the pack id is used by {packs / '20-cats.toml'} too"
    )


def test_the_gateway_does_not_start_with_a_bad_catalog(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CLASSIC.replace("width = 160", "width = -1", 1))
    with pytest.raises(StickerCatalogError, match="width"):
        create_app(gateway_settings("http://127.0.0.1:10002", STICKER_PACKS=str(path)))


def test_sticker_packs_must_name_a_file_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        gateway_settings("http://127.0.0.1:10002", STICKER_PACKS=str(tmp_path / "missing"))
    assert error.value.variable == "MESSENGER_GW_STICKER_PACKS"


def test_the_app_holds_the_catalog_it_validated(packs: Path) -> None:
    app = create_app(gateway_settings("http://127.0.0.1:10002", STICKER_PACKS=str(packs)))
    assert app[STICKER_CATALOG].pack_count == 2


def test_check_config_reports_a_bad_catalog(
    tmp_path: Path, gateway_env: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CLASSIC.replace('id = "ok"', 'id = "wave"'))
    gateway_env(STICKER_PACKS=str(path))
    assert cli.main(["check-config", "--dev"]) == cli.EXIT_CONFIG
    assert capsys.readouterr().err == (
        f"messenger-gw: sticker catalog error: {path}: pack 1 (classic): sticker 2: the id 'wave' is used twice"
        " in the pack\n"
    )
    path.write_text(CLASSIC)
    assert cli.main(["check-config", "--dev"]) == 0
