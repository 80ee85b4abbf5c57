"""Which names a cell needs from the notebook, which it assigns, and whether they can travel.

Only names the cell reads (in source order, before assigning them) are shipped; functions and
classes defined in the notebook go by value (cloudpickle), modules go as imports.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import re
import socket
import sys
import threading
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from starburst_jupyter.errors import BurstCaptureError, BurstValidationError
from starburst_jupyter.protocol.programs import CELL_FILENAME

# IPython's own names in the user namespace: history (_, __, ___, _i, _ii, _iii, _i7, _7), In/Out, ...
_IPYTHON_INTERNAL = re.compile(r"^(In|Out|get_ipython|exit|quit|_{1,3}|_i{1,3}|_i\d+|_\d+|_oh|_ih|_dh|__\w+__)$")


@dataclass(frozen=True)
class CellAnalysis:
    needed: frozenset[str]  # names read before the cell binds them
    assigned: tuple[str, ...]  # names bound at the cell's top level, in order


class _Names(ast.NodeVisitor):
    """Walks statements in execution order, tracking what is bound so far at this scope."""

    def __init__(self, bound: set[str] | None = None):
        self.bound = set(bound or ())
        self.needed: set[str] = set()
        self.assigned: list[str] = []

    def _bind(self, name: str) -> None:
        self.bound.add(name)
        if name not in self.assigned:
            self.assigned.append(name)

    def _read(self, name: str) -> None:
        if name not in self.bound:
            self.needed.add(name)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self._bind(node.id)
        else:
            self._read(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        for target in node.targets:
            self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self.visit(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._read(node.target.id)
            self._bind(node.target.id)
        else:
            self.visit(node.target)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self.visit(node.value)
        self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self.visit(node.target)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self._bind(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            self._read(name)

    def _inner_scope(self, params: list[str], body: Sequence[ast.AST]) -> None:
        nodes = [n for stmt in body for n in ast.walk(stmt)]
        declared_global = {name for n in nodes if isinstance(n, ast.Global) for name in n.names}
        stored = {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        inner = _Names(bound=set(params) | (stored - declared_global))
        for stmt in body:
            inner.visit(stmt)
        for name in inner.needed:
            self._read(name)
        for name in sorted(declared_global & stored):  # `global x; x = ...` rebinds the notebook's x
            if name not in self.assigned:
                self.assigned.append(name)

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self.visit(default)
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    self.visit(arg.annotation)
            if node.returns is not None:
                self.visit(node.returns)
        params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg] if a]
        body = node.body if isinstance(node.body, list) else [node.body]
        if not isinstance(node, ast.Lambda):
            self._bind(node.name)  # bound before the body runs, so recursion is not a capture
        self._inner_scope(params, body)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in node.bases + [k.value for k in node.keywords] + node.decorator_list:
            self.visit(expr)
        self._inner_scope([], node.body)
        self._bind(node.name)

    def _comprehension(self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp) -> None:
        inner = _Names(bound=set(self.bound))
        for gen in node.generators:
            inner.visit(gen.iter)
            inner.visit(gen.target)
            for cond in gen.ifs:
                inner.visit(cond)
        for part in ("elt", "key", "value"):
            if hasattr(node, part):
                inner.visit(getattr(node, part))
        for name in inner.needed:
            self._read(name)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def parse_cell(source: str) -> ast.Module:
    """The cell's syntax tree, or a BurstValidationError before anything is launched.

    The tree is also compiled: `return`, `yield` or `await` at the top level parse, but a worker
    could only fail on them (every item, billed), so they are refused here."""
    try:
        tree = ast.parse(source, filename=CELL_FILENAME)
        compile(tree, CELL_FILENAME, "exec")
        return tree
    except SyntaxError as exc:
        if "outside" in exc.msg and "function" in exc.msg:  # 'return' outside function, ... async function
            what = exc.msg.split("'")[1] if exc.msg.count("'") >= 2 else exc.msg.split(" outside")[0]
            advice = " and run it with asyncio.run(...) in the cell" if "async" in exc.msg or what == "await" else ""
            where = "an async function" if "async" in exc.msg.split("outside")[1] else "a function"
            lines = source.splitlines()
            text = lines[exc.lineno - 1].strip() if exc.lineno and exc.lineno <= len(lines) else ""
            raise BurstValidationError(
                f"The %%burst cell uses {what!r} outside {where} (line {exc.lineno}: {text!r}), "
                f"which Python does not allow: a worker runs the cell as a script and would fail on it, so nothing "
                f"was launched. Move that code into {where}{advice}."
            ) from None
        line = (exc.text or "").strip()
        hint = ""
        if line.startswith(("%", "!")):
            hint = " IPython magics and !shell lines cannot run on a burst worker; move them to another cell."
        raise BurstValidationError(
            f"The %%burst cell does not parse as Python (line {exc.lineno}: {exc.msg}: {line!r}).{hint}"
        ) from None


def analyze_cell(source: str, map_names: tuple[str, ...] = ()) -> CellAnalysis:
    tree = parse_cell(source)
    names = _Names(bound=set(map_names))
    for stmt in tree.body:
        names.visit(stmt)
    return CellAnalysis(frozenset(names.needed), tuple(n for n in names.assigned if n not in map_names))


def undefined_names(source: str, analysis: CellAnalysis, user_ns: dict[str, Any]) -> list[str]:
    """Names the cell reads that exist nowhere: not in the notebook, not assigned by the cell, not builtins. Each
    would be a NameError on every item, billed; none is reported when the cell star-imports (it cannot be told)."""
    if any(
        isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names)
        for node in ast.walk(parse_cell(source))
    ):
        return []
    known = set(user_ns) | set(analysis.assigned) | set(dir(builtins))
    return sorted(n for n in analysis.needed if n not in known and not (n.startswith("__") and n.endswith("__")))


def refuse_undefined_names(source: str, analysis: CellAnalysis, user_ns: dict[str, Any]) -> None:
    """BurstCaptureError before launch for a name the cell reads that is defined nowhere."""
    missing = undefined_names(source, analysis, user_ns)
    if missing:
        shown = ", ".join(repr(n) for n in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise BurstCaptureError(
            f"The %%burst cell reads {shown}, defined nowhere: not in this notebook, not assigned in the cell, "
            f"not a builtin. Every item would fail with a NameError; nothing was launched. Run the cell that "
            f"defines {'it' if len(missing) == 1 else 'them'} first, or import {'it' if len(missing) == 1 else 'them'} "
            f"in the %%burst cell."
        )


def reserved_name_reason(name: str) -> str:
    """Why a name must not receive results in the user's namespace ("" when it may): a builtin
    (`list`, `print`), a dunder (`__builtins__`, `__name__`) or a name IPython owns (In, Out, _, exit)
    would break the notebook's namespace when overwritten."""
    if not name.isidentifier() or keyword.iskeyword(name):
        return "is not a valid Python name"
    if name.startswith("__") and name.endswith("__"):
        return "is a special (dunder) name Python itself uses"
    if _IPYTHON_INTERNAL.match(name):
        return "is a name IPython keeps for itself (history, In/Out, exit)"
    if name in vars(builtins):
        return "is a Python builtin, which it would hide"
    return ""


def select_namespace(needed: frozenset[str], user_ns: dict[str, Any]) -> dict[str, Any]:
    return {n: user_ns[n] for n in sorted(needed) if n in user_ns and not _IPYTHON_INTERNAL.match(n)}


def _hint(value: Any) -> str:
    if isinstance(value, io.IOBase):
        return "Open the file inside the cell instead (workers have their own file system)."
    if isinstance(value, types.GeneratorType):
        return "Turn it into a list before the cell (e.g. data = list(data))."
    if isinstance(value, type(threading.Lock())) or "lock" in type(value).__name__.lower():
        return "Create the lock inside the cell; locks cannot be shared with other machines."
    if isinstance(value, socket.socket) or "connection" in type(value).__name__.lower():
        return "Open the connection inside the cell; connections cannot travel to a worker."
    return "Create it inside the cell, or pass the plain data it holds instead."


def cell_label(filename: str) -> str | None:
    """How IPython names the cell that a filename belongs to ("Cell In[7]"), if IPython is running."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    try:
        named = shell.compile.format_code_name(filename) if shell is not None else None
    except Exception:  # an older or stand-in shell: the filename is all we have
        return None
    return f"{named[0]} {named[1]}" if named else None


def calling_cell_label() -> str | None:
    """The label of the notebook cell whose code is running this call (the %%burst cell itself)."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        label = cell_label(frame.f_code.co_filename)
        if label:
            return label
        frame = frame.f_back
    return None


def refuse_open_files(namespace: dict[str, Any]) -> None:
    """cloudpickle would ship a file opened for reading as a copy of its contents (possibly gigabytes):
    refuse every open file, as a user expects of a handle that belongs to this machine."""
    for name, value in namespace.items():
        if isinstance(value, io.IOBase) and not value.closed:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            raise BurstCaptureError(
                f"The cell needs {name!r} ({kind}), an open file, which cannot be sent to workers. {_hint(value)}"
            )


def check_picklable(namespace: dict[str, Any]) -> None:
    """Find which captured name cannot travel and say what to do, before anything is launched."""
    for name, value in namespace.items():
        try:
            cloudpickle.dumps(value, protocol=5, buffer_callback=lambda b: None)
        except Exception as exc:  # pickling raises many kinds
            kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
            raise BurstCaptureError(
                f"The cell needs {name!r} ({kind}), which cannot be sent to workers: {exc}. {_hint(value)}"
            ) from None
