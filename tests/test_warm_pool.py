"""The warm local pool (issue 15): local workers are forked by a fork server (worker/zygote.py) that never
imported user code, so a second job starts in milliseconds and still sees edited modules, the caller's
environment and cwd; the server ends with its kernel, after its idle time, and a job survives its death."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import latest_record, pid_alive, wait_for

from starburst_jupyter import burst_map
from starburst_jupyter.backends.local import LocalBackend
from starburst_jupyter.backends.zygote import ZYGOTE_MODULE
from starburst_jupyter.core.config import Config
from starburst_jupyter.core.launcher import Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.protocol.programs import CallProgram

WARM = Config(local_concurrency=2)  # the default idle time (600 s)


def parent_pid(_: object) -> int:
    return os.getppid()


def is_zygote(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return ZYGOTE_MODULE.encode() in argv and pid_alive(pid)


def timed(fn, items, config: Config = WARM) -> tuple[list, float]:
    start = time.perf_counter()
    out = burst_map(fn, items, workers=2, backend="local", config=config)
    return out, time.perf_counter() - start


def test_the_second_jobs_workers_are_forked_by_the_zygote_and_start_sooner():
    # a lambda travels by value: a function of this module would make each worker import it (and pytest)
    first, cold = timed(lambda _: os.getppid(), [1])
    second, warm = timed(lambda _: os.getppid(), [1])
    third, warm2 = timed(lambda _: os.getppid(), [1])
    print(f"one-item burst_map: first {cold * 1000:.0f} ms, then {warm * 1000:.0f} / {warm2 * 1000:.0f} ms")
    assert is_zygote(second[0]), "the second job's worker was not forked by the warm pool"
    assert second == third  # the same fork server serves every job of this process
    assert second[0] != os.getpid()


def test_local_warm_seconds_0_starts_each_worker_as_a_new_process():
    out, _ = timed(parent_pid, [1, 2], Config(local_concurrency=2, local_warm_seconds=0))
    assert out == [os.getpid(), os.getpid()]  # our own children, as before the pool


def test_a_module_edited_between_two_jobs_gives_its_new_value(tmp_path, monkeypatch):
    module = tmp_path / "warm_edited_mod.py"
    module.write_text("VALUE = 1\n\ndef value(x):\n    return (VALUE, x)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import warm_edited_mod  # the caller imports it: the function travels by reference, the worker imports it

    assert timed(warm_edited_mod.value, [7])[0] == [(1, 7)]
    module.write_text("VALUE = 2\n\ndef value(x):\n    return (VALUE, x)\n")
    later = time.time() + 2
    os.utime(module, (later, later))  # (a new mtime even within the same second as the first write)
    assert timed(warm_edited_mod.value, [7])[0] == [(2, 7)], "a warm worker ran the module as it was"
    sys.modules.pop("warm_edited_mod", None)


def env_and_cwd(_: object) -> tuple[str | None, str]:
    return os.environ.get("STARBURST_WARM_TEST"), os.getcwd()


def test_an_env_var_and_cwd_changed_between_jobs_are_seen(tmp_path, monkeypatch):
    for value in ("first", "second"):
        folder = tmp_path / value
        folder.mkdir()
        monkeypatch.chdir(folder)
        monkeypatch.setenv("STARBURST_WARM_TEST", value)
        out, _ = timed(env_and_cwd, [1])
        assert out == [(value, str(folder))]
    monkeypatch.delenv("STARBURST_WARM_TEST")
    assert timed(env_and_cwd, [1])[0][0][0] is None  # a variable removed is gone in the worker too


KERNEL = textwrap.dedent(
    """
    import os, sys, time
    from starburst_jupyter import burst_map
    from starburst_jupyter.core.config import Config
    def ppid(_):
        return os.getppid()
    print(burst_map(ppid, [1], workers=1, backend="local", config=Config(local_concurrency=1))[0], flush=True)
    if "--fork" in sys.argv and os.fork() == 0:  # a child (multiprocessing's fork) keeps the pool's pipe open
        time.sleep(60)
        os._exit(0)
    time.sleep(120)
    """
)


@pytest.mark.parametrize("fork", [False, True], ids=["alone", "with-a-forked-child"])
def test_the_zygote_ends_when_its_kernel_is_killed(fork):
    argv = [sys.executable, "-c", KERNEL, *(["--fork"] if fork else [])]
    kernel = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert kernel.stdout is not None
        zygote = int(kernel.stdout.readline())
        assert is_zygote(zygote)
        time.sleep(0.2)  # (the fork)
        kernel.kill()
        kernel.wait()
        wait_for(lambda: not is_zygote(zygote), timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(kernel.pid, signal.SIGKILL)  # the kernel's forked child too


def kill_the_zygote_then_work(x: int) -> int:
    if x == 0:
        os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(0.3)
    return x * 10


def test_a_job_whose_zygote_is_killed_ends_right_and_the_next_job_gets_a_new_one():
    before = timed(parent_pid, [1])[0][0]
    out, _ = timed(kill_the_zygote_then_work, list(range(6)))
    assert out == [x * 10 for x in range(6)]
    record = latest_record()
    assert record["state"] == "done"
    assert all(w["exit_code"] == 0 for w in record["workers"].values()), record["workers"]
    assert not is_zygote(before)
    after = timed(parent_pid, [1])[0][0]
    assert after != before and is_zygote(after)


def test_the_zygote_ends_after_its_idle_time():
    brief = Config(local_concurrency=2, local_warm_seconds=1)
    zygote = timed(parent_pid, [1], brief)[0][0]
    assert is_zygote(zygote)
    wait_for(lambda: not is_zygote(zygote), timeout=5)
    again = timed(parent_pid, [1], brief)[0][0]
    assert again != zygote and is_zygote(again)  # the next job starts another


def nap(x: int) -> int:
    time.sleep(30)
    return x


def test_a_forked_worker_is_stopped_only_by_its_own_jobs_record(starburst_home):
    handle = Launcher(WARM).submit(build_spec(WARM, mode="map", workers=1), CallProgram(nap), [1])
    try:
        pid = wait_for(lambda: next(iter(latest_record()["workers"].values()), {}).get("pid"), timeout=10)
        assert is_zygote(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]))  # its parent
        backend = LocalBackend(home=starburst_home)
        job = latest_record()["id"]
        assert backend.stop_recorded({"id": "bj-other", "workers": {"0": {"pid": pid, "exit_code": None}}}) == 0
        assert pid_alive(pid), "another job's record stopped this job's forked worker"
        assert backend.stop_recorded({"id": job, "workers": {"0": {"pid": pid, "exit_code": None}}}) == 1
        wait_for(lambda: not pid_alive(pid), timeout=5)
    finally:
        handle.cancel()


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_a_bad_local_warm_seconds_is_refused_naming_the_key(value):
    from starburst_jupyter.errors import BurstConfigError

    with pytest.raises(BurstConfigError, match="local_warm_seconds"):
        Config().with_values({"local_warm_seconds": value})
    assert Config().with_values({"local_warm_seconds": "0"}).local_warm_seconds == 0


def zygote_children_of_this_process() -> list[int]:
    return [pid for pid in _children_of(os.getpid()) if is_zygote(pid)]


def test_loading_the_extension_starts_the_pool_so_the_first_cell_is_warm(ip, starburst_home):
    from starburst_jupyter.backends import zygote

    zygote.pool(Config().local_warm_seconds, starburst_home).close()  # as in a new kernel: none running
    before = set(zygote_children_of_this_process())  # (servers that still end, or that another test left)
    ip.run_line_magic("reload_ext", "starburst_jupyter")
    started = wait_for(lambda: set(zygote_children_of_this_process()) - before, timeout=5)
    assert timed(parent_pid, [1])[0] == list(started)  # the first job's worker is forked by it


def test_the_zygote_runs_the_kernels_own_package_whatever_the_cwd(tmp_path, monkeypatch, starburst_home):
    """`python -m` looks in the cwd first: a zygote started in a folder holding another starburst_jupyter
    (another checkout, an old copy) must still fork workers of the kernel's package."""
    from starburst_jupyter.backends import zygote

    other = tmp_path / "starburst_jupyter"
    (other / "worker").mkdir(parents=True)
    (other / "__init__.py").write_text("raise ImportError('the other checkout was imported')\n")
    (other / "worker" / "__init__.py").write_text("")
    zygote.pool(Config().local_warm_seconds, starburst_home).close()  # the next job starts one here
    monkeypatch.chdir(tmp_path)
    out, _ = timed(lambda _: os.getppid(), [1])
    assert is_zygote(out[0])


def zygotes_of_this_worker(_: object) -> list[int]:
    time.sleep(0.5)  # (a prestart would have started one by now)
    return zygote_children_of_this_process()


def test_a_worker_importing_a_module_that_imports_burst_map_starts_no_pool():
    """This module imports burst_map, and a function of it makes the worker import it: no fork server there."""
    assert timed(zygotes_of_this_worker, [1])[0] == [[]]


@pytest.mark.parametrize("line", ["from starburst_jupyter import burst_map", "import starburst_jupyter.api"])
def test_importing_burst_map_in_a_new_script_starts_the_pool_while_the_launcher_imports(starburst_home, line):
    script = f"import os, time\n{line}\nprint(os.getpid(), flush=True)\ntime.sleep(30)"
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert caller.stdout is not None
        pid = int(caller.stdout.readline())
        children = wait_for(lambda: [p for p in _children_of(pid) if is_zygote(p)], timeout=5)
        assert len(children) == 1
    finally:
        caller.kill()
        caller.wait()


def _children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def kill_the_zygote_then_die_once(x: int, marker: str) -> int:
    if x == 0 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)  # a death nobody can report the code of now
    time.sleep(0.1)
    return x


def test_a_worker_killed_after_its_zygote_is_retried_and_its_end_says_why(tmp_path):
    marker = str(tmp_path / "died")
    assert timed(lambda x: kill_the_zygote_then_die_once(x, marker), list(range(4)))[0] == [0, 1, 2, 3]
    reasons = [w["reason"] for w in latest_record()["workers"].values()]
    assert any("fork server had gone" in r for r in reasons), reasons


def test_a_pool_that_cannot_start_gives_new_processes_and_says_why(starburst_home, caplog):
    (starburst_home / "logs").write_text("a file where the pool's log folder goes")
    out, _ = timed(parent_pid, [1], Config(local_concurrency=2, local_warm_seconds=599))  # (a new pool, this home)
    assert out == [os.getpid()]  # the job ran, its worker a new process of ours
    assert "starts as a new process" in caplog.text and "zygote.log" in caplog.text, caplog.text
