"""Bring a lab fleet up, report on it, take it down again.

`up` builds one template per scenario, then starts every host's sshd concurrently, each in its own mount
namespace, and writes the Ansible inventory and known_hosts of the fleet. Every process it starts is
recorded in the state dir as it starts; `down` stops them by recorded PID (and any other process still
inside a lab namespace), which also removes their mounts, since mounts exist only in those namespaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib.resources
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from remediator.errors import RemediatorError, UsageError
from remediator.lab import build, python_mirror, scenario, sshd
from remediator.lab.scenario import Scenario

STATE_FILE = "lab.json"
PIDS_FILE = "pids"
FORBIDDEN_STATE_ROOTS = ("/etc", "/usr", "/var", "/proc", "/sys", "/dev", "/run")
_CREATED = (
    "hosts",
    "templates",
    STATE_FILE,
    PIDS_FILE,
    "inventory.yml",
    "known_hosts",
    "id_ed25519",
    "id_ed25519.pub",
    "up.log",
)
# Written first by `up`: `down` removes files only from a directory that has it, so a mistyped --state
# (a home directory with its own known_hosts) loses nothing.
MARKER = ".remediate-lab"


class LabError(RemediatorError):
    """The lab could not be brought up or taken down (what was started has been stopped)."""


@dataclass(frozen=True)
class Host:
    """One running lab host, as recorded in the state dir."""

    name: str
    scenario: str
    target: str
    expect: tuple[str, ...]
    port: int
    user: str
    pid: int
    start_time: int  # /proc/PID/stat field 22: tells a reused PID from ours
    mnt_ns: str
    host_key: str  # "ssh-ed25519 AAAA..."
    home: str

    def to_json(self) -> dict[str, object]:
        d = asdict(self)
        d["expect"] = list(self.expect)
        return d

    @classmethod
    def from_json(cls, d: dict[str, object]) -> Host:
        values = dict(d)
        values["expect"] = tuple(values.get("expect") or ())  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Lab:
    state: Path
    hosts: tuple[Host, ...]

    @property
    def inventory(self) -> Path:
        return self.state / "inventory.yml"

    @property
    def known_hosts(self) -> Path:
        return self.state / "known_hosts"

    @property
    def private_key(self) -> Path:
        return self.state / "id_ed25519"


@dataclass(frozen=True)
class LabHostStatus:
    name: str
    scenario: str
    port: int
    pid: int
    running: bool  # the recorded sshd is alive (same PID, same start time)
    answers: bool  # an SSH banner came back on its port


@dataclass
class DownResult:
    stopped: list[int] = field(default_factory=list)
    removed: bool = False


# -- process bookkeeping -------------------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    if rest[0] == "Z":
        return None
    return int(rest[19])


def _mnt_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _mount_escape(path: str) -> str:
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def _lab_processes(state: Path, host: str | None = None) -> set[int]:
    """Every process in a mount namespace whose mounts name this lab's host dirs (sshd and sessions),
    or one host's only."""
    mine = _mnt_ns("self")
    where = state / "hosts" / host / "upper" if host else state / "hosts"
    marker = "upperdir=" + _mount_escape(str(where)) + "/"
    found: set[int] = set()
    seen_ns: dict[str, bool] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        ns = _mnt_ns(entry)
        if ns is None or ns == mine:
            continue
        if ns not in seen_ns:
            try:
                seen_ns[ns] = marker in Path(f"/proc/{entry}/mountinfo").read_text(errors="replace")
            except OSError:
                continue
        if seen_ns[ns]:
            found.add(int(entry))
    return found


def _recorded(state: Path) -> list[tuple[int, int | None, str]]:
    """(pid, start time or None, host name) of every process `up` recorded."""
    out: list[tuple[int, int | None, str]] = []
    pids = state / PIDS_FILE
    if pids.is_file():
        for line in pids.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                start = int(parts[1]) if parts[1].isdigit() else None
                out.append((int(parts[0]), start, parts[2] if len(parts) > 2 else ""))
    return out


def _is_ours(pid: int, start: int | None, host_dir: Path) -> bool:
    """The PID is still the process `up` started: same start time, and an sshd (or its start script)."""
    now = _start_time(pid)
    if now is None or (start is not None and now != start):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "sshd" in cmdline or str(host_dir) in cmdline


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _stop(pids: set[int], timeout: float = 5.0) -> set[int]:
    """SIGTERM, then SIGKILL what is left; return what is still alive."""
    for sig, wait in ((signal.SIGTERM, timeout * 0.6), (signal.SIGKILL, timeout * 0.4)):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while True:
            for pid in pids:
                _reap(pid)
            pids = {p for p in pids if _start_time(p) is not None}
            if not pids or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        if not pids:
            break
    return pids


@contextlib.contextmanager
def _locked(state: Path) -> Iterator[None]:
    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise LabError(f"another `remediate lab` command is using {state}") from exc
        yield


# -- down ---------------------------------------------------------------------------------------------------


def _teardown(state: Path) -> DownResult:
    result = DownResult()
    targets: set[int] = set()
    for pid, start, name in _recorded(state):
        if _is_ours(pid, start, state / "hosts" / name):
            targets.add(pid)
    targets |= _lab_processes(state)
    left = _stop(targets)
    # A session started between the sweep and the kill is still in a namespace: sweep again.
    again = _lab_processes(state) - left
    if again:
        left |= _stop(again)
    if left:
        raise LabError(
            f"could not stop lab processes {sorted(left)}",
            hint="they may be stuck in the kernel; retry `remediate lab down`",
        )
    result.stopped = sorted(targets | again)
    if not (state / MARKER).exists():
        return result
    for name in _CREATED:
        p = state / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            result.removed = True
        elif p.exists() or p.is_symlink():
            p.unlink()
            result.removed = True
    (state / MARKER).unlink()
    return result


def down(state: Path) -> DownResult:
    """Stop every process `up` started in `state` and remove what it wrote; safe to repeat."""
    state = state.absolute()
    if not state.exists():
        return DownResult()
    if not (state / MARKER).exists() and not (state / PIDS_FILE).exists() and not _lab_processes(state):
        return DownResult()  # not a lab's state dir, or already down: touch nothing
    with _locked(state):
        return _teardown(state)


# -- up -----------------------------------------------------------------------------------------------------


def _check_state(state: Path) -> Path:
    state = state.absolute()
    resolved = state.resolve()
    for root in FORBIDDEN_STATE_ROOTS:
        if resolved == Path(root) or str(resolved).startswith(root + "/"):
            raise UsageError(
                f"state dir {state} is under {root}, which every lab host overlays",
                hint="choose a state dir under /tmp, /home, /root, /srv or the repository",
            )
    bad = [c for c in ":,\n\t " if c in str(resolved)]
    if bad:
        raise UsageError(f"state dir {state}: overlay mounts cannot name a path containing {bad[0]!r}")
    return resolved


def _host_python() -> str:
    try:
        out = subprocess.run(
            ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise LabError(f"cannot run /usr/bin/python3, which lab hosts use as their Python: {exc}") from exc
    return out.stdout.strip()


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ldconfig_script(template: Path) -> str:
    """Builds the template's /etc/ld.so.cache with ldconfig chrooted into the template as hosts see it."""
    q = shlex.quote
    m = template / ".ldroot"
    lines = ["set -e", f"mkdir -p {q(str(m))}", f"mount -t tmpfs tmpfs {q(str(m))}"]
    for d in ("etc", "usr", "opt", "home", "root", "tmp", "var"):
        lines.append(f"mkdir {q(str(m / d))}")
    for name, target in (
        ("lib", "usr/lib"),
        ("lib64", "usr/lib64"),
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
    ):
        if os.path.islink(f"/{name}"):
            lines.append(f"ln -s {target} {q(str(m / name))}")
    for d in ("etc", "usr"):
        opts = f"lowerdir={template}/{d}:/{d}"
        lines.append(f"mount -t overlay overlay -o {q(opts)} {q(str(m / d))}")
    for d in ("opt", "home", "root"):
        lines.append(f"mount --bind {q(str(template / d))} {q(str(m / d))}")
    lines.append(f"ldconfig -X -r {q(str(m))} -C /ld.so.cache")
    lines.append(f"cp {q(str(m / 'ld.so.cache'))} {q(str(template / 'etc' / 'ld.so.cache'))}")
    return "\n".join(lines) + "\n"


def _run_parallel(scripts: list[tuple[str, str]], jobs: int) -> None:
    """Run (label, sh script) pairs in private mount namespaces, `jobs` at a time; raise on failure."""
    pending = list(scripts)
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    errors: list[str] = []
    while pending or running:
        while pending and len(running) < jobs:
            label, text = pending.pop(0)
            proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", text],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            running.append((label, proc))
        label, proc = running.pop(0)
        _, err = proc.communicate()
        if proc.returncode != 0:
            errors.append(f"{label}: {err.decode(errors='replace').strip()[-400:]}")
    if errors:
        raise LabError("building the loader cache failed: " + "; ".join(errors))


@dataclass
class _Starting:
    name: str
    scenario: Scenario | None  # None when restarting a recorded host (`reset`)
    port: int
    dir: Path
    template: Path | None = None
    key: sshd.KeyPair | None = None
    proc: subprocess.Popen[bytes] | None = None
    attempts: int = 0


def _write_host(h: _Starting, state: Path, outer_hosts: str) -> None:
    assert h.scenario is not None and h.key is not None and h.template is not None
    d = h.dir
    for _, layer, _ in sshd.OVERLAYS:
        (d / "upper" / layer).mkdir(parents=True, exist_ok=True)
        (d / "work" / layer).mkdir(parents=True, exist_ok=True)
        # A mount's root takes the upper dir's mode: /root must stay 0700 (the template's), as on a host.
        template_layer = h.template / layer
        if template_layer.is_dir():
            os.chmod(d / "upper" / layer, template_layer.stat().st_mode & 0o7777)
    ssh = d / "upper" / "etc" / "ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    key = ssh / "ssh_host_ed25519_key"
    key.write_bytes(h.key.private_openssh)
    key.chmod(0o600)
    (ssh / "ssh_host_ed25519_key.pub").write_text(h.key.public_line + "\n")
    (ssh / "sshd_config").write_text(sshd.sshd_config(h.name, h.port, root_login=h.scenario.user == "root"))
    (d / "upper" / "etc" / "hostname").write_text(h.name + "\n")
    (d / "upper" / "etc" / "hosts").write_text(outer_hosts.rstrip("\n") + f"\n127.0.1.1\t{h.name}\n")
    script = d / "start.sh"
    script.write_text(sshd.start_script(h.name, h.scenario.id, h.template, d, state))
    script.chmod(0o700)


def _spawn(h: _Starting, pids_file: Path) -> None:
    log = open(h.dir / "start.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        h.proc = subprocess.Popen(
            ["unshare", "--mount", "--uts", "--propagation", "private", "/bin/sh", str(h.dir / "start.sh")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()
    h.attempts += 1
    start = _start_time(h.proc.pid)
    with open(pids_file, "a") as f:
        f.write(f"{h.proc.pid} {start if start is not None else '-'} {h.name}\n")


def _listening(ports: set[int]) -> dict[int, str]:
    """Which of `ports` have a listening socket on 127.0.0.1, with its socket inode (from /proc/net/tcp)."""
    found: dict[int, str] = {}
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        parts = line.split()
        if len(parts) > 9 and parts[3] == "0A":
            addr, port_hex = parts[1].split(":")
            port = int(port_hex, 16)
            if port in ports and addr in ("0100007F", "00000000"):
                found[port] = parts[9]
    return found


def _owns_socket(pid: int, inode: str) -> bool:
    """Whether process `pid` holds the socket: another program may listen on a port we were given."""
    want = f"socket:[{inode}]"
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == want:
                return True
    return False


def _wait(
    starting: list[_Starting], deadline: float, pids_file: Path, say: Callable[[str], None], *, retry: bool
) -> None:
    """Wait until every host's sshd listens on its port; move a host whose port is taken (if `retry`)."""
    pending = {h.port: h for h in starting}
    spare: list[int] = []
    while pending:
        for port, inode in _listening(set(pending)).items():
            proc = pending[port].proc
            if proc is not None and _owns_socket(proc.pid, inode):
                pending.pop(port)
        for port, h in list(pending.items()):
            assert h.proc is not None
            if h.proc.poll() is None:
                continue
            text = _failure(h)
            if retry and h.scenario is not None and _bind_failed(text) and h.attempts < 5:
                if not spare:
                    spare = [p for p in _free_ports(8) if p not in pending]
                pending.pop(port)
                h.port = spare.pop(0)
                (h.dir / "upper" / "etc" / "ssh" / "sshd_config").write_text(
                    sshd.sshd_config(h.name, h.port, root_login=h.scenario.user == "root")
                )
                for log in (h.dir / "start.log", h.dir / "upper" / "var" / "log" / "sshd.log"):
                    with contextlib.suppress(OSError):
                        log.unlink()
                for sub in ("upper/run", "work"):
                    shutil.rmtree(h.dir / sub, ignore_errors=True)
                for _, layer, _ in sshd.OVERLAYS:
                    (h.dir / "work" / layer).mkdir(parents=True, exist_ok=True)
                say(f"{h.name}: port {port} was taken, retrying on {h.port}")
                _spawn(h, pids_file)
                pending[h.port] = h
                continue
            raise LabError(f"host {h.name} did not start: {text[-800:] or 'no output'}")
        if not pending:
            break
        if time.monotonic() > deadline:
            raise LabError(
                f"{len(pending)} hosts did not start listening in time: {sorted(h.name for h in pending.values())[:5]}"
            )
        time.sleep(0.02)


def _failure(h: _Starting) -> str:
    texts = []
    for p in (h.dir / "start.log", h.dir / "upper" / "var" / "log" / "sshd.log"):
        with contextlib.suppress(OSError):
            texts.append(p.read_text(errors="replace"))
    return "\n".join(t.strip() for t in texts if t.strip())


def _bind_failed(text: str) -> bool:
    return "Address already in use" in text or "Cannot bind any address" in text


def _inventory(lab: Lab, scenarios: dict[str, Scenario]) -> str:
    hosts: dict[str, dict[str, object]] = {}
    for h in lab.hosts:
        s = scenarios[h.scenario]
        v: dict[str, object] = {
            "ansible_host": "127.0.0.1",
            "ansible_port": h.port,
            "ansible_user": h.user,
            "ansible_ssh_private_key_file": str(lab.private_key),
            "ansible_ssh_common_args": (f"-o UserKnownHostsFile={lab.known_hosts} -o StrictHostKeyChecking=yes"),
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        if h.user != "root":
            v["ansible_become"] = s.sudo
        v["remediate_scenario"] = s.id
        if not s.no_target:
            v["remediate_target"] = s.target
        v["remediate_expect"] = list(s.expect)
        # A Python the host's distro (the outer machine's Debian) lacks comes from the lab's local mirror.
        v["remediator_python_mirror"] = python_mirror.LAB_URL
        hosts[h.name] = v
    groups: dict[str, dict[str, dict[str, None]]] = {}
    for h in lab.hosts:
        for g in scenarios[h.scenario].groups:
            groups.setdefault(g, {"hosts": {}})["hosts"][h.name] = None
    lab_group: dict[str, object] = {"hosts": hosts}
    if groups:
        lab_group["children"] = dict(sorted(groups.items()))
    doc = {"all": {"children": {"lab": lab_group}}}
    head = "# Written by `remediate lab up`: one host per scenario instance, all on 127.0.0.1.\n"
    return head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def default_scenario_dir() -> Path:
    """The lab scenarios this package ships (remediator/lab/scenarios, package data; see docs/lab.md)."""
    return Path(str(importlib.resources.files("remediator.lab"))) / "scenarios"


def missing_tools() -> tuple[str, str] | None:
    """What the lab needs from this machine and it lacks, as (message, hint); None when nothing is missing.
    (`up` checks it; the tests skip with it.)"""
    for tool in ("unshare", "mount", "ldconfig"):
        if shutil.which(tool) is None:
            return (f"`{tool}` is missing",
                    "install the Debian packages util-linux and libc-bin (`make system-deps` in a source checkout)")
    if not os.access(sshd.SSHD, os.X_OK):
        return (f"{sshd.SSHD} is missing",
                "install the Debian package openssh-server (`make system-deps` in a source checkout)")
    return None


def up(
    sources: Sequence[Path],
    state: Path,
    *,
    count: int | None = None,
    ports: Callable[[int], list[int]] | None = None,
    timeout: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Lab:
    """Start one host per scenario (or `count` hosts, cycling through the scenarios) and return the lab.

    On any failure everything started so far is stopped again and LabError is raised.
    """
    state = _check_state(state)
    if os.geteuid() != 0:
        raise UsageError("`remediate lab up` needs root: it mounts overlays inside private namespaces")
    missing = missing_tools()
    if missing is not None:
        raise LabError(missing[0], hint=missing[1])
    say = progress or (lambda _msg: None)
    with _locked(state):
        if any(_is_ours(pid, start, state / "hosts" / name) for pid, start, name in _recorded(state)) or (
            _lab_processes(state)
        ):
            raise LabError(f"a lab is already up in {state}", hint=f"run `remediate lab down --state {state}` first")
        foreign = [p.name for p in state.iterdir() if p.name not in (".lock", MARKER)]
        if foreign and not (state / MARKER).exists():
            raise UsageError(
                f"state dir {state} holds other files ({', '.join(sorted(foreign)[:3])})",
                hint="give `--state` an empty or new directory: `down` deletes what `up` writes there",
            )
        _teardown(state)  # leftovers of a crashed run
        (state / MARKER).write_text("state of a `remediate lab`; `remediate lab down --state DIR` removes it\n")
        try:
            return _up(sources, state, count, ports or _free_ports, timeout, say)
        except BaseException as exc:
            try:
                _teardown(state)
            except LabError as cleanup:
                raise LabError(f"{exc}; and cleaning up failed: {cleanup}") from exc
            if isinstance(exc, (RemediatorError, KeyboardInterrupt)):
                raise
            raise LabError(f"lab up failed: {type(exc).__name__}: {exc}") from exc


def _up(
    sources: Sequence[Path],
    state: Path,
    count: int | None,
    ports: Callable[[int], list[int]],
    timeout: float | None,
    say: Callable[[str], None],
) -> Lab:
    t0 = time.monotonic()
    python = _host_python()
    scenarios = scenario.load_all(list(sources), host_python=python)
    n = count if count is not None else len(scenarios)
    if n < 1:
        raise UsageError("--count must be at least 1")
    os.chmod(state, 0o700)
    client = sshd.keypair("remediate-lab")
    (state / "id_ed25519").write_bytes(client.private_openssh)
    (state / "id_ed25519").chmod(0o600)
    (state / "id_ed25519.pub").write_text(client.public_line + "\n")

    outer = build.scan_outer(python)
    logins: dict[str, build.Login] = {}
    templates = state / "templates"
    for s in scenarios:
        logins[s.id] = build.build_template(s, templates / s.id, outer, client.public_line)
    _run_parallel([(s.id, _ldconfig_script(templates / s.id)) for s in scenarios], jobs=4)
    say(f"built {len(scenarios)} templates in {time.monotonic() - t0:.1f}s")

    chosen = [scenarios[i % len(scenarios)] for i in range(n)]
    names = [s.id if count is None else f"{s.id}-{i // len(scenarios) + 1:03d}" for i, s in enumerate(chosen)]
    port_list = ports(n)
    if len(port_list) < n:
        raise LabError(f"needed {n} ports, got {len(port_list)}")
    outer_hosts = Path("/etc/hosts").read_text() if Path("/etc/hosts").is_file() else "127.0.0.1 localhost\n"
    starting: list[_Starting] = []
    pids_file = state / PIDS_FILE
    pids_file.touch()
    for name, s, port in zip(names, chosen, port_list, strict=False):
        h = _Starting(name, s, port, state / "hosts" / name, templates / s.id, sshd.keypair(f"root@{name}"))
        _write_host(h, state, outer_hosts)
        starting.append(h)
    for h in starting:
        _spawn(h, pids_file)
    deadline = time.monotonic() + (timeout if timeout is not None else 30 + 0.25 * n)
    _wait(starting, deadline, pids_file, say, retry=True)

    hosts: list[Host] = []
    for h in starting:
        assert h.proc is not None and h.scenario is not None and h.key is not None
        start = _start_time(h.proc.pid)
        ns = _mnt_ns(h.proc.pid)
        if start is None or ns is None:
            raise LabError(f"host {h.name} exited right after starting: {_failure(h)[-800:]}")
        login = logins[h.scenario.id]
        hosts.append(
            Host(
                h.name,
                h.scenario.id,
                h.scenario.target,
                h.scenario.expect,
                h.port,
                login.user,
                h.proc.pid,
                start,
                ns,
                h.key.public_line.rsplit(" ", 1)[0],
                login.home,
            )
        )
    lab = Lab(state, tuple(hosts))
    (state / "known_hosts").write_text("".join(f"[127.0.0.1]:{h.port} {h.host_key}\n" for h in hosts))
    (state / "inventory.yml").write_text(_inventory(lab, {s.id: s for s in scenarios}))
    doc = {
        "version": 1,
        "state": str(state),
        "hosts": [h.to_json() for h in hosts],
        "scenarios": {s.id: s.path for s in scenarios},
    }
    _write_state(state, doc)
    say(f"{len(hosts)} hosts up in {time.monotonic() - t0:.1f}s")
    return lab


def _write_state(state: Path, doc: dict[str, object]) -> None:
    tmp = state / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(state / STATE_FILE)


# Host files `reset` keeps: the host's identity, not its state.
_KEEP_ON_RESET = {"etc": ("ssh", "hostname", "hosts")}


def reset(state: Path, names: Sequence[str] | None = None, *, timeout: float = 30) -> Lab:
    """Put hosts back as `up` made them (same port, host key and files): stop each one, drop what its
    sessions wrote (its upper dirs) and start it again. For tests that change hosts."""
    state = state.absolute()
    with _locked(state):
        lab = load(state)
        doc = json.loads((state / STATE_FILE).read_text())
        wanted = set(names) if names is not None else {h.name for h in lab.hosts}
        unknown = wanted - {h.name for h in lab.hosts}
        if unknown:
            raise LabError(f"no host {sorted(unknown)[0]} in the lab in {state}")
        chosen = [h for h in lab.hosts if h.name in wanted]
        pids: set[int] = set()
        for h in chosen:
            if _is_ours(h.pid, h.start_time, state / "hosts" / h.name):
                pids.add(h.pid)
            pids |= _lab_processes(state, h.name)
        left = _stop(pids)
        if left:
            raise LabError(f"could not stop lab processes {sorted(left)}")
        starting = []
        for h in chosen:
            d = state / "hosts" / h.name
            for _, layer, _ in sshd.OVERLAYS:
                upper = d / "upper" / layer
                keep = _KEEP_ON_RESET.get(layer, ())
                for entry in list(upper.iterdir()) if upper.is_dir() else []:
                    if entry.name in keep:
                        continue
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                shutil.rmtree(d / "work" / layer, ignore_errors=True)
                (d / "work" / layer).mkdir(parents=True, exist_ok=True)
                upper.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                (d / "start.log").unlink()
            starting.append(_Starting(h.name, None, h.port, d))
        for s in starting:
            _spawn(s, state / PIDS_FILE)
        _wait(starting, time.monotonic() + timeout, state / PIDS_FILE, lambda _m: None, retry=False)
        fresh = {}
        for s in starting:
            assert s.proc is not None
            start, ns = _start_time(s.proc.pid), _mnt_ns(s.proc.pid)
            if start is None or ns is None:
                raise LabError(f"host {s.name} exited right after restarting: {_failure(s)[-800:]}")
            fresh[s.name] = (s.proc.pid, start, ns)
        hosts = []
        for h in lab.hosts:
            if h.name in fresh:
                pid, start, ns = fresh[h.name]
                h = dataclasses.replace(h, pid=pid, start_time=start, mnt_ns=ns)
            hosts.append(h)
        doc["hosts"] = [h.to_json() for h in hosts]
        _write_state(state, doc)
        return Lab(state, tuple(hosts))


# -- status -------------------------------------------------------------------------------------------------


def load(state: Path) -> Lab:
    """The lab recorded in `state` (raises LabError when there is none)."""
    state = state.absolute()
    path = state / STATE_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise LabError(f"no lab is up in {state}", hint=f"start one with `remediate lab up --state {state}`") from exc
    except (OSError, ValueError) as exc:
        raise LabError(f"{path}: unreadable lab state: {exc}") from exc
    return Lab(state, tuple(Host.from_json(h) for h in doc.get("hosts", [])))


def status(state: Path) -> list[LabHostStatus]:
    lab = load(state)
    out = []
    for h in lab.hosts:
        running = _is_ours(h.pid, h.start_time, lab.state / "hosts" / h.name)
        answers = running and sshd.banner(h.port).startswith(b"SSH-2.0-")
        out.append(LabHostStatus(h.name, h.scenario, h.port, h.pid, running, answers))
    return out
