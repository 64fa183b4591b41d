"""OpenIM's response envelope and request decoding, as the sandbox reproduces them.

* Every answer is HTTP 200 ``{"errCode", "errMsg", "errDlt"[, "data"]}``;
  ``data`` is left out on errors and for empty replies (contract 1.3).
* ``errMsg`` is the code's name; ``errDlt`` is empty for errors raised in the
  API process (header and ``Check()`` failures) and carries the wrap message
  for errors raised behind the RPC boundary.
* Request JSON is read the way Go's ``encoding/json`` reads it: keys match
  case-insensitively, unknown keys are ignored, ``null`` means unset, and a
  value of the wrong type fails the whole decode (1001).
"""

from __future__ import annotations

import base64
from typing import Any

ERR_NAMES = {
    500: "ServerInternalError",
    1001: "ArgsError",
    1002: "NoPermissionError",
    1003: "DuplicateKeyError",
    1004: "RecordNotFoundError",
    1101: "UserIDNotFoundError",
    1102: "RegisteredAlreadyError",
    1201: "GroupIDNotFoundError",
    1202: "GroupIDExisted",
    1203: "NotInGroupYetError",
    1204: "DismissedAlreadyError",
    1205: "",
    1402: "MutedInGroup",
    1403: "MutedGroup",
    1404: "MsgAlreadyRevoke",
    1501: "TokenExpiredError",
    1502: "TokenInvalidError",
    1503: "TokenMalformedError",
    1504: "TokenNotValidYetError",
    1505: "TokenUnknownError",
    1506: "TokenKickedError",
    1507: "TokenNotExistError",
    90004: "NetworkError",
    90007: "DataError",
}


class CodeError(Exception):
    """An OpenIM error: ``errCode``, ``errMsg`` (the code's name unless given) and ``errDlt``."""

    def __init__(self, code: int, detail: str | None = None, *, msg: str | None = None) -> None:
        self.code = code
        self.msg = ERR_NAMES.get(code, "") if msg is None else msg
        # An RPC error without a wrap message repeats errMsg as its detail.
        self.detail = self.msg if detail is None else detail
        super().__init__(code, self.msg, self.detail)

    @classmethod
    def local(cls, code: int) -> CodeError:
        """An error raised in the API process itself: ``errDlt`` is empty (v3.8.3)."""
        return cls(code, "")


def envelope(data: Any = None, *, error: CodeError | None = None) -> dict[str, Any]:
    if error is not None:
        return {"errCode": error.code, "errMsg": error.msg, "errDlt": error.detail}
    body: dict[str, Any] = {"errCode": 0, "errMsg": "", "errDlt": ""}
    if isinstance(data, bytes):  # Go's encoding/json writes []byte as base64 ("" when empty)
        data = base64.b64encode(data).decode()
    if data is not None:
        body["data"] = data
    return body


class Body:
    """A decoded request object, read with Go's encoding/json rules."""

    def __init__(self, raw: dict[str, Any], path: str = "") -> None:
        self._raw = raw
        self._folded = {key.casefold(): value for key, value in raw.items()}
        self._path = path

    def get(self, name: str) -> Any:
        if name in self._raw:
            return self._raw[name]
        return self._folded.get(name.casefold())

    def has(self, name: str) -> bool:
        return self.get(name) is not None

    def string(self, name: str) -> str:
        return self._typed(name, str, "string", "")  # type: ignore[no-any-return]

    def integer(self, name: str) -> int:
        value = self.get(name)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise self._decode_error(name, value, "int")
        return int(value)

    def boolean(self, name: str) -> bool:
        return self._typed(name, bool, "bool", False)  # type: ignore[no-any-return]

    def optional_string(self, name: str) -> str | None:
        return None if self.get(name) is None else self.string(name)

    def optional_integer(self, name: str) -> int | None:
        return None if self.get(name) is None else self.integer(name)

    def strings(self, name: str) -> list[str] | None:
        """None when the key is missing or null (a nil slice in Go)."""
        value = self.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._decode_error(name, value, "[]string")
        return value

    def object(self, name: str) -> Body | None:
        value = self.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._decode_error(name, value, "object")
        return Body(value, f"{self._path}{name}.")

    def objects(self, name: str) -> list[Body] | None:
        value = self.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._decode_error(name, value, "[]object")
        return [Body(item, f"{self._path}{name}.") for item in value]

    def _typed(self, name: str, kind: type, go_name: str, default: Any) -> Any:
        value = self.get(name)
        if value is None:
            return default
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise self._decode_error(name, value, go_name)
        return value

    def _decode_error(self, name: str, value: Any, go_type: str) -> CodeError:
        json_type = {bool: "bool", str: "string", int: "number", float: "number", list: "array", dict: "object"}
        found = json_type.get(type(value), "value")
        return CodeError(
            1001, "", msg=f"json: cannot unmarshal {found} into Go struct field .{self._path}{name} of type {go_type}"
        )
