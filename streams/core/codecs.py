"""The ``"orjson"`` Faust codec: topic values are UTF-8 JSON written by orjson.

The wire format is part of the contract (docs/contract.md#topics).

Faust hands codecs plain Python structures (a Record's ``to_representation()``, or whatever an agent
sends), so this codec only has to turn those into bytes and back, with the same JSON writer as the
event codec (:func:`phaseflow.models.codec.dumps`). Event models are validated by
:func:`phaseflow.models.codec.decode` in the agents, not here: a codec that raised on bad input
would stop the stream instead of letting the agent dead-letter the message.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from faust.serializers import codecs

from phaseflow.models.codec import dumps

CODEC_NAME: Final = "orjson"


class OrjsonCodec(codecs.Codec):
    """Faust codec using orjson: bytes in, Python structures out."""

    def _dumps(self, s: Any) -> bytes:
        return dumps(s)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


def register_orjson_codec() -> None:
    """Register :class:`OrjsonCodec` as ``"orjson"``; calling it again changes nothing."""
    if not isinstance(codecs.codecs.get(CODEC_NAME), OrjsonCodec):
        codecs.register(CODEC_NAME, OrjsonCodec())
