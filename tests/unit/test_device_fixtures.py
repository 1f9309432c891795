"""What remediate made of a real H200 host (tests/fixtures/device/README.md says how it was recorded)."""

from __future__ import annotations

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
