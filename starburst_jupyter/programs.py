"""What a worker runs for each item. Pickled once per job; imports nothing from IPython."""
from __future__ import annotations

import ast
import linecache
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

CELL_FILENAME = "<burst cell>"


def register_sources(sources: dict[str, list[str]]) -> None:
    """Make notebook cells' lines known to tracebacks on this worker (mtime None: never invalidated)."""
    for name, lines in sources.items():
        linecache.cache[name] = (sum(map(len, lines)), None, lines, name)


@dataclass
class CellValues:
    """Single-task result: the names the cell assigned, its trailing value, names that could not travel."""

    names: dict[str, Any]
    value: Any = None
    has_value: bool = False
    dropped: dict[str, str] = field(default_factory=dict)


def split_trailing_expression(source: str, filename: str = CELL_FILENAME):
    """Compile a cell as IPython would run it: statements, then the last expression's value."""
    tree = ast.parse(source, filename=filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    body = compile(tree, filename, "exec")
    return body, (compile(last, filename, "eval") if last is not None else None)


@dataclass
class CellProgram:
    source: str
    namespace: dict[str, Any]
    map_target: str | None = None  # "seed" or "a, b": bound to each item
    assigned: tuple[str, ...] = ()  # single mode: names to bring back
    filename: str = CELL_FILENAME
    sources: dict[str, list[str]] = field(default_factory=dict)  # notebook cells, for tracebacks

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state

    def _code(self):
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            register_sources({**self.sources, self.filename: self.source.splitlines(True)})
            body, last = split_trailing_expression(self.source, self.filename)
            bind = compile(f"{self.map_target} = __starburst_item__", "<burst map>", "exec") if self.map_target else None
            compiled = self.__dict__["_compiled"] = (body, last, bind)
        return compiled

    def run(self, item: Any) -> Any:
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

    def _bring_back(self, scope: dict, value: Any, has_value: bool) -> CellValues:
        names, dropped = {}, {}
        for name in self.assigned:
            if name not in scope:
                continue
            try:
                cloudpickle.dumps(scope[name], protocol=5, buffer_callback=lambda b: None)
            except Exception as exc:  # noqa: BLE001 - any pickling failure means it cannot travel back
                dropped[name] = f"{type(scope[name]).__name__}: {exc}"
            else:
                names[name] = scope[name]
        return CellValues(names, value, has_value, dropped)


@dataclass
class CallProgram:
    """burst_map(fn, items): fn(item) per item."""

    fn: Any
    sources: dict[str, list[str]] = field(default_factory=dict)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        register_sources(self.sources)

    def run(self, item: Any) -> Any:
        return self.fn(item)


class SubmitProgram:
    """BurstExecutor.submit: each item is (fn, args, kwargs)."""

    def run(self, item: Any) -> Any:
        fn, args, kwargs = item
        return fn(*args, **kwargs)
