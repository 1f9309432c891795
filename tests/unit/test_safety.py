"""The quarantine allowlist: hostile or odd paths from a host are refused, toolkit paths are not."""

from __future__ import annotations

import pytest

from remediator.safety import check_path


@pytest.mark.parametrize("path", [
    "/usr/local/cuda-11.0",
    "/usr/local/cuda-10.1",
    "/opt/cuda-12.4",
    "/usr/local/cuda",
    "/usr/local/cuda-11.0/lib64/libcudnn.so.8.0.5",
    "/usr/local/cuda-11.0/lib64/libcudnn_ops_infer.so.8",
    "/usr/local/cuda-11.0/include/cudnn_version.h",
    "/usr/local/cuda-10.0/include/cudnn.h",
    "/usr/local/cuda-11.0/targets/x86_64-linux/lib/libcudnn.so",
    "/etc/ld.so.conf.d/cuda-10-1.conf",
    "/etc/profile.d/cuda.sh",
])
def test_allowed(path: str) -> None:
    verdict = check_path(path)
    assert verdict.allowed, verdict.reason


@pytest.mark.parametrize(("path", "why"), [
    ("/", "allowlist"),
    ("/usr", "allowlist"),
    ("/usr/local", "allowlist"),
    ("/etc/ld.so.conf.d", "allowlist"),
    ("/usr/local/cuda-11.0/../../../etc", ".."),
    ("/usr/local/cuda-11.0/lib64/../../bin", ".."),
    ("usr/local/cuda-11.0", "absolute"),
    ("/usr/local/cuda-11.0\n/etc/shadow", "control"),
    ("/usr/local/cuda-11.0/lib64/libcudnn.so.8; rm -rf /", "allowlist"),
    ("/usr/local/cuda-11.0/lib64/$(reboot)", "allowlist"),
    ("/usr/local//cuda-11.0", "normalised"),
    ("/usr/local/cuda-11.0/lib64/libcuda.so.1", "allowlist"),
    ("/usr/lib/x86_64-linux-gnu/libcudnn.so.8", "allowlist"),
    ("/etc/profile.d/../shadow.sh", ".."),
    ("/etc/environment", "allowlist"),
    ("/home/user/.bashrc", "allowlist"),
    ("", "not a path"),
    (None, "not a path"),
])
def test_refused(path: object, why: str) -> None:
    verdict = check_path(path)
    assert not verdict.allowed
    assert why in verdict.reason


def test_managed_venv_root_children_only() -> None:
    roots = ("/opt/remediator/venvs",)
    assert check_path("/opt/remediator/venvs/tensorflow-2.4.1", roots).allowed
    assert not check_path("/opt/remediator/venvs", roots).allowed
    assert not check_path("/opt/remediator/venvs/a/b", roots).allowed
    assert not check_path("/opt/remediator/venvs/tensorflow-2.4.1", ()).allowed
    assert not check_path("/tmp", ("/",)).allowed
