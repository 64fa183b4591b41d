"""OpenIM's client WebSocket frames as the guard reads and writes them (openim-sdk-protocol.md, section 2.3).

A client request is a binary frame holding UTF-8 JSON, ``{"reqIdentifier", "msgIncr", "sendID",
"operationID", "data"}`` with the protobuf request base64 in ``data``; an answer is
``{"reqIdentifier", "msgIncr", "operationID", "errCode", "errMsg", "data"}``. With
``compression=gzip`` binary frames are gzipped both ways.

:func:`decode_request` reads a request as the guard checks it. A frame written the way every
client writes it (only the names of OpenIM's ``Req`` fields, in their own case) is relayed as it
came: OpenIM decodes those bytes into exactly the values checked. Any other spelling (names in
another case, which Go's decoder also matches) is relayed as :func:`encode_request` writes the
values the guard read, so OpenIM can never read a frame differently from the guard.
"""

from __future__ import annotations

import binascii
import dataclasses
import zlib

import orjson

# internal/msggateway/constant.go (the SDK names 1002 and 1005 the other way round)
GET_NEWEST_SEQ = 1001
PULL_BY_SEQ_RANGES = 1002
SEND_MSG = 1003
SEND_SIGNAL_MSG = 1004
PULL_MSG = 1005
GET_CONV_MAX_READ_SEQ = 1006
PULL_CONV_LAST_MESSAGE = 1007
KICK_ONLINE_MSG = 2002
LOGOUT = 2003
SET_BACKGROUND_STATUS = 2004
SUB_USER_ONLINE_STATUS = 2005
KNOWN_REQUESTS = frozenset(
    {GET_NEWEST_SEQ, PULL_BY_SEQ_RANGES, SEND_MSG, SEND_SIGNAL_MSG, PULL_MSG, GET_CONV_MAX_READ_SEQ,
     PULL_CONV_LAST_MESSAGE, LOGOUT, SET_BACKGROUND_STATUS, SUB_USER_ONLINE_STATUS}
)  # fmt: skip

READ_LIMIT = 51_200  # OpenIM's maxMessageSize: a longer frame closes OpenIM's connection
# What the guard reads at most: a frame between the two is answered as refused, one beyond closes (1009).
HARD_LIMIT = 4 * READ_LIMIT

# OpenIM's errCodes and their errMsg (contract 1.6)
ARGS_ERROR = 1001
NO_PERMISSION = 1002
SERVER_INTERNAL_ERROR = 500
TOKEN_INVALID = 1502
CONN_OVER_MAX_NUM_LIMIT = 1601
CONN_ARGS_ERROR = 1602
ERR_MSGS = {
    SERVER_INTERNAL_ERROR: "ServerInternalError",
    ARGS_ERROR: "ArgsError",
    NO_PERMISSION: "NoPermissionError",
    1501: "TokenExpiredError",
    TOKEN_INVALID: "TokenInvalidError",
    1503: "TokenMalformedError",
    1504: "TokenNotValidYetError",
    1505: "TokenUnknownError",
    1506: "TokenKickedError",
    1507: "TokenNotExistError",
    CONN_OVER_MAX_NUM_LIMIT: "ConnOverMaxNumLimit",
    CONN_ARGS_ERROR: "args err, need token, sendID, platformID",
}

# OpenIM's Req, in its own spelling: a frame using only these names is relayed byte for byte.
_FIELDS = {"reqidentifier": "reqIdentifier", "token": "token", "sendid": "sendID", "operationid": "operationID",
           "msgincr": "msgIncr", "data": "data"}  # fmt: skip
_CANONICAL = frozenset(_FIELDS.values())
_INT32 = range(-(2**31), 2**31)
_GZIP = 16 + zlib.MAX_WBITS


@dataclasses.dataclass(slots=True)
class Request:
    req_identifier: int
    msg_incr: str
    send_id: str
    operation_id: str
    token: str
    data_text: str  # ``data`` as it came: base64
    data: bytes  # the protobuf request
    canonical: bool  # written in OpenIM's own spelling: relayed as it came


def decode_request(payload: bytes) -> Request | None:
    """The request in a client's frame (gunzipped already), or None when it is not one OpenIM's
    decoder would take (OpenIM then closes the connection without an answer)."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(value) is not dict:
        return None
    canonical = value.keys() <= _CANONICAL
    if not canonical:
        # Go matches field names case-insensitively, the last of a name winning; other names are ignored.
        folded = {}
        for key, item in value.items():
            name = _FIELDS.get(key.casefold())
            if name is not None:
                folded[name] = item
        value = folded
    get = value.get
    ident = get("reqIdentifier")
    if type(ident) is not int:  # a bool is no int32 to Go, nor is a float
        if ident is not None:
            return None
        ident = 0
    elif ident not in _INT32:
        return None
    try:
        msg_incr, send_id, operation_id = _text(get("msgIncr")), _text(get("sendID")), _text(get("operationID"))
        token, data_text = _text(get("token")), _text(get("data"))
        # Go's []byte from JSON: standard base64 with its padding.
        data = binascii.a2b_base64(data_text, strict_mode=True) if data_text else b""
    except (TypeError, binascii.Error):
        return None
    return Request(ident, msg_incr, send_id, operation_id, token, data_text, data, canonical)


def _text(value: object) -> str:
    """A JSON string as Go reads one into a string field: null is empty, anything else not a string fails."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    raise TypeError


def encode_request(request: Request) -> bytes:
    """The request as OpenIM's ``Req`` in its own spelling, with the values the guard read."""
    return orjson.dumps(
        {
            "reqIdentifier": request.req_identifier,
            "token": request.token,
            "sendID": request.send_id,
            "operationID": request.operation_id,
            "msgIncr": request.msg_incr,
            "data": request.data_text,
        }
    )


def answer(req_identifier: int, msg_incr: str, operation_id: str, err_code: int, err_msg: str) -> bytes:
    """OpenIM's ``Resp`` for a request it refuses: its fields in Go's order, ``data`` null."""
    return orjson.dumps(
        {
            "reqIdentifier": req_identifier,
            "msgIncr": msg_incr,
            "operationID": operation_id,
            "errCode": err_code,
            "errMsg": err_msg,
            "data": None,
        }
    )


# Client.KickOnlineMessage: the frame OpenIM sends before it closes a kicked connection.
KICK = answer(KICK_ONLINE_MSG, "", "", 0, "")


def handshake_answer(err_code: int) -> str:
    """The text frame OpenIM sends after the upgrade with ``isMsgResp`` (the envelope, no data)."""
    return orjson.dumps({"errCode": err_code, "errMsg": ERR_MSGS.get(err_code, ""), "errDlt": ""}).decode()


def gunzip(payload: bytes, limit: int) -> bytes | None:
    """``payload`` gunzipped, or None when it is not gzip or expands beyond ``limit`` bytes."""
    inflater = zlib.decompressobj(_GZIP)
    try:
        data = inflater.decompress(payload, limit + 1)
    except zlib.error:
        return None
    if len(data) > limit or not inflater.eof:
        return None
    return data


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=_GZIP)
    return compressor.compress(data) + compressor.flush()
