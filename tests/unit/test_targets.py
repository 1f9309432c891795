"""Target inference: each env's framework, normalised to what the matrix knows, deduplicated by version."""

from __future__ import annotations

from factories import host, tf, toolkit, torch, venv

from remediator.facts import Framework, PythonEnv
from remediator.matrix import Target, load_matrix
from remediator.targets import UNKNOWN_CODE, InferredTarget, diagnose_inferred, infer_targets, known

MATRIX = load_matrix()
SYSTEM = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3", python_version="3.10.12")


def test_one_env_gives_its_framework_as_the_target() -> None:
    facts = host(envs=(SYSTEM, venv("/opt/tf", "3.10.12", tf("2.12.0", "11.8", "8"))))
    assert infer_targets(facts, MATRIX) == (
        InferredTarget("tensorflow", "2.12.0", ("/opt/tf",), ("tensorflow 2.12.0",)),)
    (only,) = infer_targets(facts, MATRIX)
    assert only.target == Target("tensorflow", "2.12.0")
    assert only.describe() == "tensorflow==2.12.0 inferred from /opt/tf"


def test_names_and_versions_are_normalised_to_the_matrix() -> None:
    facts = host(envs=(
        venv("/opt/old", "3.8.10", tf("2.4.1", "11.0", "8", name="tensorflow-gpu")),
        venv("/opt/torch", "3.11.6", torch("2.1.0+cu121", "12.1")),
        venv("/opt/short", "3.10.12", tf("2.12", "11.8", "8")),
    ))
    got = {(t.framework, t.version): t.envs for t in infer_targets(facts, MATRIX)}
    assert got == {("tensorflow", "2.4.1"): ("/opt/old",), ("pytorch", "2.1.0"): ("/opt/torch",),
                   ("tensorflow", "2.12.0"): ("/opt/short",)}


def test_the_same_version_in_several_envs_is_one_target_that_keeps_every_env() -> None:
    facts = host(envs=(
        venv("/opt/a", "3.10.12", tf("2.12.0", "11.8", "8")),
        venv("/opt/b", "3.10.12", tf("2.12.0", "11.8", "8", name="tensorflow-gpu")),
        venv("/opt/c", "3.11.6", torch("2.1.0+cu121", "12.1")),
        venv("/opt/d", "3.11.6", torch("2.1.0", "12.1")),
    ))
    tf_target, torch_target = infer_targets(facts, MATRIX)
    assert (tf_target.label, tf_target.envs) == ("tensorflow==2.12.0", ("/opt/a", "/opt/b"))
    assert tf_target.installed == ("tensorflow 2.12.0", "tensorflow-gpu 2.12.0")
    assert (torch_target.label, torch_target.envs) == ("pytorch==2.1.0", ("/opt/c", "/opt/d"))
    assert torch_target.installed == ("torch 2.1.0+cu121", "torch 2.1.0")


def test_a_host_with_no_framework_has_no_target() -> None:
    assert infer_targets(host(envs=(SYSTEM, venv("/opt/empty", "3.11.6"))), MATRIX) == ()
    assert infer_targets(host(), MATRIX) == ()


def test_what_the_matrix_does_not_know_is_a_warning_not_a_crash() -> None:
    facts = host(envs=(
        venv("/opt/future", "3.12.1", tf("9.9.9", "13.0", "9")),
        venv("/opt/nightly", "3.11.6", tf("2.16.0.dev20231101", None, None, name="tf-nightly")),
        venv("/opt/jax", "3.11.6", Framework(name="jax", version="0.4.20+cuda12")),
        venv("/opt/odd", "3.11.6", torch("garbage", None)),
    ))
    inferred = infer_targets(facts, MATRIX)
    assert [(t.framework, t.version, t.target) for t in inferred] == [
        ("tensorflow", "9.9.9", None), ("tensorflow", "2.16.0.dev20231101", None), ("jax", "0.4.20", None),
        ("pytorch", "garbage", None)]
    assert "no tensorflow 9.9.9 in the matrix; nearest:" in (inferred[0].unknown or "")
    assert "pre-release or nightly" in (inferred[1].unknown or "")
    assert "no framework 'jax'" in (inferred[2].unknown or "")
    assert "not a version" in (inferred[3].unknown or "")
    assert known(inferred) == []
    findings = diagnose_inferred(facts, inferred, MATRIX)
    assert [f.code for f in findings] == [UNKNOWN_CODE] * 4
    assert all(f.severity == "warning" for f in findings)
    assert any(f.message.startswith("tensorflow 9.9.9 in /opt/future is unknown to the matrix") for f in findings)


def test_diagnosis_covers_every_inferred_target() -> None:
    # TF 2.12 needs the system CUDA 11.x, which the default link misses; torch brings its own and is fine.
    facts = host(toolkits=(toolkit("11.8.89"), toolkit("12.1.105", default=True)),
                 envs=(SYSTEM, venv("/opt/tf", "3.10.12", tf("2.12.0", "11.8", "8")),
                       venv("/opt/torch", "3.11.6", torch("2.1.0+cu121", "12.1"))))
    codes = {f.code for f in diagnose_inferred(facts, infer_targets(facts, MATRIX), MATRIX)}
    assert "CUDA_WRONG_DEFAULT" in codes
