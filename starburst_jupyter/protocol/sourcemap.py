"""Remote tracebacks that show the notebook's own lines, whatever the pickler does to code objects.

cloudpickle may rename every code object it ships (3.1.3 sets `co_filename = "<dynamic-code>"`), so a
worker cannot find a function's source by its filename. What must survive pickling is what rebuilds
the function: its bytecode, name and first line. The kernel therefore ships a `SourceMap`: the source
lines of each file or notebook cell that defined by-value code, a key per code object (from what
survives) naming the file it came from, and the label a user knows the cell by (`Cell In[7]`). The
worker formats a traceback by looking each frame's code up in it, never trusting `co_filename`.
Imports nothing from IPython: the kernel side passes a `label` function in.
"""

from __future__ import annotations

import hashlib
import itertools
import linecache
import os
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

#: Past this many characters a file's lines outside the shipped code are blanked (a large module
#: defining one by-value function should not travel whole with every job).
WHOLE_FILE_CHARS = 256_000
CONTAINER_ITEMS = 1000  # a captured list or dict is searched this far for functions


@dataclass
class SourceMap:
    files: dict[str, list[str]] = field(default_factory=dict)  # filename -> its lines (keepends)
    labels: dict[str, str] = field(default_factory=dict)  # filename -> "Cell In[7]"
    origins: dict[str, str] = field(default_factory=dict)  # code_key -> filename

    def add_file(self, name: str, lines: list[str], label: str | None = None) -> None:
        self.files[name] = list(lines)
        if label:
            self.labels[name] = label

    def filename_of(self, code: types.CodeType) -> str:
        if code.co_filename in self.files:
            return code.co_filename
        return self.origins.get(code_key(code), code.co_filename)

    def line(self, filename: str, lineno: int) -> str:
        lines = self.files.get(filename)
        if lines is not None:
            return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
        return linecache.getline(filename, lineno).strip()


def code_key(code: types.CodeType) -> str:
    """What identifies a code object on both sides of pickling (not its filename)."""
    name = getattr(code, "co_qualname", code.co_name)
    digest = hashlib.blake2b(code.co_code, digest_size=8).hexdigest()
    return f"{name}:{code.co_firstlineno}:{digest}"


def _travels_by_value(obj: Any) -> bool:
    """cloudpickle's rule, from public facts: what an importable module defines travels by reference
    (the worker imports it and has its files); what the notebook or a function's body defines, by value."""
    if isinstance(obj, (property, classmethod, staticmethod)):
        return True  # judged by the class that holds them
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return True
    found: Any = module
    for part in getattr(obj, "__qualname__", "<lambda>").split("."):
        found = getattr(found, part, None)
        if found is None:
            return True
    return found is not obj


def _nested_codes(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _nested_codes(const)


def _code_lines(code: types.CodeType) -> set[int]:
    lines = {code.co_firstlineno}
    for inner in _nested_codes(code):
        lines.update(line for _, _, line in inner.co_lines() if line is not None)
    return lines


def collect(values: Iterable[Any], label: Callable[[str], str | None] = lambda name: None) -> SourceMap:
    """The source map for functions and classes among `values` (and the notebook functions they call).

    Only code defined outside importable modules matters (it travels by value); files the worker may
    not have (notebook cells, a test file, a script) ship their lines."""
    smap = SourceMap()
    used: dict[str, set[int]] = {}
    seen: set[int] = set()
    todo = list(values)
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (list, tuple, set, frozenset, dict)):
            todo.extend(itertools.islice(value.values() if isinstance(value, dict) else value, CONTAINER_ITEMS))
            continue
        if not isinstance(value, (type, property, classmethod, staticmethod, types.FunctionType, types.MethodType)):
            value = type(value)  # an instance: its class's methods may be the notebook's
        if not _travels_by_value(getattr(value, "__func__", value)):
            continue
        if isinstance(value, type):
            todo.extend(
                v
                for v in vars(value).values()
                if isinstance(v, (types.FunctionType, classmethod, staticmethod, property))
            )
            continue
        if isinstance(value, property):
            todo.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
            continue
        value = getattr(value, "__func__", value)
        code = getattr(value, "__code__", None)
        if not isinstance(code, types.CodeType):
            continue
        filename = code.co_filename
        if not linecache.getlines(filename):
            continue
        for inner in _nested_codes(code):
            smap.origins[code_key(inner)] = filename
        used.setdefault(filename, set()).update(_code_lines(code))
        globals_ = getattr(value, "__globals__", {})
        todo.extend(v for n, v in globals_.items() if n in code.co_names and isinstance(v, (types.FunctionType, type)))
    for filename, lines_used in used.items():
        lines = linecache.getlines(filename)
        if os.path.exists(filename) and sum(map(len, lines)) > WHOLE_FILE_CHARS:
            lines = [line if n in lines_used else "\n" for n, line in enumerate(lines, start=1)]
        smap.add_file(filename, lines, label(filename))
    return smap


def format_exception(exc: BaseException, smap: SourceMap, skip_dir: str = "") -> str:
    """`traceback.format_exception`, with each frame's file and line taken from the source map,
    cells named as IPython names them, and frames under `skip_dir` (starburst's own) left out."""
    te = traceback.TracebackException.from_exception(exc)
    _restack(te, exc, smap, skip_dir, set())
    text = "".join(te.format())
    for filename, label in smap.labels.items():
        text = text.replace(f'File "{filename}", line ', f"{label}, line ")
    return text


def _restack(
    te: traceback.TracebackException, exc: BaseException | None, smap: SourceMap, skip_dir: str, seen: set[int]
) -> None:
    if exc is None or id(exc) in seen:
        return
    seen.add(id(exc))
    frames = []
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        if skip_dir and os.path.abspath(code.co_filename).startswith(skip_dir):
            continue
        filename = smap.filename_of(code)
        frames.append(
            traceback.FrameSummary(filename, lineno, code.co_name, line=smap.line(filename, lineno), lookup_line=False)
        )
    te.stack = traceback.StackSummary.from_list(frames)
    if te.__cause__ is not None:
        _restack(te.__cause__, exc.__cause__, smap, skip_dir, seen)
    if te.__context__ is not None:
        _restack(te.__context__, exc.__context__, smap, skip_dir, seen)
    for sub_te, sub_exc in zip(getattr(te, "exceptions", None) or [], getattr(exc, "exceptions", ()) or []):
        _restack(sub_te, sub_exc, smap, skip_dir, seen)
