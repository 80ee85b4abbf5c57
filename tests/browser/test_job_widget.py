"""The live job widget in a real browser: progress advances, logs stream in, Cancel works mid-cell."""

from __future__ import annotations

import json
import time

import pytest
from helpers import pid_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

SLOW_CELLS = [
    "%load_ext starburst_jupyter",
    "%%burst --map x in range(40) --workers 2 --out r --name slow-demo\n"
    "import time\nprint('working on item', x, flush=True)\ntime.sleep(1.5)\nx",
    "print('after the burst cell:', sum(v for v in r if isinstance(v, int)))",
]


# Where each pointer event of the click went (the Cancel button or something that moved under the pointer):
# printed with the kernel's trace if the cell does not end.
_RECORD_POINTER_EVENTS = """() => {
  window.__starburstPointer = [];
  for (const type of ['pointerdown', 'mousedown', 'pointerup', 'mouseup', 'click']) {
    document.addEventListener(type, e => {
      const t = e.target, button = t.closest && t.closest('button');
      window.__starburstPointer.push([type, Math.round(performance.now()), t.tagName,
        (t.className || '').toString().slice(0, 40), button ? button.textContent.trim() : null, e.clientX, e.clientY]);
    }, true);
  }
}"""


# Not re-run on failure: a click that reached the kernel was once in about five CI runs not acted on (the driver's loop
# overwrote the request while reading the cancel file; tests/test_cancel_click_race.py). A Cancel must work
# every time; if it does not, the failure prints where the click went and the kernel's trace.
def test_widget_progress_logs_and_cancel_while_running(lab_page, jupyter_lab, start_notebook, screenshot):
    page = lab_page
    cells = start_notebook(page, "widget.ipynb", SLOW_CELLS)
    widget = page.locator(".starburst-job")
    widget.wait_for(state="visible", timeout=60_000)
    progress = widget.locator(".widget-hprogress .widget-label").first
    screenshot(page, "started")

    def finished_items() -> int:
        label = progress.inner_text().strip()  # "n/40"
        return int(label.split("/")[0]) if "/" in label else 0

    page.wait_for_function(  # the bar advances while the cell runs
        "() => { const l = document.querySelector('.starburst-job .widget-hprogress .widget-label');"
        " return l && parseInt(l.textContent) >= 2; }",
        timeout=60_000,
    )
    first = finished_items()
    page.wait_for_function(
        "([n]) => { const l = document.querySelector('.starburst-job .widget-hprogress .widget-label');"
        " return l && parseInt(l.textContent) > n; }",
        arg=[first],
        timeout=60_000,
    )
    logs = widget.locator(".starburst-logs")
    page.wait_for_function(
        "() => (document.querySelector('.starburst-job .starburst-logs') || {}).textContent"
        "?.includes('working on item')",
        timeout=60_000,
    )
    assert "working on item" in logs.inner_text()
    assert "slow-demo" in widget.inner_text() and "running" in widget.inner_text()
    screenshot(page, "running")

    assert cells.nth(1).locator(".jp-InputArea-prompt").inner_text().strip() == "[*]:"  # still running
    page.evaluate(_RECORD_POINTER_EVENTS)
    clicked = time.monotonic()
    widget.get_by_role("button", name="Cancel job").click()
    page.wait_for_function(  # the cell returns: its prompt gets its execution count
        "() => /^\\[\\d+\\]:$/.test(document.querySelectorAll("
        "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt')[1].textContent.trim())",
        timeout=60_000,
    )
    took = time.monotonic() - clicked
    if took >= 30 or "BurstCancelled" not in cells.nth(1).locator(".jp-OutputArea").inner_text():
        pytest.fail(  # far less than the remaining work would take
            f"the cell was not cancelled by the click ({took:.1f} s).\n"
            f"browser events: {page.evaluate('() => window.__starburstPointer')}\n"
            f"kernel trace ({jupyter_lab.trace_path}):\n{jupyter_lab.trace_tail()}",
            pytrace=False,
        )
    page.locator(".starburst-summary").first.wait_for(state="visible", timeout=30_000)
    screenshot(page, "cancelled")
    outputs = [cells.nth(i).locator(".jp-OutputArea").inner_text() for i in range(len(SLOW_CELLS))]

    assert "BurstCancelled" in outputs[1] and "cancelled by user" in outputs[1]
    summary = page.locator(".starburst-summary").first.inner_text()
    assert "cancelled" in summary and "0 failed" in summary  # unfinished items are not failures
    assert page.locator(".starburst-job details").count() == 0
    records = [json.loads(p.read_text()) for p in jupyter_lab.starburst_home.glob("jobs/*/record.json")]
    record = max((r for r in records if r["name"] == "slow-demo"), key=lambda r: r["created"])  # this run's job
    assert record["state"] == "cancelled" and record["done"] < 40
    pids = [w["pid"] for w in record["workers"].values()]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15)  # no worker of the job left running
    assert "after the burst cell" not in outputs[2]  # Run All stops at the cancelled cell
