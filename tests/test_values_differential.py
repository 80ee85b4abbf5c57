"""Every path that brings values back gives exactly what a plain `map` gives, over generated items
(tests/differential.py): burst_map, BurstExecutor.map and submit, a %%burst --map cell, a single-task cell's
names, a detached job's partial and final results, and a second handle attached to it. On the local backend
here; tests/test_contract.py runs the same comparison on docker and Fargate (moto)."""

from __future__ import annotations

import sys

import cloudpickle
import differential as dt
import pytest
from hypothesis import example, given, settings

from starburst_jupyter import BurstError, BurstExecutor, attach, burst_map

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(900)

ISSUE_22 = [("value", [{"a": i}, {"a": -i}] if i % 2 else ["tag", f"t{i}"]) for i in range(300)]


def test_the_example_of_issue_22_gives_the_plain_maps_values():
    def f(i):
        return [{"a": i}, {"a": -i}] if i % 2 else ["tag", f"t{i}"]

    dt.assert_same(burst_map(f, range(300), workers=2), [f(i) for i in range(300)])


@settings(dt.SHARED_FIXTURES, max_examples=40)
@given(dt.items)
@example(ISSUE_22)
def test_burst_map(batch):
    got = burst_map(dt.act, batch, workers=2, on_error="keep")
    dt.assert_same(got, dt.plain_map(batch))


@settings(dt.SHARED_FIXTURES, max_examples=25)
@given(dt.good_items)
def test_burst_map_raising_face_gives_values_or_names_the_failure(batch):
    """on_error="raise" (the default): the same values, or a BurstError whose .results match slot for slot."""
    try:
        got = burst_map(dt.act, batch, workers=2)
    except BurstError as error:  # pragma: no cover - good_items never fail
        got = error.results
    dt.assert_same(got, dt.plain_map(batch))


@pytest.fixture(scope="module")
def executor():
    with BurstExecutor(workers=2, backend="local") as pool:
        yield pool


@settings(dt.SHARED_FIXTURES, max_examples=25)
@given(dt.items)
def test_executor_map_and_submit(executor, batch):
    futures = [executor.submit(dt.act, item) for item in batch]
    got = []
    for future in futures:
        error = future.exception(timeout=120)
        got.append(error if error is not None else future.result())
    dt.assert_same(got, dt.plain_map(batch))
    good = [item for item in batch if item[0] in ("value", "print")]
    dt.assert_same(list(executor.map(dt.act, good, timeout=120)), dt.plain_map(good))


@settings(dt.SHARED_FIXTURES, max_examples=15)
@given(dt.good_items)
def test_burst_cell_map_and_single_task_names(ip, batch):
    ip.user_ns.update(batch=batch, act=dt.act)
    ip.run_cell_magic("burst", "--map item in batch --workers 2 --out got", "act(item)")
    dt.assert_same(ip.user_ns["got"], dt.plain_map(batch))
    ip.user_ns.pop("copied", None)
    ip.run_cell_magic("burst", "", "copied = [act(item) for item in batch]")
    dt.assert_same(ip.user_ns["copied"], dt.plain_map(batch))


@settings(dt.SHARED_FIXTURES, max_examples=10)
@given(dt.items)
def test_detached_job_partial_final_and_attached_results(batch):
    job = burst_map(dt.act, batch, workers=2, on_error="keep", wait=False)
    result = job.wait(timeout=300)
    want = dt.plain_map(batch)
    dt.assert_same(result.values, want)
    dt.assert_same(job.results(partial=True), want)
    second = attach(job.id)  # another handle on the same job, as another process would get
    dt.assert_same(second.results(partial=True), want)
    dt.assert_same(second.wait(timeout=300).values, want)
