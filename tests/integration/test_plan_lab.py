"""`remediate plan` against every lab scenario: the exact actions and status per host (issue 5).

Each host is a real OpenSSH server with files laid out as installers lay them; the plan is made by the
real CLI (probe over SSH, diagnosis, planning) and checked against what an operator should see.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from remediator.cli import main

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "plan-schema.json").read_text())
V = "/opt/remediator/venvs"

# host -> (status, the actions other than quarantine as (kind, key), quarantined paths or a dir whose
# libcudnn*/cudnn*.h files must all be quarantined)
EXPECTED: dict[str, tuple[str, list[tuple[str, str]], set[str] | str]] = {
    "cuda-missing": ("changes", [
        ("set_cuda_link", "/usr/local/cuda-11.0"), ("install_package", "cuda-toolkit-11-0"),
        ("install_package", "libcudnn8=8.0.*+cuda11.0"), ("install_python", ">=3.6,<3.9"),
        ("create_venv", f"{V}/tensorflow-2.4.1"), ("pip_install", "tensorflow==2.4.1"),
        ("pin_loader_path", "/usr/local/cuda-11.0/lib64")], set()),
    "cuda-wrong-default": ("changes", [
        ("set_cuda_link", "/usr/local/cuda-11.2"), ("install_python", ">=3.6,<3.10"),
        ("create_venv", f"{V}/tensorflow-2.5.0"), ("pip_install", "tensorflow==2.5.0"),
        ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], "toolkit"),
    "cudnn-mismatch": ("changes", [
        ("install_package", "libcudnn8=8.1.*+cuda11.2"),
        ("install_python", ">=3.6,<3.10"), ("create_venv", f"{V}/tensorflow-2.6.0"),
        ("pip_install", "tensorflow==2.6.0"),
        ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], set()),
    "cudnn-shadowed": ("changes", [
        ("create_venv", f"{V}/tensorflow-2.12.0"), ("pip_install", "tensorflow==2.12.0"),
        ("pin_loader_path", "/usr/local/cuda-11.8/lib64")], "/usr/local/cuda-11.8/targets/x86_64-linux"),
    "driver-library-mismatch": ("blocked", [("reboot", "")], set()),
    "driver-too-old-for-toolkit": ("compliant", [], set()),
    "driver-too-old": ("blocked", [("upgrade_driver", "520.61.05")], set()),
    "framework-conflict": ("changes", [
        ("install_python", ">=3.6,<3.10"), ("create_venv", f"{V}/tensorflow-2.5.0"),
        ("pip_install", "tensorflow==2.5.0"), ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], set()),
    "framework-cpu-only": ("changes", [
        ("create_venv", f"{V}/pytorch-2.0.1"), ("pip_install", "torch==2.0.1")], set()),
    "framework-version-mismatch": ("changes", [
        ("create_venv", f"{V}/tensorflow-2.15.1"), ("pip_install", "tensorflow[and-cuda]==2.15.1")], set()),
    "healthy-pytorch": ("compliant", [], set()),
    "healthy-tf-and-cuda": ("compliant", [], set()),
    "healthy-tf-system-cuda": ("compliant", [], set()),
    "ldpath-missing-dir": ("compliant", [], set()),
    "lib-shadowed-conda": ("changes", [
        ("install_package", "libcudnn8=8.1.*+cuda11.2"),
        ("install_python", ">=3.7,<3.11"), ("create_venv", f"{V}/tensorflow-2.10.0"),
        ("pip_install", "tensorflow==2.10.0"),
        ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], "/usr/local/cuda-11.2/targets/x86_64-linux"),
    "lib-shadowed-pip": ("changes", [
        ("create_venv", f"{V}/pytorch-2.1.0"), ("pip_install", "torch==2.1.0")], {"/etc/profile.d/cuda.sh"}),
    "no-driver": ("blocked", [("upgrade_driver", "520.61.05")], set()),
    # The real-world hosts (docs/lab-realworld.md): each verdict decided by resolving libraries like the loader.
    "conda-tf29-jupyter-activate-only": ("changes", [
        ("set_cuda_link", "/usr/local/cuda-11.2"), ("install_package", "cuda-toolkit-11-2"),
        ("install_package", "libcudnn8=8.1.*+cuda11.2"), ("install_python", ">=3.7,<3.11"),
        ("create_venv", f"{V}/tensorflow-2.9.1"), ("pip_install", "tensorflow==2.9.1"),
        ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], set()),
    "conda-torch130-cudatoolkit101-driver410": ("blocked", [("upgrade_driver", "418.39")], set()),
    "conda-torch170-tfnightly-two-cuda": ("changes", [
        ("install_python", ">=3.6,<3.9"), ("create_venv", f"{V}/pytorch-1.7.0"), ("pip_install", "torch==1.7.0")],
        set()),
    "healthy-colab-torch111-no-target": ("compliant", [], set()),
    "healthy-minor-compat-470-m60": ("compliant", [], set()),
    "healthy-smi-11-0-toolkit-10-1": ("compliant", [], set()),
    "healthy-smi-12-2-cuda-11-8": ("compliant", [], set()),
    "healthy-tf-and-cuda-log-noise": ("compliant", [], set()),
    "healthy-torch-cu121-system-cuda114": ("compliant", [], set()),
    "healthy-two-toolkits-default-fits": ("compliant", [], set()),
    "libcuda-missing-r384": ("blocked", [], set()),
    "nvml-mismatch-r550-torch": ("blocked", [("reboot", "")], set()),
    "nvml-mismatch-tf26-460-470": ("blocked", [
        ("reboot", ""), ("install_python", ">=3.6,<3.10"), ("create_venv", f"{V}/tensorflow-2.6.0"),
        ("pip_install", "tensorflow==2.6.0"), ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], set()),
    "stub-libcuda-ld-so-conf": ("changes", [
        ("install_python", ">=3.3,<3.7"), ("create_venv", f"{V}/tensorflow-1.5.0"),
        ("pip_install", "tensorflow-gpu==1.5.0"), ("pin_loader_path", "/usr/local/cuda-9.0/lib64")],
        {"/etc/ld.so.conf.d/nvidia_mp.conf"}),
    "tf216-pip-without-and-cuda": ("changes", [
        ("create_venv", f"{V}/tensorflow-2.16.1"), ("pip_install", "tensorflow[and-cuda]==2.16.1")], set()),
    "torch1100-cu102-rtx3090": ("changes", [
        ("install_python", ">=3.6,<3.10"), ("create_venv", f"{V}/pytorch-1.10.0"),
        ("pip_install", "torch==1.10.0+cu111")], set()),
    "torch130-cu101-driver410": ("blocked", [("upgrade_driver", "418.39")], set()),
    "torch171-cu102-driver418": ("changes", [
        ("install_python", ">=3.6,<3.10"), ("create_venv", f"{V}/pytorch-1.7.1"),
        ("pip_install", "torch==1.7.1+cu101")], set()),
    "torch181-cu102-a100-no-target": ("changes", [
        ("install_python", ">=3.6,<3.10"), ("create_venv", f"{V}/pytorch-1.8.1"),
        ("pip_install", "torch==1.8.1+cu111")], set()),
    "torch201-poetry-no-nvidia-wheels": ("changes", [
        ("create_venv", f"{V}/pytorch-2.0.1"), ("pip_install", "torch==2.0.1")], set()),
    # Probed with become (the lab's ansible_become): alice's venv and the conda env under /root are seen.
    "become-hidden-envs": ("changes", [
        ("create_venv", f"{V}/tensorflow-2.16.1"), ("pip_install", "tensorflow[and-cuda]==2.16.1")], set()),
    # The seed's case (issue #12): the toolkits that conflict (the copied cuDNN goes with 11.2) and the loader
    # config quarantined, CUDA 11.0 and its cuDNN from packages, Python 3.6-3.8 from the lab's mirror.
    "tf241-cuda112-cudnn81-copied": ("changes", [
        ("set_cuda_link", "/usr/local/cuda-11.0"), ("install_package", "cuda-toolkit-11-0"),
        ("install_package", "libcudnn8=8.0.*+cuda11.0"), ("install_python", ">=3.6,<3.9"),
        ("create_venv", f"{V}/tensorflow-2.4.1"), ("pip_install", "tensorflow==2.4.1"),
        ("pin_loader_path", "/usr/local/cuda-11.0/lib64")],
        {"/usr/local/cuda-11.2", "/usr/local/cuda-10.1", "/etc/profile.d/cuda.sh"}),
    "python-unsupported": ("changes", [
        ("install_python", ">=3.7,<3.11"), ("create_venv", f"{V}/tensorflow-2.10.0"),
        ("pip_install", "tensorflow==2.10.0"), ("pin_loader_path", "/usr/local/cuda-11.2/lib64")], set()),
}


def _key(action: dict) -> str:
    p, kind = action["params"], action["kind"]
    if kind in ("remove_package", "install_package"):
        return p["name"] + (f"={p['version']}" if p.get("version") else "")
    return {
        "set_cuda_link": lambda: p["target"], "create_venv": lambda: p["path"],
        "install_python": lambda: p["version"],
        "pip_install": lambda: " ".join(p["requirements"]), "pin_loader_path": lambda: ":".join(p["ld_library_path"]),
        "upgrade_driver": lambda: p["min_version"],
    }.get(kind, lambda: "")()


@pytest.fixture(scope="module")
def lab_plan(lab, tmp_path_factory, capsys_module=None):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("plan") / "plan.json"
    rc = main(["plan", "-i", str(lab.inventory), "--out", str(out), "--format", "json"])
    return rc, json.loads(out.read_text())


def test_plan_file_validates_and_exit_code_says_changes(lab_plan) -> None:  # type: ignore[no-untyped-def]
    rc, plan = lab_plan
    jsonschema.validate(plan, SCHEMA)
    assert rc == 2
    assert plan["summary"] == {"compliant": 12, "changes": 20, "blocked": 8, "unreachable": 0}


def test_every_scenario_is_planned(lab, lab_plan) -> None:  # type: ignore[no-untyped-def]
    _, plan = lab_plan
    assert {h["host"] for h in plan["hosts"]} == set(lab.hosts) == set(EXPECTED)


@pytest.mark.parametrize("host", sorted(EXPECTED))
def test_exact_actions(lab, lab_plan, host: str) -> None:  # type: ignore[no-untyped-def]
    _, plan = lab_plan
    got = next(h for h in plan["hosts"] if h["host"] == host)
    status, actions, quarantine = EXPECTED[host]
    assert got["status"] == status, got
    assert [(a["kind"], _key(a)) for a in got["actions"] if a["kind"] != "quarantine_path"] == actions
    moved = {a["params"]["path"] for a in got["actions"] if a["kind"] == "quarantine_path"}
    if quarantine == "toolkit":
        default = next(k for k in got["kept"] if "fits" in k)
        assert len(moved) == 1 and next(iter(moved)).startswith("/usr/local/cuda-") and default not in moved
    elif isinstance(quarantine, str):
        # every cuDNN file that is really in that toolkit dir, and nothing else
        client = lab.connect(host)
        try:
            rc, out, _ = lab.run(client, f"ls -1d {quarantine}/lib/libcudnn* {quarantine}/include/cudnn*.h")
        finally:
            client.close()
        assert rc == 0
        assert moved == set(out.split())
    else:
        assert moved == quarantine
    if got["status"] != "compliant":
        assert got["fingerprint"].startswith("sha256:")
    assert all(not a["requires_approval"] for a in got["actions"] if a["kind"] not in ("reboot", "upgrade_driver"))


def test_text_output_reads_like_terraform(lab, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["plan", "-i", str(lab.inventory), "--limit", "lib-shadowed-pip:healthy-pytorch"])
    out = capsys.readouterr().out
    assert rc == 2
    assert "  - quarantine /etc/profile.d/cuda.sh (loader config)" in out
    assert "  + pip install torch==2.1.0 into /opt/remediator/venvs/pytorch-2.1.0" in out
    assert "healthy-pytorch (pytorch==2.11.0): compliant" in out
    assert out.rstrip().endswith("2 hosts: 1 compliant, 1 to change, 0 blocked, 0 unreachable")


def test_host_without_target_is_judged_against_what_it_has(lab, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # No remediate_target anywhere: each host is judged against the framework its env already has (probed
    # over SSH like any other plan): a reboot is still a reboot whatever the target.
    text = Path(lab.inventory).read_text()
    inv = tmp_path / "inv.yml"
    inv.write_text(text.replace("remediate_target:", "other_var:"))
    rc = main(["plan", "-i", str(inv), "--limit", "healthy-pytorch:driver-library-mismatch", "--format", "json"])
    plan = json.loads(capsys.readouterr().out)
    jsonschema.validate(plan, SCHEMA)
    assert rc == 2
    hosts = {h["host"]: h for h in plan["hosts"]}
    healthy = hosts["healthy-pytorch"]
    assert healthy["target_source"] == "inferred"
    assert (healthy["target"]["framework"], healthy["target"]["version"]) == ("pytorch", "2.11.0")
    assert [(t["framework"], t["version"], t["envs"]) for t in healthy["inferred_targets"]] == [
        ("pytorch", "2.11.0", ["/opt/torch/.venv"])]
    # judged exactly as `--target pytorch==2.11.0` judges it
    main(["plan", "-i", str(inv), "--limit", "healthy-pytorch", "--target", "pytorch==2.11.0", "--format", "json"])
    explicit = json.loads(capsys.readouterr().out)["hosts"][0]
    assert explicit["target_source"] == "--target"
    assert [healthy[k] for k in ("status", "target", "findings", "actions")] == [
        explicit[k] for k in ("status", "target", "findings", "actions")]
    mismatch = hosts["driver-library-mismatch"]
    assert mismatch["target_source"] == "inferred" and mismatch["target"]["version"] == "2.5.0"
    assert mismatch["status"] == "blocked" and [a["kind"] for a in mismatch["actions"]] == ["reboot"]
    main(["plan", "-i", str(inv), "--limit", "healthy-pytorch"])
    assert "healthy-pytorch (pytorch==2.11.0 inferred from /opt/torch/.venv): " in capsys.readouterr().out
