"""The `starburst` command as a terminal user meets it (issue 16 items 11, 12, and the CLI part of 5): messages
that name CLI commands (not magics) and no "..", `starburst logs` with --tail and --follow, `--version`,
`config --explain`, `status | head` without a BrokenPipe traceback, `setup --print-policy`, setup without
credentials in one line; and %burst_logs cut to the last lines by default."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import cloudpickle
import pytest

from starburst_jupyter import burst_map, commands
from starburst_jupyter.cli import for_terminal, main
from starburst_jupyter.core.config import KEYS
from starburst_jupyter.envimage import missing_image_message
from starburst_jupyter.stores.records import JobStore
from tests.helpers import wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers do not import this module
REPO = Path(__file__).resolve().parents[1]


# ----- messages name CLI commands ------------------------------------------------------------------
def test_messages_written_for_both_faces_name_cli_commands_in_a_terminal():
    assert for_terminal("No job matches 'x'; %burst_status lists the jobs.") == (
        "No job matches 'x'; `starburst status` lists the jobs."
    )
    assert for_terminal(missing_image_message("starburst-worker:abc", "in ECR (us-east-1)")).startswith(
        "No worker image for this environment (starburst-worker:abc) in ECR (us-east-1). Build it with "
        "`starburst image build`, or let jobs build it first with `starburst config auto_build=true`."
    )
    assert (
        for_terminal("Run %burst_setup (or `starburst setup`) once; it creates")
        == "Run `starburst setup` once; it creates"
    )
    assert for_terminal("see %burst_logs bj-1-2 --worker 3 for its output") == (
        "see `starburst logs bj-1-2 --worker 3` for its output"
    )
    assert for_terminal("(or `%burst_attach bj-9`) tries again") == "(or `starburst collect bj-9`) tries again"
    assert for_terminal("set it with %burst_config fargate_vcpu_quota=N (see `starburst quota`).") == (
        "set it with `starburst config fargate_vcpu_quota=N` (see `starburst quota`)."
    )
    # a sentence joined to one that already ended: one period; an ellipsis and a path stay
    assert (
        for_terminal("use one of 0.25, 1 vCPU.. Then retry ... or ../x")
        == "use one of 0.25, 1 vCPU. Then retry ... or ../x"
    )


def test_cli_errors_are_one_line_naming_cli_commands(capsys):
    assert main(["status", "nope"]) == 2
    err = capsys.readouterr().err
    assert err == "starburst status: No job matches 'nope'; `starburst status` lists the jobs.\n"
    assert main(["config", "cpu=4"]) == 2
    err = capsys.readouterr().err
    assert "Set both together, e.g. `starburst config cpu=2 memory=4GB`." in err
    assert "%burst" not in err and ".." not in err and err.count("\n") == 1
    assert main(["logs", "nope"]) == 2
    assert capsys.readouterr().err == "starburst logs: No job matches 'nope'; `starburst status` lists the jobs.\n"


def test_version(capsys):
    from starburst_jupyter import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"starburst-jupyter {__version__}\n"


def test_config_explain_lists_every_key_with_meaning_and_default(capsys):
    assert set(KEYS) <= set(commands.CONFIG_MEANINGS) | {
        "workers", "cpu", "memory", "backend", "on_error", "timeout", "max_cost", "spot", "keep_warm", "retries"
    }  # fmt: skip
    assert main(["config", "workers=8"]) == 0
    capsys.readouterr()
    assert main(["config", "--explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == set(KEYS)
    assert all(
        "[default " in line and len(line.split("[default")[0].split(None, 1)[1].strip()) > 10 for line in rows.values()
    )
    assert "[default None; now 8]" in rows["workers"]
    assert "[default 'us-east-1']" in rows["region"] and "AWS region" in rows["region"]


def test_status_into_a_closed_pipe_ends_quietly(tmp_path):
    """`starburst status | head`: the reader is gone before the first write; no BrokenPipeError traceback."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "STARBURST_HOME": str(tmp_path)}
    for argv in (["status"], ["config", "--explain"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "starburst_jupyter.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        proc.stdout.close()  # as `head` does once it has its lines (here: before any)
        err = proc.stderr.read().decode()
        assert proc.wait(60) == 0, err
        assert err == ""


# ----- logs ----------------------------------------------------------------------------------------
def chatty(x):
    for line in range(300):
        print(f"item {x} line {line}")
    return x


def test_logs_tail_cuts_to_the_last_lines_and_says_how_many_were_cut(capsys, ip):
    assert burst_map(chatty, range(2), workers=1, backend="local") == [0, 1]
    job = JobStore().list()[0]["id"]
    assert main(["logs", job]) == 0  # no --tail in a terminal: the whole log
    whole = capsys.readouterr().out.splitlines()[1:]  # (under its "----- worker 0 -----" line)
    assert "item 0 line 0" in whole and len(whole) > 600
    assert main(["logs", job, "--tail", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "----- worker 0 -----",
        f"[... {len(whole) - 3} earlier line(s) of worker 0 cut; its last 3 follow (--tail 0: all)]",
        *whole[-3:],
    ]
    ip.run_line_magic("burst_logs", job)  # a notebook: the last 200 lines by default
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"[... {len(whole) - 200} earlier line(s) of worker 0 cut; its last 200 follow (--tail 0: all)]"
    assert out[2:] == whole[-200:]
    ip.run_line_magic("burst_logs", f"{job} --tail 0")
    assert capsys.readouterr().out.splitlines()[1:] == whole


def slow_print(x):
    import time

    time.sleep(0.4)
    print(f"working on {x}", flush=True)
    return x


def test_logs_follow_prints_each_new_line_once_until_the_job_ends(capsys):
    result = {}
    runner = threading.Thread(
        target=lambda: result.setdefault("values", burst_map(slow_print, range(8), workers=2, backend="local"))
    )
    runner.start()
    job = wait_for(lambda: (JobStore().list() or [{}])[0].get("id"), timeout=30)
    assert main(["logs", job, "--follow"]) == 0
    runner.join(30)
    captured = capsys.readouterr()
    printed = [line for line in captured.out.splitlines() if "working on" in line]
    assert all(re.fullmatch(r"\[worker [01]\] working on \d", line) for line in printed), printed
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in printed) == list(range(8))  # each line once
    assert f"starburst logs: job {job} ended done" in captured.err
    assert result["values"] == list(range(8))


def test_logs_tail_refuses_a_negative_count(capsys):
    assert main(["logs", "x", "--tail", "-2"]) == 2
    assert "--tail -2: give a number of lines, 0 or more (0: all)" in capsys.readouterr().err


# ----- setup: the policy, no credentials -------------------------------------------------------------
def test_setup_print_policy_is_the_policy_document_and_calls_no_aws(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: a call would fail
    assert main(["setup", "--print-policy"]) == 0
    policy = json.loads(capsys.readouterr().out)
    actions = {a for s in policy["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    services = {action.split(":")[0] for action in actions}
    assert services == {"sts", "s3", "ecr", "ecs", "logs", "iam", "ec2", "servicequotas"}
    assert {"iam:CreateRole", "iam:PassRole", "ec2:CreateVpc", "ecs:RunTask", "s3:PutObject"} <= actions


def test_setup_without_credentials_is_one_clear_line(capsys, monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["setup"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "starburst setup: Set-up in us-east-1 needs AWS credentials: none were found (NoCredentialsError). "
        "Configure them with `aws configure` (or `aws sso login`), then try again.\n"
    )
