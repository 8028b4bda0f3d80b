"""Parsing ``__consumer_offsets`` records: the offset-commit key and every value version."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from phaseflow.streams.monitoring.commit_times import Commit, parse_commit

AT = datetime(2026, 12, 7, 9, 30, 15, 250000, tzinfo=UTC)
MILLIS = int(AT.timestamp() * 1000)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def _uvarint(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def key(record_type: int = 1, group: str = "g", topic: str = "t", partition: int = 3) -> bytes:
    return (
        struct.pack(">h", record_type)
        + _string(group)
        + _string(topic)
        + struct.pack(">i", partition)
    )


def value(version: int, offset: int = 42, metadata: str = "meta") -> bytes:
    out = struct.pack(">hq", version, offset)
    if version >= 3:
        out += struct.pack(">i", 7)  # leader epoch
    if version >= 4:
        data = metadata.encode()
        out += _uvarint(len(data) + 1) + data  # compact string
    else:
        out += _string(metadata)
    out += struct.pack(">q", MILLIS)
    if version == 1:
        out += struct.pack(">q", MILLIS + 86_400_000)  # expire timestamp
    if version >= 4:
        out += b"\x00"  # no tagged fields
    return out


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("record_type", [0, 1])
def test_every_value_version_gives_offset_and_commit_time(version: int, record_type: int) -> None:
    assert parse_commit(key(record_type), value(version)) == Commit("g", "t", 3, 42, AT)


def test_tombstone_is_a_deleted_offset() -> None:
    assert parse_commit(key(), None) == Commit("g", "t", 3, None, None)


@pytest.mark.parametrize("record_type", [2, 3, 4, 9])
def test_other_record_types_are_skipped(record_type: int) -> None:
    # 2: group metadata; 3+: KIP-848 consumer-group and share-group records.
    assert parse_commit(key(record_type), b"\x00\x00anything") is None


def test_unicode_names_and_long_metadata() -> None:
    parsed = parse_commit(key(group="grüppe", topic="tópic"), value(4, metadata="x" * 300))
    assert parsed == Commit("grüppe", "tópic", 3, 42, AT)


def test_truncated_record_raises() -> None:
    with pytest.raises(struct.error):
        parse_commit(key(), value(3)[:-4])
    with pytest.raises(struct.error):
        parse_commit(key()[:-3], value(3))
