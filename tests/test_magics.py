"""%%burst, %burst_status and %burst_config in a real IPython shell, with real local workers.

Each test checks what a notebook user sees: the values that land in the namespace, the cell's
result and printed output, and for refused cells a clear message, an untouched namespace and
no job launched (no folder under $STARBURST_HOME/jobs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from starburst_jupyter.errors import (
    BurstBackendUnavailable,
    BurstCaptureError,
    BurstError,
    BurstTimeout,
    BurstValidationError,
    ResultTooLarge,
    TaskCancelled,
)

# ----- helpers ---------------------------------------------------------------------------------


def run(ip, source: str, numbered: bool = False) -> SimpleNamespace:
    """Run one cell as a notebook would (numbered: as In[N], N counting up); returns the ExecutionResult
    plus what it printed."""
    with capture_output() as captured:
        result = ip.run_cell(source, store_history=numbered)
    return SimpleNamespace(
        result=result,
        ok=result.success,
        error=result.error_in_exec,
        value=result.result,
        out=captured.stdout,
        err=captured.stderr,
        text=captured.stdout + captured.stderr,
    )


def ok(ip, source: str, numbered: bool = False) -> SimpleNamespace:
    outcome = run(ip, source, numbered)
    assert outcome.ok, f"cell failed: {outcome.error!r}\n--- stdout ---\n{outcome.out}\n--- stderr ---\n{outcome.err}"
    return outcome


def job_dirs(home: Path) -> list[Path]:
    jobs = home / "jobs"
    return sorted(p for p in jobs.iterdir()) if jobs.exists() else []


def job_records(home: Path) -> list[dict]:
    return [json.loads((d / "record.json").read_text()) for d in job_dirs(home) if (d / "record.json").exists()]


def refused(ip, home: Path, source: str, error_type: type[BaseException], *fragments: str) -> SimpleNamespace:
    """The cell fails with error_type, the message (as shown) holds every fragment, and nothing launched."""
    before = dict((k, v) for k, v in ip.user_ns.items() if not k.startswith("_"))
    outcome = run(ip, source)
    assert not outcome.ok, f"cell should have been refused:\n{source}\n{outcome.text}"
    assert isinstance(outcome.error, error_type), f"expected {error_type.__name__}, got {outcome.error!r}"
    message = str(outcome.error)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error message {message!r}"
        assert fragment in outcome.text, f"{fragment!r} not shown to the user: {outcome.text!r}"
    assert job_dirs(home) == [], f"a job was launched for a refused cell: {job_dirs(home)}"
    after = dict((k, v) for k, v in ip.user_ns.items() if not k.startswith("_"))
    assert after.keys() == before.keys(), "a refused cell changed the namespace"
    for key, value in before.items():
        assert after[key] is value, f"a refused cell replaced {key!r}"
    return outcome


# ----- 1, 2: map mode --------------------------------------------------------------------------


def test_map_1000_items_notebook_function_using_numpy(ip, starburst_home):
    ok(
        ip,
        "import numpy as np\n"
        "def simulate(seed):\n"
        "    rng = np.random.default_rng(seed)\n"
        "    return float(rng.normal(size=100).mean())\n",
    )
    outcome = ok(ip, "%%burst --map seed in range(1000) --workers 2 --out sims\nsimulate(seed)")
    sims = ip.user_ns["sims"]
    expected = [ip.user_ns["simulate"](seed) for seed in range(1000)]
    assert isinstance(sims, list) and len(sims) == 1000
    assert sims == expected  # item order, same values as running here
    assert "1000/1000 items ok" in outcome.out and "results in sims" in outcome.out
    [record] = job_records(starburst_home)
    assert record["state"] == "done" and record["total"] == 1000 and record["done"] == 1000


def test_map_default_out_is_burst_results(ip):
    ok(ip, "%%burst --map x in range(6)\nx * 10")
    assert ip.user_ns["burst_results"] == [0, 10, 20, 30, 40, 50]


def test_map_tuple_target(ip):
    ok(ip, "pairs = [(1, 2), (3, 4), (5, 6)]")
    ok(ip, "%%burst --map a, b in pairs --out sums\na + b")
    assert ip.user_ns["sums"] == [3, 7, 11]
    ok(ip, "%%burst --map (a, b) in pairs --out prods\na * b")
    assert ip.user_ns["prods"] == [2, 12, 30]


def test_map_expression_with_quotes_and_negative_numbers(ip):
    ok(ip, '%%burst --map s in ["alice", "bob"] --out names\ns.upper()')
    assert ip.user_ns["names"] == ["ALICE", "BOB"]
    ok(ip, "%%burst --map x in range(-2, 2) --out xs\nx")
    assert ip.user_ns["xs"] == [-2, -1, 0, 1]


def test_map_with_no_items_sets_empty_list_and_launches_nothing(ip, starburst_home):
    outcome = ok(ip, "%%burst --map x in [] --out empty\nx")
    assert ip.user_ns["empty"] == []
    assert "no items" in outcome.out
    assert job_dirs(starburst_home) == []


def test_map_cell_statements_then_trailing_value(ip):
    ok(ip, "%%burst --map x in range(4) --out ys\ny = x ** 2\nz = y + 1\nz")
    assert ip.user_ns["ys"] == [1, 2, 5, 10]
    assert "y" not in ip.user_ns and "z" not in ip.user_ns  # map cells bring back only the values


# ----- 3: single-task mode ---------------------------------------------------------------------


def test_single_assigns_names_returns_trailing_value_and_shows_prints(ip):
    ok(ip, "data = [1.0, 2.0, 3.0, 4.0]")
    outcome = ok(
        ip,
        "%%burst\n"
        "print('training on', len(data), 'rows')\n"
        "model = {'mean': sum(data) / len(data)}\n"
        "score = model['mean'] * 2\n"
        "score + 100\n",
    )
    assert ip.user_ns["model"] == {"mean": 2.5}
    assert ip.user_ns["score"] == 5.0
    assert outcome.value == 105.0
    assert "training on 4 rows" in outcome.out


def test_single_without_trailing_expression_has_no_result(ip):
    outcome = ok(ip, "%%burst\nanswer = 6 * 7")
    assert ip.user_ns["answer"] == 42
    assert outcome.value is None


def test_single_remote_stderr_is_shown(ip):
    outcome = ok(ip, "%%burst\nimport sys\nprint('careful', file=sys.stderr)\nx = 1")
    assert "careful" in outcome.err
    assert ip.user_ns["x"] == 1


def test_single_unpicklable_assigned_name_warns_and_others_come_back(ip):
    outcome = ok(ip, "%%burst\nimport threading\nguard = threading.Lock()\nvalue = 7")
    assert ip.user_ns["value"] == 7
    assert "guard" not in ip.user_ns
    assert "'guard'" in outcome.err and "cannot come back" in outcome.err


def test_single_failure_shows_output_and_remote_traceback(ip):
    outcome = run(ip, "%%burst\nprint('before the crash')\nresult = 1 / 0\n")
    assert isinstance(outcome.error, BurstError)
    assert "before the crash" in outcome.out
    assert "ZeroDivisionError" in str(outcome.error)
    assert "result = 1 / 0" in str(outcome.error)
    assert "result" not in ip.user_ns


# ----- 4: namespace capture --------------------------------------------------------------------

UNPICKLABLES = {
    "lock": ("import threading\nlock = threading.Lock()", "_thread.lock"),
    "fh": ("fh = open(__import__('os').devnull, 'w')", "_io.TextIOWrapper"),
    "reader": ("reader = open(__import__('os').devnull, 'rb')", "_io.BufferedReader"),  # not shipped by content
    "gen": ("gen = (i for i in range(3))", "generator"),
    "sock": ("import socket\nsock = socket.socket()", "socket.socket"),
}


@pytest.mark.parametrize("name", sorted(UNPICKLABLES))
def test_unused_unpicklable_name_does_not_stop_the_cell(ip, name):
    setup, _ = UNPICKLABLES[name]
    ok(ip, setup)
    ok(ip, "%%burst --map x in range(3) --out out\nx + 1")
    assert ip.user_ns["out"] == [1, 2, 3]
    ok(ip, "%%burst\ny = 5")
    assert ip.user_ns["y"] == 5
    if name in ("fh", "sock"):
        ip.user_ns[name].close()


@pytest.mark.parametrize("name", sorted(UNPICKLABLES))
def test_used_unpicklable_name_stops_cell_before_launch(ip, starburst_home, name):
    setup, kind = UNPICKLABLES[name]
    ok(ip, setup)
    refused(
        ip,
        starburst_home,
        f"%%burst --map x in range(3) --out out\nstr({name}) + str(x)",
        BurstCaptureError,
        repr(name),
        kind,
    )
    assert "out" not in ip.user_ns
    refused(ip, starburst_home, f"%%burst\nr = repr({name})", BurstCaptureError, repr(name), kind)
    if name in ("fh", "sock"):
        ip.user_ns[name].close()


def test_capture_error_gives_advice(ip, starburst_home):
    ok(ip, "import threading\nlock = threading.Lock()")
    outcome = refused(ip, starburst_home, "%%burst\nwith lock:\n    x = 1", BurstCaptureError, "'lock'", "_thread.lock")
    assert "inside the cell" in str(outcome.error)


def test_name_assigned_in_cell_before_use_is_not_captured(ip):
    ok(ip, "f = open(__import__('os').devnull, 'w')")
    handle = ip.user_ns["f"]
    try:
        outcome = ok(ip, "%%burst\nf = 3\nf + 1")
        assert outcome.value == 4
        assert ip.user_ns["f"] == 3  # single mode brings the new f back
        ip.user_ns["f"] = handle
        ok(ip, "%%burst --map x in range(3) --out out\nf = x * 2\nf + 1")
        assert ip.user_ns["out"] == [1, 3, 5]
        assert ip.user_ns["f"] is handle
    finally:
        handle.close()


def test_lambda_closure_class_and_instance_work_remotely(ip):
    ok(
        ip,
        "square = lambda v: v * v\n"
        "def make_adder(n):\n"
        "    def add(v):\n"
        "        return v + n\n"
        "    return add\n"
        "add3 = make_adder(3)\n"
        "class Point:\n"
        "    def __init__(self, x):\n"
        "        self.x = x\n"
        "    def norm2(self):\n"
        "        return self.x * self.x\n"
        "origin = Point(10)\n",
    )
    ok(ip, "%%burst --map x in range(4) --out out\n(square(x), add3(x), Point(x).norm2(), origin.norm2())")
    assert ip.user_ns["out"] == [(0, 3, 0, 100), (1, 4, 1, 100), (4, 5, 4, 100), (9, 6, 9, 100)]
    # instances of a notebook class come back as that class
    ok(ip, "%%burst --map x in range(2) --out points\nPoint(x)")
    points = ip.user_ns["points"]
    assert [type(p).__name__ for p in points] == ["Point", "Point"]
    assert isinstance(points[1], ip.user_ns["Point"]) and points[1].x == 1


def test_class_and_function_defined_in_single_cell_come_back(ip):
    ok(
        ip,
        "%%burst\n"
        "class Model:\n"
        "    def __init__(self, w):\n"
        "        self.w = w\n"
        "    def predict(self, x):\n"
        "        return self.w * x\n"
        "def helper(x):\n"
        "    return x + 1\n"
        "model = Model(helper(2))\n",
    )
    assert ip.user_ns["model"].predict(2) == 6
    assert ip.user_ns["helper"](1) == 2
    ok(ip, "check = model.predict(10)")
    assert ip.user_ns["check"] == 30


def test_function_using_a_notebook_global_is_captured(ip):
    ok(ip, "scale = 3\ndef scaled(v):\n    return v * scale")
    ok(ip, "%%burst --map x in range(3) --out out\nscaled(x)")
    assert ip.user_ns["out"] == [0, 3, 6]


def test_user_name_that_looks_like_ipython_history_is_captured(ip):
    ok(ip, "_id = 7")
    outcome = ok(ip, "%%burst\n_id + 1")
    assert outcome.value == 8
    ok(ip, "_e = 2\n_hide = 3")
    ok(ip, "%%burst --map x in range(2) --out out\nx + _e + _hide")
    assert ip.user_ns["out"] == [5, 6]


def test_function_in_cell_updating_a_notebook_global(ip):
    ok(ip, "total = 10")
    outcome = ok(ip, "%%burst\ndef bump():\n    global total\n    total += 1\n    return total\nbump()\n")
    assert outcome.value == 11
    assert ip.user_ns["total"] == 11  # the rebinding comes back, as if the cell ran here


def test_unpicklable_map_item_stops_before_launch(ip, starburst_home):
    ok(ip, "import threading\nlock = threading.Lock()")
    refused(
        ip,
        starburst_home,
        "%%burst --map x in [1, lock] --out o\nx",
        BurstCaptureError,
        "_thread.lock",
        "picklable",
        "nothing was launched",
    )
    assert "o" not in ip.user_ns


# ----- 5: large array --------------------------------------------------------------------------


def test_large_numpy_array_used_by_map_cell(ip):
    ok(ip, "import numpy as np\nbig = np.arange(6_553_600, dtype=np.float64)")  # 50 MiB
    assert ip.user_ns["big"].nbytes == 50 * 1024 * 1024
    ok(ip, "%%burst --map part in range(4) --workers 2 --out sums\nfloat(big[part::4].sum())")
    big = ip.user_ns["big"]
    assert ip.user_ns["sums"] == [float(big[p::4].sum()) for p in range(4)]
    assert sum(ip.user_ns["sums"]) == float(big.sum())


# ----- 6: failures ---------------------------------------------------------------------------

FAILING_CELL = (
    "%%burst --map x in range(10) --workers 2 --out out{opts}\n"
    "if x in (3, 7):\n"
    "    raise ValueError(f'bad item {{x}}')\n"
    "x * 2\n"
)


def test_on_error_raise_names_failed_items_and_keeps_all_results(ip, starburst_home):
    outcome = run(ip, FAILING_CELL.format(opts=""))
    assert not outcome.ok and isinstance(outcome.error, BurstError)
    message = str(outcome.error)
    assert "2 of 10 items failed" in message
    assert "--- item 3 ---" in message and "--- item 7 ---" in message
    assert "raise ValueError(f'bad item {x}')" in message  # the failing line of the cell
    assert "ValueError: bad item 3" in message and "ValueError: bad item 7" in message
    assert "starburst_jupyter" not in message.split("All 10 results")[0]  # only the user's frames
    assert "ValueError: bad item 7" in outcome.out  # shown to the user, not only on the exception
    assert [i for i, _ in outcome.error.failures] == [3, 7]
    out = ip.user_ns["out"]
    assert len(out) == 10
    assert isinstance(out[3], ValueError) and str(out[3]) == "bad item 3"
    assert isinstance(out[7], ValueError) and str(out[7]) == "bad item 7"
    assert [v for i, v in enumerate(out) if i not in (3, 7)] == [x * 2 for x in range(10) if x not in (3, 7)]
    [record] = job_records(starburst_home)
    assert record["state"] == "failed" and record["failed"] == 2 and record["done"] == 8


def test_on_error_raise_names_every_failed_index_beyond_the_full_tracebacks(ip):
    outcome = run(ip, "%%burst --map x in range(20) --workers 2 --out out\nif x % 20 < 15:\n    raise KeyError(x)\nx\n")
    assert isinstance(outcome.error, BurstError)
    message = str(outcome.error)
    named = {int(i) for i in re.findall(r"--- item (\d+) ---", message)}
    more = re.search(r"more failed items: ([\d, ]+)", message)
    if more:
        named |= {int(i) for i in more.group(1).split(",")}
    assert named == set(range(15))
    assert ip.user_ns["out"][15:] == [15, 16, 17, 18, 19]


def test_on_error_keep_succeeds_with_exceptions_in_results(ip):
    outcome = ok(ip, FAILING_CELL.format(opts=" --on-error keep"))
    out = ip.user_ns["out"]
    assert isinstance(out[3], ValueError) and isinstance(out[7], ValueError)
    assert out[0] == 0 and out[9] == 18
    assert "2 failed" in outcome.out


def test_on_error_keep_from_config(ip):
    ok(ip, "%burst_config on_error=keep")
    ok(ip, FAILING_CELL.format(opts=""))
    assert isinstance(ip.user_ns["out"][3], ValueError)


def test_timeout_cancels_and_keeps_finished_results(ip, starburst_home):
    outcome = run(
        ip,
        "%%burst --map x in range(4) --workers 1 --timeout 2 --out out\n"
        "import time\n"
        "if x == 3:\n"
        "    time.sleep(60)\n"
        "x\n",
    )
    assert isinstance(outcome.error, BurstTimeout)
    assert "--timeout of 2" in outcome.text
    out = ip.user_ns["out"]
    assert out[:3] == [0, 1, 2]
    assert isinstance(out[3], TaskCancelled)
    [record] = job_records(starburst_home)
    assert record["state"] == "cancelled"
    for worker in record["workers"].values():
        assert worker["exit_code"] is not None  # no worker left running


# ----- 7: bad inputs -------------------------------------------------------------------------

BAD_CELLS = [
    pytest.param(
        "%%burst --map x in range(3) --workers 0 --out o\nx",
        BurstValidationError,
        ("--workers 0", "at least 1"),
        id="workers-0",
    ),
    pytest.param(
        "%%burst --map x in range(3) --workers 100000 --out o\nx",
        BurstValidationError,
        ("--workers 100000", "maximum of 256", "max_workers"),
        id="workers-too-many",
    ),
    pytest.param("%%burst --workers abc\nx = 1", UsageError, ("--workers",), id="workers-not-int"),
    pytest.param(
        "%%burst --map x in range(3) --cpu 3 --out o\nx",
        BurstValidationError,
        ("--cpu 3", "0.25, 0.5, 1, 2, 4, 8, 16"),
        id="cpu-3",
    ),
    pytest.param(
        "%%burst --map x in range(3) --cpu 1 --memory 64GB --out o\nx",
        BurstValidationError,
        ("64GB", "with 1 vCPU, memory must be 2GB to 8GB"),
        id="memory-too-big-for-cpu",
    ),
    pytest.param("%%burst --memory lots\nx = 1", BurstValidationError, ("--memory 'lots'", "4GB"), id="memory-lots"),
    pytest.param(
        "%%burst --map seed range(10) --out o\nseed",
        BurstValidationError,
        ("'seed range(10)'", "NAME in EXPR"),
        id="map-malformed",
    ),
    pytest.param(
        "%%burst --map x in undefined_name --out o\nx",
        BurstValidationError,
        ("undefined_name", "NameError"),
        id="map-undefined",
    ),
    pytest.param(
        "%%burst --map x in 5 --out o\nx", BurstValidationError, ("'5'", "not iterable"), id="map-not-iterable"
    ),
    pytest.param(
        "%%burst --map x in range(3) --backend nope --out o\nx",
        BurstValidationError,
        ("'nope'", "local, docker, fargate"),
        id="backend-unknown",
    ),
    pytest.param(
        "%%burst --map x in range(3) --backend fargate --out o\nx",
        BurstBackendUnavailable,
        ("fargate backend is not set up", "missing bucket", "%burst_setup"),
        id="backend-fargate",
    ),
    pytest.param("%%burst --bogus-option 1\nx = 1", UsageError, ("--bogus-option",), id="bogus-option"),
    pytest.param(
        "%%burst --map x in range(3) --out 1abc\nx", UsageError, ("'1abc'", "not a valid Python name"), id="out-invalid"
    ),
    pytest.param("%%burst --on-error ignore\nx = 1", UsageError, ("--on-error",), id="on-error-invalid"),
    pytest.param(
        "%%burst --map x in range(3) --timeout 0 --out o\nx", BurstValidationError, ("--timeout 0",), id="timeout-0"
    ),
    pytest.param("%%burst\n   \n", UsageError, ("empty",), id="empty-cell-whitespace"),
    pytest.param(
        "%%burst --map x in range(3) --out o\ny = x\nz = = 1\n",
        BurstValidationError,
        ("does not parse", "line 2", "z = = 1"),
        id="syntax-error",
    ),
    pytest.param(
        "%%burst --map x in range(3) --out o\ny = x\n%time z = y\n",
        BurstValidationError,
        ("does not parse", "%time z = y", "magics"),
        id="magic-line",
    ),
    pytest.param("%%burst\n!ls\n", BurstValidationError, ("'!ls'", "magics and !shell lines"), id="shell-line"),
]


@pytest.mark.parametrize("source, error_type, fragments", BAD_CELLS)
def test_bad_input_is_refused_clearly_and_launches_nothing(ip, starburst_home, source, error_type, fragments):
    ok(ip, "o = 'previous results'\nx = 'kept'")
    refused(ip, starburst_home, source, error_type, *fragments)
    assert ip.user_ns["o"] == "previous results"


def test_empty_cell_is_refused(ip, starburst_home):
    outcome = run(ip, "%%burst --map x in range(3)\n")
    assert not outcome.ok and isinstance(outcome.error, UsageError)
    assert "empty" in outcome.text
    assert job_dirs(starburst_home) == []


def test_memory_refusal_lists_valid_memory_and_matching_cpu(ip, starburst_home):
    outcome = refused(
        ip, starburst_home, "%%burst --cpu 1 --memory 64GB\nx = 1", BurstValidationError, "2GB to 8GB in 1GB steps"
    )
    assert "64GB is valid with --cpu 16" in str(outcome.error)


def test_map_expression_error_is_reported_with_cause(ip, starburst_home):
    ok(ip, "items = {'a': 1}")
    refused(
        ip,
        starburst_home,
        "%%burst --map x in items['missing'] --out o\nx",
        BurstValidationError,
        "items['missing']",
        "KeyError",
    )


def test_out_keyword_is_refused(ip, starburst_home):
    refused(ip, starburst_home, "%%burst --map x in range(3) --out lambda\nx", UsageError, "'lambda'")


# ----- 8: %burst_status ----------------------------------------------------------------------


def test_burst_status_lists_jobs_and_shows_one(ip, starburst_home):
    empty = ok(ip, "%burst_status")
    assert "No burst jobs yet" in empty.out
    ok(ip, "%%burst --map x in range(3) --out a\nx")
    run(ip, "%%burst --map x in range(4) --out b --on-error keep\n1 / (x - 1)")
    records = job_records(starburst_home)
    assert len(records) == 2
    by_total = {r["total"]: r for r in records}
    listing = ok(ip, "%burst_status").out
    for header in ("id", "state", "done/failed/total"):
        assert header in listing
    first, second = by_total[3], by_total[4]
    assert first["id"] in listing and second["id"] in listing
    line_first = next(line for line in listing.splitlines() if first["id"] in line)
    line_second = next(line for line in listing.splitlines() if second["id"] in line)
    assert "done" in line_first and "3/0/3" in line_first
    assert "failed" in line_second and "3/1/4" in line_second

    detail = ok(ip, f"%burst_status {second['id']}").out
    assert second["id"] in detail and first["id"] not in detail
    assert "3/1/4" in detail
    assert "item 1 failed: ZeroDivisionError" in detail

    short = ok(ip, f"%burst_status {first['id'][:-2]}").out  # a unique prefix is enough
    assert first["id"] in short


def test_burst_status_lists_newest_first_within_the_same_second(ip, starburst_home, monkeypatch):
    from starburst_jupyter.stores import records as jobstore

    fixed = jobstore.time.gmtime()
    suffixes = iter(["ffffff", "000000"])  # the random parts of two ids made in the same second
    monkeypatch.setattr(jobstore, "time", SimpleNamespace(strftime=jobstore.time.strftime, gmtime=lambda: fixed))
    monkeypatch.setattr(jobstore, "secrets", SimpleNamespace(token_hex=lambda n: next(suffixes)))
    ok(ip, "%%burst --map x in range(1) --out older\nx")
    ok(ip, "%%burst --map x in range(2) --out newer\nx")
    by_total = {r["total"]: r["id"] for r in job_records(starburst_home)}
    listing = ok(ip, "%burst_status").out
    assert listing.index(by_total[2]) < listing.index(by_total[1])


def test_burst_status_unknown_job_is_clear_error(ip):
    outcome = run(ip, "%burst_status bj-nope")
    assert isinstance(outcome.error, UsageError)
    assert "No job matches 'bj-nope'" in outcome.text
    assert "%burst_status lists the jobs" in outcome.text


# ----- 9: %burst_config ----------------------------------------------------------------------


def test_burst_config_saves_and_next_job_uses_it(ip, starburst_home):
    outcome = ok(ip, "%burst_config workers=3")
    path = starburst_home / "config.toml"
    assert str(path) in outcome.out
    assert tomllib.loads(path.read_text())["workers"] == 3
    assert "workers = 3" in outcome.out
    launch = ok(ip, "%%burst --map x in range(6) --out o\nx")
    assert "on 3 workers" in launch.out
    [record] = job_records(starburst_home)
    assert record["spec"]["workers"] == 3 and record["waves"]["workers"] == 3
    assert ip.user_ns["o"] == list(range(6))


def test_burst_config_without_arguments_shows_values(ip, starburst_home):
    outcome = ok(ip, "%burst_config")
    assert "backend = 'local'" in outcome.out and "max_result_bytes" in outcome.out
    assert not (starburst_home / "config.toml").exists()


def test_burst_config_unknown_key_lists_valid_keys(ip, starburst_home):
    outcome = run(ip, "%burst_config nonsense=1")
    assert isinstance(outcome.error, UsageError)
    assert "'nonsense'" in outcome.text and "Valid keys" in outcome.text
    for key in ("workers", "cpu", "memory", "max_result_bytes", "backend"):
        assert key in str(outcome.error)
    assert not (starburst_home / "config.toml").exists()


def test_burst_config_bad_value_refused_and_file_unchanged(ip, starburst_home):
    ok(ip, "%burst_config workers=2")
    before = (starburst_home / "config.toml").read_text()
    outcome = run(ip, "%burst_config workers=abc")
    assert isinstance(outcome.error, UsageError)
    assert "workers" in outcome.text and "'abc'" in outcome.text
    outcome = run(ip, "%burst_config workers=4 memory=lots")  # all or nothing
    assert isinstance(outcome.error, UsageError)
    assert (starburst_home / "config.toml").read_text() == before


def test_burst_config_not_key_value(ip):
    outcome = run(ip, "%burst_config workers")
    assert isinstance(outcome.error, UsageError)
    assert "key=value" in outcome.text


def test_burst_config_memory_and_cpu_together(ip, starburst_home):
    ok(ip, "%burst_config memory=4GB cpu=2")
    saved = tomllib.loads((starburst_home / "config.toml").read_text())
    assert saved["memory"] == "4GB" and saved["cpu"] == 2.0
    launch = ok(ip, "%%burst --map x in range(2) --out o\nx")
    assert "2 vCPU / 4GB each" in launch.out


def test_burst_config_refuses_invalid_cpu_memory_pair(ip, starburst_home):
    outcome = run(ip, "%burst_config cpu=16")
    assert isinstance(outcome.error, UsageError)
    assert "memory" in outcome.text
    assert not (starburst_home / "config.toml").exists()


# ----- 10: max_result_bytes ------------------------------------------------------------------


def test_result_above_max_result_bytes_fails_that_item(ip):
    ok(ip, "%burst_config max_result_bytes=1000")
    ok(ip, "%%burst --map n in [10, 5000, 20] --out blobs --on-error keep\nb'x' * n")
    blobs = ip.user_ns["blobs"]
    assert blobs[0] == b"x" * 10 and blobs[2] == b"x" * 20
    assert isinstance(blobs[1], ResultTooLarge)
    assert "max_result_bytes" in str(blobs[1]) and "1,000 bytes" in str(blobs[1])


def test_result_too_large_raises_with_clear_message(ip):
    ok(ip, "%burst_config max_result_bytes=1000")
    outcome = run(ip, "%%burst --map n in [10, 5000] --out blobs\nb'x' * n")
    assert isinstance(outcome.error, BurstError)
    message = str(outcome.error)
    assert "--- item 1 ---" in message and "ResultTooLarge" in message and "max_result_bytes" in message
    assert "ResultTooLarge" in outcome.out


def test_single_result_too_large(ip):
    ok(ip, "%burst_config max_result_bytes=1000")
    outcome = run(ip, "%%burst\nblob = b'x' * 5000")
    assert isinstance(outcome.error, BurstError)
    assert "max_result_bytes" in str(outcome.error)
    assert "blob" not in ip.user_ns


def test_map_items_prints_are_shown_for_the_first_items(ip):
    outcome = ok(ip, "%%burst --map x in range(8) --out echoed\nprint('hello', x)\nx")
    assert "[item 0] hello 0" in outcome.out and "[item 4] hello 4" in outcome.out
    assert "[item 5]" not in outcome.out and "3 more items printed output" in outcome.out
    assert "on 1 worker " in outcome.out or "workers" in outcome.out


def test_unpicklable_map_item_is_named_by_index(ip, starburst_home):
    ok(ip, "import threading\nlock = threading.Lock()")
    refused(ip, starburst_home, "%%burst --map x in [1, 2, lock]\nx", BurstCaptureError, "Item 2 (_thread.lock)")


def test_burst_logs_shows_each_workers_log(ip, starburst_home):
    ok(ip, "%%burst --map x in range(4) --workers 2 --out logged\nprint('line from item', x)\nx")
    job = job_records(starburst_home)[0]["id"]
    every = ok(ip, f"%burst_logs {job}").out
    assert "----- worker 0 -----" in every and "----- worker 1 -----" in every
    assert all(f"line from item {x}" in every for x in range(4))
    one = ok(ip, f"%burst_logs {job} --worker 1").out
    assert "----- worker 0 -----" not in one and "worker 1 of job" in one
    missing = run(ip, f"%burst_logs {job} --worker 9")
    assert isinstance(missing.error, UsageError) and "has no worker 9" in missing.text


def test_remote_traceback_shows_the_notebook_functions_line(ip):
    defined_in = ip.execution_count
    ok(ip, "def risky(x):\n    if x == 2:\n        raise ValueError('cursed ' + str(x))\n    return x", numbered=True)
    outcome = run(ip, "%%burst --map x in range(3) --out r\nrisky(x)", numbered=True)
    text = str(outcome.error)
    assert "raise ValueError('cursed ' + str(x))" in text  # the notebook cell's own line
    assert f"Cell In[{defined_in}], line 3, in risky" in text  # named as IPython names it locally
    assert "<dynamic-code>" not in text


def test_remote_traceback_lines_for_lambdas_methods_classes_and_the_burst_cell(ip):
    meter_cell = ip.execution_count
    ok(
        ip,
        "halve = lambda v: 1 / (v - v)\n"
        "class Meter:\n"
        "    def __init__(self, scale):\n"
        "        self.scale = scale\n"
        "    def read(self, x):\n"
        "        return {'k': 1}[x * self.scale]\n"
        "    @property\n"
        "    def broken(self):\n"
        "        return self.missing_attribute\n",
        numbered=True,
    )
    ok(ip, "meter = Meter(2)", numbered=True)
    burst_cell = ip.execution_count
    run(
        ip,
        "%%burst --map x in range(4) --out r --on-error keep\n"
        "def inner(v):\n"
        "    return [halve, meter.read, lambda _: meter.broken, lambda _: 1 + 'a'][v](v)\n"
        "inner(x)",
        numbered=True,
    )
    errors = ip.user_ns["r"]
    tracebacks = [e.__cause__.tb for e in errors]
    assert "halve = lambda v: 1 / (v - v)" in tracebacks[0] and f"Cell In[{meter_cell}], line 1" in tracebacks[0]
    assert "return {'k': 1}[x * self.scale]" in tracebacks[1] and "in read" in tracebacks[1]
    assert "return self.missing_attribute" in tracebacks[2] and f"Cell In[{meter_cell}], line 9" in tracebacks[2]
    assert "lambda _: 1 + 'a'" in tracebacks[3] and f"Cell In[{burst_cell}], line 3, in inner" in tracebacks[3]
    for tb in tracebacks:
        assert "<dynamic-code>" not in tb and "starburst_jupyter" not in tb
