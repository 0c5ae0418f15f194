"""Spool framing: the segment header, record frames, and how a reader finds
its way past damage. Pure functions over bytes; no files are opened here.

Segment header (``HEADER_SIZE`` = 28 bytes, little-endian)::

    0   8  magic             b"MSCSPOOL"
    8   4  u32 format version  1
    12  4  u32 reserved        0
    16  8  f64 created         wall-clock epoch seconds
    24  4  u32 crc32 of bytes 0..24

The checksum tells a flipped byte in the header (the header is "damaged":
frames are still read) from a header written by another format version (the
segment is set aside, never interpreted).

Record frame, repeated from byte ``HEADER_SIZE`` to the end of the file::

    u32 length of payload | u32 crc32 of payload | payload
    payload = msgpack [1, source_key: str, offset: int, end: int, doc_id: str, data: bin,
                       target: str | nil]

The leading 1 is the record version; the fields are those of ``Event``, in
its order. (``target``, the per-event index or data stream, was added to
Event after the first draft of this format; a spooled event must keep its
route, so it is the seventh element, nil for "the output's default". A test
fails if Event grows a field the spool does not carry.) A payload always
starts with the two bytes ``97 01`` (msgpack "array of 7", then the positive
integer 1): that pair is the sync marker used below.

A frame is *damaged* when its header or payload runs past the end of the
file (a torn write), when the checksum fails, or when the payload is not a
version-1 record. Resynchronisation after damage at byte ``p``: look for the
next ``97 01`` after ``p`` (``bytes.find``, so a multi-megabyte segment is
crossed in C, not byte by byte in Python); the frame would start 8 bytes
before it; accept it only if its length fits in the file, its crc32 matches
and its payload decodes to a version-1 record, else look for the next
marker. Everything from ``p`` to the accepted frame (or to the end of the
file) is one damaged region. A false match needs a stray marker, a plausible
length and a 32-bit checksum collision at once inside damaged bytes, which we
accept as impossible in practice. So damage costs exactly the frames it
touches: intact frames after it, in the same segment and in others, are
still read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from itertools import accumulate, chain, repeat
from operator import add
from typing import Any

import msgpack

from agent.events import Event

MAGIC = b"MSCSPOOL"
FORMAT_VERSION = 1
RECORD_VERSION = 1

_HEADER_BODY = struct.Struct("<8sIId")
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER_BODY.size + _CRC.size  # 28

FRAME = struct.Struct("<II")  # length, crc32 of payload
FRAME_OVERHEAD = FRAME.size
SYNC = b"\x97\x01"
# The smallest possible payload: [1, "", 0, 0, "", b"", None] packs to 9 bytes.
MIN_PAYLOAD = 9

HEADER_OK = "ok"
HEADER_DAMAGED = "damaged"
HEADER_UNSUPPORTED = "unsupported"

_RECORD_PREFIX = (RECORD_VERSION,)
_crc32 = zlib.crc32
_pack_frame = FRAME.pack
_unpackb = msgpack.unpackb
_DECODE_ERRORS = (ValueError, TypeError, msgpack.UnpackException)


def encode_header(created: float) -> bytes:
    body = _HEADER_BODY.pack(MAGIC, FORMAT_VERSION, 0, created)
    return body + _CRC.pack(_crc32(body))


def decode_header(buf: Any) -> tuple[str, int, float]:
    """(status, version, created) of the first HEADER_SIZE bytes of ``buf``."""
    if len(buf) < HEADER_SIZE:
        return HEADER_DAMAGED, 0, 0.0
    body = bytes(buf[:_HEADER_BODY.size])
    (crc,) = _CRC.unpack_from(buf, _HEADER_BODY.size)
    if _crc32(body) != crc:
        return HEADER_DAMAGED, 0, 0.0
    magic, version, _reserved, created = _HEADER_BODY.unpack(body)
    if magic != MAGIC:
        return HEADER_DAMAGED, 0, 0.0
    if version != FORMAT_VERSION:
        return HEADER_UNSUPPORTED, version, created
    return HEADER_OK, version, created


class Encoder:
    """Turns events into frames. Not thread-safe: one per writer."""

    def __init__(self) -> None:
        self._pack = msgpack.Packer(autoreset=True).pack

    def encode(self, events: Sequence[Event]) -> tuple[bytes, list[int], int]:
        """(the frames of ``events``, in order, as one buffer; the start of each
        frame relative to the buffer; the buffer's length)."""
        # An Event is a NamedTuple in the payload's field order, so the record
        # is (1, *event); map/accumulate keep the per-event work in C.
        payloads = list(map(self._pack, map(_RECORD_PREFIX.__add__, events)))
        lengths = list(map(len, payloads))
        heads = map(_pack_frame, lengths, map(_crc32, payloads))
        data = b"".join(chain.from_iterable(zip(heads, payloads)))
        starts = list(accumulate(map(add, lengths, repeat(FRAME_OVERHEAD)), initial=0))
        size = starts.pop()
        return data, starts, size


def decode_payload(payload: Any) -> Event | None:
    """The event in a checksummed payload, or None if it is not a version-1 record.

    The checksum already vouches for the bytes; this only rejects what another
    record version (or a resync candidate that is not a record) would be.
    """
    try:
        version, key, offset, end, doc_id, data, target = _unpackb(payload)
    except _DECODE_ERRORS:
        return None
    if (version != RECORD_VERSION or version is True or type(key) is not str
            or type(doc_id) is not str or type(data) is not bytes
            or type(offset) is not int or type(end) is not int
            or (target is not None and type(target) is not str)):
        return None
    return Event(key, offset, end, doc_id, data, target)


def read_frame(buf: Any, pos: int, end: int) -> tuple[Event | None, int, str]:
    """Try the frame at ``pos`` of ``buf[:end]``: (event, next position, "") if it
    is intact, else (None, pos, reason)."""
    if pos + FRAME_OVERHEAD > end:
        return None, pos, "torn frame header"
    length, crc = FRAME.unpack_from(buf, pos)
    start = pos + FRAME_OVERHEAD
    stop = start + length
    if length < MIN_PAYLOAD:
        return None, pos, "impossible frame length"
    if stop > end:
        return None, pos, "frame runs past the end of the file"
    payload = buf[start:stop]
    if _crc32(payload) != crc:
        return None, pos, "checksum mismatch"
    event = decode_payload(payload)
    if event is None:
        return None, pos, "payload is not a version-1 record"
    return event, stop, ""


def resync(buf: Any, pos: int, end: int) -> int:
    """The start of the first intact frame after ``pos`` in ``buf[:end]``, or ``end``."""
    search = pos + 1 + FRAME_OVERHEAD
    while True:
        marker = buf.find(SYNC, search, end)
        if marker < 0:
            return end
        candidate = marker - FRAME_OVERHEAD
        if read_frame(buf, candidate, end)[0] is not None:
            return candidate
        search = marker + 1


def scan(buf: Any, start: int, end: int) -> Iterator[tuple[int, int, Event | None, str]]:
    """Every frame and damaged region of ``buf[start:end]``, in file order:
    ``(position, next position, event, "")`` for an intact frame,
    ``(position, next position, None, reason)`` for a damaged region."""
    pos = start
    while pos < end:
        event, nxt, reason = read_frame(buf, pos, end)
        if event is not None:
            yield pos, nxt, event, ""
        else:
            nxt = resync(buf, pos, end)
            yield pos, nxt, None, reason
        pos = nxt
