"""Errors of the worker image (all BurstErrors, so every face shows them as such)."""

from __future__ import annotations

from starburst_jupyter.errors import BurstError


class BurstImageError(BurstError):
    """The worker image cannot be made, found or pushed; the message says what to do."""


class BurstSkewError(BurstImageError):
    """The worker image and the kernel differ in something that breaks jobs (Python, cloudpickle, a package)."""
