"""Smoke test in a real browser: %%burst --map in JupyterLab, progress and results in the output area."""

from __future__ import annotations

import json

import pytest
from helpers import pid_alive, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

CELLS = [
    "%load_ext starburst_jupyter",
    "%%burst --map x in range(40) --workers 2 --out r --name smoke\nimport time; time.sleep(0.05); x * 2",
    "print(sum(r))",
]


def test_burst_map_in_jupyterlab(lab_page, jupyter_lab, open_and_run_notebook, screenshot):
    outputs = open_and_run_notebook(lab_page, "smoke.ipynb", CELLS, before_run=lambda page: screenshot(page, "before"))
    screenshot(lab_page, "after")

    burst_out, sum_out = outputs[1], outputs[2]
    assert "burst job" in burst_out, outputs
    assert "done" in burst_out, outputs
    assert "Traceback" not in "".join(outputs), outputs
    assert sum_out.strip() == "1560", outputs
    summary = lab_page.locator(".starburst-summary").first.inner_text()  # the widget settled into a summary
    assert "done" in summary and "40/40 ok" in summary and "Fargate estimate" in summary, summary
    output_area = lab_page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea")
    assert "1560" in "\n".join(output_area.all_inner_texts())

    records = [json.loads(p.read_text()) for p in jupyter_lab.starburst_home.glob("jobs/*/record.json")]
    smoke = [r for r in records if r["name"] == "smoke"]  # the lab (and its job store) is shared by the session
    assert len(smoke) == 1, records
    record = smoke[0]
    assert record["state"] == "done", record
    assert record["done"] == 40 and record["failed"] == 0, record
    pids = [w["pid"] for w in record["workers"].values() if w.get("pid")]
    assert pids, record["workers"]
    wait_for(lambda: not any(pid_alive(p) for p in pids), timeout=15)  # every worker process is gone
