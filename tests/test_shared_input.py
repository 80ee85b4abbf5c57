"""A large captured input is shared, not copied (issue 15): each buffer of 1 MiB or more travels as an object of
its own, which local workers map read-only (one copy in the page cache for all of them) and an S3 worker GETs
once; a small one stays inside the program; writing into a shared array fails saying how to get a copy; the
buffer objects go with the job. Real local workers, no mocks."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest
from helpers import latest_record, wait_for
from test_fargate import account, fargate  # noqa: F401 (fixtures: an account set up on moto, the task agent)

from starburst_jupyter import BurstError, burst_map
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.prune import gather, prune
from starburst_jupyter.protocol import buffers, serialize
from starburst_jupyter.protocol.jobfiles import JobFiles
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.stores.objects import LocalFolderStore

MB = 1 << 20


def private_kb() -> dict[str, int]:
    """This process's anonymous (private, not file-backed) memory and its whole resident set, in kB."""
    fields = {}
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                fields[name] = int(rest.split()[0])
    return {"anon": fields["Anonymous"], "rss": fields["Rss"]}


def probe(data, i):
    """Read all of the captured array (every page touched), then say what this worker holds."""
    import time

    total = float(data.sum()) + float(data[i])
    time.sleep(0.3)  # long enough for both workers to take items
    return os.getpid(), total, bool(data.flags.writeable), private_kb()


def test_a_large_captured_array_is_one_shared_read_only_copy_for_all_workers():
    data = np.arange(25 * MB // 8 * 8, dtype=np.float64)  # 200 MB
    whole = float(data.sum())
    out = burst_map(functools.partial(probe, data), range(6), workers=2)
    assert [total for _, total, _, _ in out] == [whole + i for i in range(6)]  # values right
    assert not any(writable for _, _, writable, _ in out)  # a view on the shared mapping
    pids = {pid for pid, *_ in out}
    assert len(pids) == 2, pids
    for pid, _, _, mem in out:
        # before: each worker read the program into a 200 MB bytearray of its own (anon ~240 MB)
        assert mem["anon"] < 100 * 1024, (pid, mem)
        assert mem["rss"] > 200 * 1024, (pid, mem)  # it did read all of it: from the page cache, shared
    assert latest_record()["state"] == "done"


def _written(tmp_path, value) -> JobFiles:
    files = JobFiles(LocalFolderStore(tmp_path), "bj-shared-input")
    files.write_program(serialize.dumps_chunks(CallProgram(functools.partial(np.add, value))))
    return files


def test_a_small_input_stays_in_the_program_and_a_large_one_is_an_object_of_its_own(tmp_path):
    small = _written(tmp_path / "small", np.arange(1000.0))
    assert not (tmp_path / "small" / "jobs" / "bj-shared-input" / "buffers").exists()
    assert small.read_program().run(1.0)[999] == 1000.0  # no extra object: in band, as before

    big = _written(tmp_path / "big", np.ones(2 * MB // 8))
    folder = tmp_path / "big" / "jobs" / "bj-shared-input"
    assert [p.name for p in (folder / "buffers").iterdir()] == ["0000.buf"]
    assert (folder / "buffers" / "0000.buf").stat().st_size == 2 * MB
    assert (folder / "program.pkl").stat().st_size < 64 * 1024  # the pickle, not the array
    assert big.read_program().run(1.0)[0] == 2.0
    big.delete_payloads()  # once results are collected, the buffers go with the program
    assert not (folder / "buffers").exists() and not (folder / "program.pkl").exists()


def scale_in_place(data, i):
    data *= 2  # a write into the shared captured array
    return i


def test_writing_into_a_captured_array_fails_saying_how_to_get_a_copy():
    data = np.ones(2 * MB // 8)
    with pytest.raises(BurstError) as caught:
        burst_map(functools.partial(scale_in_place, data), range(2), workers=2)
    error = caught.value.results[0]
    assert isinstance(error, Exception) and "read-only" in str(error)
    text = str(caught.value) + "".join(getattr(error, "__notes__", []))
    assert "shared read-only by the job's workers" in text and "np.array(x)" in text, text
    assert (data == 1).all()  # the kernel's array is untouched either way


def test_the_buffer_objects_go_with_the_job_when_it_is_pruned(starburst_home):
    data = np.ones(2 * MB // 8)
    job = burst_map(functools.partial(np.add, data), range(2), workers=1, wait=False)
    assert [r[0] for r in job.results()] == [1.0, 2.0]
    folder = starburst_home / "jobs" / job.id
    assert (folder / "buffers" / "0000.buf").is_file()  # a detached job keeps its payloads until collected
    launcher = Launcher(load_config())
    found = [f for f in gather(launcher).jobs if f.record.id == job.id]
    wait_for(lambda: not prune(launcher, found).errors, timeout=10)
    assert not folder.exists()


def test_an_old_single_object_program_still_loads(tmp_path):
    store = LocalFolderStore(tmp_path)
    files = JobFiles(store, "bj-old")
    data = np.ones(2 * MB // 8)
    store.put("jobs/bj-old/program.pkl", serialize.dumps_chunks(CallProgram(functools.partial(np.add, data))))
    assert files.read_program().run(1.0)[0] == 2.0
    assert not buffers._shared  # nothing mapped: a read-only error there is not ours to explain


@pytest.mark.slow
def test_on_s3_each_worker_gets_each_buffer_once(fargate, moto_server):  # noqa: F811
    from moto_server import S3Faults

    data = np.arange(2 * MB // 8, dtype=np.float64)
    with S3Faults() as seen:
        out = burst_map(functools.partial(np.add, data), range(12), workers=2)
    assert [float(r[5]) for r in out] == [5.0 + i for i in range(12)]
    record = latest_record()
    started = len(record["workers"])
    gets = [r.path for r, outcome in seen.requests if r.op == "GetObject" and outcome == "ok"]
    buffer_gets = [p for p in gets if "/buffers/" in p]
    program_gets = [p for p in gets if p.endswith("/program.pkl")]
    assert 1 <= started <= 2 and len(buffer_gets) == len(program_gets) == started, (started, gets)
    assert all(p.endswith("/buffers/0000.buf") for p in buffer_gets)
