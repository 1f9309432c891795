"""The planner on facts fixtures: exact actions, statuses, what is kept, and the plan file schema."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest
from factories import (
    cudnn_copy_in_toolkit,
    cudnn_deb,
    cudnn_wheel,
    driver,
    host,
    ld_path,
    tf,
    toolkit,
    torch,
    venv,
)

from remediator.facts import Driver, HostFacts, PythonEnv
from remediator.matrix import load_matrix, parse_target
from remediator.plan import Action, HostPlan, Plan, Policy, fingerprint, plan_host, plan_inferred, unreachable

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "plan-schema.json").read_text())
MATRIX = load_matrix()
VENV_TF = "/opt/remediator/venvs/tensorflow-2.4.1"
SYSTEM_PY38 = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3", python_version="3.8.10")


def plan_for(facts: HostFacts, target: str, policy: Policy | None = None) -> HostPlan:
    policy = policy or Policy()
    result = plan_host(facts, parse_target(target), MATRIX, policy)
    validate(Plan(hosts=(result,), matrix_version=MATRIX.version, policy=policy,
                  created_at="2026-11-26T00:00:00+00:00"))
    return result


def validate(plan: Plan) -> None:
    jsonschema.validate(json.loads(json.dumps(plan.to_dict())), SCHEMA)


def actions(result: HostPlan, kind: str) -> list[Action]:
    return [a for a in result.actions if a.kind == kind]


def quarantined(result: HostPlan) -> set[str]:
    return {a.params["path"] for a in actions(result, "quarantine_path")}


def two_toolkits(**overrides: object) -> HostFacts:
    base: dict[str, object] = dict(
        driver=driver("450.80.02"),
        toolkits=(toolkit("10.1.243", default=True), toolkit("11.0.221")),
        cudnn=(cudnn_copy_in_toolkit("7.6.5", "/usr/local/cuda-10.1"),
               cudnn_copy_in_toolkit("8.0.5", "/usr/local/cuda-11.0")),
        loader=ld_path("/usr/local/cuda/lib64"),
        envs=(SYSTEM_PY38, venv("/opt/venvs/tf", "3.8.10", tf("2.4.1", "11.0", "8"))),
    )
    base.update(overrides)
    return host(**base)


def test_two_toolkits_exact_actions() -> None:
    result = plan_for(two_toolkits(), "tensorflow==2.4.1")
    assert result.status == "changes"
    assert [a.kind for a in result.actions] == [
        "quarantine_path", "set_cuda_link", "create_venv", "pip_install", "pin_loader_path"]
    assert quarantined(result) == {"/usr/local/cuda-10.1"}
    link = actions(result, "set_cuda_link")[0].params
    assert (link["target"], link["previous"]) == ("/usr/local/cuda-11.0", "/usr/local/cuda-10.1")
    assert actions(result, "create_venv")[0].params == {"path": VENV_TF, "python": "/usr/bin/python3"}
    assert actions(result, "pip_install")[0].params["requirements"] == ["tensorflow==2.4.1"]
    assert actions(result, "pin_loader_path")[0].params["ld_library_path"] == ["/usr/local/cuda-11.0/lib64"]
    # /usr/local/cuda/lib64 in profile.d is right once the link is re-pointed: the file stays.
    assert "/etc/profile.d/cuda.sh" not in quarantined(result)
    assert any(k.startswith("/usr/local/cuda-11.0: CUDA 11.0.221 fits") for k in result.kept)
    assert any(k.startswith("/opt/venvs/tf: existing env left") for k in result.kept)
    assert result.fingerprint and result.fingerprint.startswith("sha256:")


def test_toolkit_another_env_needs_is_kept_and_says_so() -> None:
    facts = two_toolkits(envs=(SYSTEM_PY38, venv("/opt/venvs/tf", "3.8.10", tf("2.4.1", "11.0", "8")),
                               venv("/opt/legacy", "3.7.5", tf("2.3.0", "10.1", "7"))))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert "/usr/local/cuda-10.1" not in quarantined(result)
    assert any("/usr/local/cuda-10.1" in k and "needed by /opt/legacy (tensorflow 2.3.0)" in k for k in result.kept)


def test_packaged_toolkit_is_removed_with_its_exact_version() -> None:
    deb = dataclasses.replace(toolkit("10.1.243", default=True, method="deb"),
                              packages=("cuda-toolkit-10-1=10.1.243-1",))
    result = plan_for(two_toolkits(toolkits=(deb, toolkit("11.0.221"))), "tensorflow==2.4.1")
    removal = actions(result, "remove_package")
    assert [(a.params["name"], a.params["version"]) for a in removal] == [("cuda-toolkit-10-1", "10.1.243-1")]
    assert "/usr/local/cuda-10.1" not in quarantined(result)


def test_bundled_torch_takes_system_cudnn_off_the_global_path() -> None:
    # pytorch/pytorch#80637: a cuDNN 8.0.3 dir on LD_LIBRARY_PATH in front of the wheel's cuDNN.
    facts = host(driver=driver("470.57.02"), toolkits=(toolkit("11.0.221", default=True),),
                 cudnn=(cudnn_copy_in_toolkit("8.0.3", "/usr/local/cuda-11.0"),),
                 loader=ld_path("/usr/local/cuda-11.0/lib64", source="/etc/profile.d/cuda-11.sh"),
                 envs=(SYSTEM_PY38, venv("/home/ml/venv", "3.8.13", torch("1.12.0+cu113", "11.3"))))
    result = plan_for(facts, "pytorch==1.12.0")
    assert result.status == "changes"
    assert quarantined(result) == {"/etc/profile.d/cuda-11.sh"}
    # PyPI's 1.12.0 is the cu102 build, without sm_80 code for this host's A100s: the CUDA 11.6 build.
    assert actions(result, "pip_install")[0].params["requirements"] == ["torch==1.12.0+cu116"]
    assert actions(result, "create_venv")[0].params["path"] == "/opt/remediator/venvs/pytorch-1.12.0"
    assert not actions(result, "set_cuda_link")  # wheels bring their own CUDA: the toolkit stays
    assert not actions(result, "pin_loader_path")


def test_shadowing_entry_set_at_login_is_left_to_a_person() -> None:
    facts = host(driver=driver("470.57.02"), cudnn=(cudnn_copy_in_toolkit("8.0.3", "/usr/local/cuda-11.0"),),
                 toolkits=(toolkit("11.0.221", default=True),),
                 loader=ld_path("/usr/local/cuda-11.0/lib64", source="login"),
                 envs=(SYSTEM_PY38, venv("/home/ml/venv", "3.8.13", torch("1.12.0+cu113", "11.3"))))
    result = plan_for(facts, "pytorch==1.12.0")
    assert not quarantined(result)
    assert any("remove /usr/local/cuda-11.0/lib64 from LD_LIBRARY_PATH in login" in m for m in result.manual)


def test_tf215_gets_the_and_cuda_extra() -> None:
    facts = host(driver=driver("535.161.08"), envs=(PythonEnv("/usr", "system", "/usr/bin/python3.11", "3.11.6"),))
    result = plan_for(facts, "tensorflow==2.15.1")
    assert actions(result, "pip_install")[0].params["requirements"] == ["tensorflow[and-cuda]==2.15.1"]
    pins = actions(result, "pip_install")[0].params["expected_wheels"]
    assert any(p.startswith("nvidia-cudnn-cu12==") for p in pins)


def test_python_outside_range_installs_a_supported_python() -> None:
    facts = two_toolkits(envs=(PythonEnv("/usr", "system", "/usr/bin/python3", "3.12.3"),))
    result = plan_for(facts, "tensorflow==2.4.1")
    install = actions(result, "install_package")
    assert install and install[0].params["name"] == "python3.8"
    assert actions(result, "create_venv")[0].params["python"] == "/usr/bin/python3.8"


def test_missing_toolkit_and_cudnn_are_installed_from_packages() -> None:
    facts = host(driver=driver("450.80.02"), envs=(SYSTEM_PY38,))
    result = plan_for(facts, "tensorflow==2.4.1")
    names = [a.params["name"] for a in actions(result, "install_package")]
    assert names == ["cuda-toolkit-11-0", "libcudnn8"]
    assert actions(result, "set_cuda_link")[0].params["target"] == "/usr/local/cuda-11.0"
    assert actions(result, "pin_loader_path")[0].params["ld_library_path"] == ["/usr/local/cuda-11.0/lib64"]


def test_stray_cudnn_copy_beside_a_package_is_quarantined_file_by_file() -> None:
    copy = cudnn_copy_in_toolkit("8.5.0", "/usr/local/cuda-11.0")
    facts = two_toolkits(toolkits=(toolkit("11.0.221", default=True),),
                         cudnn=(copy, cudnn_deb("8.0.5", "libcudnn8=8.0.5.39-1+cuda11.0")))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert quarantined(result) == {
        "/usr/local/cuda-11.0/lib64/libcudnn.so.8.5.0", "/usr/local/cuda-11.0/lib64/libcudnn.so.8",
        "/usr/local/cuda-11.0/lib64/libcudnn.so", "/usr/local/cuda-11.0/include/cudnn_version.h"}
    assert any("cuDNN 8.0.5 fits" in k for k in result.kept)


def test_hostile_path_is_refused_and_blocks_the_host() -> None:
    evil = dataclasses.replace(cudnn_copy_in_toolkit("8.5.0", "/usr/local/cuda-11.0"),
                               path="/usr/local/cuda-11.0/lib64/../../../etc", libraries=("shadow",))
    facts = two_toolkits(toolkits=(toolkit("11.0.221", default=True),),
                         cudnn=(evil, cudnn_deb("8.0.5", "libcudnn8=8.0.5.39-1+cuda11.0")))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert result.status == "blocked"
    assert not any(".." in p for p in quarantined(result))
    refused = [f for f in result.findings if f.code == "PATH_REFUSED"]
    assert refused and "'..'" in refused[0].message


def test_healthy_host_is_compliant() -> None:
    facts = two_toolkits(toolkits=(toolkit("11.0.221", default=True),),
                         cudnn=(cudnn_copy_in_toolkit("8.0.5", "/usr/local/cuda-11.0"),))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert (result.status, result.actions) == ("compliant", ())


def test_old_driver_blocks_unless_driver_changes_are_allowed() -> None:
    facts = two_toolkits(driver=driver("418.87.01"))
    blocked = plan_for(facts, "tensorflow==2.4.1")
    assert blocked.status == "blocked"
    up = actions(blocked, "upgrade_driver")[0]
    assert up.requires_approval and up.params["reboot"] is True
    assert up.params["current"] == "418.87.01"
    assert "418.87.01" in (blocked.error or "")
    allowed = plan_for(facts, "tensorflow==2.4.1", Policy(allow_driver_changes=True))
    assert allowed.status == "changes"
    assert actions(allowed, "upgrade_driver")[0].requires_approval


def test_reboot_pending_blocks_with_a_reboot_action() -> None:
    facts = two_toolkits(driver=Driver(source="nvidia-smi", kernel_module_version="460.56",
                                       userspace_version="460.73.01",
                                       error="Failed to initialize NVML: Driver/library version mismatch"),
                         toolkits=(toolkit("11.0.221", default=True),),
                         cudnn=(cudnn_copy_in_toolkit("8.0.5", "/usr/local/cuda-11.0"),))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert result.status == "blocked"
    assert [a.kind for a in result.actions] == ["reboot"]


def test_managed_venv_already_right_is_kept() -> None:
    # The loader still reaches the wrong toolkit, but the venv an earlier apply made is right.
    facts = two_toolkits(envs=(SYSTEM_PY38, venv(VENV_TF, "3.8.10", tf("2.4.1", "11.0", "8"))))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert result.status == "changes"
    assert not actions(result, "create_venv") and not actions(result, "pip_install")
    assert any(k.startswith(f"{VENV_TF}: already has") for k in result.kept)


def test_fingerprint_tracks_what_actions_depend_on() -> None:
    a = two_toolkits()
    assert fingerprint(a) == fingerprint(dataclasses.replace(a, collected_at="2030-01-01T00:00:00Z", host="x"))
    changed = dataclasses.replace(a, cudnn=a.cudnn[:1])
    assert fingerprint(a) != fingerprint(changed)


def test_unreachable_and_target_less_hosts_validate() -> None:
    plan = Plan(hosts=(unreachable("gpu9", "connection refused"), plan_inferred(host("gpu8"), MATRIX)),
                matrix_version=MATRIX.version, created_at="2026-11-26T00:00:00+00:00")
    validate(plan)
    assert plan.counts() == {"compliant": 1, "changes": 0, "blocked": 0, "unreachable": 1}


# --- a host without a target: judged against what it has ------------------------------------------------

SYSTEM_PY310 = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3", python_version="3.10.12")
TF212 = venv("/opt/tf", "3.10.12", tf("2.12.0", "11.8", "8"))
CUDNN86 = cudnn_deb("8.6.0", "libcudnn8=8.6.0.163-1+cuda11.8")


def inferred_plan(facts: HostFacts) -> HostPlan:
    result = plan_inferred(facts, MATRIX)
    validate(Plan(hosts=(result,), matrix_version=MATRIX.version, created_at="2026-11-26T00:00:00+00:00"))
    return result


def test_without_target_a_tf_env_is_judged_against_its_own_version() -> None:
    healthy = host(toolkits=(toolkit("11.8.89", default=True),), cudnn=(CUDNN86,), envs=(SYSTEM_PY310, TF212))
    result = inferred_plan(healthy)
    assert result.status == "compliant"
    assert result.target is not None and (result.target["framework"], result.target["version"]) == (
        "tensorflow", "2.12.0")
    assert result.target_source == "inferred"
    assert [t.to_dict() for t in result.inferred_targets] == [
        {"framework": "tensorflow", "version": "2.12.0", "envs": ["/opt/tf"], "installed": ["tensorflow 2.12.0"],
         "unknown": None}]
    # The same host with /usr/local/cuda at CUDA 12: planned exactly as `--target tensorflow==2.12.0` is.
    broken = dataclasses.replace(healthy, toolkits=(toolkit("11.8.89"), toolkit("12.1.105", default=True)))
    result = inferred_plan(broken)
    explicit = plan_for(broken, "tensorflow==2.12.0")
    assert result.status == "changes" and result.actions == explicit.actions
    assert actions(result, "set_cuda_link")[0].params["target"] == "/usr/local/cuda-11.8"
    assert result.to_dict()["target_source"] == "inferred" and explicit.target_source is None


def test_without_target_or_framework_a_healthy_driver_is_compliant() -> None:
    result = inferred_plan(host(envs=(SYSTEM_PY310,)))
    assert (result.status, result.target, result.inferred_targets, result.actions) == ("compliant", None, (), ())
    assert result.target_source == "inferred" and result.fingerprint is not None


def test_without_target_or_framework_a_driver_library_mismatch_is_blocked_for_a_reboot() -> None:
    facts = host(envs=(SYSTEM_PY310,), driver=Driver(
        version=None, source="none", kernel_module_version="535.161.08", userspace_version="550.54.14",
        error="Failed to initialize NVML: Driver/library version mismatch"))
    result = inferred_plan(facts)
    assert result.status == "blocked" and "reboot pending" in (result.error or "")
    assert [(a.kind, a.finding, a.requires_approval) for a in result.actions] == [
        ("reboot", "DRIVER_LIBRARY_MISMATCH", True)]


def test_without_target_or_framework_gpus_without_a_driver_are_blocked() -> None:
    result = inferred_plan(host(envs=(SYSTEM_PY310,), driver=Driver()))
    assert result.status == "blocked" and not result.actions
    assert result.error == "no NVIDIA driver answers, but 1 NVIDIA GPU(s) are present: install the driver"


def test_without_target_an_unknown_framework_version_is_a_warning() -> None:
    facts = host(envs=(SYSTEM_PY310, venv("/opt/future", "3.12.1", tf("9.9.9", "13.0", "9"))))
    result = inferred_plan(facts)
    assert result.status == "compliant" and result.target is None
    (warning,) = [f for f in result.findings if f.code == "INFERRED_TARGET_UNKNOWN"]
    assert warning.severity == "warning" and "tensorflow 9.9.9 in /opt/future is unknown" in warning.message
    assert result.inferred_targets[0].unknown is not None


def test_without_target_two_frameworks_both_fine_are_compliant() -> None:
    facts = host(toolkits=(toolkit("11.8.89", default=True),), cudnn=(CUDNN86,),
                 envs=(SYSTEM_PY310, TF212, venv("/opt/torch", "3.11.6", torch("2.1.0+cu121", "12.1"))))
    result = inferred_plan(facts)
    assert result.status == "compliant"
    assert [t.label for t in result.inferred_targets] == ["tensorflow==2.12.0", "pytorch==2.1.0"]


def test_without_target_two_frameworks_one_broken_is_blocked_not_merged() -> None:
    # The torch env is shadowed by a global LD_LIBRARY_PATH entry that the TF env relies on: its fix
    # (quarantining /etc/profile.d/cuda.sh) would break TF, so nothing is planned until someone chooses.
    facts = host(toolkits=(toolkit("11.8.89", default=True),), cudnn=(CUDNN86, cudnn_wheel("8.9.2", "/opt/torch")),
                 loader=ld_path("/usr/local/cuda-11.8/lib64"),
                 envs=(SYSTEM_PY310, venv("/opt/torch", "3.11.6", torch("2.1.0+cu121", "12.1"),
                                          wheels=(("nvidia-cudnn-cu12", "8.9.2.26"),)), TF212))
    result = inferred_plan(facts)
    assert result.status == "blocked" and result.actions == ()
    assert "2 frameworks are installed (pytorch==2.1.0, tensorflow==2.12.0)" in (result.error or "")
    assert "LIB_SHADOWED" in {f.code for f in result.findings}
    assert result.manual == (
        "pytorch==2.1.0 inferred from /opt/torch: 3 change(s); plan it alone with --target pytorch==2.1.0",
        "tensorflow==2.12.0 inferred from /opt/tf: compliant; plan it alone with --target tensorflow==2.12.0")


def test_schema_rejects_a_hostile_pin() -> None:
    result = plan_for(two_toolkits(), "tensorflow==2.4.1")
    data = Plan(hosts=(result,), matrix_version=MATRIX.version, created_at="x").to_dict()
    for a in data["hosts"][0]["actions"]:
        if a["kind"] == "pip_install":
            a["params"]["requirements"] = ["tensorflow==2.4.1; rm -rf /"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_h200_survey_is_compliant_for_its_pytorch() -> None:
    facts = HostFacts.from_json((ROOT / "tests/fixtures/h200-ubuntu24.04.facts.json").read_text())
    assert plan_for(facts, "pytorch==2.11.0").status == "compliant"


def test_cudnn_wheel_env_for_tf215_needs_nothing_but_driver() -> None:
    env = "/opt/tf"
    facts = host(driver=driver("535.161.08"), cudnn=(cudnn_wheel("8.9.4", env),),
                 envs=(PythonEnv("/usr", "system", "/usr/bin/python3", "3.11.6"),
                       venv(env, "3.11.6", tf("2.15.0", "12.2", "8"), wheels=(("nvidia-cudnn-cu12", "8.9.4.25"),))))
    assert plan_for(facts, "tensorflow==2.15.0").status == "compliant"


def test_wrong_managed_venv_is_quarantined_and_rebuilt() -> None:
    facts = two_toolkits(envs=(SYSTEM_PY38, venv(VENV_TF, "3.8.10", tf("2.3.0", "10.1", "7"))))
    result = plan_for(facts, "tensorflow==2.4.1")
    assert VENV_TF in quarantined(result)
    assert actions(result, "create_venv")[0].params["path"] == VENV_TF


def test_a_torch_whose_pypi_build_has_no_kernels_for_the_gpu_comes_from_the_pytorch_index() -> None:
    """pytorch/pytorch#45028: torch 1.10 from PyPI is the cu102 build (sm_37..sm_70); an RTX 3090 (sm_86)
    needs a CUDA 11 build of the same release, from the PyTorch index the matrix names."""
    from factories import gpus

    system = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3.9", python_version="3.9.16")
    ampere = host(driver=driver("470.82.01"), gpus=gpus(1, "NVIDIA GeForce RTX 3090"), envs=(system,))
    result = plan_for(ampere, "pytorch==1.10.0")
    (pip,) = actions(result, "pip_install")
    assert pip.params["requirements"] == ["torch==1.10.0+cu111"]
    assert pip.params["package_index"].startswith("https://download.pytorch.org/whl/")
    assert "the PyPI build cannot run here" in pip.reason
    # A Turing GPU runs the cu102 build's sm_70 code: PyPI's wheel, as before.
    turing = dataclasses.replace(ampere, gpus=tuple(dataclasses.replace(g, compute_capability=None)
                                                    for g in gpus(1, "Tesla T4")))
    (plain,) = actions(plan_for(turing, "pytorch==1.10.0"), "pip_install")
    assert plain.params["requirements"] == ["torch==1.10.0"] and "package_index" not in plain.params


def test_a_release_whose_extra_does_not_resolve_is_pinned_to_its_post_release() -> None:
    """tensorflow/tensorflow#66517: tensorflow[and-cuda]==2.15.0 pins TensorRT wheels PyPI does not serve;
    2.15.0.post1 is the same build without them (rules.yaml defects)."""
    system = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3.11", python_version="3.11.4")
    result = plan_for(host(driver=driver("535.161.08"), envs=(system,)), "tensorflow==2.15.0")
    (pip,) = actions(result, "pip_install")
    assert pip.params["requirements"] == ["tensorflow[and-cuda]==2.15.0.post1"]
    assert "2.15.0.post1" in pip.reason
