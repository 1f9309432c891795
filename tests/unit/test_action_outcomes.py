"""What became of each planned action on a failed host: the failed task's role file names its action."""

from __future__ import annotations

from typing import Any

from remediator.action_outcomes import action_outcomes, failed_kind

V = "/opt/remediator/venvs/tensorflow-2.4.1"
SEED: list[dict[str, Any]] = [
    {"kind": "quarantine_path", "params": {"path": "/usr/local/cuda-11.2", "what": "CUDA toolkit"}},
    {"kind": "set_cuda_link", "params": {"link": "/usr/local/cuda", "target": "/usr/local/cuda-11.0"}},
    {"kind": "install_package", "params": {"manager": "system", "name": "cuda-toolkit-11-0", "version": None}},
    {"kind": "install_package", "params": {"manager": "system", "name": "libcudnn8", "version": "8.0.*+cuda11.0"}},
    {"kind": "install_python", "params": {"version": ">=3.6,<3.9", "home": V + "-python", "mirror": "file:///m"}},
    {"kind": "create_venv", "params": {"path": V, "python": V + "-python/bin/python3", "uv": V + "-python/uv"}},
    {"kind": "pip_install", "params": {"venv": V, "requirements": ["tensorflow==2.4.1"]}},
    {"kind": "pin_loader_path", "params": {"venv": V, "ld_library_path": ["/usr/local/cuda-11.0/lib64"]}},
]


def outcomes(task: str, error: str) -> list[tuple[str, str]]:
    return [(o["what"].split()[0], o["outcome"]) for o in action_outcomes(SEED, "failed", task, error)]


def test_each_role_task_names_its_action_kind() -> None:
    assert failed_kind("Install cuda-toolkit-11-0") == "install_package"
    assert failed_kind("Install with uv") == "pip_install"  # the literal name wins over "Install {{ name }}"
    assert failed_kind("Say precisely why the Python could not be installed") == "install_python"
    assert failed_kind("Take the host lock") is None and failed_kind(None) is None


def test_a_package_the_host_s_sources_lack_stops_the_host_there() -> None:
    error = "No package matching 'cuda-toolkit-11-0' is available"
    got = action_outcomes(SEED, "failed", "Install cuda-toolkit-11-0", error)
    assert [o["outcome"] for o in got] == ["done", "not_reached", "failed", "not_reached", "not_reached",
                                           "not_reached", "not_reached", "not_reached"]
    assert got[2]["why"] == error and got[2]["what"] == "install_package cuda-toolkit-11-0"
    # The CUDA link comes after the packages in the play, whatever the plan's order.
    assert got[1]["why"] == "not attempted: the run stopped on this host when install_package cuda-toolkit-11-0 failed"


def test_the_failed_action_is_the_one_the_task_names() -> None:
    assert outcomes("Install libcudnn8=8.0.*+cuda11.0", "no such package")[2:4] == [
        ("install_package", "done"), ("install_package", "failed")]


def test_a_python_the_mirror_lacks_fails_install_python_after_the_system_steps() -> None:
    got = outcomes("Say precisely why the Python could not be installed", "install_python: the mirror ... has none")
    assert got == [("quarantine_path", "done"), ("set_cuda_link", "done"), ("install_package", "done"),
                   ("install_package", "done"), ("install_python", "failed"), ("create_venv", "not_reached"),
                   ("pip_install", "not_reached"), ("pin_loader_path", "not_reached")]


def test_applied_is_all_done_and_an_unknown_task_is_said_to_be_unknown() -> None:
    assert {o["outcome"] for o in action_outcomes(SEED, "applied", None, None)} == {"done"}
    got = action_outcomes(SEED, "failed", "Take the host lock", "locked by another run")
    assert {o["outcome"] for o in got} == {"unknown"} and "Take the host lock" in got[0]["why"]
