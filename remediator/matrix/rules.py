"""The rules that turn a tested version into a working range, one small function per rule id.

The data (`data/rules.yaml`) names and explains each rule with its source; this module is the
code behind each id, so a framework row can say `cuda_rule: cuda-minor-compat` and get a range.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from remediator.matrix.model import VersionRange
from remediator.versions import RawVersion

_SERIES = re.compile(r"^(\d+)\.(\d+)$")


def python_range(raw: str) -> VersionRange:
    """TensorFlow's "2.7, 3.3-3.6" notation: series and inclusive series ranges, any of them."""
    specs: list[str] = []
    for item in raw.split(","):
        text = item.strip()
        low, sep, high = text.partition("-")
        lo = _SERIES.match(low.strip())
        hi = _SERIES.match(high.strip()) if sep else lo
        if not lo or not hi:
            raise ValueError(f"bad Python range {raw!r}: expected items like 3.6 or 3.6-3.8")
        top_major, top_minor = int(hi.group(1)), int(hi.group(2))
        if (int(lo.group(1)), int(lo.group(2))) > (top_major, top_minor):
            raise ValueError(f"bad Python range {raw!r}: {text} runs backwards")
        specs.append(f">={low.strip()},<{top_major}.{top_minor + 1}")
    return VersionRange(raw, tuple(specs))


def _same_major(version: RawVersion) -> str:
    major, minor = version.major_minor()
    return f">={major}.{minor},<{major + 1}"


def _lowest_per_major(versions: Iterable[RawVersion]) -> list[RawVersion]:
    """Several builds of one major (PyTorch variants) widen to the lowest of them."""
    lowest: dict[int, RawVersion] = {}
    for v in versions:
        if v.major not in lowest or v < lowest[v.major]:
            lowest[v.major] = v
    return [lowest[m] for m in sorted(lowest)]


def _exact_minor(version: RawVersion) -> str:
    major, minor = version.major_minor()
    return f"=={major}.{minor}.*"


def _range(rule: str, specs: Iterable[str]) -> VersionRange:
    unique = tuple(dict.fromkeys(specs))
    return VersionRange(" || ".join(unique), unique, rule)


# rule id -> how a range is built from the versions a row names (the tested one, or every variant's).
def _minor_compat(rule: str, versions: list[RawVersion]) -> VersionRange:
    return _range(rule, (_same_major(v) for v in _lowest_per_major(versions)))


CUDA_RULES: dict[str, Callable[[list[RawVersion]], VersionRange]] = {
    "cuda-minor-compat": lambda vs: _minor_compat("cuda-minor-compat", vs),
    "cuda-exact-minor": lambda vs: _range("cuda-exact-minor", (_exact_minor(v) for v in vs)),
    "tested-only": lambda vs: _range("tested-only", (_exact_minor(v) for v in vs)),
    "bundled-variant": lambda vs: _range("bundled-variant", (_exact_minor(v) for v in vs)),
}

CUDNN_RULES: dict[str, Callable[[list[RawVersion]], VersionRange]] = {
    "cudnn-same-major": lambda vs: _minor_compat("cudnn-same-major", vs),
    "cudnn-exact-minor": lambda vs: _range("cudnn-exact-minor", (_exact_minor(v) for v in vs)),
}

# Rules under which a driver older than the toolkit's own can run it (the major's compat floor).
MINOR_COMPAT_RULES = frozenset({"cuda-minor-compat", "bundled-variant"})
