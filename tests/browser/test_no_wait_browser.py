"""`%%burst --no-wait` in JupyterLab in a real browser: the cell returns while its widget keeps advancing, another
cell runs and prints while the job runs, and the results land in --out when the job ends."""

from __future__ import annotations

import json
import re

import pytest
from helpers import pid_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

ITEMS = 12
CELLS = [
    "%load_ext starburst_jupyter",
    f"%%burst --map x in range({ITEMS}) --workers 2 --no-wait --out res --name nowait-demo\n"
    "import time\ntime.sleep(0.7)\nx * 10",
    'print("other cell ran")',
]
CELL_PROMPTS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt"
PROGRESS = ".starburst-job .widget-hprogress .widget-label"

# When (performance.now()) the other cell's output and the widget's end (its summary) first appeared.
_WATCH = """() => {
  window.__starburstSeen = {};
  const look = () => {
    const seen = window.__starburstSeen, now = performance.now();
    const outputs = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea');
    if (!seen.other && outputs[2] && outputs[2].textContent.includes('other cell ran')) seen.other = now;
    if (!seen.ended && document.querySelector('.starburst-summary')) seen.ended = now;
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

# A user's next cell, added below the last one and run (Shift+Enter), once the job has ended.
_RUN_NEW_CELL = """async (source) => {
  const app = window.jupyterapp, notebook = app.shell.currentWidget.content;
  notebook.activeCellIndex = notebook.widgets.length - 1;
  await app.commands.execute('notebook:insert-cell-below');
  notebook.activeCell.model.sharedModel.setSource(source);
  await app.commands.execute('notebook:run-cell');
}"""


def test_no_wait_cell_returns_other_cells_run_and_results_land_in_out(
    lab_page, jupyter_lab, start_notebook, notebook_done, screenshot
):
    page = lab_page
    cells = start_notebook(page, "nowait.ipynb", CELLS, before_run=lambda p: p.evaluate(_WATCH))

    def done_items() -> int:
        label = page.locator(PROGRESS).first.inner_text().strip()  # "n/12"
        return int(label.split("/")[0]) if "/" in label else 0

    # The --no-wait cell returns (its prompt gets its number) while the job still runs.
    page.wait_for_function(
        "([sel]) => /^\\[\\d+\\]:$/.test((document.querySelectorAll(sel)[1] || {}).textContent?.trim() || '')",
        arg=[CELL_PROMPTS],
        timeout=60_000,
    )
    page.locator(".starburst-job").first.wait_for(state="visible", timeout=60_000)
    returned_at = done_items()
    assert returned_at < ITEMS and page.locator(".starburst-summary").count() == 0, "the cell waited for the job"
    assert "detached" in cells.nth(1).locator(".jp-OutputArea").inner_text()

    # Another cell runs and prints while the job runs.
    page.wait_for_function(
        "() => (document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-OutputArea')[2]"
        " || {}).textContent?.includes('other cell ran')",
        timeout=60_000,
    )
    assert page.locator(".starburst-summary").count() == 0, "the other cell only ran once the job had ended"
    # ... and the widget keeps advancing after the cell returned.
    page.wait_for_function(
        "([sel, n]) => { const l = document.querySelector(sel); return l && parseInt(l.textContent) > n; }",
        arg=[PROGRESS, max(returned_at, 1)],
        timeout=60_000,
    )
    assert done_items() < ITEMS, "the job ended before the widget could be seen advancing"
    screenshot(page, "mid-run")

    # The job ends: the widget settles; the results are in --out.
    page.locator(".starburst-summary").first.wait_for(state="visible", timeout=120_000)
    page.wait_for_function(  # the widget says where the results landed
        "() => (document.querySelector('.starburst-summary') || {}).textContent?.includes('results in res')",
        timeout=30_000,
    )
    summary = page.locator(".starburst-summary").first.inner_text()
    assert "done" in summary and f"{ITEMS}/{ITEMS} ok" in summary, summary
    assert f"{ITEMS} of {ITEMS} results in res" in summary, summary
    seen = page.evaluate("() => window.__starburstSeen")
    assert seen.get("other") and seen.get("ended") and seen["other"] < seen["ended"], seen

    page.evaluate(_RUN_NEW_CELL, "print(res)")
    outputs = notebook_done(page, cells, len(CELLS) + 1)
    assert outputs[2].strip() == "other cell ran", outputs
    assert outputs[3].strip() == str([x * 10 for x in range(ITEMS)]), outputs
    assert "Traceback" not in "".join(outputs), outputs
    screenshot(page, "end")

    records = [json.loads(p.read_text()) for p in jupyter_lab.starburst_home.glob("jobs/*/record.json")]
    record = max((r for r in records if r["name"] == "nowait-demo"), key=lambda r: r["created"])  # this run's job
    assert record["state"] == "done" and record["done"] == ITEMS, record
    assert record["owner"]["detached"], record["owner"]
    pids = [w["pid"] for w in record["workers"].values() if w.get("pid")] + [record["owner"]["pid"]]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15)  # the job's driver and workers ended
    assert re.search(r"DetachedJob bj-", outputs[1]), outputs[1]  # the cell's value: the job's handle
