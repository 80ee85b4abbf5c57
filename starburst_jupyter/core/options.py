"""The job options, each written once: name, Python type, help, which backends it applies to, and the rule
that refuses a bad value. The `%%burst` arguments, the keywords of `burst_map`/`BurstExecutor` and what
`build_spec` accepts are generated from `OPTIONS`; a value left out (None) takes the config's default.

Face-only flags (`--map`, `--out`, `--no-wait`, `--handle`, `--requirements`, `--platform`) are not job
options: they stay with the faces. This module imports neither IPython nor the config (the config imports
rules from here).
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from starburst_jupyter.core.sizes import parse_bytes, parse_cpu, parse_memory
from starburst_jupyter.errors import BurstValidationError

if TYPE_CHECKING:
    from starburst_jupyter.core.config import Config

ON_ERROR = ("raise", "keep")
KEEP_WARM_MAX_MINUTES = 60.0
_NAME_RE = re.compile(r"^[\w .:@+-]{1,64}$")


# ----- rules (value -> normalised value, or BurstValidationError naming the option) -----------------


def finite_number(value: Any, flag: str, unit: str = "") -> float:
    """A real, finite number: nan and inf would silently disable a timeout or a cost cap."""
    if isinstance(value, bool):
        raise BurstValidationError(f"{flag} {value!r} is not a number{unit}.")
    try:
        number = float(value.strip().lstrip("$") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise BurstValidationError(f"{flag} {value!r} is not a number{unit}.") from None
    if not math.isfinite(number):
        raise BurstValidationError(f"{flag} {value!r} must be a finite number{unit} (nan and inf are refused).")
    return number


#: The most minutes one `extend` gives a job: a year. A deadline moves by at most that much per call, so it stays
#: a date every clock and format can show (1e307 minutes overflowed to infinity, then to an OverflowError).
MAX_EXTEND_MINUTES = 366 * 24 * 60.0
#: The longest a caller may ask to wait for a job (`collect --timeout`, `wait(timeout)`): what threading can wait
#: (threading.TIMEOUT_MAX, about 292 years); a longer one raised OverflowError from deep in the wait.
MAX_WAIT_SECONDS = float(threading.TIMEOUT_MAX)


def check_minutes(minutes: Any, job_id: str | None = None, what: str = "") -> float:
    """The minutes `extend` may add to a job's deadline: a finite number above 0 and at most a year
    (BurstValidationError naming the value, `what` was called (default `extend(...)`) and the job otherwise;
    the caller writes nothing)."""
    what = what or f"extend({minutes!r})"
    job = f" of job {job_id}" if job_id else ""
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)):
        raise BurstValidationError(f"{what}{job}: give a number of minutes.", job_id=job_id)
    if not math.isfinite(minutes) or not 0 < minutes <= MAX_EXTEND_MINUTES:
        raise BurstValidationError(
            f"{what}{job}: give a positive number of minutes, at most {MAX_EXTEND_MINUTES:,.0f} (a year); the "
            f"deadline was not changed.",
            job_id=job_id,
        )
    return float(minutes)


def check_wait_seconds(seconds: Any, what: str = "timeout", job_id: str | None = None) -> float | None:
    """How long a caller waits for a job: None (until it ends), or a finite number of seconds from 0 to
    MAX_WAIT_SECONDS (BurstValidationError naming `what`, the value and the job otherwise)."""
    if seconds is None:
        return None
    job = f" (job {job_id})" if job_id else ""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise BurstValidationError(f"{what} {seconds!r}{job}: give a number of seconds.", job_id=job_id)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise BurstValidationError(
            f"{what} {seconds!r}{job}: give seconds from 0 to {MAX_WAIT_SECONDS:,.0f} (about 292 years), or none "
            f"to wait until the job ends.",
            job_id=job_id,
        )
    return float(seconds)


def keep_warm_minutes(value: Any) -> float:
    """The one rule for keep-warm, used by the options and by the config key of the same name."""
    minutes = finite_number(value, "--keep-warm", " of minutes")
    if not 0 <= minutes <= KEEP_WARM_MAX_MINUTES:
        raise BurstValidationError(
            f"--keep-warm {minutes:g} must be between 0 and {KEEP_WARM_MAX_MINUTES:g} minutes "
            "(warm workers are billed)."
        )
    return minutes


def _backend(value: Any, config: Config) -> str:
    from starburst_jupyter.core.config import BACKENDS

    backend = str(value).lower()
    if backend not in BACKENDS:
        raise BurstValidationError(f"Unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
    return backend


def _workers(value: Any, config: Config) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BurstValidationError(f"--workers {value!r} must be a whole number.")
    if value < 1:
        raise BurstValidationError(f"--workers {value} must be at least 1.")
    if value > config.max_workers:
        raise BurstValidationError(
            f"--workers {value} is above the maximum of {config.max_workers}; lower it, or raise "
            f"the limit with %burst_config max_workers={value}."
        )
    return value


def _cpu(value: Any, config: Config) -> int:
    return parse_cpu(value)


def _memory(value: Any, config: Config) -> int:
    return parse_memory(value)


def _timeout(value: Any, config: Config) -> float:
    seconds = finite_number(value, "--timeout", " of seconds")
    if seconds <= 0:
        raise BurstValidationError(f"--timeout {seconds:g} must be above 0 seconds.")
    return seconds


def _on_error(value: Any, config: Config) -> str:
    text = str(value)
    if text not in ON_ERROR:
        raise BurstValidationError(f"--on-error {text!r} must be one of {', '.join(ON_ERROR)}.")
    return text


def _max_result_bytes(value: Any, config: Config) -> int:
    return parse_bytes(value, "--max-result-bytes")


def _max_cost(value: Any, config: Config) -> float | None:
    if value is None:
        return None
    usd = finite_number(value, "--max-cost", " of USD")
    if usd <= 0:
        raise BurstValidationError(f"--max-cost {value} must be above 0 USD.")
    return usd


def _retries(value: Any, config: Config) -> int:
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise BurstValidationError(f"--retries {value!r} must be a whole number of 0 or more.")
    return int(str(value).strip())


def _name(value: Any, config: Config) -> str:
    name = str(value or "")
    if name and not _NAME_RE.match(name):
        raise BurstValidationError(f"--name {name!r}: use up to 64 letters, digits, spaces and . : @ + - _ characters.")
    return name


def _spot(value: Any, config: Config) -> bool:
    return bool(value)


def _keep_warm(value: Any, config: Config) -> float:
    return keep_warm_minutes(value)


# ----- the table -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobOption:
    name: str  # the Python keyword, the config key (when there is one) and, with dashes, the flag
    annotation: str  # the keyword's type, as the API's signature shows it
    help: str  # plain text (no %% escaping): what `%%burst?` and `help(burst_map)` show
    check: Callable[[Any, Config], Any]  # the merged value (option, else config default) -> spec value
    spec_field: str = ""  # JobSpec field, when it is not `name`
    config_key: str | None = ""  # "" means `name`; None means no config default (the default is None)
    backends: tuple[str, ...] = ()  # empty: every backend
    argparse: dict[str, Any] = field(default_factory=dict)  # type/metavar/choices/action for the magic

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def field(self) -> str:
        return self.spec_field or self.name

    @property
    def description(self) -> str:
        return f"{'/'.join(self.backends)}: {self.help}" if self.backends else self.help

    def default(self, config: Config) -> Any:
        key = self.name if self.config_key == "" else self.config_key
        return getattr(config, key) if key else None


OPTIONS: tuple[JobOption, ...] = (
    JobOption(
        "workers",
        "int | None",
        "number of workers (default: as many as the backend's quota allows)",
        _workers,
        argparse={"type": int},
    ),
    JobOption(
        "cpu",
        "float | str | None",
        "vCPUs per worker: 0.25, 0.5, 1, 2, 4, 8 or 16",
        _cpu,
        spec_field="cpu_units",
    ),
    JobOption(
        "memory",
        "str | None",
        "memory per worker, e.g. 4GB or 512MB (must pair with --cpu as on Fargate)",
        _memory,
        spec_field="memory_mib",
    ),
    JobOption(
        "backend",
        "str | None",
        "local, docker or fargate (default from %burst_config, else local)",
        _backend,
    ),
    JobOption(
        "on_error",
        "str | None",
        "raise one BurstError after all items ran, or keep exceptions in the results list",
        _on_error,
        argparse={"choices": list(ON_ERROR)},
    ),
    JobOption(
        "timeout",
        "float | None",
        "seconds before the whole job is cancelled",
        _timeout,
        argparse={"type": float},
    ),
    JobOption(
        "name",
        "str | None",
        "a label for the job in %burst_status",
        _name,
        config_key=None,
    ),
    JobOption(
        "max_cost",
        "float | None",
        "cancel the job before its cost passes this many USD",
        _max_cost,
        argparse={"type": float, "metavar": "USD"},
    ),
    JobOption(
        "spot",
        "bool | None",
        "run on Fargate Spot (about 70% cheaper; interrupted work is retried)",
        _spot,
        backends=("fargate",),
        argparse={"action": "store_true", "default": None},
    ),
    JobOption(
        "keep_warm",
        "float | None",
        f"finished workers wait this long for the next job of the same size (no cold start; billed; at most "
        f"{KEEP_WARM_MAX_MINUTES:g})",
        _keep_warm,
        backends=("fargate",),
        argparse={"type": float, "metavar": "MINUTES"},
    ),
    JobOption(
        "retries",
        "int | None",
        "times an item whose worker died is tried again before it is reported as WorkerLost",
        _retries,
        argparse={"type": int, "metavar": "N"},
    ),
    JobOption(
        "max_result_bytes",
        "int | str | None",
        "largest result one item may send back, e.g. 64MB (a larger one fails as ResultTooLarge)",
        _max_result_bytes,
        argparse={"metavar": "SIZE"},
    ),
)
BY_NAME: dict[str, JobOption] = {option.name: option for option in OPTIONS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


class JobOptions(TypedDict, total=False):
    """The job options as keywords (for type checkers: `**options: Unpack[JobOptions]`); None = config default."""

    workers: int | None
    cpu: float | str | None
    memory: str | None
    backend: str | None
    on_error: str | None
    timeout: float | None
    name: str | None
    max_cost: float | None
    spot: bool | None
    keep_warm: float | None
    retries: int | None
    max_result_bytes: int | str | None


assert tuple(JobOptions.__annotations__) == NAMES, "JobOptions must list the OPTIONS table's names, in order"


# ----- what the faces and build_spec generate from the table -----------------------------------------


def resolve(config: Config, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's spec value: the given one, else the config's default, checked by the option's rule.
    Returns {JobSpec field: value}; refuses unknown names."""
    unknown = set(given) - set(BY_NAME)
    if unknown:
        raise BurstValidationError(f"Unknown job option(s): {', '.join(sorted(unknown))}.")
    values = {}
    for option in OPTIONS:
        value = given.get(option.name)
        if value is None:
            value = option.default(config)
        values[option.field] = option.check(value, config)
    return values


def check_keywords(function: str, given: Mapping[str, Any]) -> None:
    """A misspelt keyword is a TypeError as for any Python function, with the likely meant name."""
    for key in given:
        if key not in BY_NAME:
            close = difflib.get_close_matches(key, NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"{function}() got an unexpected keyword argument {key!r}{hint}")


def magic_arguments() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """(flags, argparse keywords) per option, for IPython's `@argument` (argparse help escapes %)."""
    return [((option.flag,), {**option.argparse, "help": option.description.replace("%", "%%")}) for option in OPTIONS]


def keyword_parameters() -> list[inspect.Parameter]:
    """The options as keyword-only parameters (default None), for a generated `__signature__`."""
    return [
        inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option.annotation)
        for option in OPTIONS
    ]


def keyword_doc(indent: str = "") -> str:
    """The options' help, for the docstrings of the Python face (`indent`: the docstring's own)."""
    lines = ["Job options (keywords; None or left out: the config's default, see %burst_config):"]
    lines += [f"    {option.name} ({option.annotation}): {option.description}" for option in OPTIONS]
    return "\n".join(indent + line for line in lines)


def generated_signature(function: Callable[..., Any], *, skip: tuple[str, ...] = ()) -> inspect.Signature:
    """`function`'s own parameters with its `**options` replaced by one keyword per job option."""
    own = [p for p in inspect.signature(function).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    options = [p for p in keyword_parameters() if p.name not in skip]
    positional = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword_only = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    return inspect.Signature(positional + options + keyword_only)
