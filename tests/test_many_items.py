"""Many small items (issue 15): results move and are decoded per flushed batch, events come per batch, the
record's outcomes are kept as items change; one bad value is still only its own item's failure."""

from __future__ import annotations

import os
import threading

import cloudpickle

from starburst_jupyter.core import events as ev
from starburst_jupyter.core.ledger import PER_ITEM_EVENTS, ItemLedger
from starburst_jupyter.display.progress import JobView
from starburst_jupyter.protocol import serialize
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.objects import LocalFolderStore
from starburst_jupyter.worker.runner import run_item


class NotInThisKernel:
    """Pickles on the worker; unpickling it raises (as a class the kernel's packages lack would)."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise ImportError("No module named 'only_on_the_worker'")


def values(x):
    if x == 3:
        return threading.Lock()  # cannot be pickled: item 3's failure, on the worker
    if x == 5:
        return NotInThisKernel()  # cannot be unpickled: item 5's failure, in the kernel
    return x * 10


def job(tmp_path, n: int) -> tuple[ItemLedger, JobFiles, list[ev.Event]]:
    files = JobFiles(LocalFolderStore(tmp_path), "bj-many")
    seen: list[ev.Event] = []
    bus = ev.EventBus()
    bus.subscribe(seen.append)
    book = ItemLedger(files, bus, result_window=20.0)
    book.start([list(range(n))], list(range(n)), open_job=False)
    return book, files, seen


def test_one_pickler_per_batch_and_a_bad_value_fails_only_its_item(tmp_path, monkeypatch):
    made = []
    original = cloudpickle.Pickler.__init__

    def counting(self, *args, **kwargs):
        made.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(cloudpickle.Pickler, "__init__", counting)
    n = PER_ITEM_EVENTS * 3
    book, files, seen = job(tmp_path, n)
    made.clear()  # (writing the block pickled too)
    program, writer = CallProgram(values), serialize.ValueWriter()
    results = [run_item(program, i, i, 1, 10**6, "bj-many", writer) for i in range(n)]
    assert len(made) == 1, f"{len(made)} picklers for {n} items"
    files.claim(0, 1)
    files.write_results(0, 0, results)
    book.scan_claims(full=True)
    book.collect_results(full=True)

    out = book.values()
    assert [out[i] for i in range(n) if i not in (3, 5)] == [i * 10 for i in range(n) if i not in (3, 5)]
    assert "cannot be pickled" in str(out[3]) and "could not be unpickled in this kernel" in str(out[5])
    assert "only_on_the_worker" in str(out[5])
    letters, counts, failures = book.outcomes()
    assert letters == "".join("F" if i in (3, 5) else "D" for i in range(n))
    assert counts["D"] == n - 2 and counts["F"] == 2 and [f.index for f in failures] == [3, 5]
    # one event for the batch's successes, one per failure; the view counts as if item by item
    batches = [e for e in seen if isinstance(e, ev.TasksFinished)]
    assert len(batches) == 1 and len(batches[0].indices) == n - 2
    assert not [e for e in seen if isinstance(e, ev.TaskFinished)]
    view = JobView("bj-many", total=n)
    view.apply(ev.WorkerStarted("bj-many", worker=1, wave=1))
    for event in seen:
        view.apply(event)
    assert (view.done, view.failed, view.workers[1].done) == (n - 2, 2, n)
    assert view.workers[1].current == () and view.workers[1].state == "idle"
    assert ev.from_json(ev.to_json(batches[0])) == batches[0]  # a detached driver journals it


def test_outcome_letters_follow_claims_and_requeues(tmp_path):
    book, files, _ = job(tmp_path, 4)
    assert book.outcomes()[0] == "PPPP" and book.finished() == 0 and not book.complete()
    files.claim(0, 0)
    book.scan_claims(full=True)
    assert book.outcomes()[0] == "RRRR"
    writer = serialize.ValueWriter()
    files.write_results(0, 0, [run_item(CallProgram(values), 0, 0, 0, 10**6, "bj-many", writer)])
    book.collect_results(full=True)
    assert book.outcomes()[0] == "DRRR" and book.finished() == 1 and book.busy_seconds() >= 0


def test_the_first_blocks_hold_one_item_each_so_long_items_at_the_front_spread():
    from starburst_jupyter.core.plan import make_plan

    plan = make_plan(200, workers=2, concurrency=2)
    assert [len(b) for b in plan.blocks[:4]] == [2, 2, 4, 4]  # was one block of 50: all five long items in it
    assert [i for b in plan.blocks for i in b] == list(range(200))
    assert len(make_plan(10**6, workers=2, concurrency=2).blocks) < 100  # still few claims for a million


def chatty(x):
    import sys

    if x == 1:
        print("one")
    if x == 2:
        sys.stdout = open(os.devnull, "w")  # an item that replaces stdout and leaves it so
    if x == 3:
        print("three", file=sys.stderr)
        print("three out")
    return x


def test_streams_redirected_once_per_block_still_give_each_item_its_own_output():
    from starburst_jupyter.worker.runner import ItemStreams

    program, writer = CallProgram(chatty), serialize.ValueWriter()
    with ItemStreams() as streams:
        results = [run_item(program, i, i, 0, 10**6, "bj-many", writer, streams) for i in range(5)]
    assert [(r.stdout, r.stderr) for r in results] == [
        ("", ""), ("one\n", ""), ("", ""), ("three out\n", "three\n"), ("", ""),
    ]  # fmt: skip


SHARED: list[int] = []


def appends(x):
    SHARED.append(x)
    return SHARED if x % 2 else (x, "inline")  # a list later items change, or a plain tuple


def test_each_value_is_what_its_item_returned_even_if_a_later_item_changes_it(tmp_path):
    n = PER_ITEM_EVENTS + 4
    book, files, _ = job(tmp_path, n)
    program, writer = CallProgram(appends), serialize.ValueWriter()
    results = [run_item(program, i, i, 0, 10**6, "bj-many", writer) for i in range(n)]
    files.claim(0, 0)
    files.write_results(0, 0, results)
    book.scan_claims(full=True)
    book.collect_results(full=True)
    assert book.values() == [list(range(i + 1)) if i % 2 else (i, "inline") for i in range(n)]


def test_a_quiet_run_travels_as_columns_and_lands_by_slices(tmp_path):
    """The million quiet items of a big map: no tuple per item on the wire, slice assignments in the kernel;
    failures and prints in the same batch still come one by one."""
    n = 40
    book, files, seen = job(tmp_path, n)
    files.claim(0, 7)
    book.scan_claims(full=True)
    program, writer = CallProgram(chatty), serialize.ValueWriter()
    with __import__("starburst_jupyter.worker.runner", fromlist=["ItemStreams"]).ItemStreams() as streams:
        loud = [run_item(program, i, i, 7, 10**6, "bj-many", writer, streams) for i in (1, 3)]
    quiet = serialize.QuietRun([0, 2] + list(range(4, n)), [0, 2] + list(range(4, n)), [0.001] * (n - 2), 7)
    files.write_results(0, 0, loud, quiet)
    wire = serialize.unpack_quiet(serialize.loads(files.store.get(files.list_result_keys()[0])))
    assert wire is not None and list(wire.indices) == list(quiet.indices) and wire.worker == 7
    book.collect_results(full=True)
    assert book.values() == list(range(n)) and book.outcomes()[0] == "D" * n
    assert book.outputs() == {1: ("one\n", ""), 3: ("three out\n", "three\n")}
    assert abs(book.busy_seconds() - 0.001 * (n - 2) - sum(r.duration for r in loud)) < 1e-6
    (batch,) = [e for e in seen if isinstance(e, ev.TasksFinished)]
    assert sorted(batch.indices) == list(range(n)) and batch.worker == 7

    # a run of unfinished items is one slice; its wire form is (first, count), not the indices
    book, files, _ = job(tmp_path / "run", 100_000)
    run = serialize.QuietRun(range(0, 100_000), list(range(100_000)), [0.0] * 100_000, 1)
    assert run.wire()[0] == (0, 100_000)
    files.write_results(0, 0, [], run)
    book.collect_results(full=True)
    assert book.complete() and book.values()[99_999] == 99_999 and book.outcomes()[1]["D"] == 100_000


def test_a_damaged_quiet_run_is_an_unreadable_batch_not_wrong_values(tmp_path):
    book, files, seen = job(tmp_path, 3)
    bad = serialize.QuietRun([0, 1, 2], [0, 1], [0.0, 0.0, 0.0], 0)  # a column short: damaged
    files.write_results(0, 0, [], bad)
    book.collect_results(full=True)
    assert book.finished() == 0  # nothing taken from it: its items are redone when their worker ends
    assert any("could not be read" in getattr(e, "line", "") for e in seen)


def test_a_real_map_keeps_every_item_s_output_and_value_in_order(tmp_path, monkeypatch):
    from starburst_jupyter import burst_map
    from starburst_jupyter.core.config import Config

    monkeypatch.setenv("STARBURST_HOME", str(tmp_path))
    job_ = burst_map(chatty, list(range(300)), workers=2, backend="local", config=Config(local_concurrency=2))
    assert list(job_) == list(range(300))


def test_outcomes_of_a_big_job_are_written_as_runs_and_read_back_whole():
    from starburst_jupyter.core import record as rec

    letters = "D" * 9000 + "F" + "R" * 500 + "P" * 499
    record = rec.JobRecord(id="bj-runs", name="", backend="local", state=rec.JobState.RUNNING, total=len(letters),
                           outcomes=letters, created=1.0, updated=1.0)  # fmt: skip
    text = record.dumps()
    assert len(text) < 2000 and '"outcome_runs": "9000D1F500R499P"' in text
    back = rec.JobRecord.from_json(text)
    assert back.outcomes == letters and back.outcome_counts()[rec.Outcome.FAILED] == 1
    scattered = "DF" * 5000  # no runs to speak of: letters stay letters (runs would cost more than they save)
    assert '"outcomes": "DFDF' in rec.JobRecord(**{**record.__dict__, "outcomes": scattered}).dumps()


def test_sigterm_in_a_run_of_quick_quiet_items_loses_nothing_and_redoes_at_most_one(tmp_path):
    """The hot loop appends a quiet item's columns without a lock: a SIGTERM landing anywhere in a run of
    millisecond items hands back exactly what had not finished (leave() counts whole rows)."""
    import signal
    from collections import Counter

    from helpers import pid_alive, wait_for
    from test_worker_sigterm import _submit, runs

    log = tmp_path / "runs.txt"
    handle, retried = _submit(log, 3000, 0.001)
    pid = wait_for(lambda: next((p for p, n in Counter(p for p, _ in runs(log)).items() if n >= 400), None), 30)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), timeout=5)
    result = handle.wait(timeout=120)
    assert result.state == "done" and result.values == [x * x for x in range(3000)]
    counts = Counter(x for _, x in runs(log))
    assert set(counts) == set(range(3000))
    assert sum(n - 1 for n in counts.values()) <= 1, [x for x, n in counts.items() if n > 1]  # the one running
    assert retried == []
