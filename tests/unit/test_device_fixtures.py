"""What remediate made of a real H200 host (tests/fixtures/device/README.md says how it was recorded)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from remediator.diagnosis import diagnose, has_errors
from remediator.facts import load_facts_file
from remediator.matrix import load_matrix, parse_target
from remediator.plan import plan_host

DEVICE = Path(__file__).resolve().parents[1] / "fixtures" / "device"


def facts():  # type: ignore[no-untyped-def]
    (one,) = load_facts_file(str(DEVICE / "h200-probe-local.json"))
    return one


def test_probe_found_driver_toolkit_both_cudnns_and_compat_libcuda() -> None:
    f = facts()
    assert (f.driver.version, f.driver.source, f.driver.cuda_driver_version) == ("580.159.04", "nvml", "13.0")
    assert f.driver.kernel_module_version == "580.159.04"
    assert [(g.name, g.compute_capability) for g in f.gpus] == [("NVIDIA H200", "9.0")]
    default = f.default_toolkit()
    assert default is not None
    assert (default.path, default.version, default.install_method, default.via_alternatives) == (
        "/usr/local/cuda-13.0", "13.0.88", "deb", True)
    cudnn = {(c.version, c.install_method, c.path) for c in f.cudnn}
    assert ("9.14.0", "deb", "/usr/lib/x86_64-linux-gnu") in cudnn
    assert ("9.19.0", "pip", "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cudnn/lib") in cudnn
    assert [(c.path, c.version) for c in f.compat_libcuda] == [
        ("/usr/local/cuda-13.0/compat/libcuda.so.580.95.05", "580.95.05")]
    torch = next(fw for e in f.envs for fw in e.frameworks if fw.name == "torch")
    assert (torch.version, torch.cuda_build) == ("2.11.0+cu130", "13.0")


def test_real_host_is_healthy_and_compliant_for_its_pytorch() -> None:
    m = load_matrix()
    target = parse_target("pytorch==2.11.0")
    assert not has_errors(diagnose(facts(), target, m))
    assert plan_host(facts(), target, m).status == "compliant"


def test_recorded_verify_passed_every_rung() -> None:
    text = (DEVICE / "h200-verify.txt").read_text()
    assert "localhost: PASS" in text
    for rung in ("1 driver", "2 CUDA driver API", "3 framework runtime", "4 framework compute"):
        assert rung in text
    assert sum(1 for line in text.splitlines() if line.startswith("    pass  ")) == 4
    assert "verdict: pass: every rung passed" in text


# --- the loader-resolution model on a real H100 (tests/fixtures/device/record.sh, 2026-12-08) ----------

def h100(name: str):  # type: ignore[no-untyped-def]
    (one,) = load_facts_file(str(DEVICE / f"h100-{name}.json"))
    return one


def test_real_torch_objects_carry_an_rpath_to_their_nvidia_wheels() -> None:
    """What the lab models, seen on a real torch 2.11.0+cu130 wheel: DT_RPATH (not RUNPATH) to the wheels."""
    f = h100("probe-local")
    torch = next(fw for e in f.envs for fw in e.frameworks if fw.name == "torch")
    cuda_obj = next(o for o in torch.elf if o.path.endswith("/torch/lib/libtorch_cuda.so"))
    assert any(n.startswith("libcudnn.so.") for n in cuda_obj.needed)
    assert cuda_obj.rpath and not cuda_obj.runpath
    assert any(p.endswith("/site-packages/nvidia/cudnn/lib") for p in cuda_obj.rpath)
    wheel_dir = next(d for d in f.libdirs if d.path.endswith("/site-packages/nvidia/cudnn/lib"))
    assert {lib.name for lib in wheel_dir.libs} >= {"libcudnn.so.9", "libcudnn_graph.so.9"}


def test_the_real_healthy_host_resolves_clean_and_is_compliant_without_a_target() -> None:
    m = load_matrix()
    f = h100("probe-local")
    assert not has_errors(diagnose(f, parse_target("pytorch==2.11.0"), m))
    assert "healthy (no findings)" in (DEVICE / "h100-diagnose.txt").read_text()
    plan = json.loads((DEVICE / "h100-plan-inferred.json").read_text())["hosts"][0]
    assert (plan["status"], plan["target_source"]) == ("compliant", "inferred")
    assert "verdict: pass" in (DEVICE / "h100-verify.txt").read_text()


def test_a_system_cudnn_first_on_ld_library_path_is_seen_as_the_real_failure_it_is() -> None:
    """The same host with LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu (its cuDNN 9.14 deb): torch's RPATH keeps
    the wheel's libcudnn.so.9, but the libraries that one loads come from LD_LIBRARY_PATH first. The real
    verify failed at rung 3 with those very files; the diagnosis, from the probe alone, names them."""
    m = load_matrix()
    findings = diagnose(h100("shadowed-probe"), parse_target("pytorch==2.11.0"), m)
    shadowed = [f for f in findings if f.code == "LIB_SHADOWED"]
    assert shadowed and all(f.severity == "error" for f in shadowed)
    ev = dict(shadowed[0].evidence)
    assert ev["reaches"].startswith("/usr/lib/x86_64-linux-gnu/libcudnn_") and "9.19.0" in ev["should reach"]
    verify = (DEVICE / "h100-shadowed-verify.txt").read_text()
    assert "verdict: fail at rung 3" in verify
    named_by_verify = set(re.findall(r"(libcudnn_\w+)\.so\.9\.14\.0", verify))
    assert ev["soname"].split(".so")[0] in {*named_by_verify, "libcudnn_adv", "libcudnn_cnn", "libcudnn_ops"}
