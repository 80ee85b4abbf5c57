"""The batch codec at unit level, over generated values: what a worker packs is exactly what the kernel unpacks
(the memo of one value never leaks into the next), and a truncated, extended, reordered or damaged frame is
refused as damaged, never decoded to other values."""

from __future__ import annotations

import pickle

import differential as dt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starburst_jupyter.protocol import serialize


def _pack(batch: list, keep_inline: bool, drop_every: int) -> tuple[list, list]:
    """Pack a batch as a worker does: one ValueWriter, some values inline, some added then taken back."""
    writer = serialize.ValueWriter()
    metas, values, want = [], [], []
    for i, value in enumerate(batch):
        if keep_inline and serialize.inline_size(value) >= 0:
            packed = value
        else:
            packed = writer.add(value)
            if drop_every and i % drop_every == 0:  # a value too large to bring back: taken back, not sent
                writer.drop(packed)
                continue
        metas.append((i, "meta"))
        values.append(packed)
        want.append(value)
    return serialize.pack_results(metas, values), want, metas


def _frame(chunks: list) -> bytes:
    return b"".join(bytes(c) for c in chunks)


@settings(deadline=None, database=None, max_examples=300)
@given(st.lists(dt.values, max_size=12), st.booleans(), st.sampled_from([0, 2, 3]))
def test_every_value_is_read_exactly_as_written(batch, keep_inline, drop_every):
    chunks, want, metas = _pack(batch, keep_inline, drop_every)
    frame = serialize.loads(bytearray(_frame(chunks)))
    pairs = serialize.unpack_results(frame, decode_values=True)
    assert [meta for meta, _ in pairs] == metas
    dt.assert_same([value for _, value in pairs], want)
    encoded = serialize.unpack_results(frame, decode_values=False)  # as a detached driver keeps them
    dt.assert_same([serialize.decode(value) for _, value in encoded], want)


@settings(deadline=None, database=None, max_examples=300)
@given(dt.values)
def test_one_object_frame_round_trips(value):
    dt.assert_same([serialize.loads(serialize.dumps(value))], [value])


damage = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0)),
    st.tuples(st.just("extend"), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("swap"), st.integers(min_value=0), st.integers(min_value=0)),
)


def _damage(frame: bytes, how: tuple) -> bytes:
    kind = how[0]
    if kind == "flip":
        at = how[1] % len(frame)
        return frame[:at] + bytes([frame[at] ^ how[2]]) + frame[at + 1 :]
    if kind == "truncate":
        return frame[: how[1] % len(frame)]
    if kind == "extend":
        return frame + how[1]
    a, b = sorted((how[1] % len(frame), how[2] % len(frame)))  # two bytes swapped (reordered)
    return frame[:a] + frame[b : b + 1] + frame[a + 1 : b] + frame[a : a + 1] + frame[b + 1 :]


@settings(deadline=None, database=None, max_examples=500)
@given(st.lists(dt.values, min_size=1, max_size=8), damage)
def test_a_damaged_frame_is_refused_never_decoded_to_other_values(batch, how):
    frame = _frame(_pack(batch, True, 0)[0])
    damaged = _damage(frame, how)
    if damaged == frame:
        return  # a swap of two equal bytes changes nothing
    with pytest.raises(serialize.DamagedFrame):
        serialize.loads(bytearray(damaged))


@settings(deadline=None, database=None, max_examples=100)
@given(st.lists(dt.values, min_size=2, max_size=8))
def test_chunks_of_two_frames_reordered_are_refused(batch):
    chunks = _pack(batch, False, 0)[0]
    if len(chunks) < 3:
        chunks = [*chunks, b""]
    reordered = [chunks[0], *reversed(chunks[1:])]
    if _frame(reordered) == _frame(chunks):
        return
    with pytest.raises(serialize.DamagedFrame):
        serialize.loads(bytearray(_frame(reordered)))


def test_a_frame_without_a_digest_names_the_older_version():
    old = serialize._HEAD.pack(b"SBJ1", 0, 5) + pickle.dumps(1)[:5]
    with pytest.raises(serialize.DamagedFrame, match="older starburst-jupyter"):
        serialize.loads(old)
