"""The example notebooks run top to bottom on the local backend, as a user would run them."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
ARTIFACTS = Path(__file__).parent.parent / "artifacts"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_executes(path: Path, starburst_home: Path):
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env={**os.environ, "STARBURST_HOME": str(starburst_home)})
    ARTIFACTS.mkdir(exist_ok=True)
    nbformat.write(notebook, ARTIFACTS / path.name)
    text = "\n".join(
        out.get("text", "") + str(out.get("data", {}).get("text/plain", "")) + "\n".join(out.get("traceback", []))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )
    if path.name == "01-quickstart.ipynb":
        assert "1000 results" in text
        assert "fitted on the worker" in text and "max error" in text
        assert "items failed in job" in text and "item 7 is cursed" in text  # the failing cell, reported clearly
        assert "failed items: [7, 257, 507, 757]" in text
        assert "done/failed/total" in text  # %burst_status
