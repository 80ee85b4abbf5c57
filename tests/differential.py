"""The differential suites' shared parts: generated items (hypothesis), the program every path runs on them,
what a plain `map` gives, and an exact comparison.

Why: the fast result path once returned wrong values for values that share structure (a memo reference of a
later value resolved to an earlier value's object), and examples never showed it. Every path that brings
values back is checked here against a plain `map` over generated inputs: nested values with shared references,
repeated strings, big ints, floats with nan and -0.0, numpy arrays and scalars, instances of classes defined
here (pickled by value, as a notebook's are), mixed with items that print, fail, return an unpicklable value
or a large buffer.

`same` is exact: equal types, floats bit for bit (nan, -0.0), arrays byte for byte with their dtype and shape,
and the same sharing inside a value (two references to one list come back as two references to one list).
"""

from __future__ import annotations

import enum
import math
import struct
import sys
import threading
from collections import namedtuple
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import cloudpickle
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# Workers (local, docker, Fargate) run without this module: the program and the classes travel by value, as a
# notebook's do.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: For tests whose fixtures (a backend, an executor) are shared by every example on purpose.
SHARED_FIXTURES = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


# ----- classes defined by the "notebook" --------------------------------------------------------
@dataclass
class Point:
    x: Any
    y: Any


Pair = namedtuple("Pair", ["left", "right"])


class Box:
    """A plain class: equal when its attributes are."""

    def __init__(self, content: Any):
        self.content = content

    def __eq__(self, other: object) -> bool:
        return type(other) is Box and vars(other) == vars(self)

    __hash__ = None  # type: ignore[assignment]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


# ----- generated values ---------------------------------------------------------------------------
def _shared(child: Any) -> Any:
    """Values that hold one object twice (a memo reference when pickled)."""
    return st.one_of(
        child.map(lambda v: [v, v]),
        child.map(lambda v: {"a": v, "b": [v]}),
        st.tuples(child, child).map(lambda p: (p[0], p, p[0])),
        child.map(lambda v: Point(v, v)),
    )


_plain_leaves = [
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**300).flatmap(lambda n: st.sampled_from([n, -n])),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.nan, -math.nan]),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["tag", "a", "t0", "x" * 5000]),  # repeated strings; one too long to travel inline
    st.binary(max_size=16),
    st.frozensets(st.integers() | st.text(max_size=4), max_size=4),
    st.sets(st.integers() | st.text(max_size=4), max_size=4),
    st.sampled_from([Color.RED, Color.BLUE]),
]
_numpy_leaves = [
    hnp.arrays(
        dtype=st.one_of(hnp.integer_dtypes(), hnp.floating_dtypes(), hnp.boolean_dtypes(), hnp.complex_number_dtypes()),
        shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=5),
    ),
    st.builds(np.float32, st.floats(width=32)),
    st.builds(np.int64, st.integers(-(2**63), 2**63 - 1)),
]


def _values(leaves: Any) -> Any:
    return st.recursive(
        leaves,
        lambda child: st.one_of(
            st.lists(child, max_size=4),
            st.tuples(child, child),
            st.dictionaries(st.text(max_size=5) | st.integers(), child, max_size=4),
            st.builds(Point, child, child),
            st.builds(Pair, child, child),
            st.builds(Box, child),
            _shared(child),
        ),
        max_leaves=10,
    )


def _items(vals: Any, big: str) -> Any:
    """One item: what the program does with it. ("value", v) returns v; ("print", text, v) prints, then returns
    v; ("raise", text) raises ValueError(text); ("unpicklable",) returns a lock; ("big", n) returns an n-byte
    array, ("bigbytes", n) n bytes."""
    return st.lists(
        st.one_of(
            vals.map(lambda v: ("value", v)),
            vals.map(lambda v: ("value", v)),
            vals.map(lambda v: ("value", v)),
            st.tuples(st.just("print"), st.text(max_size=20), vals),
            st.tuples(st.just("raise"), st.text(max_size=20)),
            st.just(("unpicklable",)),
            st.tuples(st.just(big), st.integers(min_value=1, max_value=3 << 20)),
        ),
        max_size=30,
    )


values = _values(st.one_of(*_plain_leaves, *_numpy_leaves))
items = _items(values, "big")
#: Items that succeed: for the faces that raise on the first failure.
good_items = st.lists(values.map(lambda v: ("value", v)) | st.tuples(st.just("print"), st.text(max_size=20), values))
#: For workers without numpy (the docker tests' small worker image): run with act_plain.
items_without_numpy = _items(_values(st.one_of(*_plain_leaves)), "bigbytes")


def _act(item: tuple[Any, ...]) -> Any:
    kind = item[0]
    if kind == "value":
        return item[1]
    if kind == "print":
        print(item[1], flush=True)
        return item[2]
    if kind == "raise":
        raise ValueError(item[1])
    if kind == "unpicklable":
        return threading.Lock()
    if kind == "bigbytes":
        return bytes(item[1])
    raise AssertionError(f"no such action: {kind!r}")


def act(item: tuple[Any, ...]) -> Any:
    """The program every path runs on each item."""
    if item[0] == "big":
        return np.arange(item[1], dtype=np.uint8)
    return _act(item)


def act_plain(item: tuple[Any, ...]) -> Any:
    """act for a worker without numpy (pickled by value, it names no numpy global)."""
    return _act(item)


def plain_map(batch: list[tuple[Any, ...]], fn: Any = act) -> list[Any]:
    """What a plain map gives, a failure in its slot as on_error="keep" keeps it (an unpicklable value's slot
    is a TypeError that says so: plainly the value cannot come back)."""
    out: list[Any] = []
    for item in batch:
        try:
            out.append(fn(item))
        except ValueError as exc:
            out.append(exc)
    return [TypeError("cannot be pickled") if item[0] == "unpicklable" else v for item, v in zip(batch, out)]


# ----- exact comparison ----------------------------------------------------------------------------
def differences(got: list[Any], want: list[Any]) -> list[str]:
    """Where `got` differs from `want`, item by item (empty when every slot is the same)."""
    if len(got) != len(want):
        return [f"{len(got)} values where a plain map gives {len(want)}"]
    out = []
    for i, (g, w) in enumerate(zip(got, want)):
        problem = _differ(g, w, {}, f"item {i}")
        if problem:
            out.append(problem)
    return out


def assert_same(got: list[Any], want: list[Any]) -> None:
    found = differences(got, want)
    assert not found, f"{len(found)} of {len(want)} values differ from a plain map:\n  " + "\n  ".join(found[:10])


_MUTABLE = (list, dict, set, Box, Point, np.ndarray)


def _differ(g: Any, w: Any, aliases: dict[int, int], where: str) -> str | None:
    if isinstance(w, BaseException):
        if type(g) is not type(w):
            return f"{where}: {type(g).__name__} {g!r:.120}, expected a {type(w).__name__}"
        if isinstance(w, TypeError):
            return None if "cannot be pickled" in str(g) else f"{where}: {g!r:.200} does not say it cannot be pickled"
        return None if g.args == w.args else f"{where}: {g.args!r:.200} != {w.args!r:.200}"
    if type(g) is not type(w):
        return f"{where}: {type(g).__name__} {g!r:.120}, expected {type(w).__name__} {w!r:.120}"
    if isinstance(w, _MUTABLE):  # the same sharing: one object in w is one object in g
        seen = aliases.get(id(w))
        if seen is not None:
            return None if seen == id(g) else f"{where}: a shared {type(w).__name__} came back as a copy"
        aliases[id(w)] = id(g)
    if isinstance(w, float):
        return None if struct.pack("<d", g) == struct.pack("<d", w) else f"{where}: {g!r} != {w!r}"
    if isinstance(w, complex):
        same = struct.pack("<dd", g.real, g.imag) == struct.pack("<dd", w.real, w.imag)
        return None if same else f"{where}: {g!r} != {w!r}"
    if isinstance(w, np.ndarray):
        same = g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()
        return None if same else f"{where}: array {g!r:.120} != {w!r:.120}"
    if isinstance(w, np.generic):
        return None if g.tobytes() == w.tobytes() else f"{where}: {g!r} != {w!r}"
    if isinstance(w, (list, tuple)):  # namedtuples too (their type was compared above)
        if len(g) != len(w):
            return f"{where}: {len(g)} elements, expected {len(w)}"
        for i, (a, b) in enumerate(zip(g, w)):
            problem = _differ(a, b, aliases, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(w, dict):
        if list(g) != list(w):
            return f"{where}: keys {list(g)!r:.120} != {list(w)!r:.120}"
        for key in w:
            problem = _differ(g[key], w[key], aliases, f"{where}[{key!r}]")
            if problem:
                return problem
        return None
    if is_dataclass(w):
        for f in fields(w):
            problem = _differ(getattr(g, f.name), getattr(w, f.name), aliases, f"{where}.{f.name}")
            if problem:
                return problem
        return None
    if isinstance(w, Box):
        return _differ(g.content, w.content, aliases, f"{where}.content")
    return None if g == w else f"{where}: {g!r:.120} != {w!r:.120}"
