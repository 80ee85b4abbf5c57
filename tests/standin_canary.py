"""Checks the AWS stand-in (moto in server mode, our container-credentials endpoint, our IAM enforcement) against
what AWS documents for the calls the workers and the driver make, once per test process.

Why: the Fargate tests stand on these behaviours. When a new moto changes one (moto 5.2.6 denied an assumed
role's s3:ListBucket and HeadObject that its policy allows: every Fargate test failed on its own, 35 failures),
the canary names the tool, its version and the behaviour in one line, and the tests that need the stand-in
are skipped with that line instead of failing one by one.

What AWS documents, checked here:
- HeadObject / GetObject of a missing key answer 404 to a caller allowed s3:ListBucket on the bucket (403
  without it): https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html ("Permissions").
- ListObjectsV2 needs s3:ListBucket on the bucket ARN:
  https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
- PutObject with If-None-Match: * fails with 412 when the key exists:
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
- An assumed role may do what its role policy allows and nothing else (here: no s3:PutObject outside the
  job prefixes): https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
- A container gets its role's keys from AWS_CONTAINER_CREDENTIALS_FULL_URI with the authorization token, and
  nothing without it: https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html
"""

from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request
from importlib.metadata import version
from typing import Any

_verdict: list[str] | None = None


def tools() -> str:
    """The versions of the pieces the stand-in is made of."""
    return ", ".join(f"{name} {version(name)}" for name in ("moto", "boto3", "botocore"))


def problems(env: dict[str, str]) -> list[str]:
    """Every documented behaviour the stand-in lacks (empty when it behaves as AWS does), for the moto server
    that `env` (MotoServer.env or the moto_env fixture) points at; checked once per process."""
    global _verdict
    if _verdict is None:
        _verdict = _check(env)
    return _verdict


def one_line(found: list[str]) -> str:
    return (
        f"the AWS stand-in breaks what AWS documents ({tools()}): " + "; ".join(found)
        + " -- pin the last good version in .ci/test-tools.txt (see .ci/README.md), or adapt tests/moto_server.py"
    )  # fmt: skip


def _check(env: dict[str, str]) -> list[str]:
    import boto3
    import botocore.exceptions
    from fargate_agent import ContainerCredentials
    from moto_server import REGION, TaskRoleEnforcement, new_bucket_name

    from starburst_jupyter.backends.fargate.setup import task_role_policy

    found: list[str] = []
    url = env["AWS_ENDPOINT_URL"]
    admin = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )  # fmt: skip
    s3 = admin.client("s3", endpoint_url=url)
    iam = admin.client("iam", endpoint_url=url)
    sts = admin.client("sts", endpoint_url=url)
    bucket = new_bucket_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="jobs/canary/present", Body=b"x")
    role = iam.create_role(
        RoleName=f"canary-{bucket}",
        AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                           "Action": "sts:AssumeRole"}],
        }),
    )["Role"]  # fmt: skip
    iam.put_role_policy(
        RoleName=role["RoleName"], PolicyName="starburst-task", PolicyDocument=json.dumps(task_role_policy(bucket))
    )
    endpoint = ContainerCredentials(sts)
    try:
        task_env = endpoint.register(
            f"arn:aws:ecs:{REGION}:123456789012:task/canary/0123456789abcdef", role["Arn"], "canary"
        )
        creds_url, token = task_env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], task_env["AWS_CONTAINER_AUTHORIZATION_TOKEN"]
        try:
            urllib.request.urlopen(creds_url, timeout=10).read()
            found.append("the credentials endpoint served keys without the authorization token")
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                found.append(f"the credentials endpoint answered {exc.code} without the token, not 401")
        request = urllib.request.Request(creds_url, headers={"Authorization": token})
        creds = json.loads(urllib.request.urlopen(request, timeout=10).read())
        role_session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["Token"], region_name=REGION,
        )  # fmt: skip
        task = role_session.client("s3", endpoint_url=url)

        def expect(what: str, call: Any, want: int) -> None:
            try:
                call()
                got = 200
            except botocore.exceptions.ClientError as exc:
                got = int(exc.response["ResponseMetadata"]["HTTPStatusCode"])
            if got != want:
                found.append(f"{what} as the task role answered {got}, AWS answers {want}")

        if importlib.util.find_spec("moto.core.authorization") is None:  # moto moved the hook we check with
            found.append("moto_server.TaskRoleEnforcement cannot hook moto's IAM checks (no moto.core.authorization)")
            return found
        with TaskRoleEnforcement(lambda key: key == creds["AccessKeyId"]) as enforcement:
            key = "jobs/canary/"
            expect("HeadObject of a present key", lambda: task.head_object(Bucket=bucket, Key=key + "present"), 200)
            expect("HeadObject of a missing key", lambda: task.head_object(Bucket=bucket, Key=key + "missing"), 404)
            expect("GetObject of a missing key", lambda: task.get_object(Bucket=bucket, Key=key + "missing"), 404)
            expect(
                "ListObjectsV2 of jobs/",
                lambda: task.list_objects_v2(Bucket=bucket, Prefix="jobs/"), 200,
            )  # fmt: skip
            expect("PutObject under jobs/", lambda: task.put_object(Bucket=bucket, Key=key + "new", Body=b"y"), 200)
            expect(
                "PutObject(If-None-Match: *) of a present key",
                lambda: task.put_object(Bucket=bucket, Key=key + "new", Body=b"z", IfNoneMatch="*"), 412,
            )  # fmt: skip
            expect(
                "PutObject(If-None-Match: *) of a new key",
                lambda: task.put_object(Bucket=bucket, Key=key + "fresh", Body=b"z", IfNoneMatch="*"), 200,
            )  # fmt: skip
            expect("DeleteObject under jobs/", lambda: task.delete_object(Bucket=bucket, Key=key + "new"), 200)
            wrongly_denied = sorted({action for _, action, _, _ in enforcement.denied})
            expect("PutObject outside the job prefixes", lambda: task.put_object(Bucket=bucket, Key="x", Body=b""), 403)
            if enforcement.checked == 0:
                found.append("IAM enforcement checked no request (moto's authorization hook moved)")
            if wrongly_denied:
                found.append("allowed actions denied: " + ", ".join(wrongly_denied))
    finally:
        endpoint.close()
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    return found
