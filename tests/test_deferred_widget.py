"""A %%burst cell in a real kernel: a job that ends within a moment shows only its summary (no widget models,
no 40 ms of comm traffic); a longer one gets the live widget, which its summary replaces at the end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
WIDGET_TARGET = "jupyter.widget"


@pytest.fixture
def kernel(starburst_home: Path):
    env = {
        **os.environ,
        "STARBURST_HOME": str(starburst_home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        client.execute_interactive("%load_ext starburst_jupyter", timeout=60)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def messages_of(client, code: str) -> tuple[dict, list[dict]]:
    seen: list[dict] = []
    reply = client.execute_interactive(code, timeout=120, output_hook=seen.append)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply, seen


def widgets_opened(seen: list[dict]) -> int:
    return sum(1 for m in seen if m["msg_type"] == "comm_open" and m["content"].get("target_name") == WIDGET_TARGET)


def test_a_quick_cell_shows_its_summary_and_no_widget_a_slow_one_its_widget_then_the_summary(kernel):
    _, quick = messages_of(kernel, "%%burst --map v in range(2) --workers 2 --out r\nv * 2")
    assert widgets_opened(quick) == 0
    shown = [m["content"]["data"] for m in quick if m["msg_type"] == "display_data"]
    assert len(shown) == 1 and "2/2" in shown[0]["text/plain"] and "<" in shown[0]["text/html"]
    _, check = messages_of(kernel, "print(r)")
    assert "[0, 2]" in "".join(m["content"].get("text", "") for m in check if m["msg_type"] == "stream")

    _, slow = messages_of(kernel, "%%burst --map v in range(4) --workers 2 --out s\nimport time\ntime.sleep(0.6)\nv")
    assert widgets_opened(slow) > 10  # the live view, while the job ran
    live = [m for m in slow if m["msg_type"] == "display_data"]
    assert len(live) == 1 and "application/vnd.jupyter.widget-view+json" in live[0]["content"]["data"]
    display_id = live[0]["content"]["transient"]["display_id"]
    ends = [m["content"] for m in slow if m["msg_type"] == "update_display_data"]
    assert ends and ends[-1]["transient"]["display_id"] == display_id and "4/4" in ends[-1]["data"]["text/plain"]


def test_an_interrupt_before_the_widget_shows_still_cancels_the_job(ip, starburst_home, monkeypatch):
    """The synchronous cell (a kernel without awaited cells) waits the widget's delay first: a stop there must
    cancel the job as one during the main wait does, and end every worker."""
    import json

    from helpers import pid_alive
    from test_magics import run

    from starburst_jupyter.core.job import JobHandle

    monkeypatch.setattr(ip, "kernel", object(), raising=False)  # a front end that shows widgets
    monkeypatch.setattr(ip, "autoawait", False)
    waits = []
    original = JobHandle.wait_settled

    def interrupted_first(self, timeout=None):
        waits.append(timeout)
        if len(waits) == 1:
            raise KeyboardInterrupt
        return original(self, timeout)

    monkeypatch.setattr(JobHandle, "wait_settled", interrupted_first)
    monkeypatch.setattr("starburst_jupyter.display.widget.JobWidget.display", lambda self: "")
    outcome = run(ip, "%%burst --map v in range(4) --workers 2\nimport time\ntime.sleep(30)\nv")
    assert type(outcome.error).__name__ == "BurstInterrupted", outcome.error
    [record] = [json.loads(p.read_text()) for p in (starburst_home / "jobs").glob("*/record.json")]
    assert record["state"] == "cancelled" and "interrupted" in record["message"]
    assert not any(pid_alive(w["pid"]) for w in record["workers"].values() if w.get("pid"))
