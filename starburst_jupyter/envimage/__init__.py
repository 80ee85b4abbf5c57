"""Environment sync: the kernel's packages become a worker image tagged by their content hash.

    ensure_local_image(config)   -> "starburst-worker:<hash>" on the local Docker engine (built if missing)
    ensure_worker_image(config)  -> "<registry>/starburst-worker:<hash>" in ECR (reused if the tag is there,
                                    else built and pushed)
    check_skew(image_env, ...)   -> the differences between an image and this kernel that break jobs

Progress goes to `on_progress` as events.ImageBuildProgress. `config` is a config.Config (keys used:
image, base_image, requirements, arch, region, ecr_repository, auto_build).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from starburst_jupyter.envimage.build import LABEL_ENV, LABEL_HASH, Progress, Reporter, build, check_disk
from starburst_jupyter.envimage.errors import BurstImageError, BurstSkewError
from starburst_jupyter.envimage.skew import check_skew, ensure_no_skew, image_env_of
from starburst_jupyter.envimage.snapshot import (
    EnvSpec,
    capture,
    capture_kernel,
    capture_requirements,
    platform_for,
)

__all__ = [
    "BurstImageError",
    "BurstSkewError",
    "EnvSpec",
    "LABEL_ENV",
    "LABEL_HASH",
    "capture",
    "capture_kernel",
    "capture_requirements",
    "check_disk",
    "check_skew",
    "docker_client",
    "ensure_local_image",
    "ensure_no_skew",
    "ensure_worker_image",
    "image_env_of",
    "image_status",
    "local_ref",
    "missing_image_message",
    "platform_for",
    "rebuild",
]

#: What the last ensure_* call did (for measurements and `starburst image`): built, reused, pushed, seconds.
last_result: dict[str, Any] = {}


def docker_client(timeout: int = 600) -> Any:
    """The local Docker engine (DOCKER_HOST or the default socket), or a clear error."""
    try:
        import docker
    except ImportError:
        raise BurstImageError(
            "The docker backend and image builds need the Docker SDK: pip install 'starburst-jupyter[docker]'."
        ) from None
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, connection refused, missing socket
        raise BurstImageError(
            f"No Docker engine reachable ({exc}). Start Docker (dockerd) or set DOCKER_HOST."
        ) from None
    return client


def local_ref(config: Any, env: EnvSpec) -> str:
    return f"{config.ecr_repository}:{env.tag}"


def missing_image_message(ref: str, where: str) -> str:
    return (
        f"No worker image for this environment ({ref}) {where}. Build it with %burst_rebuild (or "
        f"`starburst image build` in a terminal), or let jobs build it first with %burst_config auto_build=true. "
        f"A first build takes a few minutes."
    )


def _has_image(client: Any, ref: str) -> bool:
    import docker

    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def ensure_local_image(
    config: Any,
    *,
    on_progress: Progress | None = None,
    force: bool = False,
    build_missing: bool = True,
    client: Any = None,
    job_id: str = "",
    env: EnvSpec | None = None,
) -> str:
    """The worker image for config's environment on the local engine, built if missing (or if force)."""
    client = client or docker_client()
    if config.image and not force:
        return config.image
    env = env or capture(config)
    ref = local_ref(config, env)
    report = Reporter(on_progress, job_id, ref)
    started = time.monotonic()
    if not force and _has_image(client, ref):
        report("reuse", f"using {ref}: the image of this environment exists")
        last_result.clear()
        last_result.update(image=ref, built=False, seconds=time.monotonic() - started, hash=env.hash)
        return ref
    if not build_missing:
        raise BurstImageError(missing_image_message(ref, "on the local Docker engine"))
    facts = build(env, ref, client=client, on_progress=on_progress, force=force, job_id=job_id)
    last_result.clear()
    last_result.update(facts, built=True, hash=env.hash)
    return ref


def ensure_worker_image(
    config: Any,
    *,
    on_progress: Progress | None = None,
    force: bool = False,
    build_missing: bool = True,
    client: Any = None,
    ecr: Any = None,
    job_id: str = "",
    env: EnvSpec | None = None,
) -> str:
    """The worker image for config's environment in ECR: reused when the tag is there (DescribeImages),
    otherwise built (or taken from the local engine) and pushed. Returns the image URI Fargate runs."""
    from starburst_jupyter.envimage import registry

    if config.image and not force:
        return config.image
    env = env or capture(config)
    ecr = ecr or registry.ecr_client(config.region)
    repo, tag = config.ecr_repository, env.tag
    started = time.monotonic()
    report = Reporter(on_progress, job_id, f"{repo}:{tag}")
    report("check", f"looking for {repo}:{tag} in ECR")
    if not force and registry.tag_exists(ecr, repo, tag):
        remote = f"{registry.registry_host(ecr)}/{repo}:{tag}"
        report("reuse", f"using {remote}: the image of this environment is in ECR")
        last_result.clear()
        last_result.update(image=remote, built=False, pushed=False, seconds=time.monotonic() - started, hash=env.hash)
        return remote
    client = client or docker_client()
    local = ensure_local_image(
        dataclasses.replace(config, image=None) if config.image else config,
        on_progress=on_progress,
        force=force,
        build_missing=build_missing,
        client=client,
        job_id=job_id,
        env=env,
    )
    built = dict(last_result)
    registry.ensure_repository(ecr, repo)
    auth = registry.get_auth(ecr)
    remote_repo = f"{auth.registry}/{repo}"
    report.image = f"{remote_repo}:{tag}"
    report("push", f"logging in to {auth.registry}")
    registry.login(client, auth)
    report("push", f"pushing {remote_repo}:{tag}")
    registry.push(client, local, remote_repo, tag, auth, report)
    del auth
    seconds = time.monotonic() - started
    report("done", f"pushed {remote_repo}:{tag} in {seconds:.0f} s")
    last_result.clear()
    last_result.update(built, image=f"{remote_repo}:{tag}", pushed=True, seconds=seconds, hash=env.hash)
    return f"{remote_repo}:{tag}"


def image_status(config: Any, *, client: Any = None, ecr: Any = None, remote: bool = True) -> dict[str, Any]:
    """What `starburst image` shows: the environment's hash and tag, and where its image exists."""
    env = capture(config)
    status: dict[str, Any] = {
        "hash": env.hash,
        "tag": env.tag,
        "source": env.source,
        "python": env.python,
        "arch": env.arch,
        "platform": env.platform,
        "base_image": env.base_image,
        "packages": len(env.pins) + len(env.local),
        "local_projects": [p.path for p in env.local],
        "skipped": list(env.skipped),
        "image_override": config.image,
    }
    try:
        client = client or docker_client(timeout=10)
        status["local"] = local_ref(config, env) if _has_image(client, local_ref(config, env)) else None
    except BurstImageError as exc:
        status["local"] = f"unknown: {exc}"
    if remote:
        from starburst_jupyter.envimage import registry

        try:
            ecr = ecr or registry.ecr_client(config.region)
            status["ecr"] = registry.tag_exists(ecr, config.ecr_repository, env.tag)
        except Exception as exc:  # no credentials, no network: say so
            status["ecr"] = f"unknown: {type(exc).__name__}: {exc}"
    return status


def rebuild(config: Any, *, push: bool | None = None, on_progress: Progress | None = None) -> str:
    """What %burst_rebuild and `starburst image build` do: build this environment's image now, even if one
    with its tag exists (nocache), and push it to ECR when `push` (default: when the backend is fargate)."""
    push = (getattr(config, "backend", "local") == "fargate") if push is None else push
    if push:
        return ensure_worker_image(config, on_progress=on_progress, force=True)
    return ensure_local_image(config, on_progress=on_progress, force=True)
