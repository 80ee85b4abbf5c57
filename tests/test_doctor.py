"""`starburst doctor` / `%burst_doctor` on moto: an account set up by our own `starburst setup` passes; then one
thing at a time is broken and the doctor names it, with the one command that fixes it, and exits 1. And a
`--backend fargate` cell without credentials stops before anything is built or started, saying how to fix it."""

from __future__ import annotations

import json

import pytest

from starburst_jupyter.backends.fargate import doctor
from starburst_jupyter.backends.fargate.quota import Quota
from starburst_jupyter.backends.fargate.setup import DRIVER_ROLE, TASK_ROLE, empty_and_delete_bucket, set_up
from starburst_jupyter.cli import main
from starburst_jupyter.core.config import load_config, save_values
from starburst_jupyter.stores.records import JobStore

pytestmark = pytest.mark.slow
SECRET = "sbDOCTORsecretNEVERprinted0123456789abcd"


@pytest.fixture
def account(moto_server, moto_env, monkeypatch):
    """A fresh moto account after `starburst setup`, as a real one looks: the default VPC routes 0.0.0.0/0 to an
    internet gateway (moto's has no gateway), and this environment's worker image is in ECR."""
    from starburst_jupyter import envimage

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    moto_server.reset()
    _, settings = set_up(load_config())
    # moto serves plain HTTP and enforces setup's TLS-only bucket policy (tested in test_aws_setup.py)
    moto_server.client("s3").delete_bucket_policy(Bucket=settings["bucket"])
    ec2 = moto_server.client("ec2")
    vpc = ec2.describe_subnets(SubnetIds=settings["subnets"][:1])["Subnets"][0]["VpcId"]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
    main_table = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"][0]["RouteTableId"]
    ec2.create_route(RouteTableId=main_table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    tag = envimage.capture(load_config()).tag
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json"}
    moto_server.client("ecr").put_image(
        repositoryName=settings["ecr_repository"], imageManifest=json.dumps(manifest), imageTag=tag
    )
    return {**settings, "route_table": main_table, "tag": tag}


def _doctor(capsys) -> tuple[int, str]:
    code = main(["doctor"])
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out and SECRET not in out and "testing" not in out
    return code, out


def test_a_set_up_account_passes_and_leaves_no_probe(account, moto_server, capsys, ip):
    code, out = _doctor(capsys)
    assert code == 0, out
    for name in ("credentials", "region", "set-up", "bucket", "worker image", "subnets", "task role", "driver role"):
        assert f"ok    {name}: " in out, (name, out)
    assert "account 123456789012" in out and "written, read and deleted" in out
    assert "note  vCPU quota: Could not read" in out  # moto has no Fargate quota: said, the default used
    assert out.rstrip().endswith("all checks passed: --backend fargate is ready")
    listed = moto_server.client("s3").list_objects_v2(Bucket=account["bucket"], Prefix="jobs/")
    assert listed.get("KeyCount", 0) == 0  # the probe is gone
    ip.run_line_magic("burst_doctor", "")
    assert "all checks passed" in capsys.readouterr().out


def test_no_credentials(account, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, out = _doctor(capsys)
    assert code == 1
    assert "FAIL  credentials: no AWS credentials found (NoCredentialsError" in out
    assert "fix: aws configure" in out
    assert "skip  bucket: needs credentials" in out and "skip  driver role: needs credentials" in out
    assert out.rstrip().endswith("1 check(s) failed: credentials")


def test_missing_bucket(account, moto_server, capsys):
    empty_and_delete_bucket(moto_server.client("s3"), account["bucket"])
    code, out = _doctor(capsys)
    assert code == 1
    assert f"FAIL  bucket: s3://{account['bucket']} does not exist" in out
    assert "fix: starburst setup  (creates it)" in out
    assert out.rstrip().endswith("1 check(s) failed: bucket")


def test_subnets_without_a_route_out(account, moto_server, capsys):
    ec2 = moto_server.client("ec2")
    ec2.delete_route(RouteTableId=account["route_table"], DestinationCidrBlock="0.0.0.0/0")
    code, out = _doctor(capsys)
    assert code == 1
    assert "has no 0.0.0.0/0 route to an internet gateway or a NAT" in out
    assert "die with ResourceInitializationError" in out
    assert "fix: aws ec2 create-route" in out
    assert out.rstrip().endswith("1 check(s) failed: subnets")


def test_internet_gateway_but_no_public_ip(account, capsys):
    save_values({"assign_public_ip": False})
    code, out = _doctor(capsys)
    assert code == 1
    assert "but tasks get no public IP (assign_public_ip=false)" in out
    assert "fix: starburst config assign_public_ip=true" in out


def test_quota_zero(account, monkeypatch, capsys):
    # moto has no Fargate quotas; AWS answering 0 is what this stands for
    monkeypatch.setattr(doctor, "read_quota", lambda quotas, spot, region: Quota(0.0, "service-quotas"))
    code, out = _doctor(capsys)
    assert code == 1
    assert "FAIL  vCPU quota: the Fargate On-Demand vCPU quota in us-east-1 is 0: not one worker of 1 vCPU" in out
    assert "fix: starburst quota --request 6" in out
    assert out.rstrip().endswith("1 check(s) failed: vCPU quota")


def test_missing_image(account, moto_server, capsys):
    moto_server.client("ecr").batch_delete_image(
        repositoryName=account["ecr_repository"], imageIds=[{"imageTag": account["tag"]}]
    )
    code, out = _doctor(capsys)
    assert code == 1
    assert f"FAIL  worker image: no image of this environment (starburst-worker:{account['tag']}) in ECR" in out
    assert "fix: starburst image build --push" in out
    assert out.rstrip().endswith("1 check(s) failed: worker image")


def test_missing_driver_role(account, moto_server, capsys):
    iam = moto_server.client("iam")
    for name in iam.list_role_policies(RoleName=DRIVER_ROLE)["PolicyNames"]:
        iam.delete_role_policy(RoleName=DRIVER_ROLE, PolicyName=name)
    iam.delete_role(RoleName=DRIVER_ROLE)
    code, out = _doctor(capsys)
    assert code == 1
    assert f"FAIL  driver role: role {DRIVER_ROLE} (config driver_role_arn) does not exist" in out
    assert "fix: starburst setup" in out
    assert out.rstrip().endswith("1 check(s) failed: driver role")


def test_task_role_that_cannot_reach_the_bucket(account, moto_server, capsys):
    policy = doctor.task_role_policy("someone-elses-bucket")
    moto_server.client("iam").put_role_policy(
        RoleName=TASK_ROLE, PolicyName="starburst-job-bucket", PolicyDocument=json.dumps(policy)
    )
    code, out = _doctor(capsys)
    assert code == 1
    denied = "s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket"
    assert f"FAIL  task role: role {TASK_ROLE} may not {denied} on s3://{account['bucket']}/jobs/" in out
    assert f"fix: aws iam put-role-policy --role-name {TASK_ROLE} --policy-name starburst-job-bucket" in out
    assert account["bucket"] in out.split("fix: aws iam")[1]  # the fix names our bucket


def test_not_set_up(moto_server, moto_env, capsys):
    moto_server.reset()
    code, out = _doctor(capsys)
    assert code == 1
    assert "FAIL  set-up: not set up in us-east-1: the config has no bucket, subnets, security_groups" in out
    assert "fix: starburst setup  (creates the bucket" in out
    assert "skip  bucket: needs `starburst setup` first" in out


def test_fargate_cell_without_credentials_stops_before_anything_starts(account, moto_server, monkeypatch, ip):
    save_values({"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/starburst-worker:test"})
    ecs = moto_server.client("ecs")  # (made while the test's credentials are there)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = ip.run_cell("%%burst --backend fargate --map x in range(3)\nx * 2")
    error = result.error_in_exec
    assert error is not None and type(error).__name__ == "BurstBackendUnavailable"
    text = str(error)
    assert text.startswith("The fargate backend cannot launch: no AWS credentials found (NoCredentialsError")
    assert "Nothing was started. Fix: aws configure" in text and "starburst doctor" in text
    assert JobStore().list() == []  # no job was written
    assert ecs.list_tasks(cluster="starburst")["taskArns"] == []


def test_a_refused_call_is_a_failed_check_not_a_traceback(capsys):
    """An identity AWS refuses (AccessDenied on every service but STS): each check says what was refused."""
    from botocore.exceptions import ClientError

    class Refusing:
        def __getattr__(self, name):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, name)

    class Identity:
        def get_caller_identity(self):
            return {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/me"}

    save_values(
        {
            "bucket": "b",
            "subnets": "subnet-1",
            "security_groups": "sg-1",
            "execution_role_arn": "arn:aws:iam::123456789012:role/x",
            "task_role_arn": "arn:aws:iam::123456789012:role/starburst-task",
            "driver_role_arn": "arn:aws:iam::123456789012:role/starburst-driver",
        }
    )
    checks = doctor.run_checks(load_config(), lambda service: Identity() if service == "sts" else Refusing())
    text = doctor.report_text(checks)
    assert [c.name for c in checks if c.ok is False] == [
        "set-up", "bucket", "worker image", "subnets", "task role", "driver role"
    ]  # fmt: skip
    assert "note  vCPU quota: Could not read the Fargate On-Demand vCPU quota" in text  # the default is used
    assert "FAIL  task role: could not be checked: AccessDeniedException: not allowed" in text
    assert "fix: starburst setup --print-policy  (attach that policy to your AWS identity)" in text
