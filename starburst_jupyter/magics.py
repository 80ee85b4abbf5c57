"""The IPython face: %%burst, %burst_status, %burst_config, %burst_cancel. Parses, captures, displays."""

from __future__ import annotations

import asyncio
import keyword
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from starburst_jupyter import commands
from starburst_jupyter.core import events as ev
from starburst_jupyter.core import options as job_options
from starburst_jupyter.core import pricing
from starburst_jupyter.core.capture import (
    analyze_cell,
    calling_cell_label,
    cell_label,
    check_picklable,
    refuse_open_files,
    refuse_undefined_names,
    reserved_name_reason,
    select_namespace,
)
from starburst_jupyter.core.config import load_config
from starburst_jupyter.core.debuglog import trace, trace_kernel_comms
from starburst_jupyter.core.launcher import JobResult, Launcher
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.display.progress import PROGRESS_EVENTS, ImageProgressLines, JobView, TextProgress, Throttled
from starburst_jupyter.errors import BurstCancelled, BurstError, BurstInterrupted, BurstTimeout, BurstValidationError
from starburst_jupyter.protocol import serialize, sourcemap
from starburst_jupyter.protocol.programs import CellProgram

# NAME is any Python identifier (`ñ`, `données` too): a letter or underscore, then word characters.
_MAP_RE = re.compile(r"^\s*\(?\s*(?P<target>[^\W\d]\w*(?:\s*,\s*[^\W\d]\w*)*)\s*,?\s*\)?\s+in\s+(?P<expr>\S.*)$", re.S)


def parse_map(text: str) -> tuple[str, tuple[str, ...], str]:
    """'seed in range(10)' -> ('seed', ('seed',), 'range(10)'); also 'a, b in pairs'."""
    match = _MAP_RE.match(text)
    if not match:
        raise BurstValidationError(
            f"--map {text!r} is not 'NAME in EXPR'. Examples: --map seed in range(1000), --map x, y in pairs"
        )
    names = tuple(n.strip() for n in match.group("target").split(","))
    for name in names:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise BurstValidationError(f"--map {text!r}: {name!r} is not a valid Python name.")
        if name.startswith("__") and name.endswith("__"):  # e.g. __builtins__: every item would fail
            raise BurstValidationError(f"--map {text!r}: {name!r} is a special name Python uses; choose another.")
    return ", ".join(names), names, match.group("expr").strip()


def _check_out(name: str, flag: str = "--out") -> None:
    """--out names the list that receives results (--handle the job's handle): a name the notebook can lose."""
    why = reserved_name_reason(name)
    if why:
        what = "the results (the default is burst_results)" if flag == "--out" else "the job's handle"
        raise UsageError(f"{flag} {name!r} {why}; choose another name for {what}.")


def _in_kernel(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


def _async_cells(shell: Any) -> bool:
    """Cells can be awaited (IPython's autoawait with the asyncio runner, as in ipykernel)."""
    return _in_kernel(shell) and bool(getattr(shell, "autoawait", False))


ASYNC_ENTRY = "__starburst_burst_async__"


def make_async_transformer(shell: Any, magics: BurstMagics):
    """Rewrite a `%%burst` cell into `await ...` so the kernel keeps handling widget clicks (Cancel)
    while the job runs; a plain magic call blocks the kernel until the cell ends."""

    def transform(lines: list[str]) -> list[str]:
        if not lines or not lines[0].startswith("%%burst") or not _async_cells(shell):
            return lines
        first = lines[0].rstrip("\n")
        if first != "%%burst" and not first.startswith("%%burst "):
            return lines
        shell.user_ns[ASYNC_ENTRY] = magics.burst_async
        line, cell = first[len("%%burst") :].strip(), "".join(lines[1:])
        return [f"await {ASYNC_ENTRY}({line!r}, {cell!r})\n"]

    transform.starburst_async = True  # type: ignore[attr-defined]
    return transform


def is_async_transformer(transformer: Any) -> bool:
    """One of ours, from make_async_transformer (unload removes it)."""
    return bool(getattr(transformer, "starburst_async", False))


PLATFORMS = commands.PLATFORMS


def _with_image_options(config: Any, args: Any) -> Any:
    """--requirements and --platform override the config for this job (or this build) only."""
    return commands.with_image_options(config, getattr(args, "requirements", None), getattr(args, "platform", None))


def job_arguments(func: Callable[..., Any]) -> Callable[..., Any]:
    """IPython's `@argument` for every job option of the table in core/options.py, in the table's order."""
    for flags, kwargs in reversed(job_options.magic_arguments()):
        func = argument(*flags, **kwargs)(func)
    return func


def _image_progress(shell: Any) -> Any:
    """Making the worker image, shown as it goes: one live line and bar in a notebook, [image] lines elsewhere."""
    from starburst_jupyter.core.events import ImageBuildProgress

    shown: list[Any] = []

    def show(event: Any) -> None:
        if not isinstance(event, ImageBuildProgress):
            return
        if not shown:
            shown.append(_image_display(shell))
        shown[0](event)

    return show


def _image_display(shell: Any) -> Callable[[Any], None]:
    if _in_kernel(shell):
        try:
            from IPython.display import display

            from starburst_jupyter.display.widget import ImageProgressWidget
        except ImportError:
            pass
        else:
            widget = ImageProgressWidget()
            display(widget.root)
            return widget.update
    return ImageProgressLines(lambda text: print(text, flush=True))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


MAX_SHOWN_OUTPUTS = 5


def _plan_notes(plan: Any, spec: Any, hourly: float) -> list[str]:
    """What the user should know of the plan before it runs: fewer workers at a time than asked for (and why),
    and on Fargate the one-minute minimum that makes many workers dear for a short job."""
    notes = []
    if plan.waves > 1:
        why = (
            f"the account's Fargate vCPU quota fits {plan.concurrency} workers of {spec.describe_size()} at a time"
            if spec.backend == "fargate"
            else f"this machine runs {plan.concurrency} at a time (config local_concurrency; default: its CPUs)"
        )
        notes.append(
            f"--workers {plan.workers}: {why}; those {plan.concurrency} take the other shares in turn (shown as "
            f"{plan.waves} waves), with no start-up per wave"
        )
    if spec.backend == "fargate":
        minimum = hourly / 60  # each task is billed at least one minute
        notes.append(
            f"each Fargate task is billed at least one minute: {_plural(plan.concurrency, 'worker')} cost at least "
            f"${minimum:.4f} even if the job takes seconds; for a short job fewer workers cost less"
        )
    return notes


def _show_map_outputs(result: JobResult) -> None:
    """What map items printed: the first few in full, so a print-debugging user sees it."""
    for index in sorted(result.outputs)[:MAX_SHOWN_OUTPUTS]:
        stdout, stderr = result.outputs[index]
        if stdout:
            sys.stdout.write("".join(f"[item {index}] {line}\n" for line in stdout.splitlines()))
        if stderr:
            sys.stderr.write("".join(f"[item {index}] {line}\n" for line in stderr.splitlines()))
    hidden = len(result.outputs) - MAX_SHOWN_OUTPUTS
    if hidden > 0:
        print(f"... {hidden} more items printed output (%burst_logs {result.job_id} shows it all)")


def _summary(result: JobResult, total: int) -> str:
    done = total - len(result.failures)
    return (
        f"burst job {result.job_id}: {result.state}, {done}/{total} items ok, {len(result.failures)} failed, "
        f"{result.duration:.1f}s, est. Fargate cost ${result.cost:.4f}"
    )


@magics_class
class BurstMagics(Magics):
    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell, **kwargs)
        self._deferred: dict[str, Any] = {}  # job id -> its DeferredWidget, until the cell waits for the job

    @magic_arguments()
    @argument(
        "--map",
        nargs="+",
        metavar="NAME in EXPR",
        help="run the cell once per item of EXPR (evaluated here), with NAME bound to the item",
    )
    @argument("--out", default="burst_results", help="name of the list that receives map results (item order)")
    @argument(
        "--no-wait",
        action="store_true",
        help="return at once and let the job run on its own (detached: it goes on if this kernel goes); "
        "the results land in --out (or the cell's names) when it ends",
    )
    @argument("--handle", metavar="NAME", help="with --no-wait: also bind the job's handle (a DetachedJob) to NAME")
    @job_arguments
    @argument(
        "--requirements",
        metavar="FILE",
        help="docker/fargate: build the worker image from this requirements file instead of the kernel's packages",
    )
    @argument(
        "--platform",
        choices=sorted(PLATFORMS),
        help="docker/fargate: the worker image's platform (Fargate architecture)",
    )
    @cell_magic
    def burst(self, line: str, cell: str) -> Any:
        """Run this cell on burst workers. Without --map: once, and the names it assigns come back."""
        launched = self._launch(line, cell)
        if launched is None:
            return None
        handle, args, single = launched
        if args.no_wait:
            return self._detached(handle, args, single)
        live = self._deferred.pop(handle.id, None)
        try:
            if live is not None and not handle.wait_settled(live.delay):
                live.show()
            result = handle.wait()
        except KeyboardInterrupt:
            if not handle.done():  # (interrupted before handle.wait, which cancels on its own)
                handle.cancel("interrupted (stop button / Ctrl-C)")
                handle.wait_settled()
            raise self._interrupted(handle, args, single) from None
        finally:
            if live is not None and handle.done():
                live.finish()
        return self._conclude(result, args, single, handle.spec.on_error)

    async def burst_async(self, line: str, cell: str) -> Any:
        """%%burst as an awaited cell: while the job runs the kernel still handles widget clicks."""
        launched = self._launch(line, cell)
        if launched is None:
            return None
        handle, args, single = launched
        if args.no_wait:
            return self._detached(handle, args, single)
        trace_kernel_comms(getattr(self.shell, "kernel", None))
        trace("cell: awaiting", job=handle.id)
        live = self._deferred.pop(handle.id, None)
        try:
            # Woken by the job's end itself (no poll delay), and every 0.1 s as before: an interrupt reaches an
            # awaited cell only while its loop wakes. The widget only for a job still running after a moment.
            ended = asyncio.get_running_loop().run_in_executor(None, handle.wait_settled)
            begun = time.monotonic()
            while not ended.done():
                await asyncio.wait({ended}, timeout=0.1)
                if live is not None and not ended.done() and time.monotonic() - begun >= live.delay:
                    live.show()
            trace("cell: saw the job end", job=handle.id, state=handle.outcome.state if handle.outcome else None)
        except (KeyboardInterrupt, asyncio.CancelledError):  # the stop button, in an async cell
            handle.cancel("interrupted (stop button / Ctrl-C)")
            await asyncio.to_thread(handle.wait)
            raise self._interrupted(handle, args, single) from None
        finally:
            if live is not None and handle.done():
                live.finish()
        return self._conclude(handle.outcome, args, single, handle.spec.on_error)

    @property
    def _user_ns(self) -> dict[str, Any]:
        """The user's namespace (these magics are only ever registered on a shell)."""
        assert self.shell is not None
        return self.shell.user_ns

    def _detached(self, handle: Any, args: Any, single: bool) -> Any:
        """--no-wait: the cell returns the job's handle; the results land in the namespace when the job ends."""
        if args.handle:
            self._user_ns[args.handle] = handle
        handle.on_done(lambda result: self._land(result, args, single, handle))
        return handle

    def _land(self, result: JobResult, args: Any, single: bool, handle: Any) -> None:
        """A detached job ended: its values go where the cell said; the live view says where they went."""
        if single:
            if result.state == "done" and not result.failures:
                values = result.values[0]
                self._user_ns.update(values.names)
                landed = f"names set: {', '.join(sorted(values.names)) or 'none'}"
            else:
                landed = "no names set (the task did not finish)"
        else:
            self._user_ns[args.out] = result.values
            finished = sum(1 for v in result.values if not isinstance(v, BaseException))
            landed = f"{finished} of {len(result.values)} results in {args.out}"
        handle.events.publish(ev.JobStateChanged(result.job_id, state=result.state, message=landed))

    def _launch(self, line: str, cell: str) -> tuple[Any, Any, bool] | None:
        """Parse, capture, validate and start the job; None when there is nothing to run."""
        args = parse_argstring(self.burst, line)
        if not cell.strip():
            raise UsageError("The %%burst cell is empty: put the code to run below the %%burst line.")
        _check_out(args.out)
        if args.handle is not None:
            _check_out(args.handle, "--handle")
            if not args.no_wait:
                raise UsageError("--handle names the handle of a --no-wait job; add --no-wait (or drop --handle).")
        user_ns = self._user_ns
        config = _with_image_options(load_config(), args)
        options = {name: getattr(args, name) for name in job_options.NAMES}
        if args.map:
            target, names, expr = parse_map(" ".join(args.map))
            spec = build_spec(config, mode="map", source=cell, map_expr=expr, **options)
            items = self._evaluate_items(expr)
        else:
            target, names, items = None, (), None
            spec = build_spec(config, mode="single", source=cell, **options)
        analysis = analyze_cell(cell, names)
        refuse_undefined_names(cell, analysis, user_ns)
        namespace = select_namespace(analysis.needed, user_ns)
        refuse_open_files(namespace)
        program = CellProgram(
            cell,
            namespace,
            target,
            analysis.assigned,
            sources=sourcemap.collect(namespace.values(), cell_label),
            label=calling_cell_label() or "",
            header=f"%%burst {line}\n",
        )
        try:
            chunks = serialize.dumps_chunks(program)
        except Exception:
            check_picklable(namespace)  # names the culprit
            raise
        if items is not None and not items:
            user_ns[args.out] = []
            print(f"--map {expr} has no items; {args.out} = []")
            return None
        tasks = len(items) if items is not None else 1
        handle = Launcher(config).submit(
            spec,
            program,
            items,
            program_chunks=chunks,
            start=False,
            subscribers=[_image_progress(self.shell)],
            detach=args.no_wait,
        )
        plan = handle.plan
        waves = f" in {plan.waves} waves" if plan.waves > 1 else ""
        hourly = (
            plan.concurrency
            * 3600
            * pricing.per_second(
                pricing.rate_for(spec.region, spec.arch, spot=spec.spot), spec.cpu_units, spec.memory_mib
            )
        )
        where = "what Fargate would charge" if spec.backend == "local" else f"Fargate{' Spot' if spec.spot else ''}"
        print(
            f"burst job {handle.id}: {_plural(tasks, 'task')} on {_plural(plan.workers, 'worker')}{waves} "
            f"({spec.backend}, {spec.describe_size()} each; ${hourly:.2f}/hour while {plan.concurrency} run, "
            f"{where})" + (" - detached: it goes on without this kernel" if args.no_wait else ""),
            flush=True,
        )
        for note in _plan_notes(plan, spec, hourly):
            print(f"note: {note}", flush=True)
        self._show_progress(handle, tasks, quiet=args.no_wait, defer=not args.no_wait)
        handle.start()
        return handle, args, items is None

    def _show_progress(self, handle: Any, tasks: int, quiet: bool = False, defer: bool = False) -> None:
        """A live widget where a front end can render one, else a text progress line (none when `quiet`: a
        detached job in a terminal must not write over the prompt). With `defer` the widget waits for the cell
        (self._deferred; display/deferred.py): a job that ends within LIVE_VIEW_DELAY shows only its summary."""
        spec = handle.spec
        view = JobView(handle.id, total=tasks, name=spec.name, backend=spec.backend, region=spec.region)
        view.on_error = getattr(spec, "on_error", "raise")
        widget = None
        if _in_kernel(self.shell):
            try:
                from starburst_jupyter.display.deferred import DeferredWidget
                from starburst_jupyter.display.widget import RENDER_INTERVAL, JobWidget
            except ImportError:
                pass
            else:

                def make() -> JobWidget:
                    return JobWidget(
                        view,
                        handle.cancel,
                        handle.stop_worker,
                        size=spec.describe_size(),
                        cancellable=_async_cells(self.shell),
                    )

                if defer:
                    live = self._deferred[handle.id] = DeferredWidget(view, make, spec.describe_size())
                    handle.events.subscribe(Throttled(view, live.render, interval=RENDER_INTERVAL))
                    return
                widget = make()
                widget.display()  # the job's summary replaces it, in the same display, when it ends

        if widget is None:
            if quiet:
                return
            handle.events.subscribe(
                Throttled(view, TextProgress(sys.stdout, in_place=True), interval=0.5), *PROGRESS_EVENTS
            )
            return

        def render(current: JobView) -> None:
            trace("widget: render", job=current.job_id, state=current.state, done=current.done)
            (widget.settle if current.ended else widget.render)(current)

        handle.events.subscribe(Throttled(view, render, interval=RENDER_INTERVAL))

    def _conclude(self, result: JobResult, args: Any, single: bool, on_error: str) -> Any:
        if result.state == "cancelled":
            kind = BurstTimeout if result.cancelled_by == "timeout" else BurstCancelled
            raise kind(self._keep_partial(result, args, single), job_id=result.job_id)
        return self._deliver(result, args, single, on_error)

    def _interrupted(self, handle: Any, args: Any, single: bool) -> BurstInterrupted:
        """The stop button ended the wait (the job is cancelled by now): one line says so, no stack."""
        result = handle.outcome
        if result is None:
            return BurstInterrupted(f"Job {handle.id} was interrupted; %burst_status {handle.id} shows how it ended.")
        return BurstInterrupted(self._keep_partial(result, args, single), job_id=result.job_id)

    def _keep_partial(self, result: JobResult, args: Any, single: bool) -> str:
        """A cancelled map still hands over what finished (unfinished slots hold TaskCancelled); returns the one
        sentence that says so, for the error the cell ends with."""
        finished = sum(1 for v in result.values if not isinstance(v, BaseException))
        where = ""
        if not single:
            self._user_ns[args.out] = result.values
            where = f"; their results are in {args.out!r}"
        return (
            f"Job {result.job_id} was cancelled: {result.message}. {finished} of {len(result.values)} items had "
            f"finished{where}. No worker of the job is left running."
        )

    def _evaluate_items(self, expr: str) -> list[Any]:
        try:
            value = eval(expr, self._user_ns)  # the user's own expression, in their namespace
        except Exception as exc:
            raise BurstValidationError(f"--map: evaluating {expr!r} failed: {type(exc).__name__}: {exc}") from None
        try:
            return list(value)
        except TypeError:
            raise BurstValidationError(
                f"--map: {expr!r} gave a {type(value).__name__}, which is not iterable."
            ) from None

    def _deliver(self, result: JobResult, args: Any, single: bool, on_error: str) -> Any:
        if single:
            return self._deliver_single(result)
        self._user_ns[args.out] = result.values
        _show_map_outputs(result)
        print(_summary(result, len(result.values)) + f"; results in {args.out}")
        if result.failures and on_error == "raise":
            raise BurstError(
                result.failure_report() + f"\n\nAll {len(result.values)} results are in {args.out!r} "
                f"(failed slots hold the exception).",
                job_id=result.job_id,
                failures=result.failures,
            )
        return None

    def _deliver_single(self, result: JobResult) -> Any:
        stdout, stderr = result.outputs.get(0, ("", ""))
        if stdout:
            sys.stdout.write(stdout)
        if stderr:
            sys.stderr.write(stderr)
        if result.failures:
            raise BurstError(result.failure_report(), job_id=result.job_id, failures=result.failures)
        values = result.values[0]
        self._user_ns.update(values.names)
        for name, why in values.dropped.items():
            print(
                f"warning: {name!r} was assigned on the worker but cannot come back ({why}); it was not set here.",
                file=sys.stderr,
            )
        if values.value_dropped:
            print(
                f"warning: the cell's value (its last line) cannot come back from the worker ({values.value_dropped}); "
                f"it is not shown. Assign plain data to a name, or end the cell with a value that can be pickled.",
                file=sys.stderr,
            )
        return values.value if values.has_value else None

    @line_magic
    def burst_status(self, line: str) -> None:
        """%burst_status [JOB]: every job in the job store, or one job in detail.

        In a kernel: a live table (running jobs first, Cancel and Details per row); elsewhere the text table."""
        jobs = commands.Jobs()
        record = None
        if line.strip():
            try:
                record = jobs.record(line).to_json()  # (this machine's, or the bucket's)
            except KeyError as exc:
                raise UsageError(exc.args[0]) from None
        here = record is None or (jobs.store.job_dir(record["id"]) / "record.json").exists()
        if _in_kernel(self.shell) and here:  # (the live table reads this machine's store; a bucket's job: text)
            try:
                from starburst_jupyter.display.status_widget import show_status
            except ImportError:  # no ipywidgets: the text table
                pass
            else:
                show_status(record["id"] if record else None, store=jobs.store)
                return
        print(jobs.status_text(record["id"] if record else None))

    @magic_arguments()
    @argument("job", help="job id or unique prefix (see %%burst_status)")
    @argument("--worker", type=int, help="only this worker's log")
    @argument("--tail", type=int, default=200, metavar="N", help="the last N lines of each log (default 200; 0: all)")
    @line_magic
    def burst_logs(self, line: str) -> None:
        """%burst_logs JOB [--worker N] [--tail N]: the logs of a job's workers, the last 200 lines of each by
        default (a line says how many were cut), so a long log does not flood the notebook."""
        args = parse_argstring(self.burst_logs, line)
        if args.tail < 0:
            raise UsageError(f"--tail {args.tail}: give a number of lines, 0 or more (0: all)")
        try:
            logs = commands.Jobs().logs(args.job, args.worker)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        print(commands.logs_text(commands.tail_logs(logs, args.tail)[0]))

    @line_magic
    def burst_doctor(self, line: str) -> None:
        """%burst_doctor: check the fargate set-up, read-only (credentials, region, set-up, bucket, worker image,
        subnets, vCPU quota, task and driver roles): each problem with the one command that fixes it."""
        print(commands.doctor()[0])

    @line_magic
    def burst_cancel(self, line: str) -> None:
        """%burst_cancel JOB: cancel a job, also one whose kernel is gone."""
        if not line.strip():
            raise UsageError("Usage: %burst_cancel JOB_ID (see %burst_status)")
        try:
            record = commands.Jobs().cancel(line, "cancelled with %burst_cancel")
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        print(commands.cancel_text(record))

    @magic_arguments()
    @argument("job", help="job id or unique prefix (see %%burst_status)")
    @argument("--out", default="burst_results", help="name of the list that receives a map's results")
    @argument("--no-wait", action="store_true", help="return the job's handle at once; results land in --out")
    @line_magic
    def burst_attach(self, line: str) -> Any:
        """%burst_attach JOB [--out NAME] [--no-wait]: follow a job launched elsewhere (a detached job, or one whose
        kernel died: it kept running) and collect its results, from this machine or any with the same bucket."""
        from types import SimpleNamespace

        args = parse_argstring(self.burst_attach, line)
        _check_out(args.out)
        launcher = Launcher()
        try:
            record, _ = launcher.job_record(args.job)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        try:
            local = launcher.store.find_record(record.id)
        except KeyError:
            local = None
        detached = record.owner.detached or local is None
        handle = launcher.follow(record.id, start=False) if detached else launcher.attach(record.id, start=False)
        single = handle.spec.mode == "single"
        out = SimpleNamespace(out=args.out, no_wait=args.no_wait)
        how = "its driver runs apart from any kernel" if detached else "its kernel left"
        print(f"attached to burst job {handle.id} ({record.done}/{record.total} items done; {how})", flush=True)
        self._show_progress(handle, int(record.total), quiet=args.no_wait)
        handle.start()
        if args.no_wait:
            return self._detached(handle, SimpleNamespace(out=args.out, handle=None), single)
        try:
            result = handle.wait()
        except KeyboardInterrupt:
            if detached:  # the job goes on without us: only the waiting stops
                raise BurstInterrupted(
                    f"Stopped waiting; job {handle.id} goes on. %burst_attach {handle.id} collects it later, "
                    f"%burst_cancel {handle.id} ends it.",
                    job_id=handle.id,
                ) from None
            handle.cancel("interrupted (stop button / Ctrl-C)")
            handle.wait()
            raise self._interrupted(handle, out, single) from None
        return self._conclude(result, out, single, handle.spec.on_error)

    @magic_arguments()
    @argument("--push", action="store_true", default=None, help="also push to ECR (default: when backend is fargate)")
    @argument(
        "--requirements", metavar="FILE", help="build from this requirements file instead of the kernel's packages"
    )
    @argument("--platform", choices=sorted(PLATFORMS), help="the image's platform (the Fargate architecture)")
    @line_magic
    def burst_rebuild(self, line: str) -> None:
        """%burst_rebuild [--push] [--requirements FILE] [--platform P]: build this environment's worker image now."""
        args = parse_argstring(self.burst_rebuild, line)
        print(commands.image_build(_with_image_options(load_config(), args), push=args.push))

    @magic_arguments()
    @argument("--dry-run", action="store_true", help="print the plan, change nothing")
    @line_magic
    def burst_setup(self, line: str) -> None:
        """%burst_setup [--dry-run]: create (once) what the fargate backend needs in AWS and save it to the config."""
        args = parse_argstring(self.burst_setup, line)
        print(commands.setup(dry_run=args.dry_run))

    @line_magic
    def burst_config(self, line: str) -> None:
        """%burst_config [key=value ...]: show or set defaults (saved to $STARBURST_HOME/config.toml)."""
        if line.strip():
            try:
                path = commands.config_set(line)
            except BurstValidationError as exc:
                raise UsageError(str(exc)) from None
            print(f"saved to {path}")
        print(commands.config_text())
