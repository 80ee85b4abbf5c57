"""What a worker runs for each item. Pickled once per job; imports nothing from IPython."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

import cloudpickle

from starburst_jupyter.protocol import buffers
from starburst_jupyter.protocol.sourcemap import SourceMap

CELL_FILENAME = "<burst cell>"


@dataclass
class CellValues:
    """Single-task result: the names the cell assigned, its trailing value, names that could not travel.

    `value_dropped` says why the trailing value stayed on the worker (it cannot be pickled): the
    names that can travel still come back, rather than the whole result failing for one value."""

    names: dict[str, Any]
    value: Any = None
    has_value: bool = False
    dropped: dict[str, str] = field(default_factory=dict)
    value_dropped: str = ""


def split_trailing_expression(
    source: str, filename: str = CELL_FILENAME, first_line: int = 1
) -> tuple[CodeType, CodeType | None]:
    """Compile a cell as IPython would run it: statements, then the last expression's value."""
    tree = ast.increment_lineno(ast.parse(source, filename=filename), first_line - 1)
    last = None
    if tree.body and isinstance(tail := tree.body[-1], ast.Expr):
        tree.body.pop()
        last = ast.Expression(tail.value)
    body = compile(tree, filename, "exec")
    return body, (compile(last, filename, "eval") if last is not None else None)


@dataclass
class CellProgram:
    source: str
    namespace: dict[str, Any]
    map_target: str | None = None  # "seed" or "a, b": bound to each item
    assigned: tuple[str, ...] = ()  # single mode: names to bring back
    filename: str = CELL_FILENAME
    sources: SourceMap = field(default_factory=SourceMap)  # notebook cells, for tracebacks
    label: str = ""  # how the user knows this cell ("Cell In[7]"), for tracebacks
    header: str = ""  # the cell's "%%burst ..." line: line numbers count it, as the notebook does

    def __post_init__(self) -> None:
        lines = ([self.header] if self.header else []) + self.source.splitlines(True)
        self.sources.add_file(self.filename, lines, self.label or None)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state

    def _code(self) -> tuple[CodeType, CodeType | None, CodeType | None]:
        compiled: tuple[CodeType, CodeType | None, CodeType | None] | None = self.__dict__.get("_compiled")
        if compiled is None:
            body, last = split_trailing_expression(self.source, self.filename, 2 if self.header else 1)
            bind = (
                compile(f"{self.map_target} = __starburst_item__", "<burst map>", "exec") if self.map_target else None
            )
            compiled = self.__dict__["_compiled"] = (body, last, bind)
        return compiled

    def run(self, item: Any) -> Any:
        try:
            return self._run(item)
        except (ValueError, TypeError, BufferError) as exc:  # a write into a shared captured array says why
            buffers.note_read_only(exc)
            raise

    def _run(self, item: Any) -> Any:
        body, last, bind = self._code()
        scope = dict(self.namespace)
        scope.setdefault("__name__", "__main__")
        scope.setdefault("__builtins__", __builtins__)
        if bind is not None:
            scope["__starburst_item__"] = item
            exec(bind, scope)
            del scope["__starburst_item__"]
        exec(body, scope)
        value = eval(last, scope) if last is not None else None
        if self.map_target is not None:
            return value
        return self._bring_back(scope, value, last is not None)

    def _bring_back(self, scope: dict[str, Any], value: Any, has_value: bool) -> CellValues:
        names, dropped = {}, {}
        for name in self.assigned:
            if name not in scope:
                continue
            why = _why_stuck(scope[name])
            if why:
                dropped[name] = why
            else:
                names[name] = scope[name]
        value_dropped = _why_stuck(value) if has_value else ""
        if value_dropped:
            value, has_value = None, False
        return CellValues(names, value, has_value, dropped, value_dropped)


def _why_stuck(value: Any) -> str:
    """Why `value` cannot travel back from the worker ("" when it can)."""
    try:
        cloudpickle.dumps(value, protocol=5, buffer_callback=lambda b: None)
    except Exception as exc:  # any pickling failure means it cannot travel back
        return f"{type(value).__name__}: {exc}"
    return ""


@dataclass
class CallProgram:
    """burst_map(fn, items): fn(item) per item."""

    fn: Any
    sources: SourceMap = field(default_factory=SourceMap)

    def run(self, item: Any) -> Any:
        try:
            return self.fn(item)
        except (ValueError, TypeError, BufferError) as exc:  # a write into a shared captured array says why
            buffers.note_read_only(exc)
            raise


class SubmitProgram:
    """BurstExecutor.submit: each item is (fn, args, kwargs)."""

    sources = SourceMap()  # functions come with the items, not with the program

    def run(self, item: Any) -> Any:
        fn, args, kwargs = item
        try:
            return fn(*args, **kwargs)
        except (ValueError, TypeError, BufferError) as exc:  # a write into a shared captured array says why
            buffers.note_read_only(exc)
            raise
