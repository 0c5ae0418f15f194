"""Frame and header format: round trip, resynchronisation, and no input
that makes the decoder or the scanner raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.events import Event
from agent.spool.frames import (HEADER_DAMAGED, HEADER_OK, HEADER_SIZE, HEADER_UNSUPPORTED, SYNC,
                                Encoder, decode_header, decode_payload, encode_header, scan)

event_st = st.builds(Event, st.text(max_size=20), st.integers(0, 2**62), st.integers(0, 2**62),
                     st.text(max_size=30), st.binary(max_size=400),
                     st.one_of(st.none(), st.text(max_size=10)))


def encode(events: list[Event]) -> bytes:
    data, starts, size = Encoder().encode(events)
    assert len(data) == size
    assert [pos for pos, _, event, _ in scan(data, 0, size) if event is not None] == starts
    return data


def intact(buf: bytes, start: int = 0) -> list[Event]:
    return [event for _, _, event, _ in scan(buf, start, len(buf)) if event is not None]


def test_header_round_trip_and_damage() -> None:
    header = encode_header(1_700_000_000.5)
    assert len(header) == HEADER_SIZE
    assert decode_header(header) == (HEADER_OK, 1, 1_700_000_000.5)
    assert decode_header(header[:-1])[0] == HEADER_DAMAGED
    flipped = bytearray(header)
    flipped[17] ^= 1
    assert decode_header(bytes(flipped))[0] == HEADER_DAMAGED


def test_another_version_is_recognised_as_such() -> None:
    import struct
    import zlib
    body = struct.pack("<8sIId", b"MSCSPOOL", 2, 0, 0.0)
    assert decode_header(body + struct.pack("<I", zlib.crc32(body)))[0] == HEADER_UNSUPPORTED


@given(st.lists(event_st, max_size=20))
def test_frames_round_trip(events: list[Event]) -> None:
    assert intact(encode(events)) == events


@settings(max_examples=200)
@given(st.lists(event_st, min_size=1, max_size=10), st.data())
def test_garbage_between_frames_costs_nothing_else(events: list[Event], data: st.DataObject) -> None:
    # Garbage (with sync markers in it, to tempt the resync) between frames.
    pieces = []
    for event in events:
        pieces.append(data.draw(st.lists(st.sampled_from([b"\x00", b"\xff", SYNC, b"\x97", b"ab"]),
                                         max_size=6).map(b"".join)))
        pieces.append(encode([event]))
    buf = b"".join(pieces)
    assert intact(buf) == events


@given(st.binary(max_size=2000), st.integers(0, 50))
def test_scanning_anything_never_raises_and_covers_everything(buf: bytes, start: int) -> None:
    pos = min(start, len(buf))
    for begin, end, event, reason in scan(buf, pos, len(buf)):
        assert begin == pos and end > begin
        assert (event is None) == bool(reason)
        pos = end
    assert pos == max(len(buf), min(start, len(buf)))


@given(st.binary(max_size=500))
def test_decoding_anything_never_raises(payload: bytes) -> None:
    decode_payload(payload)


def test_a_cut_frame_is_damage_and_the_frames_before_stay() -> None:
    events = [Event("k", i, i + 1, f"d{i}", b"x" * 50) for i in range(5)]
    buf = encode(events)
    for cut in range(len(buf)):
        found = list(scan(buf[:cut], 0, cut))
        good = [e for _, _, e, _ in found if e is not None]
        assert good == events[:len(good)]
        damaged = [r for _, _, e, r in found if e is None]
        assert len(damaged) <= 1
