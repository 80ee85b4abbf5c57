"""ECR: the image is pushed when its tag is missing, reused when it is there, and the registry
token never shows in a process's arguments or environment, nor in a log.

moto serves the ECR API (GetAuthorizationToken, DescribeImages, repositories); moto has no Docker
registry endpoint, so Debian's docker-registry on 127.0.0.1 stands in for it (STARBURST_ECR_REGISTRY).
After the push the test does what ECR does on its own: it registers the pushed manifest (PutImage).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from starburst_jupyter import envimage
from starburst_jupyter.envimage.registry import REGISTRY_OVERRIDE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


class ProcessWatch(threading.Thread):
    """Reads every process's argv and environment, 20 times a second, looking for secrets."""

    def __init__(self, secrets: list[str]):
        super().__init__(daemon=True)
        self.secrets = [s.encode() for s in secrets]
        self.found: list[str] = []
        self.scans = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                for part in ("cmdline", "environ"):
                    try:
                        data = (proc / part).read_bytes()
                    except OSError:
                        continue
                    if any(s in data for s in self.secrets):
                        self.found.append(f"pid {proc.name} {part}")
            self.scans += 1
            time.sleep(0.05)


def registry_get(host: str, path: str, accept: str = "application/json") -> tuple[bytes, str]:
    request = urllib.request.Request(f"http://{host}{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read(), response.headers.get("Content-Type", "")


def test_push_reaches_the_registry_and_a_second_run_reuses_it(
    moto_env, moto_server, registry, dockerd, docker_client, worker_config, worker_image, monkeypatch, caplog
):
    monkeypatch.setenv(REGISTRY_OVERRIDE, registry["host"])
    ecr = moto_server.client("ecr")
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().partition(":")[2]
    assert len(password) > 8
    env, repo = worker_image["env"], worker_config.ecr_repository
    events: list = []
    watch = ProcessWatch([password, token])
    watch.start()
    try:
        pushed = envimage.ensure_worker_image(worker_config, on_progress=events.append, client=docker_client, env=env)
    finally:
        watch.halt.set()
        watch.join()
    assert pushed == f"{registry['host']}/{repo}:{env.tag}"
    assert envimage.last_result["pushed"] is True
    # the push reached the registry, with progress on the way
    tags = json.loads(registry_get(registry["host"], f"/v2/{repo}/tags/list")[0])["tags"]
    assert env.tag in tags
    pushes = [e for e in events if e.phase == "push"]
    assert pushes and any(e.total for e in pushes) and pushes[-1].message
    assert events[-1].phase == "done"
    # no credential anywhere: process arguments and environments (watched throughout), logs, progress, ~/.docker
    assert watch.scans > 3 and watch.found == []
    logs = [
        dockerd["log"].read_text(errors="replace"),
        registry["log"].read_text(errors="replace"),
        caplog.text,
        "\n".join(e.message for e in events),
        repr(envimage.last_result),
    ]
    docker_config = Path.home() / ".docker" / "config.json"
    if docker_config.exists():
        logs.append(docker_config.read_text())
    assert not any(secret in text for text in logs for secret in (password, token))
    # ECR registers what was pushed (moto cannot: the test plays that part)
    manifest, media_type = registry_get(
        registry["host"], f"/v2/{repo}/manifests/{env.tag}", "application/vnd.docker.distribution.manifest.v2+json"
    )
    ecr.put_image(
        repositoryName=repo, imageManifest=manifest.decode(), imageTag=env.tag, imageManifestMediaType=media_type
    )
    # a second run finds the tag with DescribeImages and neither builds nor pushes
    images_before = sorted(i.id for i in docker_client.images.list(all=True))
    again: list = []
    assert (
        envimage.ensure_worker_image(worker_config, on_progress=again.append, client=docker_client, env=env) == pushed
    )
    assert [e.phase for e in again] == ["check", "reuse"]
    assert envimage.last_result["built"] is False and envimage.last_result["pushed"] is False
    assert sorted(i.id for i in docker_client.images.list(all=True)) == images_before
    repos = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    tags_of_repo = ecr.list_tags_for_resource(resourceArn=repos[0]["repositoryArn"])["tags"]
    assert {"Key": "starburst:managed", "Value": "true"} in tags_of_repo
