"""OpenIM's client protocol as protobuf: the messages of the msg-gateway WebSocket and /jssdk.

The ``.proto`` files here are the project's own, written with OpenIM's package names, message
names and field numbers (openimsdk/protocol v0.0.72-alpha.71, pinned by open-im-server v3.8.3);
``*_pb2.py`` and ``*_pb2.pyi`` are generated from them by ``scripts/generate-protocol`` and
committed. This package imports nothing else of the gateway, so both the sandbox and the
gateway's WebSocket guard can use it.

Two rules of the wire that generated code does not show:

* map entries always carry their value, even an empty message (the JavaScript decoder drops an
  entry without one);
* ``MsgData.content`` is bytes holding the UTF-8 JSON of the content element.
"""

from . import conversation_pb2, jssdk_pb2, msg_pb2, relation_pb2, sdkws_pb2

__all__ = ["conversation_pb2", "jssdk_pb2", "msg_pb2", "relation_pb2", "sdkws_pb2"]
