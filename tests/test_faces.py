"""The faces over one table and one commands layer: the job options table generates the %%burst arguments and
the Python keywords, refuses non-finite numbers and caps --keep-warm on every face; the commands layer serves
the magics, the CLI and the server (cancel works with a broken config.toml); the extension really unloads."""

from __future__ import annotations

import inspect
import json
import socket
import time

import pytest
from IPython.utils.capture import capture_output

from starburst_jupyter import BurstExecutor, burst_map, commands
from starburst_jupyter.core import options
from starburst_jupyter.core.config import Config, load_config, save_values
from starburst_jupyter.core.spec import build_spec
from starburst_jupyter.errors import BurstConfigError, BurstError, BurstValidationError
from starburst_jupyter.stores.records import JobStore


def square(x):
    return x * x


def run(ip, source: str):
    with capture_output() as captured:
        result = ip.run_cell(source)
    return result, captured.stdout + captured.stderr


# ----- the options table --------------------------------------------------------------------------------------


def test_every_option_is_a_magic_argument_with_the_tables_help(ip):
    parser = ip.magics_manager.registry["BurstMagics"].burst.parser
    actions = {flag: action for action in parser._actions for flag in action.option_strings}
    for option in options.OPTIONS:
        assert option.flag in actions, f"%%burst has no {option.flag}"
        assert actions[option.flag].help.replace("%%", "%") == option.description
        assert actions[option.flag].dest == option.name
    face_only = {"--map", "--out", "--requirements", "--platform", "--no-wait", "--handle"}
    assert set(actions) == {o.flag for o in options.OPTIONS} | face_only
    shown = ip.magics_manager.magics["cell"]["burst"].__doc__
    assert "--keep-warm MINUTES" in shown and "about 70% cheaper" in shown and "--retries N" in shown


@pytest.mark.parametrize("face", [burst_map, BurstExecutor.__init__])
def test_every_option_is_a_typed_keyword_of_the_python_face(face):
    parameters = inspect.signature(face).parameters
    for option in options.OPTIONS:
        assert option.name in parameters, f"{face.__qualname__} has no keyword {option.name}"
        assert parameters[option.name].default is None
        assert parameters[option.name].annotation == option.annotation


def test_build_spec_accepts_exactly_the_table():
    given = dict(spot=True, keep_warm=5, retries=0, max_result_bytes="1MB", cpu=2, memory="4GB")
    spec = build_spec(Config(), mode="map", **given)
    assert (spec.spot, spec.keep_warm, spec.retries, spec.max_result_bytes, spec.cpu_units) == (
        True,
        5.0,
        0,
        1024 * 1024,
        2048,
    )
    with pytest.raises(BurstValidationError, match="Unknown job option"):
        build_spec(Config(), mode="map", colour="blue")


@pytest.mark.parametrize("name", ["timeout", "max_cost", "cpu", "keep_warm", "memory"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), "nan", "-inf"])
def test_non_finite_numbers_are_refused(name, value):
    with pytest.raises(BurstValidationError, match=options.BY_NAME[name].flag):
        build_spec(Config(), mode="map", **{name: value})


@pytest.mark.parametrize("key", ["timeout", "max_cost", "keep_warm", "cpu"])
def test_non_finite_numbers_are_refused_as_config_values(key):
    with pytest.raises(BurstConfigError, match=f"Config {key}="):
        save_values({key: "nan"})
    with pytest.raises(BurstConfigError, match=f"Config {key}="):
        Config().with_values({key: float("inf")})


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("--timeout nan", "--timeout nan must be a finite number"),
        ("--max-cost inf", "--max-cost inf must be a finite number"),
        ("--cpu nan", "--cpu 'nan' is not a finite number"),
        ("--keep-warm nan", "--keep-warm nan must be a finite number"),
        ("--keep-warm 61", "--keep-warm 61 must be between 0 and 60 minutes"),
        ("--retries -1", "--retries -1 must be a whole number"),
    ],
)
def test_the_magic_refuses_before_launch(ip, starburst_home, line, fragment):
    result, shown = run(ip, f"%%burst {line}\nx = 1")
    assert isinstance(result.error_in_exec, BurstValidationError), shown
    assert fragment in str(result.error_in_exec) and fragment in shown
    assert not (starburst_home / "jobs").exists() or not any((starburst_home / "jobs").iterdir())


def test_keep_warm_is_capped_on_every_face(starburst_home):
    with pytest.raises(BurstValidationError, match="between 0 and 60 minutes"):
        burst_map(square, [1], keep_warm=61)
    with pytest.raises(BurstValidationError, match="between 0 and 60 minutes"):
        BurstExecutor(keep_warm=120)
    with pytest.raises(BurstConfigError, match="between 0 and 60 minutes"):
        save_values({"keep_warm": "61"})
    assert save_values({"keep_warm": "60"}) and load_config().keep_warm == 60
    assert not (starburst_home / "jobs").exists() or not any((starburst_home / "jobs").iterdir())


def test_misspelt_keyword_is_a_type_error_naming_the_meant_one():
    with pytest.raises(TypeError, match="unexpected keyword argument 'wokers' \\(did you mean 'workers'\\?\\)"):
        burst_map(square, [1], wokers=2)
    with pytest.raises(TypeError, match="'keepwarm'"):
        BurstExecutor(keepwarm=1)


def test_new_keywords_reach_the_job(starburst_home):
    assert burst_map(square, [1, 2, 3], workers=1, retries=0, spot=True, name="kw") == [1, 4, 9]
    [record] = JobStore().list()
    assert record["spec"]["retries"] == 0 and record["spec"]["spot"] is True and record["name"] == "kw"


# ----- the commands layer ---------------------------------------------------------------------------------------


def _running_record(job_id: str) -> dict:
    """A running local job whose kernel is gone (its record went silent an hour ago), with no live worker."""
    now = time.time()
    return {
        "id": job_id,
        "name": "",
        "backend": "local",
        "state": "running",
        "message": "",
        "created": now - 3600,
        "started": now - 3600,
        "updated": now - 3600,
        "finished": None,
        "spec": {"mode": "map", "backend": "local", "cpu_units": 1024, "memory_mib": 2048, "name": ""},
        "total": 2,
        "done": 0,
        "failed": 0,
        "outcomes": "RP",
        "failures": [],
        "workers": {"0": {"pid": 999999, "started": now - 3600, "ended": None, "exit_code": None}},
        "owner": {"pid": 999999, "host": socket.gethostname()},
    }


def test_cancel_needs_no_job_defaults(starburst_home, capsys):
    from starburst_jupyter.cli import main

    JobStore().write(_running_record("bj-20260101-000000-aaaaaa"))
    JobStore().write(_running_record("bj-20260101-000000-bbbbbb"))
    (starburst_home / "config.toml").write_text('timeout = "nan"\nworkers = 0\n')
    with pytest.raises(BurstConfigError):
        load_config()  # the config is refused for new jobs ...
    record = commands.Jobs().cancel("bj-20260101-000000-aaaaaa", "cancelled in a test")  # ... not for cancel
    assert record["state"] == "cancelled" and "cancelled in a test" in record["message"]
    (starburst_home / "config.toml").write_text("workers = [")  # not even TOML
    assert main(["cancel", "bj-20260101-000000-bbbbbb"]) == 0
    assert "cancelled" in capsys.readouterr().out
    assert JobStore().read("bj-20260101-000000-bbbbbb")["state"] == "cancelled"


def test_cancel_from_the_magic_with_a_broken_config(ip, starburst_home):
    JobStore().write(_running_record("bj-20260101-000000-cccccc"))
    (starburst_home / "config.toml").write_text("keep_warm = 500\n")
    result, shown = run(ip, "%burst_cancel bj-20260101-000000-cccccc")
    assert result.success, shown
    assert "job bj-20260101-000000-cccccc: cancelled" in shown


def test_config_for_existing_jobs_keeps_what_it_can_read(starburst_home):
    (starburst_home / "config.toml").write_text('region = "eu-west-1"\ntimeout = "nan"\ncluster = "mine"\n')
    config = commands.config_for_existing_jobs()
    assert (config.region, config.cluster, config.timeout) == ("eu-west-1", "mine", Config().timeout)


def test_config_status_and_logs_commands(starburst_home):
    path = commands.config_set("workers=3 memory=4GB")
    assert path == starburst_home / "config.toml"
    assert "workers = 3" in commands.config_text() and "memory = '4GB'" in commands.config_text()
    with pytest.raises(BurstConfigError, match="workers='zero' refused"):
        commands.config_set({"workers": "zero"})
    burst_map(print, ["hello from item"], workers=1, name="cmd")
    jobs = commands.Jobs()
    [record] = jobs.list()
    assert "cmd" in jobs.status_text() and "waves:" in jobs.status_text(record["id"][:15])
    with pytest.raises(KeyError, match="No job matches"):
        jobs.find("bj-nope")
    logs = jobs.logs(record["id"])
    assert "hello from item" in jobs.log(record["id"], 0)
    assert commands.logs_text(logs).startswith("----- worker 0 -----")
    assert jobs.cancel(record["id"])["state"] == "done"  # a finished job stays done
    assert commands.cancel_text(jobs.find(record["id"])) == f"job {record['id']}: done"


def test_commands_import_no_ipython():
    import subprocess
    import sys

    code = "import sys, starburst_jupyter.commands, starburst_jupyter.core.options; print('IPython' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ----- the server's one service -----------------------------------------------------------------------------------


def test_server_extension_holds_one_service_in_the_settings(starburst_home):
    pytest.importorskip("jupyter_server")
    from types import SimpleNamespace

    from starburst_jupyter.server import Service, _load_jupyter_server_extension

    routes: list = []
    web_app = SimpleNamespace(settings={"base_url": "/"}, add_handlers=lambda host, handlers: routes.extend(handlers))
    log = SimpleNamespace(info=lambda *args: None)
    _load_jupyter_server_extension(SimpleNamespace(web_app=web_app, log=log))
    service = web_app.settings["starburst"]
    assert isinstance(service, Service) and routes
    assert service.index.store.home == service.jobs.store.home
    assert service.jobs.launcher is service.jobs.launcher  # one launcher for logs and cancel
    JobStore().write(_running_record("bj-20260101-000000-dddddd"))
    (starburst_home / "config.toml").write_text("workers = [")
    assert service.jobs.cancel("bj-20260101-000000-dddddd", "from the sidebar")["state"] == "cancelled"
    json.dumps(service.index.records())  # still lists


# ----- the extension ----------------------------------------------------------------------------------------------


def test_burst_errors_render_as_their_message_without_patching():
    assert "_render_traceback_" in BurstError.__dict__
    assert BurstError("boom")._render_traceback_() == ["BurstError: boom"]


def test_unload_really_unloads_and_load_works_again(ip):
    manager = ip.magics_manager
    transformers = len(ip.input_transformers_cleanup)
    try:
        ip.run_line_magic("unload_ext", "starburst_jupyter")
        assert "burst" not in manager.magics["cell"]
        assert not {"burst_status", "burst_cancel", "burst_config"} & set(manager.magics["line"])
        assert "BurstMagics" not in manager.registry
        assert len(ip.input_transformers_cleanup) == transformers - 1
        result, shown = run(ip, "%%burst\nx = 1")
        assert not result.success and "x" not in ip.user_ns
        assert "not found" in shown or "not found" in repr(result.error_in_exec or result.error_before_exec)
    finally:
        ip.run_line_magic("load_ext", "starburst_jupyter")
    assert "burst" in manager.magics["cell"] and len(ip.input_transformers_cleanup) == transformers
    result, shown = run(ip, "%%burst\nx = 6 * 7")
    assert result.success, shown
    assert ip.user_ns["x"] == 42
    ip.run_line_magic("reload_ext", "starburst_jupyter")  # reload replaces, never doubles
    assert len(ip.input_transformers_cleanup) == transformers
