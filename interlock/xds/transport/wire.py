"""Just enough of the protobuf wire format to assemble xDS responses from pre-serialized parts.

A serialized message is the concatenation of its encoded fields, in any order, so a
``DiscoveryResponse`` can be built as ``shared body + nonce field`` where the shared body (version,
resources, type URL) is encoded once per content and reused for every stream that receives it.
Only length-delimited fields (strings, bytes, sub-messages) are needed.
"""

from __future__ import annotations

from functools import lru_cache

# DiscoveryResponse field numbers
SOTW_VERSION_INFO = 1
SOTW_RESOURCES = 2
SOTW_TYPE_URL = 4
SOTW_NONCE = 5
# DeltaDiscoveryResponse field numbers
DELTA_SYSTEM_VERSION_INFO = 1
DELTA_RESOURCES = 2
DELTA_TYPE_URL = 4
DELTA_NONCE = 5
DELTA_REMOVED_RESOURCES = 6
# Resource (delta) field numbers
RESOURCE_VERSION = 1
RESOURCE_RESOURCE = 2
RESOURCE_NAME = 3
# google.protobuf.Any field numbers
ANY_TYPE_URL = 1
ANY_VALUE = 2


def varint(value: int) -> bytes:
    """The base-128 varint encoding of a non-negative integer."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@lru_cache(maxsize=64)
def _tag(number: int) -> bytes:
    return varint((number << 3) | 2)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field: tag, length, payload."""
    return _tag(number) + varint(len(payload)) + payload


def text_field(number: int, text: str) -> bytes:
    """A string field (UTF-8)."""
    return field(number, text.encode())
