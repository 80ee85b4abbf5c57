"""Remote tracebacks find the notebook's lines by what survives pickling, not by co_filename."""

from __future__ import annotations

import linecache
import pickle

import cloudpickle

from starburst_jupyter.protocol import sourcemap

CELL = "/tmp/ipykernel_1/cell-7.py"
SOURCE = "def outer(x):\n    inner = lambda y: {'a': 1}[y]\n    return inner(x)\n"


def notebook_function():
    """A function as a notebook cell defines it: its file exists only in the kernel's linecache."""
    linecache.cache[CELL] = (len(SOURCE), None, SOURCE.splitlines(True), CELL)
    scope = {"__name__": "__main__"}
    exec(compile(SOURCE, CELL, "exec"), scope)
    return scope["outer"]


def remote_error(fn, smap):
    """Ship fn and the map as a worker gets them; the cell is unknown to the worker's linecache."""
    fn, smap = pickle.loads(cloudpickle.dumps((fn, smap)))
    linecache.cache.pop(CELL, None)
    try:
        fn("b")
    except KeyError as exc:
        return sourcemap.format_exception(exc, smap)
    raise AssertionError("no error")


def test_lines_and_cell_label_survive_a_pickler_that_renames_code():
    fn = notebook_function()
    smap = sourcemap.collect([fn], label=lambda name: "Cell In[7]" if name == CELL else None)
    fn.__code__ = fn.__code__.replace(co_filename="<dynamic-code>")  # what cloudpickle 3.1.3 ships
    text = remote_error(fn, smap)
    assert "Cell In[7], line 3, in outer\n    return inner(x)" in text
    assert "Cell In[7], line 2, in <lambda>\n    inner = lambda y: {'a': 1}[y]" in text
    assert "<dynamic-code>" not in text and CELL not in text


def test_a_function_the_map_does_not_know_keeps_its_own_filename():
    fn = notebook_function()
    text = remote_error(fn, sourcemap.SourceMap())
    assert "line 3, in outer" in text and "Cell In[" not in text


def test_library_code_is_not_shipped():
    import json

    smap = sourcemap.collect([json.dumps, json.JSONDecoder(), [len, json.loads]])
    assert smap.files == {} and smap.origins == {}
