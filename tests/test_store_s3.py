"""The S3 object store against moto in server mode: the same behaviours as the local folder store,
the job protocol on S3, a real worker process on S3, and botocore's retries under injected faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from starburst_jupyter.protocol import serialize
from starburst_jupyter.protocol.jobfiles import ItemResult, JobFiles
from starburst_jupyter.protocol.programs import CallProgram
from starburst_jupyter.protocol.workerspec import Timing, WorkerSpec
from starburst_jupyter.stores.objects import LocalFolderStore, open_store

MiB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path: Path):
    if request.param == "local":
        return LocalFolderStore(tmp_path / "store")
    from starburst_jupyter.stores.s3 import S3ObjectStore

    bucket = request.getfixturevalue("s3_bucket")
    return S3ObjectStore(bucket, prefix="team/a")  # keys live under a prefix, as a shared bucket would have


@pytest.fixture
def s3_store(s3_bucket):
    return open_store(f"s3://{s3_bucket}")


@pytest.fixture
def conditional_writes_atomic(moto_server):
    from moto_server import atomic_conditional_writes

    with atomic_conditional_writes():
        yield


# ----- the same behaviours on both stores -------------------------------------------------------
def test_put_get_round_trip(store):
    store.put("a/one.json", [b'{"x": 1}'])
    store.put("a/two.bin", [b"head-", memoryview(b"middle-"), bytearray(b"tail")])
    store.put("a/three.bin", b"bare bytes")
    store.put("a/empty", [])
    got = store.get("a/two.bin")
    assert isinstance(got, bytearray) and got == b"head-middle-tail"
    got[0:4] = b"HEAD"  # writable
    assert store.get("a/one.json") == b'{"x": 1}'
    assert store.get("a/three.bin") == b"bare bytes"
    assert store.get("a/empty") == b""
    store.put("a/one.json", [b"replaced"])
    assert store.get("a/one.json") == b"replaced"
    assert store.exists("a/one.json") and not store.exists("a/nothing")
    with pytest.raises(FileNotFoundError):
        store.get("a/nothing")
    store.delete("a/one.json")
    store.delete("a/one.json")  # deleting a missing key is fine
    assert not store.exists("a/one.json")


def test_large_array_round_trip(store):
    array = np.arange(20 * MiB // 8, dtype=np.float64).reshape(-1, 1024)  # 20 MiB of out-of-band buffer
    chunks = serialize.dumps_chunks({"array": array, "note": "big"})
    assert any(isinstance(c, memoryview) and c.nbytes == array.nbytes for c in chunks)
    store.put("jobs/j/program.pkl", chunks)
    data = store.get("jobs/j/program.pkl")
    assert len(data) == serialize.chunks_size(chunks)
    back = serialize.loads(data)
    assert back["note"] == "big"
    np.testing.assert_array_equal(back["array"], array)
    back["array"][0, 0] = -1.0  # arrays come back writable
    if hasattr(store, "bucket"):  # S3: it went up as a multipart upload (the ETag says how many parts)
        head = store.client.head_object(Bucket=store.bucket, Key=store.full_key("jobs/j/program.pkl"))
        assert head["ETag"].strip('"').endswith("-3")  # 20 MiB + header in 8 MiB parts


def test_list_directly_under_a_prefix(store):
    for key in (
        "jobs/1/tasks/000000.pkl",
        "jobs/1/tasks/000001.pkl",
        "jobs/1/tasks/nested/x",
        "jobs/1/tasksX",
        "jobs/10/tasks/000000.pkl",
        "jobs/1/spec.json",
    ):
        store.put(key, [b"."])
    listed = set(store.list("jobs/1/tasks/"))
    assert {"jobs/1/tasks/000000.pkl", "jobs/1/tasks/000001.pkl"} <= listed
    assert not listed & {"jobs/1/tasks/nested/x", "jobs/1/tasksX", "jobs/10/tasks/000000.pkl"}
    # S3 lists objects only; the local store also names sub-folders ("jobs/1/tasks/nested").
    assert listed - {"jobs/1/tasks/000000.pkl", "jobs/1/tasks/000001.pkl"} <= {"jobs/1/tasks/nested"}
    assert store.list("jobs/2/tasks/") == []


def test_create_exclusive_two_creators(store):
    assert store.create_exclusive("claims/000001", b"first") is True
    assert store.create_exclusive("claims/000001", b"second") is False
    assert store.get("claims/000001") == b"first"
    assert store.create_exclusive("claims/000002", b"first") is True  # same body, other key


def test_create_exclusive_race(store, request):
    if hasattr(store, "bucket"):
        request.getfixturevalue("conditional_writes_atomic")
    threads, barrier, wins, errors = 20, threading.Barrier(20), [], []

    def race(n: int) -> None:
        barrier.wait()
        try:
            if store.create_exclusive("claims/race", f"worker-{n}".encode()):
                wins.append(n)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=race, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(30)
    assert not errors
    assert len(wins) == 1, wins
    assert store.get("claims/race") == f"worker-{wins[0]}".encode()


def test_delete_prefix(store):
    for key in ("jobs/1/tasks/000000.pkl", "jobs/1/results/000000-0000.pkl", "jobs/1/spec.json", "jobs/10/spec.json"):
        store.put(key, [b"."])
    store.delete_prefix("jobs/1/tasks/")
    assert not store.exists("jobs/1/tasks/000000.pkl") and store.exists("jobs/1/spec.json")
    store.delete_prefix("jobs/1")  # a folder: never "jobs/10"
    assert store.list("jobs/1/") == [] and not store.exists("jobs/1/results/000000-0000.pkl")
    assert store.exists("jobs/10/spec.json")
    store.delete_prefix("jobs/nothing/")


def test_a_folder_store_deletes_a_folder_at_once_and_unlinks_it_in_the_background(tmp_path: Path):
    from helpers import wait_for

    from starburst_jupyter.stores.objects import TRASH

    store = LocalFolderStore(tmp_path / "store")
    for n in range(300):
        store.put(f"jobs/1/results/{n:06d}.pkl", [b"."])
    (store.root / TRASH).mkdir(mode=0o700)
    (store.root / TRASH / "left-by-a-killed-process").mkdir()  # trash a process left behind goes too
    store.delete_prefix("jobs/1/results/")
    assert not store.path("jobs/1/results").exists() and store.list_folders("") == ["jobs/"]
    wait_for(lambda: not any((store.root / TRASH).iterdir()), timeout=10)


# ----- S3 only ------------------------------------------------------------------------------------
def test_open_store_urls(s3_bucket):
    from starburst_jupyter.stores.s3 import S3ObjectStore

    plain = open_store(f"s3://{s3_bucket}")
    nested = open_store(f"s3://{s3_bucket}/team/a/")
    assert isinstance(plain, S3ObjectStore) and (plain.bucket, plain.prefix, plain.url) == (
        s3_bucket,
        "",
        f"s3://{s3_bucket}",
    )
    assert (nested.prefix, nested.url) == ("team/a/", f"s3://{s3_bucket}/team/a")
    nested.put("k", [b"v"])
    assert plain.get("team/a/k") == b"v"  # the prefix is part of the object's real key
    assert open_store(nested.url).get("k") == b"v"


def test_pagination_and_batched_deletes(s3_bucket):
    from moto_server import S3Faults

    from starburst_jupyter.stores.s3 import S3ObjectStore

    store = S3ObjectStore(s3_bucket, list_page_size=3)
    keys = [f"jobs/j/results/{n:06d}-0000.pkl" for n in range(8)]
    for key in keys:
        store.put(key, [b"r"])
    store.put("jobs/j/results/sub/deeper", [b"x"])
    with S3Faults() as seen:
        assert sorted(store.list("jobs/j/results/")) == keys
        assert seen.count("ListObjectsV2") == 3  # 8 keys + 1 folder entry, 3 per page
        store.delete_prefix("jobs/j/")
        assert seen.count("DeleteObjects") == 3  # 9 objects, one batch per page of at most 3
    assert store.list("jobs/j/results/") == [] and not store.exists("jobs/j/results/sub/deeper")


def test_job_protocol_on_s3(s3_store, conditional_writes_atomic):
    files = JobFiles(s3_store, "job-proto")
    spec = WorkerSpec(job_id="job-proto", deadline=time.time() + 60, max_result_bytes=1 << 20)
    files.write_spec(spec)
    assert files.read_spec() == spec
    files.write_program(serialize.dumps_chunks(CallProgram(abs)))
    assert files.read_program().run(-3) == 3
    files.write_block(0, [(0, "a"), (1, "b")])
    files.write_block(1, [(2, np.ones(3))])
    assert files.list_blocks() == [0, 1]
    assert files.read_block(0) == [(0, "a"), (1, "b")]
    assert files.claim(1, worker=7) is True
    assert files.claim(1, worker=8) is False
    assert files.list_claimed() == {1} and files.read_claim(1).worker == 7
    results = [ItemResult(2, True, serialize.encode(np.arange(4)), worker=7)]
    files.write_results(1, 0, results)
    files.write_results(1, 1, [])
    keys = files.list_result_keys()
    assert [k.rsplit("/", 1)[1].split("-", 1)[1] for k in keys] == ["000001-0000.pkl", "000001-0001.pkl"]
    back = files.read_results(keys[0])
    np.testing.assert_array_equal(serialize.decode(back[0].value), np.arange(4))
    assert not files.cancel_requested()
    files.request_cancel("test")
    assert files.cancel_requested()
    files.write_heartbeat(7, {"at": 1.0})
    files.delete_payloads()
    assert files.list_blocks() == [] and files.list_result_keys() == [] and files.list_claimed() == set()
    assert files.read_spec() == spec  # spec stays


# ----- a real worker process on S3 -------------------------------------------------------------------
def _write_job(store, job_id: str, items: list, block_size: int) -> JobFiles:
    files = JobFiles(store, job_id)
    files.write_spec(
        WorkerSpec(
            job_id=job_id,
            deadline=time.time() + 60,
            max_result_bytes=1 << 20,
            timing=Timing(flush_seconds=0.0, control_poll_seconds=0.2, heartbeat_seconds=0.5),
        )
    )

    def square(x):  # defined here, so cloudpickle ships it by value
        return x * x

    files.write_program(serialize.dumps_chunks(CallProgram(square)))
    for block, start in enumerate(range(0, len(items), block_size)):
        files.write_block(block, [(i, items[i]) for i in range(start, min(start + block_size, len(items)))])
    return files


def _run_workers(bucket: str, job_id: str, count: int) -> list[subprocess.CompletedProcess]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "starburst_jupyter.worker",
                "--store",
                f"s3://{bucket}",
                "--job",
                job_id,
                "--prefix",
                f"jobs/{job_id}/",
                "--worker",
                str(n),
            ],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]
    done = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


def _collect(files: JobFiles) -> dict[int, ItemResult]:
    seen: dict[int, ItemResult] = {}
    for key in files.list_result_keys():
        for result in files.read_results(key):
            assert result.index not in seen, f"item {result.index} ran twice"
            seen[result.index] = result
    return seen


def test_worker_process_end_to_end_on_s3(s3_bucket, conditional_writes_atomic):
    store = open_store(f"s3://{s3_bucket}")
    items = list(range(12))
    files = _write_job(store, "job-e2e", items, block_size=2)
    runs = _run_workers(s3_bucket, "job-e2e", count=2)
    for run in runs:
        assert run.returncode == 0, run.stderr
        assert "no more work" in run.stderr
    results = _collect(files)
    assert sorted(results) == items
    assert all(r.ok and serialize.decode(r.value) == i * i for i, r in results.items())
    assert files.list_claimed() == set(range(6))
    assert {results[b * 2].worker for b in range(6)} <= {0, 1}
    beats = store.list("jobs/job-e2e/heartbeat/")
    assert beats and json.loads(store.get(beats[0]))["worker"] in (0, 1)


def test_worker_survives_throttling_and_5xx(s3_bucket, conditional_writes_atomic):
    """SlowDown and InternalError on every kind of request the worker makes, plus a claim whose reply
    is lost after it landed: botocore's standard retries carry the job through, nothing is lost."""
    from moto_server import S3Faults

    store = open_store(f"s3://{s3_bucket}")
    items = list(range(8))
    files = _write_job(store, "job-faults", items, block_size=2)

    def results_put(r):
        return r.op == "PutObject" and "/results/" in r.path

    def claim_put(r):
        return r.op == "PutObject" and "/claims/" in r.path

    with S3Faults() as faults:
        faults.add(
            claim_put,
            times=1,
            status=500,
            code="InternalError",
            message="We encountered an internal error.",
            after=True,
        )  # the first claim lands, its reply is lost: the retry gets 412 for its own object
        faults.add("ListObjectsV2", times=1)  # 503 SlowDown (throttling: back-off of up to 1 s, then 2 s, ...)
        faults.add(results_put, times=1)
        faults.add("HeadObject", times=1)  # the cancel check
        faults.add(
            "ListObjectsV2", times=1, status=500, code="InternalError", message="We encountered an internal error."
        )
        faults.add("GetObject", times=2, status=500, code="InternalError", message="We encountered an internal error.")
        faults.add(
            results_put, times=2, status=503, code="ServiceUnavailable", message="Service is unable to handle request."
        )
        runs = _run_workers(s3_bucket, "job-faults", count=1)
    assert runs[0].returncode == 0, runs[0].stderr
    assert [f.hits for f in faults.faults] == [f.times for f in faults.faults]
    assert faults.injected == 9
    results = _collect(files)
    assert sorted(results) == items and all(serialize.decode(r.value) == i * i for i, r in results.items())
    assert files.list_claimed() == {0, 1, 2, 3}
    assert files.read_claim(0).worker == 0  # the block whose claim reply was lost was still run, by its owner


# ----- retries and errors in this process -------------------------------------------------------------
def test_store_operations_survive_injected_faults(s3_bucket):
    from moto_server import S3Faults

    from starburst_jupyter.stores.s3 import S3ObjectStore

    store = S3ObjectStore(s3_bucket, list_page_size=2)
    array = np.arange(10 * MiB // 8, dtype=np.float64)  # multipart: 2 parts
    with S3Faults() as faults:
        faults.add("UploadPart", times=2, status=500, code="InternalError", message="We encountered an internal error.")
        faults.add("CompleteMultipartUpload", times=1, status=503)
        faults.add("PutObject", times=1, status=503)
        faults.add(
            "DeleteObjects", times=1, status=500, code="InternalError", message="We encountered an internal error."
        )
        store.put("big.pkl", serialize.dumps_chunks(array))
        for n in range(3):  # the first is retried: its multi-chunk body is rewound and sent again whole
            store.put(f"small/{n}", [b"x", memoryview(b"-y-"), bytearray(b"z")])
        assert store.get("small/0") == b"x-y-z"
        np.testing.assert_array_equal(serialize.loads(store.get("big.pkl")), array)
        store.delete_prefix("small/")
    assert all(f.hits == f.times for f in faults.faults)
    assert store.list("small/") == []
    uploads = store.client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
    assert uploads == []  # no half-finished upload left behind


def test_lost_reply_of_a_conditional_put(s3_bucket):
    """The creator whose reply was lost still wins (and only it), instead of orphaning its claim."""
    from moto_server import S3Faults

    from starburst_jupyter.stores.s3 import S3ObjectStore

    store = S3ObjectStore(s3_bucket)
    with S3Faults() as faults:
        faults.add("PutObject", times=1, status=500, code="InternalError", message="lost", after=True)
        assert store.create_exclusive("claims/000000", b"mine") is True
        assert faults.count("PutObject") == 2 and faults.count("HeadObject") == 1
        assert store.create_exclusive("claims/000000", b"theirs") is False
        assert faults.count("PutObject") == 3 and faults.count("HeadObject") == 1  # a plain loss costs one request
        # a retried attempt that finds someone else's object is still a loss
        faults.add("PutObject", times=1, status=500, code="InternalError", message="retry me")
        assert store.create_exclusive("claims/000000", b"late") is False
        assert faults.count("HeadObject") == 2
    assert store.get("claims/000000") == b"mine"


def test_errors_name_the_object_and_the_next_step(moto_env):
    from starburst_jupyter.stores.s3 import S3ObjectStore, S3StoreError

    store = S3ObjectStore("sb-test-no-such-bucket", prefix="p")
    with pytest.raises(S3StoreError) as caught:
        store.get("jobs/x/spec.json")
    message = str(caught.value)
    assert "sb-test-no-such-bucket" in message and "s3://sb-test-no-such-bucket/p/jobs/x/spec.json" in message
    assert "starburst setup" in message
    assert isinstance(caught.value, OSError) and caught.value.code == "NoSuchBucket"
    with pytest.raises(S3StoreError, match="starburst setup"):
        store.put("jobs/x/spec.json", [b"{}"])
    with pytest.raises(S3StoreError, match="starburst setup"):
        store.list("jobs/")
    assert moto_env["AWS_SECRET_ACCESS_KEY"] not in message.replace("sb-test", "")


def test_unreachable_endpoint_is_named(moto_env, monkeypatch):
    import socket

    from starburst_jupyter.stores.s3 import S3ObjectStore, S3StoreError

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    from starburst_jupyter.stores import s3 as store_s3

    monkeypatch.setitem(store_s3.CLIENT_CONFIG, "retries", {"mode": "standard", "max_attempts": 1})  # quick
    store = S3ObjectStore("bucket-x")
    with pytest.raises(S3StoreError, match=f"127.0.0.1:{port} after 2 attempts.*network path"):
        store.exists("k")
