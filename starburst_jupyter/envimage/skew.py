"""Version skew: the image records its Python and packages; a kernel that differs in what matters
is refused before launch, with the difference named (not as an unpickling error on a worker)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starburst_jupyter.envimage.build import LABEL_ENV
from starburst_jupyter.envimage.errors import BurstSkewError
from starburst_jupyter.envimage.snapshot import SELF, canonical, kernel_versions, python_xy

#: What always matters: the pickle format of every job, and the job protocol.
ALWAYS = ("cloudpickle", SELF)


def image_env_of(client: Any, ref: str) -> dict[str, Any] | None:
    """The environment an image records (its label), or None for an image starburst did not build."""
    labels = client.images.get(ref).labels or {}
    text = labels.get(LABEL_ENV)
    return json.loads(text) if text else None


def check_skew(
    image_env: dict[str, Any],
    kernel: dict[str, str] | None = None,
    *,
    python: str | None = None,
    matters: Iterable[str] = (),
) -> list[str]:
    """Differences between an image and this kernel that would break a job: Python X.Y, cloudpickle,
    starburst-jupyter, and each package in `matters` (e.g. those the job's code imports)."""
    kernel = kernel_versions() if kernel is None else {canonical(k): v for k, v in kernel.items()}
    python = python or python_xy()
    packages = {canonical(k): v for k, v in image_env.get("packages", {}).items()}
    problems = []
    if image_env.get("python") != python:
        problems.append(f"Python {python} in the kernel, Python {image_env.get('python')} in the image")
    for name in dict.fromkeys([*ALWAYS, *map(canonical, matters)]):
        mine, theirs = kernel.get(name), packages.get(name)
        if mine is not None and mine != theirs:
            problems.append(f"{name} {mine} in the kernel, {theirs or 'not installed'} in the image")
    return problems


def ensure_no_skew(
    image_env: dict[str, Any] | None, ref: str, *, matters: Iterable[str] = (), kernel: dict[str, str] | None = None
) -> None:
    if image_env is None:
        return  # an image of the user's own making: nothing recorded to compare
    problems = check_skew(image_env, kernel, matters=matters)
    if problems:
        raise BurstSkewError(
            f"The worker image {ref} does not match this kernel: {'; '.join(problems)}. Results would fail to "
            f"unpickle (or code would behave differently) on the workers. Rebuild the image for this environment "
            f"(%burst_rebuild, or `starburst image build`), or unset config `image` so the image for this "
            f"environment is used."
        )
