"""`lab up` / `lab down` on small fleets of their own: down leaves nothing, runs twice and after a crash,
a taken port is retried, a failure half way stops what was started, bad input is reported, not raised."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remediator.cli import main
from remediator.lab import fleet, sshd

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "remediator" / "lab" / "scenarios"

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

TWO = ("healthy-pytorch.yaml", "cuda-missing.yaml")  # a sudo user and a root login


@pytest.fixture
def small(tmp_path: Path, labkit: Any) -> Iterator[tuple[list[Path], Path]]:
    why = labkit.unavailable()
    if why:
        pytest.skip(why)
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    for name in TWO:
        shutil.copy(SCENARIO_DIR / name, scenarios / name)
    state = tmp_path / "state"
    try:
        yield [scenarios], state
    finally:
        fleet.down(state)


def _alive_sshd_of(state: Path) -> set[int]:
    """Live (not zombie) processes whose command line or mounts name this lab's state dir."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/stat").read_text()
            if status[status.rindex(")") + 2] == "Z":
                continue
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            mounts = Path(f"/proc/{entry}/mountinfo").read_text(errors="replace")
        except (OSError, ValueError):
            continue
        if str(state).encode() in cmd or f"upperdir={state}/" in mounts:
            found.add(int(entry))
    return found


def _connect(lab: fleet.Lab, host: fleet.Host):  # type: ignore[no-untyped-def]
    import paramiko

    client = paramiko.SSHClient()
    client.load_host_keys(str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=host.port, username=host.user, key_filename=str(lab.private_key),
                   look_for_keys=False, allow_agent=False, timeout=20)  # fmt: skip
    return client


def test_down_leaves_no_process_and_no_mount_even_with_open_sessions(
    small: tuple[list[Path], Path], labkit: Any
) -> None:
    sources, state = small
    mounts = labkit.mounts()
    lab = fleet.up(sources, state)
    assert len(lab.hosts) == 2
    sessions = [_connect(lab, h) for h in lab.hosts]
    try:
        for c in sessions:  # a session that outlives its sshd would keep the namespace and its mounts
            c.exec_command("sleep 300")
        assert _alive_sshd_of(state)
        result = fleet.down(state)
        assert len(result.stopped) >= 2
        assert _alive_sshd_of(state) == set()
        assert labkit.mounts() == mounts
        assert not (state / "hosts").exists() and not (state / "lab.json").exists()
        assert fleet.down(state).stopped == []  # twice is fine
    finally:
        for c in sessions:
            c.close()


def test_down_after_a_crash_stops_what_the_pid_record_names(small: tuple[list[Path], Path]) -> None:
    sources, state = small
    lab = fleet.up(sources, state)
    (state / "lab.json").unlink()  # as if `up` died before writing its state
    assert _alive_sshd_of(state)
    stopped = fleet.down(state).stopped
    assert {h.pid for h in lab.hosts} <= set(stopped)
    assert _alive_sshd_of(state) == set()


def test_a_port_in_use_is_retried_on_another(small: tuple[list[Path], Path]) -> None:
    sources, state = small
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    try:
        lab = fleet.up(sources, state, ports=lambda n: [taken, *fleet._free_ports(n - 1)])
        ports = {h.port for h in lab.hosts}
        assert taken not in ports and len(ports) == 2
        for h in lab.hosts:
            assert sshd.banner(h.port).startswith(b"SSH-2.0-OpenSSH")
    finally:
        busy.close()


def test_a_failure_half_way_stops_everything_started(
    small: tuple[list[Path], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    sources, state = small
    real = sshd.start_script

    def broken(name: str, *args: object, **kwargs: object) -> str:
        text = real(name, *args, **kwargs)  # type: ignore[arg-type]
        return (
            text.replace("exec /usr/sbin/sshd", "echo simulated failure >&2; exit 3; exec /usr/sbin/sshd")
            if (name == "cuda-missing")
            else text
        )

    monkeypatch.setattr(sshd, "start_script", broken)
    with pytest.raises(fleet.LabError, match=r"cuda-missing.*simulated failure"):
        fleet.up(sources, state)
    assert _alive_sshd_of(state) == set()
    assert not (state / "hosts").exists()


def test_a_second_up_on_a_running_lab_is_refused(small: tuple[list[Path], Path]) -> None:
    sources, state = small
    fleet.up(sources, state)
    with pytest.raises(fleet.LabError, match="already up"):
        fleet.up(sources, state)
    assert len(fleet.status(state)) == 2


def test_cli_up_status_down(small: tuple[list[Path], Path], capsys: pytest.CaptureFixture[str]) -> None:
    sources, state = small
    assert main(["lab", "up", str(sources[0]), "--state", str(state)]) == 0
    out = capsys.readouterr().out
    assert "healthy-pytorch" in out and "inventory:" in out
    assert main(["lab", "status", "--state", str(state)]) == 0
    assert capsys.readouterr().out.count(" up") == 2
    assert main(["lab", "down", "--state", str(state)]) == 0
    assert main(["lab", "down", "--state", str(state)]) == 0
    assert main(["lab", "status", "--state", str(state)]) == 1
    assert "no lab is up" in capsys.readouterr().err


def test_cli_names_the_file_and_field_of_a_malformed_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labkit: Any
) -> None:
    if labkit.unavailable():
        pytest.skip(labkit.unavailable())
    bad = tmp_path / "bad.yaml"
    bad.write_text((SCENARIO_DIR / "healthy-pytorch.yaml").read_text().replace("model: NVIDIA H200", "model: GTX 9999"))
    assert main(["lab", "up", str(bad), "--state", str(tmp_path / "state")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: driver.gpus[0].model: unknown GPU model 'GTX 9999'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "state" / "hosts").exists()


def test_a_state_dir_under_var_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "up", str(SCENARIO_DIR), "--state", "/var/tmp/remediate-lab-refused"]) == 1
    assert "under /var" in capsys.readouterr().err


def test_sessions_run_in_the_hosts_namespace(small: tuple[list[Path], Path], labkit: Any) -> None:
    sources, state = small
    lab = fleet.up(sources, state)
    root_host = next(h for h in lab.hosts if h.user == "root")
    c = _connect(lab, root_host)
    try:
        code, out, _ = labkit.run(c, "readlink /proc/self/ns/mnt; ls /usr/local | grep -c cuda || true")
        assert code == 0
        ns, count = out.split()
        assert ns == root_host.mnt_ns and ns != os.readlink("/proc/self/ns/mnt")
        assert count == "0"  # cuda-missing: no toolkit, and the outer machine's does not show through
    finally:
        c.close()
