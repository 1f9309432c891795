"""The lab fixture: one fleet of real OpenSSH hosts (one per scenario in remediator/lab/scenarios) for the session.

`lab` brings the fleet up once, before the first test that asks for it, and always takes it down at the
end of the session (and at interpreter exit, should the session die first). Tests reach hosts with
`lab.connect(name)`: paramiko with strict host-key checking against the lab's known_hosts.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from remediator.lab import fleet, python_mirror, scenario

REPO = Path(__file__).resolve().parents[2]
SCENARIO_DIR = REPO / "remediator" / "lab" / "scenarios"
# What the outer machine must still look like after the lab has run.
WATCHED_TREES = ("/usr/local", "/opt", "/etc/ld.so.conf.d", "/etc/profile.d", "/etc/alternatives",
                 "/etc/sudoers.d", "/home", "/var/lib/dpkg/alternatives", "/proc/driver")  # fmt: skip
WATCHED_FILES = ("/var/lib/dpkg/status", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/hosts",
                 "/etc/hostname", "/etc/ld.so.cache", "/etc/ssh/sshd_config")  # fmt: skip


def lab_unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab mounts overlays in private namespaces: run the integration tests as root"
    missing = fleet.missing_tools()
    return f"{missing[0]} ({missing[1]})" if missing else None


def outer_snapshot() -> dict[str, str]:
    """A digest per watched tree (names, types, sizes, modes, link targets) and per watched file."""
    out: dict[str, str] = {}
    for top in WATCHED_TREES:
        h = hashlib.sha256()
        for root, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(dirs + files):
                p = os.path.join(root, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                link = os.readlink(p) if os.path.islink(p) else ""
                h.update(f"{p}\0{st.st_mode:o}\0{st.st_size}\0{st.st_mtime_ns}\0{link}\n".encode())
        out[top] = h.hexdigest()
    for path in WATCHED_FILES:
        try:
            out[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except FileNotFoundError:
            out[path] = "absent"
    return out


def outer_mounts() -> list[str]:
    return Path("/proc/self/mounts").read_text().splitlines()


@dataclass(frozen=True)
class LabHost:
    name: str
    scenario: scenario.Scenario
    port: int
    user: str
    home: str


@dataclass(frozen=True)
class Lab:
    """What the `lab` fixture yields: where the fleet's files are and how to reach each host."""

    state: Path
    inventory: Path
    known_hosts: Path
    private_key: Path
    hosts: dict[str, LabHost]
    outer_before: dict[str, str]  # outer_snapshot() taken before `up`
    mounts_before: list[str]

    @staticmethod
    def run(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str, str]:
        return run_command(client, command, timeout)

    def reset(self, *names: str) -> None:
        """Put hosts (default: all) back as `up` made them; call it after changing a host."""
        fleet.reset(self.state, list(names) if names else None)

    def connect(self, name: str) -> paramiko.SSHClient:
        """An SSH session to `name` that trusts only the host key recorded in known_hosts."""
        h = self.hosts[name]
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(
            "127.0.0.1", port=h.port, username=h.user, key_filename=str(self.private_key),
            look_for_keys=False, allow_agent=False, timeout=20, banner_timeout=20, auth_timeout=20,
        )  # fmt: skip
        return client


def run_command(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `command`, reading stdout and stderr to the end before asking for the exit status."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode("utf-8", "replace")
    err = stderr.read().decode("utf-8", "replace")
    return stdout.channel.recv_exit_status(), out, err


@dataclass(frozen=True)
class LabKit:
    """Helpers for tests that run labs of their own (tests import nothing from conftest)."""

    scenario_dir: Path = SCENARIO_DIR

    @staticmethod
    def unavailable() -> str | None:
        return lab_unavailable()

    @staticmethod
    def snapshot() -> dict[str, str]:
        return outer_snapshot()

    @staticmethod
    def mounts() -> list[str]:
        return outer_mounts()

    @staticmethod
    def run(client: paramiko.SSHClient, command: str, timeout: float = 60) -> tuple[int, str, str]:
        return run_command(client, command, timeout)


@pytest.fixture(scope="session")
def labkit() -> LabKit:
    return LabKit()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The fleet of remediator/lab/scenarios, up for the whole session; taken down (and checked) at the end."""
    why = lab_unavailable()
    if why:
        pytest.skip(why)
    state = tmp_path_factory.mktemp("lab")
    before = outer_snapshot()
    mounts = outer_mounts()
    atexit.register(fleet.down, state)  # if the session dies before the finalizer runs
    try:
        # The hostile hosts (group hostile) have a lab of their own (test_hostile_lab.py): they fail the probe
        # on purpose, and one of them only at the probe's timeout. So does a host whose sudo wants a
        # password (group sudopassword, test_become_lab.py).
        files = [Path(s.path) for s in scenario.load_all([SCENARIO_DIR], host_python=_python())
                 if not {"hostile", "sudopassword"} & set(s.groups)]
        up = fleet.up(files, state)
        scenarios = {s.id: s for s in scenario.load_all(files, host_python=_python())}
        hosts = {h.name: LabHost(h.name, scenarios[h.scenario], h.port, h.user, h.home) for h in up.hosts}
        yield Lab(state, up.inventory, up.known_hosts, up.private_key, hosts, before, mounts)
    finally:
        fleet.down(state)
        atexit.unregister(fleet.down)
    # After `down`: no process of the lab, no mount, and the outer machine as it was before `up`.
    left = fleet._lab_processes(state)
    assert not left, f"lab processes left after down: {sorted(left)}"
    assert outer_mounts() == mounts, "a mount was left behind"
    after = outer_snapshot()
    changed = sorted(k for k in after if after[k] != before.get(k))
    assert not changed, f"the outer machine changed under {changed}"


def _python() -> str:
    import subprocess

    out = subprocess.run(["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip()


@pytest.fixture(scope="session")
def mirror() -> python_mirror.PythonMirror:
    """The lab's Python mirror (a CPython built from Debian 11's packages, cached: docs/plan.md)."""
    try:
        return python_mirror.build()
    except python_mirror.MirrorUnavailable as exc:
        pytest.skip(f"the lab's Python mirror cannot be built here: {exc}")
