"""The widget face: a JobView rendered into ipywidgets, buttons wired to the job's handle."""

from __future__ import annotations

from starburst_jupyter.core import events as ev
from starburst_jupyter.display.progress import JobView
from starburst_jupyter.display.widget import JobWidget


def test_widget_renders_progress_workers_logs_failures_and_cost():
    j = "bj-w"
    view = JobView(j, total=10, name="sims", backend="local")
    for event in (
        ev.JobStateChanged(j, state="running"),
        ev.WaveStarted(j, wave=1, waves=2, workers=2),
        ev.WorkerStarted(j, worker=0, wave=1),
        ev.WorkerStarted(j, worker=1, wave=1),
        ev.TaskStarted(j, worker=0, indices=(0, 1, 2)),
        ev.TaskFinished(j, index=0, worker=0, duration=0.1),
        ev.TaskFailed(j, index=1, worker=0, error="ValueError: <bad>", traceback="Traceback: line 3"),
        ev.LogLine(j, worker=1, line="hello from 1"),
        ev.CostTick(j, accrued=0.002, projected=0.01, cap=0.5, label="estimate for the same work"),
    ):
        view.apply(event)
    cancels, stops = [], []
    widget = JobWidget(view, lambda: cancels.append(True), stops.append, size="1 vCPU / 2GB")
    widget.render(view)
    assert "sims" in widget.header.value and "running" in widget.header.value
    assert widget.waves.value == "wave 1 of 2: 2/2 workers up"
    assert widget.progress.value == 2 and widget.progress.bar_style == "danger"
    assert len(widget.wave_bars.children) == 1 and len(widget.workers.children) == 2
    assert "&lt;bad&gt;" in widget.failures.value and "Traceback: line 3" in widget.failures.value  # escaped
    assert "hello from 1" in widget.logs.value
    widget.log_choice.value = 0
    assert "hello from 1" not in widget.logs.value
    assert "cap $0.5" in widget.cost.value and "estimate" in widget.cost.value
    widget.cancel_button.click()
    assert cancels == [True] and widget.cancel_button.disabled
    widget.workers.children[1].children[0].click()
    assert stops == [1]
    view.apply(
        ev.JobFinished(
            j, state="cancelled", done=1, failed=1, total=10, duration=2.0, cost=0.003, message="interrupted"
        )
    )
    widget.settle(view)
    summary = widget.root.children[0].value
    assert "cancelled" in summary and "1/10 ok" in summary and "interrupted" in summary


def test_log_viewer_is_capped():
    view = JobView("j", total=1)
    view.apply(ev.WorkerStarted("j", worker=0, wave=1))
    for n in range(5000):
        view.apply(ev.LogLine("j", worker=0, line=f"line {n}"))
    widget = JobWidget(view, lambda: None, lambda i: None)
    widget.render(view)
    assert widget.logs.value.count("\n") < 250 and "line 4999" in widget.logs.value


def test_image_progress_shows_steps_and_pushed_bytes_and_counts_chatter():
    from starburst_jupyter.display.widget import ImageProgressWidget

    widget = ImageProgressWidget(min_interval=0.0)
    progress = lambda phase, message, current=None, total=None: ev.ImageBuildProgress(
        "j", phase=phase, message=message, current=current, total=total
    )
    widget.update(progress("context", "Collecting cloudpickle"))
    widget.update(progress("context", "Building wheel for mylib"))
    assert "2 lines of output" in widget.line.value
    widget.update(progress("build", "Step 3/9 : RUN pip install", 3, 9))
    assert (widget.bar.value, widget.bar.max, widget.bar.layout.visibility) == (3, 9, "visible")
    assert "Step 3/9" in widget.line.value
    widget.update(progress("push", "pushing", 50 * 2**20, 100 * 2**20))
    assert widget.bar.description == "pushed" and widget.bar.value == 50 * 2**20
    widget.update(progress("done", "built starburst-worker:abc in 42 s (139 MB)"))
    assert "built starburst-worker:abc" in widget.line.value and widget.bar.layout.visibility == "hidden"
