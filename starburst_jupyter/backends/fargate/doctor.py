"""`starburst doctor` / `%burst_doctor`: read-only checks of what a Fargate job needs, in the order a first run
trips over them (credentials, region, set-up, bucket, image, networking, quota, roles). Each check says ok, or
what is wrong and the ONE command that fixes it, because a first AWS run otherwise fails late and obscurely
(a task dying with ResourceInitializationError says nothing about a subnet without a route).

Read-only but for one probe object (put, read back, deleted) under the bucket's jobs/ prefix: "writable by us"
cannot be known otherwise. The task role is judged from its policy documents, not SimulatePrincipalPolicy: that
call needs a permission users rarely have (and moto lacks it); the documents are what `starburst setup` wrote.
`preflight` is the cheap part (set-up keys, credentials) that every `--backend fargate` launch runs first.
"""

from __future__ import annotations

import fnmatch
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starburst_jupyter.backends.fargate.clients import client as make_client
from starburst_jupyter.backends.fargate.clients import error_code, error_message
from starburst_jupyter.backends.fargate.quota import read_quota
from starburst_jupyter.backends.fargate.setup import task_role_policy
from starburst_jupyter.core.config import Config
from starburst_jupyter.errors import BurstBackendUnavailable
from starburst_jupyter.protocol import keys

SETUP_KEYS = ("bucket", "cluster", "subnets", "security_groups", "execution_role_arn", "task_role_arn", "log_group")
NO_CREDENTIALS = ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound", "NoRegionError")
EXPIRED = (
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRetrievalError",
    "UnauthorizedSSOTokenError",
    "SSOTokenLoadError",
)
POLICY_FIX = "starburst setup --print-policy  (attach that policy to your AWS identity)"
_ECR_IMAGE = re.compile(r"^(\d{12})\.dkr\.ecr\.([\w-]+)\.amazonaws\.com/([^:@]+)(?::([\w.-]+))?$")


@dataclass(frozen=True)
class Check:
    """One finding: `ok` True (fine), False (fails: `fix` is the command), None (skipped: a check before failed)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""
    note: bool = False  # ok, but worth reading (a default used, something built later)

    def lines(self) -> list[str]:
        mark = {True: "ok  " if not self.note else "note", False: "FAIL", None: "skip"}[self.ok]
        lines = [f"{mark}  {self.name}: {self.detail}"]
        if self.ok is False and self.fix:
            lines.append(f"      fix: {self.fix}")
        return lines


def report_text(checks: list[Check]) -> str:
    """What the doctor prints: a block per check, then one line saying how many failed."""
    lines = [line for check in checks for line in check.lines()]
    failed = [check.name for check in checks if check.ok is False]
    lines.append(
        f"{len(failed)} check(s) failed: {', '.join(failed)}"
        if failed
        else "all checks passed: --backend fargate is ready"
    )
    return "\n".join(lines)


def _credentials_problem(exc: BaseException, region: str) -> Check:
    code = error_code(exc)
    if code in NO_CREDENTIALS:
        return Check(
            "credentials",
            False,
            f"no AWS credentials found ({code}; looked in the environment, ~/.aws/credentials and config, SSO, "
            f"and an instance or container role)",
            "aws configure  (or `aws sso login --profile NAME` and export AWS_PROFILE=NAME)",
        )
    if code in EXPIRED:
        return Check("credentials", False, f"the AWS credentials have expired ({code})", "aws sso login")
    return Check(
        "credentials",
        False,
        f"AWS refused the credentials (sts GetCallerIdentity in {region}: {code}: {error_message(exc)})",
        "aws configure",
    )


def preflight(config: Config, sts: Any = None) -> None:
    """The cheap checks before a fargate launch (set-up keys saved, credentials that AWS accepts): a
    BurstBackendUnavailable naming what is wrong and the command that fixes it, before anything starts."""
    setup = setup_keys_check(config)
    if setup.ok is False:
        raise BurstBackendUnavailable(f"The fargate backend cannot launch: {setup.detail}. Fix: {setup.fix}.")
    try:
        (sts or make_client("sts", config.region)).get_caller_identity()
    except Exception as exc:
        found = _credentials_problem(exc, config.region)
        raise BurstBackendUnavailable(
            f"The fargate backend cannot launch: {found.detail}. Nothing was started. Fix: {found.fix}; "
            f"then `starburst doctor` (or %burst_doctor) checks the rest."
        ) from None


def setup_keys_check(config: Config) -> Check:
    missing = [key for key in SETUP_KEYS if not getattr(config, key)]
    if missing:
        return Check(
            "set-up",
            False,
            f"not set up in {config.region}: the config has no {', '.join(missing)}",
            "starburst setup  (creates the bucket, cluster, roles and networking, and saves them)",
        )
    return Check("set-up", True, f"config names bucket {config.bucket}, cluster {config.cluster}")


class Doctor:
    """The checks of one config. `client(service)` makes a boto3 client (the default: the user's chain)."""

    def __init__(self, config: Config, client: Callable[[str], Any] | None = None):
        self.config = config
        self._make = client or (
            lambda service: make_client(service, config.region, retries={"mode": "standard", "max_attempts": 2})
        )
        self._clients: dict[str, Any] = {}
        self.account = ""

    def c(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._make(service)
        return self._clients[service]

    def run(self) -> list[Check]:
        checks = [self.credentials(), self.region()]
        setup = self.setup()
        checks.append(setup)
        if checks[0].ok is False:  # nothing else can be asked of AWS
            names = ("bucket", "worker image", "subnets", "vCPU quota", "task role", "driver role")
            return checks + [Check(name, None, "needs credentials") for name in names]
        checks.append(self._guarded("worker image", self.image))
        checks.append(self._guarded("vCPU quota", self.quota))
        ready = setup_keys_check(self.config).ok
        for name, check in (
            ("bucket", self.bucket),
            ("subnets", self.subnets),
            ("task role", self.task_role),
            ("driver role", self.driver_role),
        ):
            checks.append(self._guarded(name, check) if ready else Check(name, None, "needs `starburst setup` first"))
        order = ["credentials", "region", "set-up", "bucket", "worker image", "subnets", "vCPU quota"]
        return sorted(checks, key=lambda c: order.index(c.name) if c.name in order else len(order))

    def _guarded(self, name: str, check: Callable[[], Check]) -> Check:
        """A check whose AWS call fails for a reason it does not expect says so (never a traceback)."""
        try:
            return check()
        except Exception as exc:
            return Check(name, False, f"could not be checked: {error_code(exc)}: {error_message(exc)}", POLICY_FIX)

    # ----- the checks ------------------------------------------------------------------------
    def credentials(self) -> Check:
        try:
            who = self.c("sts").get_caller_identity()
        except Exception as exc:
            return _credentials_problem(exc, self.config.region)
        self.account = who.get("Account", "")
        return Check("credentials", True, f"account {self.account} as {who.get('Arn', '?')}")

    def region(self) -> Check:
        import boto3

        session = boto3.session.Session()
        known = session.get_available_regions("ecs")
        region = self.config.region
        if known and region not in known:
            return Check(
                "region",
                False,
                f"{region!r} (config `region`) is not a region ECS Fargate runs in",
                "starburst config region=us-east-1  (or the region you ran `starburst setup` in)",
            )
        other = session.region_name
        aside = (
            f"; note: your AWS CLI default is {other} (starburst uses the config's)"
            if other and other != region
            else ""
        )
        return Check("region", True, f"{region} (config `region`){aside}", note=bool(aside))

    def setup(self) -> Check:
        found = setup_keys_check(self.config)
        if found.ok is False or not self.account:
            return found
        try:
            clusters = self.c("ecs").describe_clusters(clusters=[self.config.cluster]).get("clusters", [])
            groups = self.c("logs").describe_log_groups(logGroupNamePrefix=self.config.log_group).get("logGroups", [])
        except Exception as exc:
            return Check("set-up", False, f"could not be checked: {error_code(exc)}: {error_message(exc)}", POLICY_FIX)
        gone = []
        if not any(c.get("status") == "ACTIVE" for c in clusters):
            gone.append(f"ECS cluster {self.config.cluster}")
        if not any(g.get("logGroupName") == self.config.log_group for g in groups):
            gone.append(f"log group {self.config.log_group}")
        if gone:
            return Check(
                "set-up",
                False,
                f"the config names {' and '.join(gone)}, not found in {self.config.region}",
                "starburst setup",
            )
        return Check(
            "set-up", True, f"{found.detail}, log group {self.config.log_group}: present in {self.config.region}"
        )

    def bucket(self) -> Check:
        s3, bucket = self.c("s3"), self.config.bucket
        try:
            s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            if error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                return Check("bucket", False, f"s3://{bucket} does not exist", "starburst setup  (creates it)")
            return Check(
                "bucket", False, f"s3://{bucket} cannot be reached by this identity ({error_code(exc)})", POLICY_FIX
            )
        where = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") or "us-east-1"
        if where != self.config.region:
            return Check(
                "bucket",
                False,
                f"s3://{bucket} is in {where}, but the config's region is {self.config.region}",
                f"starburst config region={where}",
            )
        probe = keys.job_prefix(".doctor") + f"probe-{uuid.uuid4().hex[:12]}"
        try:
            s3.put_object(Bucket=bucket, Key=probe, Body=b"starburst doctor probe")
            s3.head_object(Bucket=bucket, Key=probe)
            s3.delete_object(Bucket=bucket, Key=probe)
        except Exception as exc:
            return Check(
                "bucket",
                False,
                f"s3://{bucket} exists but a probe object could not be written, read and deleted under "
                f"{keys.JOBS} ({error_code(exc)}: {error_message(exc)})",
                POLICY_FIX,
            )
        return Check("bucket", True, f"s3://{bucket} in {where}: a probe object was written, read and deleted")

    def image(self) -> Check:
        config, ecr = self.config, self.c("ecr")
        from starburst_jupyter.envimage import registry

        if config.image:
            match = _ECR_IMAGE.match(config.image)
            if not match:
                return Check(
                    "worker image", True, f"{config.image} (config `image`; not in ECR: not checked)", note=True
                )
            _, region, repository, tag = match.groups()
            if region != config.region:
                ecr = make_client("ecr", region)
            if registry.tag_exists(ecr, repository, tag or "latest"):
                return Check("worker image", True, f"{config.image} (config `image`) is in ECR")
            return Check(
                "worker image",
                False,
                f"config `image` names {config.image}, which ECR does not have",
                "starburst config image=none  (then jobs use this environment's image: `starburst image build`)",
            )
        from starburst_jupyter import envimage

        try:
            tag = envimage.capture(config).tag
        except Exception as exc:
            return Check("worker image", False, f"this environment could not be read: {exc}", "starburst image status")
        ref = f"{config.ecr_repository}:{tag}"
        if registry.tag_exists(ecr, config.ecr_repository, tag):
            return Check("worker image", True, f"{ref} (this environment) is in ECR ({config.region})")
        if config.auto_build:
            detail = f"{ref} is not in ECR yet; auto_build builds and pushes it before the first job (minutes)"
            return Check("worker image", True, detail, note=True)
        return Check(
            "worker image",
            False,
            f"no image of this environment ({ref}) in ECR ({config.region}): a job would stop before launching",
            "starburst image build --push",
        )

    def subnets(self) -> Check:
        ec2, subnet_ids = self.c("ec2"), list(self.config.subnets)
        try:
            subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
        except Exception as exc:
            if "NotFound" not in error_code(exc):
                raise
            return Check(
                "subnets",
                False,
                f"the config's subnets {', '.join(subnet_ids)} are not all in {self.config.region}",
                "starburst setup",
            )
        vpcs = sorted({s["VpcId"] for s in subnets})
        tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": vpcs}])["RouteTables"]
        public = self.config.assign_public_ip
        good, bad, fix = [], [], ""
        for subnet in subnets:
            sid, route = subnet["SubnetId"], _default_route(_table_of(subnet, tables))
            if route.startswith("nat") or (route.startswith("igw") and public):
                good.append(sid)
            elif route.startswith("igw"):
                bad.append(f"{sid} routes to {route} but tasks get no public IP (assign_public_ip=false)")
                fix = "starburst config assign_public_ip=true"
            else:
                bad.append(f"{sid} has no 0.0.0.0/0 route to an internet gateway or a NAT")
        if not bad:
            how = "a public IP and an internet gateway" if public else "a NAT route"
            return Check("subnets", True, f"{', '.join(good)}: tasks reach ECR and S3 through {how}")
        if not fix:
            fix = (
                f"starburst config subnets={','.join(good)}"
                if good
                else "aws ec2 create-route --route-table-id RTB --destination-cidr-block 0.0.0.0/0 --gateway-id IGW  "
                "(RTB, IGW: the subnets' route table and their VPC's internet gateway)"
            )
        return Check(
            "subnets",
            False,
            "; ".join(bad) + ". Tasks there cannot pull the image and die with ResourceInitializationError",
            fix,
        )

    def quota(self) -> Check:
        config, cpu = self.config, float(self.config.cpu)
        if config.fargate_vcpu_quota:
            return Check(
                "vCPU quota",
                True,
                f"{config.fargate_vcpu_quota} vCPUs (config fargate_vcpu_quota; AWS's figure not read)",
            )
        found = []
        for spot in (False, True) if config.spot else (False,):
            quota = read_quota(self.c("service-quotas"), spot, config.region)
            kind = "Spot" if spot else "On-Demand"
            if quota.note:
                found.append(Check("vCPU quota", True, quota.note, note=True))
            elif quota.vcpus < max(cpu, 0.25) or quota.vcpus <= 0:
                found.append(
                    Check(
                        "vCPU quota",
                        False,
                        f"the Fargate {kind} vCPU quota in {config.region} is {quota.vcpus:g}: not one worker of "
                        f"{cpu:g} vCPU can start",
                        f"starburst quota {'--spot ' if spot else ''}--request {max(6, int(cpu))}",
                    )
                )
            else:
                found.append(Check("vCPU quota", True, f"Fargate {kind}: {quota.vcpus:g} vCPUs in {config.region}"))
        return next((c for c in found if c.ok is False), found[0])

    def task_role(self) -> Check:
        arn, bucket = self.config.task_role_arn or "", self.config.bucket
        role = _role_name(arn)
        documents = self._role_documents(role)
        if documents is None:
            return Check("task role", False, f"role {role} (config task_role_arn) does not exist", "starburst setup")
        probe = f"arn:aws:s3:::{bucket}/{keys.job_prefix('probe')}x"
        needs = [("s3:GetObject", probe), ("s3:PutObject", probe), ("s3:DeleteObject", probe)]
        needs.append(("s3:ListBucket", f"arn:aws:s3:::{bucket}"))
        missing = [action for action, resource in needs if not _allowed(documents, action, resource)]
        if missing:
            policy = json.dumps(task_role_policy(bucket or ""), separators=(",", ":"))
            return Check(
                "task role",
                False,
                f"role {role} may not {', '.join(missing)} on s3://{bucket}/{keys.JOBS}: workers could not read "
                f"their tasks or write results",
                f"aws iam put-role-policy --role-name {role} --policy-name starburst-job-bucket "
                f"--policy-document '{policy}'",
            )
        return Check("task role", True, f"role {role} may read and write s3://{bucket}/{keys.JOBS}")

    def driver_role(self) -> Check:
        arn = self.config.driver_role_arn
        if not arn:
            return Check(
                "driver role", False, "the config has no driver_role_arn (detached jobs need it)", "starburst setup"
            )
        role = _role_name(arn)
        if self._role_documents(role) is None:
            return Check(
                "driver role", False, f"role {role} (config driver_role_arn) does not exist", "starburst setup"
            )
        return Check("driver role", True, f"role {role} exists (detached jobs' drivers run with it)")

    def _role_documents(self, role: str) -> list[dict[str, Any]] | None:
        """The policy documents of a role (inline and attached); None when the role does not exist."""
        iam = self.c("iam")
        try:
            iam.get_role(RoleName=role)
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise
        documents = []
        for name in iam.list_role_policies(RoleName=role).get("PolicyNames", []):
            documents.append(_document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]))
        for attached in iam.list_attached_role_policies(RoleName=role).get("AttachedPolicies", []):
            policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
            version = iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"])
            documents.append(_document(version["PolicyVersion"]["Document"]))
        return documents


def run_checks(config: Config, client: Callable[[str], Any] | None = None) -> list[Check]:
    return Doctor(config, client).run()


# ----- helpers --------------------------------------------------------------------------------
def _role_name(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        from urllib.parse import unquote

        value = json.loads(unquote(value))
    return dict(value)


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _allowed(documents: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether the documents allow `action` on `resource` (conditions ignored; an explicit Deny wins)."""
    verdict = False
    for document in documents:
        for statement in _listed_statements(document):
            actions = [a.lower() for a in _listed(statement.get("Action"))]
            if not any(fnmatch.fnmatchcase(action.lower(), a) for a in actions):
                continue
            if not any(fnmatch.fnmatchcase(resource, r) for r in _listed(statement.get("Resource"))):
                continue
            if statement.get("Effect") == "Deny":
                return False
            verdict = verdict or statement.get("Effect") == "Allow"
    return verdict


def _listed_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return [statements] if isinstance(statements, dict) else list(statements)


def _table_of(subnet: dict[str, Any], tables: list[dict[str, Any]]) -> dict[str, Any]:
    """The route table a subnet uses: the one associated with it, else its VPC's main table."""
    for table in tables:
        if any(a.get("SubnetId") == subnet["SubnetId"] for a in table.get("Associations", ())):
            return table
    for table in tables:
        if table.get("VpcId") == subnet["VpcId"] and any(a.get("Main") for a in table.get("Associations", ())):
            return table
    return {}


def _default_route(table: dict[str, Any]) -> str:
    """Where the table sends 0.0.0.0/0: an igw-... or nat-... id (a NAT instance or transit gateway counts as
    NAT), or "" when nowhere (or to a blackhole)."""
    for route in table.get("Routes", ()):
        if route.get("DestinationCidrBlock") != "0.0.0.0/0" or route.get("State") == "blackhole":
            continue
        gateway = route.get("GatewayId") or ""
        if gateway.startswith("igw-"):
            return gateway
        for key in ("NatGatewayId", "TransitGatewayId", "InstanceId", "NetworkInterfaceId"):
            if route.get(key):
                return f"nat:{route[key]}"
    return ""


def _actions(names: str) -> list[str]:
    return names.split()


def user_policy() -> dict[str, Any]:
    """The IAM permissions the identity running starburst needs: `starburst setup` and `teardown`, launching and
    watching jobs, building and pushing the worker image, the quota, and these checks. Scoped to the names
    starburst uses (starburst-* roles, buckets and repositories, the /starburst/ log groups) where AWS allows."""
    s3 = ["arn:aws:s3:::starburst-*", "arn:aws:s3:::starburst-*/*"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Identity", "Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
            {
                "Sid": "JobBucket",
                "Effect": "Allow",
                "Action": _actions(
                    "s3:CreateBucket s3:DeleteBucket s3:ListBucket s3:GetBucketLocation s3:PutBucketPublicAccessBlock "
                    "s3:PutEncryptionConfiguration s3:PutBucketPolicy s3:PutLifecycleConfiguration "
                    "s3:PutBucketTagging s3:GetBucketTagging s3:ListBucketMultipartUploads s3:AbortMultipartUpload "
                    "s3:GetObject s3:PutObject s3:DeleteObject"
                ),
                "Resource": s3,
            },
            {
                "Sid": "WorkerImage",
                "Effect": "Allow",
                "Action": _actions(
                    "ecr:CreateRepository ecr:DeleteRepository ecr:DescribeRepositories ecr:DescribeImages "
                    "ecr:ListTagsForResource ecr:TagResource ecr:BatchCheckLayerAvailability ecr:InitiateLayerUpload "
                    "ecr:UploadLayerPart ecr:CompleteLayerUpload ecr:PutImage ecr:BatchGetImage "
                    "ecr:GetDownloadUrlForLayer"
                ),
                "Resource": "arn:aws:ecr:*:*:repository/starburst-*",
            },
            {"Sid": "RegistryLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
            {
                "Sid": "Tasks",
                "Effect": "Allow",
                "Action": _actions(
                    "ecs:CreateCluster ecs:DeleteCluster ecs:DescribeClusters ecs:RunTask ecs:StopTask ecs:ListTasks "
                    "ecs:DescribeTasks ecs:RegisterTaskDefinition ecs:DeregisterTaskDefinition "
                    "ecs:DeleteTaskDefinitions ecs:DescribeTaskDefinition ecs:ListTaskDefinitions "
                    "ecs:ListTaskDefinitionFamilies ecs:TagResource"
                ),
                "Resource": "*",
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": _actions(
                    "logs:CreateLogGroup logs:DeleteLogGroup logs:PutRetentionPolicy logs:DescribeLogGroups "
                    "logs:ListTagsLogGroup logs:TagLogGroup logs:TagResource logs:ListTagsForResource "
                    "logs:FilterLogEvents logs:GetLogEvents logs:DescribeLogStreams"
                ),
                "Resource": "*",
            },
            {
                "Sid": "Roles",
                "Effect": "Allow",
                "Action": _actions(
                    "iam:CreateRole iam:GetRole iam:DeleteRole iam:TagRole iam:ListRoleTags iam:PutRolePolicy "
                    "iam:GetRolePolicy iam:DeleteRolePolicy iam:ListRolePolicies iam:ListAttachedRolePolicies "
                    "iam:DetachRolePolicy iam:GetPolicy iam:GetPolicyVersion"
                ),
                "Resource": ["arn:aws:iam::*:role/starburst-*", "arn:aws:iam::*:policy/*"],
            },
            {
                "Sid": "PassRoles",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "arn:aws:iam::*:role/starburst-*",
                "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
            },
            {
                "Sid": "Network",
                "Effect": "Allow",
                "Action": _actions(
                    "ec2:DescribeVpcs ec2:DescribeSubnets ec2:DescribeSecurityGroups ec2:DescribeRouteTables "
                    "ec2:DescribeInternetGateways ec2:DescribeAvailabilityZones ec2:CreateVpc ec2:DeleteVpc "
                    "ec2:CreateSubnet ec2:DeleteSubnet ec2:ModifySubnetAttribute ec2:CreateInternetGateway "
                    "ec2:AttachInternetGateway ec2:DetachInternetGateway ec2:DeleteInternetGateway "
                    "ec2:CreateRouteTable ec2:CreateRoute ec2:AssociateRouteTable ec2:DisassociateRouteTable "
                    "ec2:DeleteRouteTable ec2:CreateSecurityGroup ec2:DeleteSecurityGroup ec2:CreateTags"
                ),
                "Resource": "*",
            },
            {
                "Sid": "Quota",
                "Effect": "Allow",
                "Action": ["servicequotas:GetServiceQuota", "servicequotas:RequestServiceQuotaIncrease"],
                "Resource": "*",
            },
        ],
    }
