"""The pip distributions that are builds of a framework the matrix knows: one table for every step.

The probe reports frameworks by distribution name; diagnosis, linkage, target inference and the plan ask
which framework a distribution is a build of, and which distributions fight over one import. The host-side
scripts (the collection's gpu_probe and gpu_check) run without this package and keep their own lists; a
test holds them to this table.
"""

from __future__ import annotations

from collections.abc import Mapping

DISTRIBUTIONS: Mapping[str, str] = {
    # tensorflow-cpu is TensorFlow too: judging it against its version is what names it FRAMEWORK_CPU_ONLY on a
    # GPU host. tensorflow-intel is what `tensorflow` depends on for Windows builds (2.11+), seen in copied envs.
    "tensorflow": "tensorflow",
    "tensorflow-gpu": "tensorflow",
    "tensorflow-cpu": "tensorflow",
    "tensorflow-intel": "tensorflow",
    "tf-nightly": "tensorflow",
    "tf-nightly-gpu": "tensorflow",
    "tf-nightly-cpu": "tensorflow",
    "torch": "pytorch",
}

#: The names one TensorFlow release is published under: two of them in one env share the `tensorflow` import
#: and overwrite each other's files (FRAMEWORK_CONFLICT).
TF_RELEASE_NAMES = frozenset({"tensorflow", "tensorflow-gpu", "tensorflow-cpu"})


def framework_of(distribution: str) -> str | None:
    """The matrix framework a distribution is a build of ("tf-nightly" -> "tensorflow"), else None."""
    return DISTRIBUTIONS.get(distribution.lower())


def family(framework: str) -> frozenset[str]:
    """Every distribution that is a build of `framework`."""
    return frozenset(d for d, f in DISTRIBUTIONS.items() if f == framework)


__all__ = ["DISTRIBUTIONS", "TF_RELEASE_NAMES", "family", "framework_of"]
