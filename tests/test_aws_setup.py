"""`starburst setup` / `teardown` against moto: idempotent, tag-scoped."""

from __future__ import annotations

import pytest

from starburst_jupyter.backends.fargate.setup import set_up
from starburst_jupyter.core.config import load_config

pytestmark = pytest.mark.slow


def test_setup_twice_changes_nothing_and_teardown_leaves_nothing_tagged(moto_server, moto_env):
    from starburst_jupyter.backends.fargate.setup import tear_down

    moto_server.reset()
    config = load_config()
    first, settings = set_up(config)
    assert {s.action for s in first} >= {"create"}
    policy = moto_server.client("s3").get_bucket_policy(Bucket=settings["bucket"])["Policy"]
    assert '"aws:SecureTransport": "false"' in policy
    encryption = moto_server.client("s3").get_bucket_encryption(Bucket=settings["bucket"])
    assert encryption["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    again, settings_again = set_up(load_config())
    assert {s.action for s in again} == {"exists"} and settings_again == settings
    ecs = moto_server.client("ecs")
    assert len(ecs.list_clusters()["clusterArns"]) == 1
    # someone else's bucket of another name stays
    moto_server.client("s3").create_bucket(Bucket="not-ours")
    steps = tear_down(load_config())
    assert {s.kind for s in steps if s.action == "delete"} >= {
        "s3 bucket",
        "ecs cluster",
        "log group",
        "iam role",
        "ecr repository",
        "security group",
    }
    # nothing of ours is left: a new plan would create everything again, and no service lists a starburst resource
    assert [s.action for s in set_up(load_config(), dry_run=True)[0]].count("create") == 8
    assert [b["Name"] for b in moto_server.client("s3").list_buckets()["Buckets"]] == ["not-ours"]
    assert not [r for r in moto_server.client("iam").list_roles()["Roles"] if r["RoleName"].startswith("starburst")]
    clusters = ecs.describe_clusters(clusters=["starburst"])["clusters"]
    assert all(c["status"] != "ACTIVE" for c in clusters)
    assert moto_server.client("logs").describe_log_groups(logGroupNamePrefix="/starburst")["logGroups"] == []
    assert moto_server.client("ecr").describe_repositories()["repositories"] == []
    groups = moto_server.client("ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["starburst-workers"]}]
    )["SecurityGroups"]
    assert groups == []


def test_teardown_keeps_a_same_named_resource_that_is_not_ours(moto_server, moto_env):
    from starburst_jupyter.backends.fargate.setup import tear_down

    moto_server.reset()
    moto_server.client("logs").create_log_group(logGroupName="/starburst/workers")  # someone else's, untagged
    steps = {(s.kind, s.action) for s in tear_down(load_config())}
    assert ("log group", "keep (not ours)") in steps
    assert moto_server.client("logs").describe_log_groups(logGroupNamePrefix="/starburst")["logGroups"]


def test_cli_setup_dry_run_then_setup_then_quota(moto_server, moto_env, capsys):
    from starburst_jupyter.cli import main

    moto_server.reset()
    assert main(["setup", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "create  ecs cluster" in out and "dry run: nothing changed" in out
    assert load_config().bucket is None
    assert main(["setup"]) == 0
    assert load_config().bucket == "starburst-123456789012-us-east-1" and load_config().subnets
    capsys.readouterr()
    assert main(["quota"]) == 0
    out = capsys.readouterr().out
    # moto has no Service Quotas for fargate: said, and the stated default used
    assert "Fargate On-Demand vCPU quota in us-east-1: 6 (default)" in out and "L-3032A538" in out
    assert "workers of 1 vCPU that fit now: 6" in out
    assert main(["teardown", "--yes"]) == 0
    assert load_config().bucket is None


def test_burst_setup_magic_dry_run(moto_server, moto_env, ip, capsys):
    moto_server.reset()
    ip.run_line_magic("burst_setup", "--dry-run")
    assert "create  s3 bucket" in capsys.readouterr().out


def test_cli_image_status_names_the_environment_tag(moto_server, moto_env, capsys):
    from starburst_jupyter import envimage
    from starburst_jupyter.cli import main

    assert main(["image", "status"]) == 0
    out = capsys.readouterr().out
    assert f"tag: {envimage.capture(load_config()).tag}" in out
    assert "ecr: " in out  # found or not (moto has no repository here), never a traceback
