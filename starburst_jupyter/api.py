"""The Python face: burst_map and BurstExecutor, on the same launcher as %%burst."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from starburst_jupyter import _warm  # noqa: F401  (first: the local pool's fork server starts while the rest imports)
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import options as job_options
from starburst_jupyter.core.capture import cell_label, check_picklable
from starburst_jupyter.core.config import Config, load_config
from starburst_jupyter.core.detached import PENDING, DetachedJob
from starburst_jupyter.core.launcher import JobHandle, Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.errors import BurstError
from starburst_jupyter.protocol import serialize, sourcemap
from starburst_jupyter.protocol.programs import CallProgram, SubmitProgram

__all__ = ["PENDING", "BurstExecutor", "DetachedJob", "attach", "burst_map"]

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from starburst_jupyter.core.options import JobOptions


def _describe(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def burst_map(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    *,
    config: Config | None = None,
    wait: bool = True,
    **options: Unpack[JobOptions],
) -> Any:
    """[fn(item) for item in items], run by burst workers. Results come back in item order.

    With on_error="raise" (default) one BurstError names every failed item after all items ran
    (its `.results` holds the full list, failed slots holding the exception); with "keep" the
    exceptions sit in the returned list.

    With wait=False the job is detached: its driver runs apart from this process (on Fargate, as a task),
    so it goes on if this kernel or machine goes away, and a DetachedJob is returned at once
    (`status()`, `results(partial=True)`, `wait()`, `cancel()`, `extend(minutes)`; `attach(job_id)` gets
    the same handle later, from anywhere with the same set-up).
    """
    job_options.check_keywords("burst_map", options)
    config = config or load_config()
    spec = build_spec(config, mode="map", source=_describe(fn), **options)
    program = CallProgram(fn, sourcemap.collect([fn], cell_label))
    try:
        chunks = serialize.dumps_chunks(program)  # pickled once; only a failure pickles again, to name it
    except Exception:
        check_picklable({"fn": fn})
        raise
    if not wait:
        job: DetachedJob = Launcher(config).submit(spec, program, list(items), program_chunks=chunks, detach=True)
        return job
    result = Launcher(config).submit(spec, program, list(items), program_chunks=chunks).result()
    if result.failures and spec.on_error == "raise":
        error = BurstError(
            result.failure_report() + "\n\nAll results are in this error's .results (failed slots hold the exception).",
            job_id=result.job_id,
            failures=result.failures,
        )
        error.results = result.values
        raise error
    return result.values


def attach(job_id: str, *, config: Config | None = None) -> DetachedJob:
    """A handle on a job launched from this machine or any machine with the same set-up (its id, or the
    start of it): follow it, collect what finished, wait for the rest, cancel it or extend it. A job whose
    driver is gone gets a new one, apart from this process."""
    return Launcher(config or load_config()).follow(job_id)


class BurstExecutor(Executor):
    """A concurrent.futures.Executor whose calls run on burst workers.

    One open job holds every submitted call; workers stay warm between submits (up to 30 s idle)
    and futures resolve as their calls finish.
    """

    # workers and backend are also positional here, so they overlap JobOptions' keys; a TypedDict
    # without them would repeat the options table
    def __init__(  # type: ignore[misc]
        self,
        workers: int | None = None,
        backend: str | None = None,
        *,
        config: Config | None = None,
        detach: bool = False,
        **options: Unpack[JobOptions],
    ):
        """With detach=True the open job's driver runs apart from this process: the job outlives it, takes
        more submissions after `BurstExecutor.attach(job_id)` from any process with the same set-up, and its
        idle workers end on their own after 30 s without work. `shutdown()` closes it."""
        job_options.check_keywords("BurstExecutor", options)
        options["name"] = options.get("name") or "executor"
        config = config or load_config()
        spec = build_spec(
            config, mode="executor", source="BurstExecutor", **{**options, "workers": workers, "backend": backend}
        )
        self._lock = threading.Lock()
        self._futures: dict[int, Future] = {}
        self._early: dict[int, tuple[bool, Any]] = {}
        self._shutdown = False
        handle = Launcher(config).submit(spec, SubmitProgram(), [], open_job=True, detach=detach)
        self._follow(handle)

    def _follow(self, handle: JobHandle | DetachedJob) -> None:
        self._handle = handle
        self._handle.on_item(self._resolve)
        self._handle.events.subscribe(self._started, ev.TaskStarted)

    @classmethod
    def attach(cls, job_id: str, *, config: Config | None = None) -> BurstExecutor:
        """The executor of a detached open job (`BurstExecutor(detach=True)`), from this process or another:
        it takes more submissions; `.job.results(partial=True)` holds what every earlier submission gave."""
        job = Launcher(config or load_config()).follow(job_id, start=False)
        if job.spec.mode != "executor":
            raise BurstError(
                f"Job {job.id} is a {job.spec.mode} job, not a BurstExecutor's; starburst_jupyter.attach({job.id!r}) "
                f"follows it.",
                job_id=job.id,
            )
        executor = cls.__new__(cls)
        executor._lock = threading.Lock()
        executor._futures, executor._early, executor._shutdown = {}, {}, False
        executor._follow(job)
        job.start()
        return executor

    @property
    def job(self) -> JobHandle | DetachedJob:
        """The open job's handle (a DetachedJob when detached: status(), results(partial=True), extend())."""
        return self._handle

    @property
    def job_id(self) -> str:
        return self._handle.id

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        # Never call the job handle while holding self._lock: the job's thread calls back into us.
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
        if self._handle.done():
            raise BurstError(
                f"BurstExecutor job {self.job_id} has ended ({self._handle.state}); make a new one.", job_id=self.job_id
            )
        future: Future = Future()
        try:
            index = self._handle.add_items([(fn, args, kwargs)])[0]
        except BurstError:
            raise
        except Exception:
            check_picklable({"fn": fn, "args": args, "kwargs": kwargs})  # names the culprit
            raise
        with self._lock:
            self._futures[index] = future
            early = self._early.pop(index, None)
        if early is not None:
            self._resolve(index, *early)
        else:
            future.add_done_callback(functools.partial(self._withdraw_if_cancelled, index))
        return future

    def _started(self, event: ev.Event) -> None:
        if not isinstance(event, ev.TaskStarted):  # subscribed to TaskStarted only
            return
        with self._lock:
            futures = [self._futures.get(i) for i in event.indices]
        for future in futures:
            if future is not None and not future.done() and not future.running():
                future.set_running_or_notify_cancel()

    def _withdraw_if_cancelled(self, index: int, future: Future[Any]) -> None:
        if future.cancelled():
            self._handle.withdraw(index)

    def _resolve(self, index: int, ok: bool, value: Any) -> None:
        with self._lock:
            future = self._futures.pop(index, None)
            if future is None:
                self._early[index] = (ok, value)
                return
        if future.cancelled():
            future.set_running_or_notify_cancel()  # lets concurrent.futures.wait() count it as done
            return
        if not future.running():
            if not future.set_running_or_notify_cancel():
                return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            pending = list(self._futures.values())
        if cancel_futures:
            for future in pending:
                future.cancel()
        self._handle.close()
        if wait:
            self._handle.wait()


# The keywords each face shows (help(), Jupyter's `?`, an IDE) are the job options' table, with its help.
burst_map.__signature__ = job_options.generated_signature(burst_map)  # type: ignore[attr-defined]
burst_map.__doc__ = f"{burst_map.__doc__}\n{job_options.keyword_doc('    ')}\n"
BurstExecutor.__init__.__signature__ = job_options.generated_signature(  # type: ignore[attr-defined]
    BurstExecutor.__init__, skip=("workers", "backend")
)
BurstExecutor.__doc__ = f"{BurstExecutor.__doc__}\n{job_options.keyword_doc('    ')}\n"
