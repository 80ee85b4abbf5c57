"""ECR: is the tag there (DescribeImages), log the Docker engine in, push with progress.

The registry token is held in memory only: it goes from GetAuthorizationToken straight into the
Docker SDK's login and push calls (an HTTP header to the engine), never into a command line, an
environment variable, a shell string, a file or a log line.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any
from urllib.parse import urlparse

from starburst_jupyter.envimage.build import Reporter
from starburst_jupyter.envimage.errors import BurstImageError

#: host[:port] that stands in for the account's ECR registry endpoint (a mirror, or a local registry in tests).
REGISTRY_OVERRIDE = "STARBURST_ECR_REGISTRY"


def ecr_client(region: str) -> Any:
    from starburst_jupyter.backends.fargate.clients import client

    return client("ecr", region)  # botocore's standard retries and timeouts, as every AWS call of ours


class RegistryAuth:
    """Username, password and registry host from ECR; the password never shows in repr or str."""

    __slots__ = ("username", "_password", "registry")

    def __init__(self, username: str, password: str, registry: str):
        self.username, self._password, self.registry = username, password, registry

    def as_auth_config(self) -> dict[str, str]:
        return {"username": self.username, "password": self._password, "serveraddress": self.registry}

    def __repr__(self) -> str:
        return f"RegistryAuth(username={self.username!r}, registry={self.registry!r}, password=<hidden>)"

    __str__ = __repr__


def get_auth(ecr: Any) -> RegistryAuth:
    data = ecr.get_authorization_token()["authorizationData"][0]
    username, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    registry = os.environ.get(REGISTRY_OVERRIDE) or urlparse(data["proxyEndpoint"]).netloc
    return RegistryAuth(username, password, registry)


def registry_host(ecr: Any, account: str | None = None, region: str | None = None) -> str:
    """The registry host images are named by (without logging in, when the override or account is known)."""
    override = os.environ.get(REGISTRY_OVERRIDE)
    if override:
        return override
    if account and region:
        return f"{account}.dkr.ecr.{region}.amazonaws.com"
    return get_auth(ecr).registry


def ensure_repository(ecr: Any, name: str) -> None:
    try:
        ecr.describe_repositories(repositoryNames=[name])
    except ecr.exceptions.RepositoryNotFoundException:
        ecr.create_repository(
            repositoryName=name, imageTagMutability="IMMUTABLE", tags=[{"Key": "starburst:managed", "Value": "true"}]
        )


def tag_exists(ecr: Any, repository: str, tag: str) -> bool:
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return False
    return bool(found.get("imageDetails"))


def login(client: Any, auth: RegistryAuth) -> None:
    """Log the Docker engine in through the SDK (an API call; the SDK keeps the result in memory)."""
    try:
        client.login(
            username=auth.username, password=auth.as_auth_config()["password"], registry=auth.registry, reauth=True
        )
    except Exception as exc:  # the SDK's error text never holds the password
        raise BurstImageError(f"Could not log in to the image registry {auth.registry}: {exc}") from None


def push(client: Any, local_ref: str, remote_repo: str, tag: str, auth: RegistryAuth, report: Reporter) -> None:
    """Tag local_ref as remote_repo:tag and push it, reporting bytes pushed over all layers."""
    image = client.images.get(local_ref)
    image.tag(remote_repo, tag)
    layers: dict[str, tuple[int, int]] = {}
    last = 0.0
    stream = client.api.push(remote_repo, tag=tag, stream=True, decode=True, auth_config=auth.as_auth_config())
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            raise BurstImageError(f"Pushing {remote_repo}:{tag} failed: {detail}")
        if "aux" in chunk and chunk["aux"].get("Digest"):
            status, layer = f"pushed {tag} as {chunk['aux']['Digest']}", ""
        else:
            status, layer = chunk.get("status", ""), chunk.get("id", "")
        if not status:
            continue
        detail = chunk.get("progressDetail") or {}
        if layer and detail.get("total"):
            layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif layer and status in ("Pushed", "Layer already exists") and layer in layers:
            layers[layer] = (layers[layer][1], layers[layer][1])
        now = time.monotonic()
        if status != "Pushing" or now - last >= 0.5:
            current = sum(c for c, _ in layers.values())
            total = sum(t for _, t in layers.values())
            report("push", f"{layer + ': ' if layer else ''}{status}".strip(), current or None, total or None)
            last = now
