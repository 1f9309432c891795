"""The compute capability of a GPU from its model name, for drivers that do not report it (data/gpus.yaml)."""

from __future__ import annotations

import functools
import re
from importlib import resources

import yaml

from remediator.errors import MatrixError


@functools.lru_cache(maxsize=1)
def _table() -> tuple[tuple[re.Pattern[str], str], ...]:
    text = resources.files("remediator.matrix").joinpath("data/gpus.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    rows = []
    for i, row in enumerate(doc.get("gpus") or []):
        try:
            rows.append((re.compile(str(row["pattern"]), re.IGNORECASE), str(row["compute_capability"])))
        except (KeyError, TypeError, re.error) as exc:
            raise MatrixError(f"matrix/data/gpus.yaml: gpus[{i}]: {exc}") from None
    return tuple(rows)


@functools.lru_cache(maxsize=1024)
def compute_capability_of(name: str) -> str | None:
    """"8.6" for "NVIDIA GeForce RTX 3090"; None for a name the table does not know."""
    for pattern, cc in _table():
        if pattern.search(name):
            return cc
    return None


@functools.lru_cache(maxsize=1)
def _first_cuda() -> dict[str, str]:
    text = resources.files("remediator.matrix").joinpath("data/gpus.yaml").read_text(encoding="utf-8")
    return {str(k): str(v) for k, v in (yaml.safe_load(text).get("first_cuda") or {}).items()}


def first_cuda_for(compute_capability: str) -> str | None:
    """The oldest CUDA that compiles for this architecture ("11.0" for "8.0"); None when not in the table."""
    return _first_cuda().get(compute_capability)


def gpu_compute_capability(reported: str | None, name: str) -> str | None:
    """What the driver reported, else what the model name says (drivers before R510 do not report it)."""
    return reported or compute_capability_of(name)


__all__ = ["compute_capability_of", "first_cuda_for", "gpu_compute_capability"]
