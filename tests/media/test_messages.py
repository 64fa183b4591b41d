"""What a client sends of a GIF or a sticker (docs/media.md), accepted as OpenIM v3.8.3 accepts it: through
the gateway's /im/msg/send_msg, and over the msg-gateway WebSocket by the official SDK."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from messenger_gw.sandbox import Sandbox
from messenger_gw.sdk import GatewayClient
from tests.conftest import Gateway
from tests.media.conftest import LogIn
from tests.media.standins import GiphyStandIn
from tests.media.test_stickers import CATS
from tests.openim_sdk import run_scenario
from tests.sandbox.fixtures import IM, im, ws_url  # noqa: F401 - fixtures

StartWith = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def sticker_packs(tmp_path: Path) -> Path:
    path = tmp_path / "cats.toml"
    path.write_text(CATS)
    return path


async def chosen_gif(client: GatewayClient) -> dict[str, Any]:
    response = await client.request("GET", "/gifs/search?q=cats&limit=1")
    assert response.status == 200, response.body
    result: dict[str, Any] = response.json()["results"][0]
    return result


async def chosen_sticker(client: GatewayClient, pack_id: str, sticker_id: str) -> dict[str, str]:
    """The custom elem of docs/media.md for a sticker of the catalog, its description the sticker's title."""
    pack = (await client.request("GET", f"/stickers/packs/{pack_id}")).json()
    [sticker] = [s for s in pack["stickers"] if s["id"] == sticker_id]
    data = {"type": "sticker", "packID": pack_id, "stickerID": sticker_id}
    return {"data": orjson.dumps(data).decode(), "description": sticker["title"], "extension": ""}


def stored_contents(sandbox: Sandbox, conversation_id: str) -> list[tuple[int, Any]]:
    return [(m["contentType"], orjson.loads(base64.b64decode(m["content"]))) for m in sandbox.messages[conversation_id]]


async def test_a_gif_and_a_sticker_sent_through_im_send_msg_are_stored_as_sent(
    giphy_gateway: StartWith,
    giphy: tuple[GiphyStandIn, str],
    log_in: LogIn,
    sandbox: Sandbox,
    sticker_packs: Path,
) -> None:
    gateway = await giphy_gateway(PHASE="4", STICKER_PACKS=str(sticker_packs))
    alice, bob = await log_in(gateway, "alice"), await log_in(gateway, "bob")
    picture = (await chosen_gif(alice))["picture"]
    sticker = await chosen_sticker(alice, "cats", "sleepy")
    for content_type, content in ((102, picture), (110, sticker)):
        reply = await alice.call(
            "/im/msg/send_msg", {"recvID": "bob", "sessionType": 1, "contentType": content_type, "content": content}
        )
        assert reply["errCode"] == 0, reply
    assert stored_contents(sandbox, "si_alice_bob") == [(102, picture), (110, sticker)]
    # bob resolves the sticker through the catalog, as a receiving client does
    received = orjson.loads(stored_contents(sandbox, "si_alice_bob")[1][1]["data"])
    pack = (await bob.request("GET", f"/stickers/packs/{received['packID']}")).json()
    assert [s["url"] for s in pack["stickers"] if s["id"] == received["stickerID"]] == [
        "https://cdn.example.com/stickers/cats/sleepy.png"
    ]


@pytest.mark.slow
async def test_the_sdk_sends_a_gif_and_a_sticker_over_the_websocket_and_the_receiver_gets_them_whole(
    giphy_gateway: StartWith,
    giphy: tuple[GiphyStandIn, str],
    log_in: LogIn,
    im: IM,  # noqa: F811 - the imported fixture
    sticker_packs: Path,
) -> None:
    gateway = await giphy_gateway(STICKER_PACKS=str(sticker_packs))
    carol = await log_in(gateway, "carol")  # finds them; the SDK's users hold tokens of their own
    picture = (await chosen_gif(carol))["picture"]
    sticker = await chosen_sticker(carol, "cats", "sleepy")
    await im.register("alice", "bob")
    result = await run_scenario(
        "media.mjs",
        {"alice": await im.login("alice"), "bob": await im.login("bob"), "picture": picture, "sticker": sticker},
    )
    assert result["sentGif"] == {"ok": True, "errCode": 0}
    assert result["sentSticker"] == {"ok": True, "errCode": 0}
    gif, custom = result["received"]
    assert (gif["sendID"], gif["contentType"]) == ("alice", 102)
    assert {k: gif["pictureElem"][k] for k in ("sourcePicture", "bigPicture", "snapshotPicture")} == picture
    assert (custom["contentType"], custom["customElem"]) == (110, sticker)
    assert result["unhandled"] == []
