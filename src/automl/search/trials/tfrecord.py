"""TFRecord framing, the layout of TensorBoard's event files: each record is its length (uint64), a
masked CRC-32C of the length, the data, and a masked CRC-32C of the data. Pure Python and the
standard library only: the orchestrator's tb_reader splits records with it (and decodes them with
protobuf), and the tests' stand-in trainer frames its records without importing protobuf.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_HEADER = 12
"""uint64 length + uint32 masked crc of the length."""
_FOOTER = 4
"""uint32 masked crc of the data."""


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C of `data`, rotated and offset (TensorFlow's `crc32c::Mask`).

    Our own few lines, because TensorBoard's copy lives in a module that imports numpy.
    """
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class Records(NamedTuple):
    """What `split_records` found at the start of a buffer."""

    payloads: list[bytes]
    """Complete records' data, in order."""
    used: int
    """Bytes they span; the rest (a record still being written) is for the next read."""
    error: str | None
    """A checksum mismatch after the payloads: nothing past it can be trusted. None if clean."""


def split_records(buffer: bytes, *, verify_data: bool = True) -> Records:
    """The complete TFRecords at the start of `buffer`, stopping at the first bad checksum.

    The length checksum is always checked; `verify_data=False` skips the payload's (it is pure
    Python, about 0.3 s per MB).
    """
    payloads: list[bytes] = []
    pos = 0
    while len(buffer) - pos >= _HEADER:
        header = buffer[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack_from("<I", buffer, pos + 8)
        # Checked before trusting `length`: a garbage length would make us wait forever.
        if header_crc != masked_crc32c(header):
            return Records(payloads, pos, "bad length checksum")
        end = pos + _HEADER + length + _FOOTER
        if len(buffer) < end:
            break
        data = buffer[pos + _HEADER : end - _FOOTER]
        (data_crc,) = struct.unpack_from("<I", buffer, end - _FOOTER)
        if verify_data and data_crc != masked_crc32c(data):
            return Records(payloads, pos, "bad data checksum")
        payloads.append(data)
        pos = end
    return Records(payloads, pos, None)


def frame(data: bytes) -> bytes:
    """One record holding `data`, as TensorFlow's record writer frames it."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
