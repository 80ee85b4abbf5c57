"""One-time set-up and teardown of what the Fargate backend needs, idempotent and tag-scoped.

Every resource is found by its fixed name and carries the tag starburst:managed=true; `plan`
says what `apply` would do (a second apply does nothing), and `teardown` deletes only what
carries our tag, so a same-named resource of someone else's is left alone and reported.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starburst_jupyter.backends.fargate.clients import client, error_code
from starburst_jupyter.backends.fargate.taskdef import FAMILY_PREFIX
from starburst_jupyter.errors import BurstError
from starburst_jupyter.protocol import keys

TAG_KEY, TAG_VALUE = "starburst:managed", "true"
EXECUTION_ROLE, TASK_ROLE = "starburst-execution", "starburst-task"
DRIVER_ROLE = "starburst-driver"  # a detached job's driver task (fargate/drivers.py)
ROLES = (EXECUTION_ROLE, TASK_ROLE, DRIVER_ROLE)
SECURITY_GROUP = "starburst-workers"
LOG_RETENTION_DAYS = 14
JOB_EXPIRY_DAYS = 30
_ASSUME_ECS_TASKS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
_MISSING = (
    "NoSuchBucket",
    "404",
    "NotFound",
    "NoSuchEntity",
    "RepositoryNotFoundException",
    "ResourceNotFoundException",
    "ClusterNotFoundException",
    "InvalidGroup.NotFound",
)


class TasksStillRunning(BurstError):
    """Teardown refused before deleting anything: our cluster still runs tasks (ECS refuses to delete a cluster
    with tasks, and their jobs would lose their bucket mid-run)."""

    def __init__(self, cluster: str, region: str, tasks: list[dict[str, Any]]):
        jobs = sorted({t["startedBy"] for t in tasks if t.get("startedBy")})
        of_jobs = f" (started by job {', '.join(jobs[:5])}{', ...' if len(jobs) > 5 else ''})" if jobs else ""
        super().__init__(
            f"ECS cluster {cluster} in {region} still runs {len(tasks)} task(s){of_jobs}; nothing was deleted. "
            f"Cancel their jobs (`starburst status` lists them, `starburst cancel JOB` cancels one) or wait for "
            f"them to end (a worker kept warm ends by itself), then run `starburst teardown` again."
        )
        self.cluster, self.region, self.count = cluster, region, len(tasks)


@dataclass
class Step:
    kind: str
    name: str
    action: str  # "create", "exists", "delete", "keep (not ours)", "absent"
    detail: str = ""

    def line(self) -> str:
        return f"{self.action:>16}  {self.kind:<16} {self.name}{'  (' + self.detail + ')' if self.detail else ''}"


@dataclass
class Setup:
    """The resources of one region; `settings()` is what the config keeps."""

    region: str
    cluster: str = "starburst"
    log_group: str = "/starburst/workers"
    ecr_repository: str = "starburst-worker"
    bucket: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def c(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(service, self.region)
        return self._clients[service]

    @property
    def account(self) -> str:
        account: str = self.c("sts").get_caller_identity()["Account"]
        return account

    def bucket_name(self) -> str:
        return self.bucket or f"starburst-{self.account}-{self.region}"

    # ----- look -----------------------------------------------------------------------------
    def _exists(self, probe: Callable[[], Any]) -> bool:
        try:
            probe()
            return True
        except Exception as exc:
            if error_code(exc) in _MISSING or "not found" in str(exc).lower():
                return False
            raise

    def _bucket_exists(self) -> bool:
        return self._exists(lambda: self.c("s3").head_bucket(Bucket=self.bucket_name()))

    def _repo_exists(self) -> bool:
        return self._exists(lambda: self.c("ecr").describe_repositories(repositoryNames=[self.ecr_repository]))

    def _cluster_active(self) -> bool:
        found = self.c("ecs").describe_clusters(clusters=[self.cluster]).get("clusters", [])
        return any(c.get("status") == "ACTIVE" for c in found)

    def _log_group_exists(self) -> bool:
        groups = self.c("logs").describe_log_groups(logGroupNamePrefix=self.log_group).get("logGroups", [])
        return any(g["logGroupName"] == self.log_group for g in groups)

    def _role(self, name: str) -> dict[str, Any] | None:
        try:
            role: dict[str, Any] = self.c("iam").get_role(RoleName=name)["Role"]
            return role
        except Exception as exc:
            if error_code(exc) == "NoSuchEntity":
                return None
            raise

    def _default_vpc(self) -> str | None:
        vpcs = self.c("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}]).get("Vpcs", [])
        return vpcs[0]["VpcId"] if vpcs else None

    def _security_group(self, vpc: str | None) -> str | None:
        filters = [{"Name": "group-name", "Values": [SECURITY_GROUP]}]
        if vpc:
            filters.append({"Name": "vpc-id", "Values": [vpc]})
        groups = self.c("ec2").describe_security_groups(Filters=filters).get("SecurityGroups", [])
        return groups[0]["GroupId"] if groups else None

    def _our_vpc(self) -> str | None:
        vpcs = self.c("ec2").describe_vpcs(Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [TAG_VALUE]}]).get("Vpcs", [])
        return vpcs[0]["VpcId"] if vpcs else None

    # ----- plan and apply -------------------------------------------------------------------
    def plan(self) -> list[Step]:
        vpc = self._default_vpc() or self._our_vpc()
        return [
            Step(
                "s3 bucket",
                self.bucket_name(),
                "exists" if self._bucket_exists() else "create",
                f"private, SSE, TLS only, job prefixes expire after {JOB_EXPIRY_DAYS} days",
            ),
            Step("ecr repository", self.ecr_repository, "exists" if self._repo_exists() else "create"),
            Step(
                "ecs cluster", self.cluster, "exists" if self._cluster_active() else "create", "FARGATE, FARGATE_SPOT"
            ),
            Step(
                "log group",
                self.log_group,
                "exists" if self._log_group_exists() else "create",
                f"retention {LOG_RETENTION_DAYS} days",
            ),
            Step(
                "iam role",
                EXECUTION_ROLE,
                "exists" if self._role(EXECUTION_ROLE) else "create",
                "pulls the image, writes logs",
            ),
            Step("iam role", TASK_ROLE, "exists" if self._role(TASK_ROLE) else "create", "the job bucket only"),
            Step(
                "iam role",
                DRIVER_ROLE,
                "exists" if self._role(DRIVER_ROLE) else "create",
                "a detached job's driver: its cluster tasks, bucket prefixes and logs",
            ),
            Step(
                "vpc",
                vpc or "starburst",
                "exists" if vpc else "create",
                "default VPC" if vpc and vpc == self._default_vpc() else "with two public subnets",
            ),
            Step(
                "security group",
                SECURITY_GROUP,
                "exists" if vpc and self._security_group(vpc) else "create",
                "no inbound rules",
            ),
        ]

    def apply(self) -> tuple[list[Step], dict[str, Any]]:
        """Create what is missing; return the steps taken and the settings to save."""
        steps = self.plan()
        tags = {TAG_KEY: TAG_VALUE}
        for step in steps:
            if step.action == "create":
                getattr(self, "_create_" + step.kind.replace(" ", "_"))(tags)
        return steps, self.settings()

    def settings(self) -> dict[str, Any]:
        vpc = self._default_vpc() or self._our_vpc()
        subnets = self.c("ec2").describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
        iam = self.c("iam")
        return {
            "bucket": self.bucket_name(),
            "cluster": self.cluster,
            "log_group": self.log_group,
            "ecr_repository": self.ecr_repository,
            "region": self.region,
            "subnets": sorted(s["SubnetId"] for s in subnets),
            "security_groups": [self._security_group(vpc)],
            "execution_role_arn": iam.get_role(RoleName=EXECUTION_ROLE)["Role"]["Arn"],
            "task_role_arn": iam.get_role(RoleName=TASK_ROLE)["Role"]["Arn"],
            "driver_role_arn": iam.get_role(RoleName=DRIVER_ROLE)["Role"]["Arn"],
        }

    def _create_s3_bucket(self, tags: dict[str, str]) -> None:
        s3, name = self.c("s3"), self.bucket_name()
        extra = {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
        s3.create_bucket(Bucket=name, **extra)
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        s3.put_bucket_policy(
            Bucket=name,
            Policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "TlsOnly",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "s3:*",
                            "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"],
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                }
            ),
        )
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "expire-old-jobs",
                        "Status": "Enabled",
                        "Filter": {"Prefix": keys.JOBS},
                        "Expiration": {"Days": JOB_EXPIRY_DAYS},
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                    },
                    {
                        "ID": "expire-warm-pool-leftovers",
                        "Status": "Enabled",
                        "Filter": {"Prefix": keys.WARM},
                        "Expiration": {"Days": 1},
                    },
                ]
            },
        )
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})

    def _create_ecr_repository(self, tags: dict[str, str]) -> None:
        self.c("ecr").create_repository(
            repositoryName=self.ecr_repository,
            imageScanningConfiguration={"scanOnPush": True},
            tags=[{"Key": k, "Value": v} for k, v in tags.items()],
        )

    def _create_ecs_cluster(self, tags: dict[str, str]) -> None:
        self.c("ecs").create_cluster(
            clusterName=self.cluster,
            capacityProviders=["FARGATE", "FARGATE_SPOT"],
            defaultCapacityProviderStrategy=[{"capacityProvider": "FARGATE", "weight": 1}],
            tags=[{"key": k, "value": v} for k, v in tags.items()],
        )

    def _create_log_group(self, tags: dict[str, str]) -> None:
        logs = self.c("logs")
        logs.create_log_group(logGroupName=self.log_group, tags=tags)
        logs.put_retention_policy(logGroupName=self.log_group, retentionInDays=LOG_RETENTION_DAYS)

    def _create_iam_role(self, tags: dict[str, str]) -> None:
        iam, tag_list = self.c("iam"), [{"Key": k, "Value": v} for k, v in tags.items()]
        if not self._role(EXECUTION_ROLE):
            iam.create_role(
                RoleName=EXECUTION_ROLE,
                AssumeRolePolicyDocument=_ASSUME_ECS_TASKS,
                Tags=tag_list,
                Description="starburst: lets ECS pull the worker image and write its logs",
            )
            # inline and scoped (our repository, our log group), not the broad AWS-managed execution policy
            account, region = self.account, self.region
            iam.put_role_policy(
                RoleName=EXECUTION_ROLE,
                PolicyName="starburst-pull-and-log",
                PolicyDocument=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                            {
                                "Effect": "Allow",
                                "Action": [
                                    "ecr:BatchCheckLayerAvailability",
                                    "ecr:GetDownloadUrlForLayer",
                                    "ecr:BatchGetImage",
                                ],
                                "Resource": f"arn:aws:ecr:{region}:{account}:repository/{self.ecr_repository}",
                            },
                            {
                                "Effect": "Allow",
                                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                "Resource": f"arn:aws:logs:{region}:{account}:log-group:{self.log_group}:*",
                            },
                        ],
                    }
                ),
            )
        if not self._role(TASK_ROLE):
            bucket = self.bucket_name()
            iam.create_role(
                RoleName=TASK_ROLE,
                AssumeRolePolicyDocument=_ASSUME_ECS_TASKS,
                Tags=tag_list,
                Description="starburst: what a worker may do (its job bucket, nothing else)",
            )
            iam.put_role_policy(
                RoleName=TASK_ROLE,
                PolicyName="starburst-job-bucket",
                PolicyDocument=json.dumps(task_role_policy(bucket)),
            )
        if not self._role(DRIVER_ROLE):
            iam.create_role(
                RoleName=DRIVER_ROLE,
                AssumeRolePolicyDocument=_ASSUME_ECS_TASKS,
                Tags=tag_list,
                Description="starburst: what a detached job's driver may do (its cluster's tasks, bucket, logs)",
            )
            iam.put_role_policy(
                RoleName=DRIVER_ROLE,
                PolicyName="starburst-drive-jobs",
                PolicyDocument=json.dumps(self._driver_policy()),
            )

    def _driver_policy(self) -> dict[str, Any]:
        """What a driver does, on our resources only: start, watch and stop its job's tasks (ours, in our
        cluster), register a worker task definition of a new size, pass our roles to them, read and write the
        bucket's job and warm-pool prefixes, read the workers' logs, read the Fargate quota."""
        account, region, bucket = self.account, self.region, self.bucket_name()
        cluster_arn = f"arn:aws:ecs:{region}:{account}:cluster/{self.cluster}"
        in_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
        roles = [f"arn:aws:iam::{account}:role/{name}" for name in ROLES]
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "ecs:RunTask",
                    "Resource": f"arn:aws:ecs:{region}:{account}:task-definition/{FAMILY_PREFIX}*",
                    "Condition": in_cluster,
                },
                {
                    "Effect": "Allow",
                    "Action": ["ecs:StopTask", "ecs:DescribeTasks"],
                    "Resource": f"arn:aws:ecs:{region}:{account}:task/{self.cluster}/*",
                },
                {"Effect": "Allow", "Action": "ecs:ListTasks", "Resource": "*", "Condition": in_cluster},
                {
                    "Effect": "Allow",
                    "Action": [
                        "ecs:DescribeTaskDefinition",
                        "ecs:RegisterTaskDefinition",
                        "servicequotas:GetServiceQuota",
                    ],
                    "Resource": "*",  # (these take no resource-level scope)
                },
                {
                    "Effect": "Allow",
                    "Action": "ecs:TagResource",  # the tags RunTask and RegisterTaskDefinition put on what they create
                    "Resource": "*",
                    "Condition": {"StringEquals": {"ecs:CreateAction": ["RunTask", "RegisterTaskDefinition"]}},
                },
                {
                    "Effect": "Allow",
                    "Action": "iam:PassRole",
                    "Resource": roles,
                    "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
                },
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{bucket}",
                    "Condition": {"StringLike": {"s3:prefix": [f"{top}*" for top in keys.TOP_PREFIXES]}},
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/{top}*" for top in keys.TOP_PREFIXES],
                },
                {
                    "Effect": "Allow",
                    "Action": ["logs:FilterLogEvents", "logs:GetLogEvents", "logs:DescribeLogStreams"],
                    "Resource": f"arn:aws:logs:{region}:{account}:log-group:{self.log_group}:*",
                },
                {
                    "Effect": "Allow",
                    "Action": "ecr:DescribeImages",  # finding the job's image by its tag
                    "Resource": f"arn:aws:ecr:{region}:{account}:repository/{self.ecr_repository}",
                },
            ],
        }

    def _create_vpc(self, tags: dict[str, str]) -> None:
        ec2, tag_spec = self.c("ec2"), [{"Key": k, "Value": v} for k, v in tags.items()]
        vpc = ec2.create_vpc(
            CidrBlock="10.77.0.0/16",
            TagSpecifications=[{"ResourceType": "vpc", "Tags": tag_spec + [{"Key": "Name", "Value": "starburst"}]}],
        )["Vpc"]["VpcId"]
        gateway = ec2.create_internet_gateway(
            TagSpecifications=[{"ResourceType": "internet-gateway", "Tags": tag_spec}]
        )["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc)
        table = ec2.create_route_table(
            VpcId=vpc, TagSpecifications=[{"ResourceType": "route-table", "Tags": tag_spec}]
        )["RouteTable"]["RouteTableId"]
        ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
        zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:2]
        for n, zone in enumerate(zones):
            subnet = ec2.create_subnet(
                VpcId=vpc,
                CidrBlock=f"10.77.{n}.0/24",
                AvailabilityZone=zone,
                TagSpecifications=[{"ResourceType": "subnet", "Tags": tag_spec}],
            )["Subnet"]["SubnetId"]
            ec2.modify_subnet_attribute(SubnetId=subnet, MapPublicIpOnLaunch={"Value": True})
            ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)

    def _create_security_group(self, tags: dict[str, str]) -> None:
        ec2 = self.c("ec2")
        vpc = self._default_vpc() or self._our_vpc()
        ec2.create_security_group(
            GroupName=SECURITY_GROUP,
            VpcId=vpc,
            Description="starburst workers: no inbound",
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        )

    # ----- teardown -------------------------------------------------------------------------
    def teardown(self, dry_run: bool = False) -> list[Step]:
        """Delete what carries our tag; leave (and report) anything else of the same name."""
        steps: list[Step] = []

        def act(kind: str, name: str, present: bool, ours: bool, delete: Callable[[], None]) -> None:
            if not present:
                steps.append(Step(kind, name, "absent"))
            elif not ours:
                steps.append(Step(kind, name, "keep (not ours)", f"no {TAG_KEY}={TAG_VALUE} tag"))
            else:
                steps.append(Step(kind, name, "delete"))
                if not dry_run:
                    delete()

        ecs = self.c("ecs")
        if self._cluster_active():
            cluster = ecs.describe_clusters(clusters=[self.cluster], include=["TAGS"])["clusters"][0]
            ours = _has_tag(cluster.get("tags"), "key", "value")
            running = self._running_tasks() if ours else []
            if running and not dry_run:
                raise TasksStillRunning(self.cluster, self.region, running)
            act("ecs cluster", self.cluster, True, ours, lambda: ecs.delete_cluster(cluster=self.cluster))
            if running:
                steps[-1].detail = f"still runs {len(running)} task(s): teardown refuses until they end"
        else:
            act("ecs cluster", self.cluster, False, False, lambda: None)
        steps.extend(self._teardown_task_definitions(dry_run))

        s3, bucket = self.c("s3"), self.bucket_name()
        present = self._bucket_exists()
        act(
            "s3 bucket",
            bucket,
            present,
            present and _has_tag(_bucket_tags(s3, bucket), "Key", "Value"),
            lambda: empty_and_delete_bucket(s3, bucket),
        )

        ecr = self.c("ecr")
        present = self._repo_exists()
        ours = present and _has_tag(
            ecr.list_tags_for_resource(
                resourceArn=ecr.describe_repositories(repositoryNames=[self.ecr_repository])["repositories"][0][
                    "repositoryArn"
                ]
            ).get("tags"),
            "Key",
            "Value",
        )
        act(
            "ecr repository",
            self.ecr_repository,
            present,
            ours,
            lambda: ecr.delete_repository(repositoryName=self.ecr_repository, force=True),
        )

        logs = self.c("logs")
        present = self._log_group_exists()
        ours = present and _has_tag(
            [
                {"Key": k, "Value": v}
                for k, v in logs.list_tags_log_group(logGroupName=self.log_group).get("tags", {}).items()
            ],
            "Key",
            "Value",
        )
        act("log group", self.log_group, present, ours, lambda: logs.delete_log_group(logGroupName=self.log_group))

        iam = self.c("iam")
        for name in ROLES:
            role = self._role(name)
            ours = bool(role) and _has_tag(iam.list_role_tags(RoleName=name).get("Tags"), "Key", "Value")
            act("iam role", name, bool(role), ours, functools.partial(_delete_role, iam, name))

        ec2 = self.c("ec2")
        groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [SECURITY_GROUP]}])[
            "SecurityGroups"
        ]
        for group in groups:
            act(
                "security group",
                group["GroupId"],
                True,
                _has_tag(group.get("Tags"), "Key", "Value"),
                functools.partial(ec2.delete_security_group, GroupId=group["GroupId"]),
            )
        vpc = self._our_vpc()
        if vpc:
            act("vpc", vpc, True, True, lambda: _delete_vpc(ec2, vpc))
        return steps

    def _running_tasks(self) -> list[dict[str, Any]]:
        """The cluster's tasks not yet stopped, described (for their startedBy: the job that started them)."""
        ecs = self.c("ecs")
        arns = [
            arn
            for page in ecs.get_paginator("list_tasks").paginate(cluster=self.cluster, desiredStatus="RUNNING")
            for arn in page.get("taskArns", [])
        ]
        tasks: list[dict[str, Any]] = []
        for start in range(0, len(arns), 100):  # DescribeTasks takes up to 100
            batch = arns[start : start + 100]
            reply = ecs.describe_tasks(cluster=self.cluster, tasks=batch)
            found = {t["taskArn"]: t for t in reply.get("tasks", [])}
            tasks.extend(found.get(arn, {"taskArn": arn}) for arn in batch)
        return tasks

    def _teardown_task_definitions(self, dry_run: bool) -> list[Step]:
        """Deregister and delete every revision of our families that carries our tag (ACTIVE ones, and INACTIVE
        ones an earlier deregistration left). ListTaskDefinitions' familyPrefix is a WHOLE family name (on AWS
        as on moto): the families come from ListTaskDefinitionFamilies, which matches a prefix."""
        ecs, steps, doomed = self.c("ecs"), [], []
        families = [
            family
            for page in ecs.get_paginator("list_task_definition_families").paginate(
                familyPrefix=FAMILY_PREFIX, status="ALL"
            )
            for family in page.get("families", [])
            if family.startswith(FAMILY_PREFIX)
        ]
        for family in sorted(set(families)):
            for status in ("ACTIVE", "INACTIVE"):
                arns = [
                    arn
                    for page in ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status=status)
                    for arn in page.get("taskDefinitionArns", [])
                ]
                for arn in arns:
                    name = arn.rsplit("/", 1)[-1]
                    tags = ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"]).get("tags")
                    if not _has_tag(tags, "key", "value"):
                        steps.append(Step("task definition", name, "keep (not ours)", f"no {TAG_KEY}={TAG_VALUE} tag"))
                        continue
                    detail = "was ACTIVE" if status == "ACTIVE" else "was INACTIVE: deregistered earlier"
                    steps.append(Step("task definition", name, "delete", detail))
                    doomed.append((arn, status, steps[-1]))
        if dry_run:
            return steps
        for arn, status, _ in doomed:
            if status == "ACTIVE":
                ecs.deregister_task_definition(taskDefinition=arn)
        by_arn = {arn: step for arn, _, step in doomed}
        for start in range(0, len(doomed), 10):  # DeleteTaskDefinitions takes up to 10
            reply = ecs.delete_task_definitions(taskDefinitions=[arn for arn, _, _ in doomed[start : start + 10]])
            for failure in reply.get("failures", []):
                step = by_arn.get(failure.get("arn", ""))
                if step is not None:  # deregistered (no task can start from it) but still listed as INACTIVE
                    step.action, step.detail = "deregistered", f"DeleteTaskDefinitions: {failure.get('reason')}"
        return steps


def _has_tag(tags: list[dict[str, str]] | None, key_name: str, value_name: str) -> bool:
    return any(t.get(key_name) == TAG_KEY and t.get(value_name) == TAG_VALUE for t in tags or ())


def _bucket_tags(s3: Any, bucket: str) -> list[dict[str, str]]:
    try:
        tags: list[dict[str, str]] = s3.get_bucket_tagging(Bucket=bucket).get("TagSet", [])
        return tags
    except Exception as exc:
        if error_code(exc) in ("NoSuchTagSet", "NoSuchTagSetError"):
            return []
        raise


def empty_and_delete_bucket(s3: Any, bucket: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": o["Key"]} for o in page.get("Contents", ())]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", ()):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=bucket)


def _delete_role(iam: Any, name: str) -> None:
    for policy in iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", []):
        iam.detach_role_policy(RoleName=name, PolicyArn=policy["PolicyArn"])
    for policy in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
        iam.delete_role_policy(RoleName=name, PolicyName=policy)
    iam.delete_role(RoleName=name)


def _delete_vpc(ec2: Any, vpc: str) -> None:
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    for gateway in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])[
        "InternetGateways"
    ]:
        ec2.detach_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"], VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=gateway["InternetGatewayId"])
    for table in ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]:
        if not any(a.get("Main") for a in table.get("Associations", ())):
            for association in table.get("Associations", ()):
                ec2.disassociate_route_table(AssociationId=association["RouteTableAssociationId"])
            ec2.delete_route_table(RouteTableId=table["RouteTableId"])
    ec2.delete_vpc(VpcId=vpc)


def set_up(config: Any, dry_run: bool = False) -> tuple[list[Step], dict[str, Any]]:
    """What `starburst setup` and %burst_setup do: plan, or create what is missing and save it to the config."""
    from starburst_jupyter.core.config import save_values

    setup = Setup(
        config.region,
        cluster=config.cluster,
        log_group=config.log_group,
        ecr_repository=config.ecr_repository,
        bucket=config.bucket,
    )
    if dry_run:
        return setup.plan(), {}
    steps, settings = setup.apply()
    save_values(settings)
    return steps, settings


def tear_down(config: Any, dry_run: bool = False) -> list[Step]:
    from starburst_jupyter.core.config import save_values

    setup = Setup(
        config.region,
        cluster=config.cluster,
        log_group=config.log_group,
        ecr_repository=config.ecr_repository,
        bucket=config.bucket,
    )
    steps = setup.teardown(dry_run=dry_run)
    if not dry_run:
        save_values(
            {key: "none" for key in ("bucket", "execution_role_arn", "task_role_arn", "driver_role_arn")}
            | {"subnets": "", "security_groups": ""}
        )
    return steps


def task_role_policy(bucket: str) -> dict[str, Any]:
    """What the workers' task role may do: the bucket's job and warm prefixes, nothing else (`starburst doctor`
    checks a role against it)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"},
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/{top}*" for top in keys.TOP_PREFIXES],
            },
        ],
    }
