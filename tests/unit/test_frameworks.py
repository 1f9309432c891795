"""One table of framework distributions (remediator.frameworks) for every step, and the host scripts held to it."""

from __future__ import annotations

import pytest
from factories import host, tf, venv
from hostscripts import gpu_probe

from remediator.diagnosis import diagnose
from remediator.frameworks import DISTRIBUTIONS, TF_RELEASE_NAMES, family, framework_of
from remediator.matrix import load_matrix, parse_target
from remediator.probe import parse
from remediator.targets import infer_targets


def test_the_probe_reports_every_distribution_a_linux_host_can_have() -> None:
    # tensorflow-intel is only a dependency of Windows builds: no Linux env has it installed for real.
    assert set(DISTRIBUTIONS) - {"tensorflow-intel"} <= set(gpu_probe().FRAMEWORK_DISTS)
    assert set(parse._TF_DISTS) == family("tensorflow") - {"tensorflow-intel"}


@pytest.mark.parametrize(("dist", "framework"), [
    ("tensorflow", "tensorflow"), ("TensorFlow-GPU", "tensorflow"), ("tf-nightly-cpu", "tensorflow"),
    ("torch", "pytorch"), ("jax", None), ("tensorflow_gpu", None),
])
def test_framework_of(dist: str, framework: str | None) -> None:
    assert framework_of(dist) == framework


def test_release_names_are_tensorflow() -> None:
    assert family("tensorflow") >= TF_RELEASE_NAMES and family("pytorch") == {"torch"}


def test_a_nightly_cpu_build_is_judged_as_tensorflow_everywhere() -> None:
    """tf-nightly-cpu was missing from two of the six copies of this table: linkage and the version check did
    not count it as TensorFlow."""
    facts = host(envs=(venv("/opt/nightly", "3.11.4", tf("2.16.1", None, None, name="tf-nightly-cpu",
                                                       cuda_build=False)),))
    matrix = load_matrix()
    (inferred,) = [t for t in infer_targets(facts, matrix) if t.envs == ("/opt/nightly",)]
    assert inferred.framework == "tensorflow"
    codes = {f.code for f in diagnose(facts, parse_target("tensorflow==2.16.1"), matrix)}
    assert "FRAMEWORK_CPU_ONLY" in codes and "FRAMEWORK_MISSING" not in codes  # it was "missing" before
