"""Fast unit tests of the pieces under the launcher: plan, sizes, config, capture, serialization."""

from __future__ import annotations

import numpy as np
import pytest

from starburst_jupyter.core.capture import analyze_cell
from starburst_jupyter.core.config import Config, load_config, save_values
from starburst_jupyter.core.plan import guided_blocks, make_plan
from starburst_jupyter.core.sizes import parse_cpu, parse_memory, validate_size
from starburst_jupyter.errors import BurstConfigError, BurstValidationError
from starburst_jupyter.protocol import serialize


@pytest.mark.parametrize("n,workers", [(1, 1), (7, 3), (200, 2), (1000, 8), (5, 20)])
def test_blocks_cover_every_item_once_and_shrink(n, workers):
    blocks = guided_blocks(list(range(n)), workers)
    assert [i for b in blocks for i in b] == list(range(n))
    sizes = [len(b) for b in blocks]
    assert sizes == sorted(sizes, reverse=True)
    assert sizes[-1] == 1
    assert len(blocks) < max(n, 1) or n <= 2 * workers  # far fewer round trips than items


def test_plan_waves_under_quota():
    plan = make_plan(1000, workers=8, concurrency=2)
    assert (plan.workers, plan.concurrency, plan.waves, plan.budget) == (8, 2, 4, 125)
    assert [plan.wave_of(w) for w in range(8)] == [1, 1, 2, 2, 3, 3, 4, 4]
    single = make_plan(1000, workers=2, concurrency=8)
    assert (single.waves, single.budget) == (1, 0)
    assert make_plan(3, workers=10, concurrency=4).workers == 3  # never more workers than items


def test_fargate_sizes():
    assert parse_cpu("0.25") == 256 and parse_cpu(".5") == 512 and parse_cpu(16) == 16384
    assert parse_memory("4GB") == 4096 and parse_memory("512MB") == 512 and parse_memory("0.5GiB") == 512
    assert parse_memory(2048) == 2048
    validate_size(1024, 2048)
    validate_size(16384, 122880)
    with pytest.raises(
        BurstValidationError,
        match=r"with 1 vCPU, memory must be 2GB to 8GB in 1GB steps. 16GB is valid with --cpu 2 or 4 or 8",
    ):
        validate_size(1024, 16 * 1024)
    with pytest.raises(BurstValidationError, match="0.25, 0.5, 1, 2, 4, 8, 16"):
        parse_cpu("3")
    with pytest.raises(BurstValidationError, match="4GB, 512MB"):
        parse_memory("lots")


def test_config_file_round_trip_and_refusals(starburst_home):
    path = save_values({"workers": "6", "memory": "4GB", "cpu": "2"})
    assert path == starburst_home / "config.toml"
    config = load_config()
    assert (config.workers, config.memory, config.cpu) == (6, "4GB", 2.0)
    with pytest.raises(BurstConfigError, match="Did you mean 'workers'"):
        save_values({"wrokers": "3"})
    with pytest.raises(BurstConfigError, match="backend='gpu'"):
        save_values({"backend": "gpu"})
    assert load_config().workers == 6  # a refused value changes nothing
    save_values({"workers": "auto"})
    assert load_config().workers is None
    path.write_text("workers = [")
    with pytest.raises(BurstConfigError, match="Fix or delete the file"):
        load_config()
    assert Config().with_values({"max_result_bytes": "1MB"}).max_result_bytes == 1024 * 1024


@pytest.mark.parametrize(
    "source,needed,assigned",
    [
        ("y = x + 1", {"x"}, ("y",)),
        ("x = 3\nx + 1", set(), ("x",)),
        ("total += step", {"total", "step"}, ("total",)),
        ("for f in files:\n    g(f)", {"files", "g"}, ("f",)),
        ("def h(a):\n    return a * k + h(a - 1)\nh(2)", {"k"}, ("h",)),
        ("[v * s for v in vals]", {"s", "vals"}, ()),
        ("import numpy as np\nnp.zeros(n)", {"n"}, ("np",)),
        ("class C(Base):\n    z = w\nC()", {"Base", "w"}, ("C",)),
        ("lambda q: q + r", {"r"}, ()),
        ("with open(p) as fh:\n    data = fh.read()", {"open", "p"}, ("fh", "data")),
    ],
)
def test_cell_analysis(source, needed, assigned):
    analysis = analyze_cell(source)
    assert set(analysis.needed) - {"open", "print"} == needed - {"open"}
    assert analysis.assigned == assigned


def test_map_target_is_not_captured():
    assert analyze_cell("seed * scale", ("seed",)).needed == {"scale"}


def test_large_arrays_travel_out_of_band():
    array = np.arange(2_000_000, dtype=np.float64)  # 16 MB
    encoded = serialize.encode({"a": array})
    assert len(encoded.payload) < 1000  # the pickle holds no copy of the data
    chunks = serialize.dumps_chunks({"a": array})
    assert any(isinstance(c, memoryview) and c.obj is not None and c.nbytes == array.nbytes for c in chunks)
    back = serialize.loads(bytearray(b"".join(bytes(c) for c in chunks)))["a"]  # as the store reads it
    assert np.array_equal(back, array)
    back[0] = 42.0  # arrays that come back are writable like local ones


def test_incremental_listings_return_only_recent_results_and_later_claims(tmp_path):
    """The monitor's quick scans: results written since a time, claims from a block on."""
    import time as _time

    from starburst_jupyter.protocol.jobfiles import JobFiles
    from starburst_jupyter.stores.objects import LocalFolderStore

    files = JobFiles(LocalFolderStore(tmp_path), "j1")
    files.write_results(0, 0, [])
    _time.sleep(0.01)
    files.write_results(1, 0, [])
    old, new = files.list_result_keys()
    assert files.list_result_keys(since=files.result_time(new)) == [new]
    assert files.list_result_keys(since=files.result_time(old)) == [old, new]
    for block in (0, 1, 2, 7):
        assert files.claim(block, 3)
    assert files.list_claimed(after=1) == {2, 7}
    assert files.list_claimed() == {0, 1, 2, 7}
    assert files.list_blocks(after=0) == []  # no task blocks written


def test_a_job_whose_record_went_silent_has_no_live_owner():
    """Another host's kernel cannot be asked; a record it stopped rewriting says it is gone (attach, cancel)."""
    import time as _time

    from starburst_jupyter.core.launcher import _owner_alive

    elsewhere = {"host": "some-other-host", "pid": 1}
    assert _owner_alive({"owner": elsewhere, "updated": _time.time()})
    assert not _owner_alive({"owner": elsewhere, "updated": _time.time() - 120})
