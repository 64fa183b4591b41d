"""The sandbox's msg-gateway: OpenIM v3.8.3's client WebSocket (protocol document section 2).

The upgrade runs OpenIM's checks in OpenIM's order (``ws_server.go wsHandler``), on any path:

1. too many connections: ``1601``;
2. ``token``, ``sendID``, an integer ``platformID``, ``sdkType`` empty, ``go`` or ``js``:
   otherwise ``1602``;
3. the token (``ParseToken``): ``1501``-``1507``; with ``isMsgResp`` true the error goes out as a
   text frame after the upgrade and the TCP connection closes, otherwise as plain HTTP;
4. the token's user and platform must be ``sendID`` and ``platformID``: ``1502`` (plain HTTP);
5. the upgrade, the success text frame when ``isMsgResp``, then registration (multi-login
   policy 1 kicks the user's older connections on the same platform).

Every other error answers HTTP 200 with the JSON envelope and no upgrade. Frames are OpenIM's JSON
encoding (``sdkType=js``): requests and answers are binary JSON with base64 protobuf ``data``;
text frames carry only the handshake answer and ``{"type":"ping"}`` / ``{"type":"pong"}``.

Like v3.8.3 the gateway checks only the envelope's ``sendID`` against the connection's user; the
protobuf inside is trusted (a pull's ``userID``, ``MsgData.sendID``). That is the behaviour the
gateway's own WebSocket guard is tested against, so it is kept.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gzip
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError

from messenger_gw.protocol import msg_pb2, sdkws_pb2

from . import messages
from .connections import Connection, frame
from .envelope import CodeError, envelope
from .state import OPERATION_ID, Caller, Sandbox

log = logging.getLogger(__name__)

WS_SANDBOX: web.AppKey[Sandbox] = web.AppKey("ws_sandbox", Sandbox)

# internal/msggateway/constant.go
GET_NEWEST_SEQ, PULL_BY_SEQ_RANGES, SEND_MSG, SEND_SIGNAL_MSG, PULL_MSG, GET_CONV_MAX_READ_SEQ = (
    1001, 1002, 1003, 1004, 1005, 1006)  # fmt: skip
PULL_CONV_LAST_MESSAGE, LOGOUT, SET_BACKGROUND_STATUS, SUB_USER_ONLINE_STATUS = 1007, 2003, 2004, 2005
PONG_WAIT = 30.0  # read deadline, reset by every frame
PING_PERIOD = PONG_WAIT * 9 / 10  # control pings, Web platform only
MAX_MESSAGE_SIZE = 51200
WEB_PLATFORM = 5
CONN_ARGS_ERR = "args err, need token, sendID, platformID"
PROTO_PARSE_ERROR = "proto: cannot parse invalid wire-format data"
GO_INT = re.compile(r"[+-]?[0-9]+\Z")
GO_TRUE, GO_FALSE = {"1", "t", "T", "TRUE", "true", "True"}, {"0", "f", "F", "FALSE", "false", "False"}


def create_sandbox_ws_app(sandbox: Sandbox) -> web.Application:
    """The msg-gateway as an app of its own (OpenIM serves it on port 10001, apart from the API)."""
    app = web.Application()
    app[WS_SANDBOX] = sandbox
    app.router.add_route("*", "/{tail:.*}", _handle)
    app.on_shutdown.append(_close_all)
    return app


async def _close_all(app: web.Application) -> None:
    for conn in list(app[WS_SANDBOX].connections):
        conn.close_after_queued()


def _http_error(error: CodeError) -> web.Response:
    """``apiresp.HttpError``: HTTP 200 with the envelope, no upgrade."""
    return web.Response(body=orjson.dumps(envelope(error=error)), content_type="application/json", charset="utf-8")


def _refusal(reason: str) -> CodeError:
    # The WrapMsg text stays in OpenIM's log: tools alpha.67 puts no detail on the wire.
    log.info("msg-gateway refused a connection: %s", reason)
    return CodeError(1602, "", msg=CONN_ARGS_ERR)


def _essential_args_error(query: Any) -> CodeError | None:
    """``ParseEssentialArgs``."""
    if not query.get("token"):
        return _refusal("token is empty")
    if not query.get("sendID"):
        return _refusal("sendID is empty")
    if not query.get("platformID"):
        return _refusal("platformID is empty")
    if not GO_INT.match(query["platformID"]):
        return _refusal("platformID is not int")
    if query.get("sdkType", "") not in ("", "go", "js"):
        return _refusal("sdkType is not go or js")
    return None


async def _handle(request: web.Request) -> web.StreamResponse:
    sb = request.app[WS_SANDBOX]
    query = request.query
    if len(sb.connections) >= sb.config.max_connections:
        return _http_error(CodeError(1601, "", msg="ConnOverMaxNumLimit"))
    refused = _essential_args_error(query)
    if refused is not None:
        return _http_error(refused)
    token, user_id, platform_id = query["token"], query["sendID"], int(query["platformID"])
    send_response = query.get("isMsgResp", "") in GO_TRUE  # strconv.ParseBool; anything else is false
    OPERATION_ID.set(query.get("operationID", ""))
    try:
        caller, _ = sb.verify_token(token)
    except CodeError as exc:
        if not send_response:
            return _http_error(exc)
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        await ws.send_str(orjson.dumps(envelope(error=exc)).decode())
        if request.transport is not None:
            request.transport.close()  # gorilla's Close(): no close frame
        return ws
    if caller.user_id != user_id or caller.platform_id != platform_id:
        return _http_error(CodeError.local(1502))
    ws = web.WebSocketResponse(
        compress=False,  # OpenIM's upgrader negotiates no permessage-deflate
        max_msg_size=MAX_MESSAGE_SIZE,
        heartbeat=PING_PERIOD if platform_id == WEB_PLATFORM else None,
    )
    await ws.prepare(request)
    if send_response:
        await ws.send_str(orjson.dumps(envelope()).decode())
    compress = query.get("compression") == "gzip" or request.headers.get("compression") == "gzip"
    conn = Connection(user_id, platform_id, token, compress, ws, request.transport)
    conn.start()
    if sb.connections.register(conn):
        sb.kick(user_id, platform_id, keep=token)  # InvalidateToken: the older tokens are kicked
    try:
        await _read(sb, conn, caller)
    finally:
        sb.connections.unregister(conn)
        conn.close_after_queued()
    return ws


async def _read(sb: Sandbox, conn: Connection, caller: Caller) -> None:
    while not conn.closed:
        try:
            message = await conn.ws.receive(timeout=PONG_WAIT)
        except TimeoutError:
            return
        if message.type == WSMsgType.BINARY:
            keep = await _binary(sb, conn, caller, message.data)
        elif message.type == WSMsgType.TEXT:
            keep = _text(conn, message.data)
        else:  # close, error, or closed
            return
        if not keep:
            return


def _text(conn: Connection, raw: str) -> bool:
    """``handlerTextMessage``: ping gets pong (echoing the body), pong nothing, the rest closes."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(value, dict):
        return False
    fields = {key.casefold(): item for key, item in value.items()}
    kind = fields.get("type")
    if kind == "pong":
        return True
    if kind == "ping":
        conn.send_text(orjson.dumps({"type": "pong", "body": fields.get("body")}).decode())
        return True
    return False


@dataclasses.dataclass(frozen=True)
class Req:
    req_identifier: int
    send_id: str
    operation_id: str
    msg_incr: str
    data: bytes

    def validation_error(self) -> CodeError | None:
        """go-playground's ``validate:"required"`` on Req, as the pull handlers run it."""
        missing = [
            name for name, value in (("ReqIdentifier", self.req_identifier), ("SendID", self.send_id),
                                     ("OperationID", self.operation_id), ("MsgIncr", self.msg_incr)) if not value
        ]  # fmt: skip
        if not missing:
            return None
        text = "\n".join(
            f"Key: 'Req.{n}' Error:Field validation for '{n}' failed on the 'required' tag" for n in missing
        )
        return CodeError(500, "", msg=text)


def _decode_req(raw: bytes) -> Req | None:
    """Go's ``json.Unmarshal`` into ``Req``: keys case-insensitive, unknown keys ignored, a
    wrong type or bad base64 fails the whole frame (and the connection closes)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    fields = {key.casefold(): item for key, item in value.items()}
    ident = fields.get("reqidentifier")
    if ident is not None and (isinstance(ident, bool) or not isinstance(ident, int) or not -(2**31) <= ident < 2**31):
        return None
    strings = {}
    for name in ("sendid", "operationid", "msgincr", "token"):
        item = fields.get(name)
        if item is not None and not isinstance(item, str):
            return None
        strings[name] = item or ""
    data = fields.get("data")
    if data is not None and not isinstance(data, str):
        return None
    try:
        payload = base64.b64decode(data or "", validate=True)
    except binascii.Error:
        return None
    return Req(ident or 0, strings["sendid"], strings["operationid"], strings["msgincr"], payload)


async def _binary(sb: Sandbox, conn: Connection, caller: Caller, raw: bytes) -> bool:
    """``Client.handleMessage``; False closes the connection without a reply, as OpenIM does."""
    if conn.compress:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            return False
    req = _decode_req(raw)
    if req is None or req.send_id != conn.user_id:
        return False
    handler = HANDLERS.get(req.req_identifier)
    if handler is None:
        return False
    OPERATION_ID.set(req.operation_id)
    after: Callable[[], None] | None = None
    try:
        data, after = await handler(sb, conn, caller, req)
    except CodeError as exc:
        conn.send(frame(req.req_identifier, None, msg_incr=req.msg_incr, operation_id=req.operation_id,
                        err_code=exc.code, err_msg=exc.msg))  # fmt: skip
    else:
        conn.send(frame(req.req_identifier, data, msg_incr=req.msg_incr, operation_id=req.operation_id))
    if after is not None:
        after()  # the pushes leave after the reply
    return req.req_identifier != LOGOUT


Reply = tuple[bytes | None, Callable[[], None] | None]
Handler = Callable[[Sandbox, Connection, Caller, Req], Awaitable[Reply]]


def _parse(kind: type[Any], data: bytes) -> Any:
    try:
        return kind.FromString(data)
    except DecodeError:
        raise CodeError(500, "", msg=PROTO_PARSE_ERROR) from None


def _validated(req: Req) -> None:
    error = req.validation_error()
    if error is not None:
        raise error


def _pulled(target: Any, entries: dict[str, Any]) -> None:
    for conversation_id, entry in entries.items():
        pulled = target[conversation_id]  # created even when empty: the entry must carry its value
        pulled.Msgs.extend(messages.to_pb(m) for m in entry["Msgs"])
        pulled.isEnd, pulled.endSeq = entry["isEnd"], entry["endSeq"]


async def _get_newest_seq(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    wanted = _parse(sdkws_pb2.GetMaxSeqReq, req.data)
    if wanted.userID != req.send_id and not sb.is_admin(req.send_id):  # CheckAccessV3 on the op user
        raise CodeError(1002, "no permission for user")
    ids = messages.conversation_ids(sb, wanted.userID)
    ids += ["n_" + cid.split("_", 1)[1] for cid in ids]
    resp = sdkws_pb2.GetMaxSeqResp(maxSeqs={cid: sb.max_seq(cid) for cid in ids if sb.max_seq(cid)})
    return resp.SerializeToString(), None


async def _pull_by_seq_ranges(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    wanted = _parse(sdkws_pb2.PullMessageBySeqsReq, req.data)
    _validated(req)
    ranges = [(r.conversationID, r.begin, r.end, r.num) for r in wanted.seqRanges]
    msgs, notifications = messages.pull_by_ranges(sb, wanted.userID, ranges, wanted.order == sdkws_pb2.PullOrderDesc)
    resp = sdkws_pb2.PullMessageBySeqsResp()
    _pulled(resp.msgs, msgs)
    _pulled(resp.notificationMsgs, notifications)
    return resp.SerializeToString(), None


async def _send_msg(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    pb = _parse(sdkws_pb2.MsgData, req.data)
    sent = await messages.send(sb, messages.from_pb(pb))
    return msg_pb2.SendMsgResp(**sent.reply).SerializeToString(), sent.push


async def _send_signal_msg(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    raise CodeError(1001, "msgData is nil")  # v3.8.3 calls SendMsg with no message at all


async def _pull_msg(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    wanted = _parse(msg_pb2.GetSeqMessageReq, req.data)
    _validated(req)
    asked = [(c.conversationID, list(c.seqs)) for c in wanted.conversations]
    msgs, notifications = messages.seq_messages(sb, wanted.userID, asked, wanted.order == sdkws_pb2.PullOrderDesc)
    resp = msg_pb2.GetSeqMessageResp()
    _pulled(resp.msgs, msgs)
    _pulled(resp.notificationMsgs, notifications)
    return resp.SerializeToString(), None


async def _get_conv_max_read_seq(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    wanted = _parse(msg_pb2.GetConversationsHasReadAndMaxSeqReq, req.data)
    _validated(req)
    resp = msg_pb2.GetConversationsHasReadAndMaxSeqResp()
    for conversation_id, seqs in messages.has_read_and_max_seq(sb, wanted.userID, list(wanted.conversationIDs)).items():
        resp.seqs[conversation_id].CopyFrom(msg_pb2.Seqs(**seqs))
    return resp.SerializeToString(), None


async def _pull_conv_last_message(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    wanted = _parse(msg_pb2.GetLastMessageReq, req.data)
    resp = msg_pb2.GetLastMessageResp()
    for conversation_id in wanted.conversationIDs:
        max_seq = sb.max_seq(conversation_id)
        if max_seq:
            resp.msgs[conversation_id].CopyFrom(
                messages.to_pb(messages.visible(sb, wanted.userID, conversation_id, max_seq))
            )
    return resp.SerializeToString(), None


async def _logout(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    return b"", None  # DelUserPushTokenResp is empty; then the connection closes


async def _set_background_status(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    _parse(sdkws_pb2.SetAppBackgroundStatusReq, req.data)
    _validated(req)
    return None, None


async def _sub_user_online_status(sb: Sandbox, conn: Connection, caller: Caller, req: Req) -> Reply:
    wanted = _parse(sdkws_pb2.SubUserOnlineStatus, req.data)
    sb.connections.subscribe(conn, list(wanted.subscribeUserID), list(wanted.unsubscribeUserID))
    resp = sdkws_pb2.SubUserOnlineStatusTips(
        subscribers=[
            sdkws_pb2.SubUserOnlineStatusElem(userID=u, onlinePlatformIDs=sb.connections.online_platforms(u))
            for u in wanted.subscribeUserID
        ]
    )
    return resp.SerializeToString(), None


HANDLERS: dict[int, Handler] = {
    GET_NEWEST_SEQ: _get_newest_seq,
    PULL_BY_SEQ_RANGES: _pull_by_seq_ranges,
    SEND_MSG: _send_msg,
    SEND_SIGNAL_MSG: _send_signal_msg,
    PULL_MSG: _pull_msg,
    GET_CONV_MAX_READ_SEQ: _get_conv_max_read_seq,
    PULL_CONV_LAST_MESSAGE: _pull_conv_last_message,
    LOGOUT: _logout,
    SET_BACKGROUND_STATUS: _set_background_status,
    SUB_USER_ONLINE_STATUS: _sub_user_online_status,
}
