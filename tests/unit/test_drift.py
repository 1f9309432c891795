"""Drift: `compare` on facts fixtures (what appeared, disappeared, changed), one host's check, and the
`remediate drift` command over a scripted probe and a real state store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from remediator.cli import main
from remediator.drift import Baseline, Change, check_host, compare
from remediator.facts import HostFacts, LdPathEntry, LoaderConfig, ProbeNote, PythonEnv
from remediator.fleet import FleetResult, HostResult
from remediator.matrix import load_matrix, parse_target
from remediator.state import Store
from tests.unit.factories import (
    UBUNTU_2004,
    cudnn_copy_in_toolkit,
    cudnn_deb,
    driver,
    gpus,
    tf,
    toolkit,
    torch,
    venv,
)


def host(name: str = "gpu01", **kw: object) -> HostFacts:
    """A healthy TensorFlow 2.4.1 host: CUDA 11.0 default, cuDNN 8.0.4 copied into it, one venv."""
    base = HostFacts(
        host=name, collected_at="2026-05-01T00:00:00+00:00", os=UBUNTU_2004, driver=driver("535.161.08"),
        gpus=gpus(2), toolkits=(toolkit("11.0.3", default=True),),
        cudnn=(cudnn_copy_in_toolkit("8.0.4", "/usr/local/cuda-11.0"),),
        loader=LoaderConfig(
            ld_so_conf=(LdPathEntry("/usr/local/cuda-11.0/lib64", "/etc/ld.so.conf.d/cuda.conf"),),
            ld_library_path=(LdPathEntry("/usr/local/cuda/lib64", "/etc/profile.d/cuda.sh"),),
            cache=(("libcudart.so.11.0", "/usr/local/cuda-11.0/lib64/libcudart.so.11.0"),),
        ),
        envs=(venv("/opt/tf", "3.8.10", tf("2.4.1", "11.0", "8"), wheels=(("nvidia-nccl-cu11", "2.8.4"),)),),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def kinds(changes: list[Change]) -> list[tuple[str, str, str, str | None, str | None]]:
    return [(c.kind, c.layer, c.path, c.before, c.after) for c in changes]


# --- compare -----------------------------------------------------------------------------------------------


def test_identical_facts_have_no_changes() -> None:
    assert compare(host(), host()) == []


def test_volatile_fields_are_ignored() -> None:
    later = host(collected_at="2026-06-01T00:00:00+00:00", notes=(ProbeNote("nvml", "slow"),),
                 gpus=tuple(replace(g, memory_mib=1) for g in gpus(2)))
    assert compare(host(), later) == []


def test_new_toolkit_appears() -> None:
    now = host(toolkits=(toolkit("11.0.3", default=True), toolkit("11.2.152")))
    assert kinds(compare(host(), now)) == [("appeared", "cuda", "/usr/local/cuda-11.2", None, "11.2.152")]
    assert "new CUDA toolkit 11.2.152 at /usr/local/cuda-11.2" in compare(host(), now)[0].summary


def test_toolkit_disappears_and_default_link_moves() -> None:
    before = host(toolkits=(toolkit("11.0.3", default=True), toolkit("11.2.152")))
    now = host(toolkits=(toolkit("11.2.152", default=True),))
    assert kinds(compare(before, now)) == [
        ("disappeared", "cuda", "/usr/local/cuda-11.0", "11.0.3", None),
        ("changed", "cuda", "/usr/local/cuda", "/usr/local/cuda-11.0", "/usr/local/cuda-11.2"),
    ]


def test_cudnn_replaced_at_the_same_path() -> None:
    now = host(cudnn=(cudnn_copy_in_toolkit("8.1.0", "/usr/local/cuda-11.0"),))
    changes = compare(host(), now)
    assert changes[0] == Change("changed", "cudnn", "/usr/local/cuda-11.0/lib64", "version", "8.0.4", "8.1.0",
                                "cuDNN replaced at /usr/local/cuda-11.0/lib64: 8.0.4 -> 8.1.0")
    libs = [c for c in changes if c.field == "libraries"]
    assert len(libs) == 1 and "added libcudnn.so.8.1.0" in libs[0].summary
    assert "removed libcudnn.so.8.0.4" in libs[0].summary


def test_driver_changed_and_mismatch_error_appears() -> None:
    now = host(driver=replace(driver("550.54.15"), kernel_module_version="535.161.08",
                              error="Failed to initialize NVML: Driver/library version mismatch"))
    got = kinds(compare(host(), now))
    assert ("changed", "driver", "driver", "535.161.08", "550.54.15") in got
    assert ("changed", "driver", "driver", "535.161.08", "535.161.08") not in got
    assert ("changed", "driver", "driver", None, "Failed to initialize NVML: Driver/library version mismatch") in got


def test_driver_disappears() -> None:
    now = host(driver=replace(driver(), version=None, source="none"))
    assert compare(host(), now)[0].kind == "disappeared"


def test_wheels_and_frameworks_in_an_env() -> None:
    now = host(envs=(venv("/opt/tf", "3.8.10", tf("2.5.0", "11.2", "8"), torch("2.1.0", "12.1"),
                          wheels=(("nvidia-nccl-cu11", "2.9.0"), ("nvidia-cudnn-cu11", "8.6.0.163"))),))
    got = kinds(compare(host(), now))
    assert ("appeared", "framework", "/opt/tf: torch", None, "2.1.0") in got
    assert ("changed", "framework", "/opt/tf: tensorflow", "2.4.1", "2.5.0") in got
    assert ("changed", "framework", "/opt/tf: tensorflow", "11.0", "11.2") in got
    assert ("appeared", "env", "/opt/tf: nvidia-cudnn-cu11", None, "8.6.0.163") in got
    assert ("changed", "env", "/opt/tf: nvidia-nccl-cu11", "2.8.4", "2.9.0") in got


def test_env_appears_and_disappears() -> None:
    now = host(envs=(venv("/opt/new", "3.11.4"),))
    got = kinds(compare(host(), now))
    assert got == [("disappeared", "env", "/opt/tf", "Python 3.8.10; tensorflow 2.4.1", None),
                   ("appeared", "env", "/opt/new", None, "Python 3.11.4")]


def test_profile_d_export_edited_reads_as_one_change() -> None:
    now = host(loader=replace(host().loader, ld_library_path=(
        LdPathEntry("/usr/local/cuda-11.2/lib64", "/etc/profile.d/cuda.sh"),)))
    assert kinds(compare(host(), now)) == [
        ("changed", "loader", "LD_LIBRARY_PATH from /etc/profile.d/cuda.sh", "/usr/local/cuda/lib64",
         "/usr/local/cuda-11.2/lib64")]


def test_loader_entries_added_removed_reordered_and_cache() -> None:
    a = LdPathEntry("/a", "/etc/environment")
    b = LdPathEntry("/b", "login")
    before = host(loader=LoaderConfig(ld_library_path=(a, b)))
    assert kinds(compare(before, host(loader=LoaderConfig(ld_library_path=(b, a))))) == [
        ("changed", "loader", "LD_LIBRARY_PATH", "/a:/b", "/b:/a")]
    now = host(loader=LoaderConfig(ld_so_conf=(LdPathEntry("/opt/x", "/etc/ld.so.conf.d/x.conf"),),
                                   ld_library_path=(a,), cache=(("libcudnn.so.8", "/opt/x/libcudnn.so.8"),)))
    got = kinds(compare(before, now))
    assert ("appeared", "loader", "ld.so.conf from /etc/ld.so.conf.d/x.conf", None, "/opt/x") in got
    assert ("disappeared", "loader", "LD_LIBRARY_PATH from login", "/b", None) in got
    assert ("appeared", "loader", "ld.so.cache: libcudnn.so.8 => /opt/x/libcudnn.so.8", None,
            "/opt/x/libcudnn.so.8") in got


def test_gpu_gone_and_kernel_changed() -> None:
    now = host(gpus=gpus(1), os=replace(UBUNTU_2004, kernel="5.4.0-160-generic"))
    got = kinds(compare(host(), now))
    assert got == [("changed", "os", "os", "5.4.0-150-generic", "5.4.0-160-generic"),
                   ("disappeared", "gpu", "GPU-00000001", "NVIDIA A100-SXM4-80GB", None)]


def test_duplicate_keys_are_all_kept() -> None:
    copy = cudnn_copy_in_toolkit("8.0.4", "/usr/local/cuda-11.0")
    now = host(cudnn=(copy, replace(copy, header="/other/cudnn_version.h")))
    assert kinds(compare(host(), now)) == [("appeared", "cudnn", "/usr/local/cuda-11.0/lib64#2", None, "8.0.4")]


def test_change_round_trips_through_json() -> None:
    for c in compare(host(), host(toolkits=())):
        assert Change.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# --- one host's check --------------------------------------------------------------------------------------


def test_check_host_compliant_without_baseline_is_ok() -> None:
    matrix = load_matrix()
    result = check_host(host(), parse_target("tensorflow==2.4.1"), matrix, None)
    assert result.status == "ok" and result.compliant and not result.drifted
    assert result.baseline_source is None


def test_check_host_changed_since_baseline_is_drift() -> None:
    matrix = load_matrix()
    now = host(toolkits=(toolkit("11.0.3", default=True), toolkit("11.2.152")))
    result = check_host(now, parse_target("tensorflow==2.4.1"), matrix, Baseline(host(), "baseline", 1.0))
    assert result.status == "drift" and result.drifted and result.compliant
    assert result.to_dict()["baseline"] == {"source": "baseline", "at": 1.0, "recorded_now": False}


def test_check_host_noncompliant_is_drift_even_unchanged() -> None:
    matrix = load_matrix()
    result = check_host(host(), parse_target("pytorch==2.1.0"), matrix, Baseline(host(), "baseline", 1.0))
    assert result.status == "drift" and not result.compliant and not result.drifted


# --- the command -------------------------------------------------------------------------------------------


class FakeFleet:
    """Stands in for probe_fleet: each host answers with the facts (or the error) the test set."""

    def __init__(self) -> None:
        self.answers: dict[str, HostFacts | str] = {}

    def __call__(self, hosts: object, **_kw: object) -> FleetResult[HostFacts]:
        results = []
        for h in hosts:  # type: ignore[attr-defined]
            answer = self.answers[h.name]
            if isinstance(answer, str):
                results.append(HostResult(h.name, "unreachable", None, answer, "check the network", 0.5))
            else:
                results.append(HostResult(h.name, "ok", replace(answer, host=h.name), None, None, 0.25))
        return FleetResult(tuple(results))


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeFleet:
    fake = FakeFleet()
    fake.answers = {"gpu01": host(), "gpu02": host()}
    monkeypatch.setattr("remediator.probe.probe_fleet", fake)
    monkeypatch.setenv("REMEDIATE_STATE_DB", str(tmp_path / "state.db"))
    (tmp_path / "hosts.ini").write_text("[gpu]\ngpu01 remediate_target=tensorflow==2.4.1\n"
                                        "gpu02 remediate_target=tensorflow==2.4.1\n")
    return fake


def drift_cmd(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    status = main(["drift", "-i", str(tmp_path / "hosts.ini"), *extra])
    out, err = capsys.readouterr()
    return status, out, err


def test_drift_baseline_then_change(fleet: FakeFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 0 and "no known-good state yet" in out

    status, out, _ = drift_cmd(capsys, tmp_path, "--baseline")
    assert status == 0 and out.count("current facts recorded as known-good") == 2

    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 0 and "known-good: baseline of" in out

    fleet.answers["gpu02"] = host(cudnn=(cudnn_copy_in_toolkit("8.1.0", "/usr/local/cuda-11.0"),))
    status, out, _ = drift_cmd(capsys, tmp_path, "--format", "json")
    doc = json.loads(out)
    assert status == 2
    by_host = {h["host"]: h for h in doc["hosts"]}
    assert by_host["gpu01"]["status"] == "ok" and by_host["gpu01"]["changes"] == []
    versions = [c for c in by_host["gpu02"]["changes"] if c["field"] == "version"]
    assert versions == [{"kind": "changed", "layer": "cudnn", "path": "/usr/local/cuda-11.0/lib64",
                         "field": "version", "before": "8.0.4", "after": "8.1.0",
                         "summary": "cuDNN replaced at /usr/local/cuda-11.0/lib64: 8.0.4 -> 8.1.0"}]
    assert doc["summary"] == {"ok": 1, "drift": 1, "unreachable": 0, "failed": 0}

    # --baseline does not overwrite an existing known-good state.
    status, out, _ = drift_cmd(capsys, tmp_path, "--baseline")
    assert status == 2 and "cuDNN replaced" in out

    with Store.open(tmp_path / "state.db") as store:
        assert store.count("drift_checks") == 10 and store.count("probes") == 10
        kinds_ = [e.kind for e in store.history("gpu02")]
        assert kinds_.count("known-good") == 1 and kinds_.count("drift") == 5


def test_accept_makes_a_deliberate_change_the_new_known_good(fleet: FakeFleet, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert drift_cmd(capsys, tmp_path, "--baseline")[0] == 0
    fleet.answers["gpu02"] = host(cudnn=(cudnn_copy_in_toolkit("8.1.0", "/usr/local/cuda-11.0"),))
    assert drift_cmd(capsys, tmp_path)[0] == 2
    (tmp_path / "one.ini").write_text("gpu02 remediate_target=tensorflow==2.4.1\n")
    status = main(["drift", "-i", str(tmp_path / "one.ini"), "--accept"])
    assert status == 0 and "current facts recorded as known-good" in capsys.readouterr().out
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 0 and "cuDNN replaced" not in out  # gpu01 untouched, gpu02 accepted
    with Store.open(tmp_path / "state.db") as store:
        assert [e.kind for e in store.history("gpu02")].count("known-good") == 2


def test_drift_unreachable_host_exits_1(fleet: FakeFleet, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    fleet.answers["gpu02"] = "cannot connect to gpu02:22: Connection refused"
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 1
    assert "gpu02 (tensorflow==2.4.1): unreachable: cannot connect" in out and "hint: check the network" in out


def test_drift_noncompliant_target_exits_2(fleet: FakeFleet, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = drift_cmd(capsys, tmp_path, "--target", "pytorch==2.1.0")
    assert status == 2 and "FRAMEWORK_MISSING" in out


def test_drift_unknown_host_target_is_a_failed_host(fleet: FakeFleet, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hosts.ini").write_text("[gpu]\ngpu01 remediate_target=tensorflow==0.0.1\n")
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 1 and "gpu01 (tensorflow==0.0.1): failed: unknown tensorflow version" in out


def test_drift_host_values_are_escaped_in_text(fleet: FakeFleet, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    drift_cmd(capsys, tmp_path, "--baseline")
    fleet.answers["gpu01"] = host(toolkits=(toolkit("11.0.3", default=True),
                                            toolkit("11.2", path="/opt/evil\x1b[2J\ncuda")))
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 2 and "\x1b" not in out and "/opt/evil\\x1b[2J\\ncuda" in out


SYSTEM = PythonEnv(path="/usr", kind="system", python="/usr/bin/python3", python_version="3.10.12")


def tf212_host(default_cuda: str = "11.8") -> HostFacts:
    return host(toolkits=(toolkit("11.8.89", default=default_cuda == "11.8"),
                          toolkit("12.1.105", default=default_cuda == "12.1")),
                cudnn=(cudnn_deb("8.6.0", "libcudnn8=8.6.0.163-1+cuda11.8"),),
                envs=(SYSTEM, venv("/opt/tf", "3.10.12", tf("2.12.0", "11.8", "8"))))


def test_drift_target_less_healthy_hosts_exit_0(fleet: FakeFleet, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    fleet.answers = {"gpu01": tf212_host(), "gpu02": host(envs=(SYSTEM,))}
    (tmp_path / "hosts.ini").write_text("[gpu]\ngpu01\ngpu02\n")
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 0
    assert "gpu01 (tensorflow==2.12.0 inferred from /opt/tf): no drift" in out
    assert "gpu02 (no framework to judge: driver and GPUs only): no drift" in out
    status, out, _ = drift_cmd(capsys, tmp_path, "--format", "json")
    hosts = {h["host"]: h for h in json.loads(out)["hosts"]}
    assert (hosts["gpu01"]["target"], hosts["gpu01"]["target_source"]) == ("tensorflow==2.12.0", "inferred")
    assert hosts["gpu01"]["inferred_targets"][0]["envs"] == ["/opt/tf"]
    assert (hosts["gpu02"]["target"], hosts["gpu02"]["inferred_targets"]) == (None, [])


def test_drift_judges_a_target_less_host_against_the_framework_it_has(fleet: FakeFleet, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # /usr/local/cuda moved to CUDA 12.1 under a TF 2.12 env: drift against the target it already had.
    fleet.answers = {"gpu01": tf212_host(), "gpu02": tf212_host(default_cuda="12.1")}
    (tmp_path / "hosts.ini").write_text("[gpu]\ngpu01\ngpu02\n")
    status, out, _ = drift_cmd(capsys, tmp_path)
    assert status == 2
    assert "gpu01 (tensorflow==2.12.0 inferred from /opt/tf): no drift" in out
    line = next(x for x in out.splitlines() if x.startswith("gpu02 "))
    assert line.startswith("gpu02 (tensorflow==2.12.0 inferred from /opt/tf): drift: ") and "error(s)" in line
    assert "[x] CUDA_WRONG_DEFAULT: /usr/local/cuda points at CUDA 12.1" in out


def test_check_host_without_target_infers_it() -> None:
    result = check_host(tf212_host(default_cuda="12.1"), None, load_matrix(), None)
    assert result.status == "drift" and result.target == "tensorflow==2.12.0" and result.target_source == "inferred"
    assert "CUDA_WRONG_DEFAULT" in {f.code for f in result.findings}


@pytest.mark.parametrize(("argv", "message"), [
    (("--prometheus-textfile", "/tmp/x.txt"), "must name a *.prom file"),
    (("--target", "tensorflow==99.0"), "unknown tensorflow version"),
    (("--limit", "nomatch"), "matches no host"),
])
def test_drift_bad_input_is_one_line(fleet: FakeFleet, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     argv: tuple[str, ...], message: str) -> None:
    status, _out, err = drift_cmd(capsys, tmp_path, *argv)
    assert status == 1 and message in err and "Traceback" not in err


def test_drift_unwritable_store_is_one_line(fleet: FakeFleet, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    status, _out, err = drift_cmd(capsys, tmp_path, "--state-db", str(tmp_path / "file" / "state.db"))
    assert status == 1 and err.startswith("error: state db ") and "Traceback" not in err
