"""`remediate probe` against bad input and faults, on real lab hosts (issue 4): a host that is down, one
that accepts TCP and never answers, a key the host does not authorize, a changed host key, a host
without python3, a python3 that prints a banner first, and hostile names and file contents that must
stay data. Each is probed on its own, then all of them at once beside a healthy host in one run.

The hosts come from tests/fixtures/lab-faults (a small lab of this module's own, not the session's
`lab`); the unreachable ones are inventory entries that reach a lab sshd with the wrong credentials,
or ports where nothing, or something mute, listens.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from remediator.cli import main
from remediator.lab import fleet

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FAULTS_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "lab-faults"
# Every payload in fault-hostile.yaml would create a file whose name starts with this, if executed.
CANARY = "rmd-pwned-"
CONNECT_TIMEOUT = 2.0
HEALTHY = "fault-healthy"


@dataclass(frozen=True)
class FaultLab:
    lab: fleet.Lab
    dir: Path  # this module's files: inventories, keys, known_hosts
    vars: dict[str, dict[str, Any]]  # inventory vars per host, the unreachable entries included
    other_key: Path  # a key no lab host authorizes
    changed_known_hosts: Path  # records another key for fault-healthy's [127.0.0.1]:port

    def host(self, name: str) -> fleet.Host:
        return next(h for h in self.lab.hosts if h.name == name)

    def inventory(self, *names: str, extra: dict[str, dict[str, Any]] | None = None) -> Path:
        """An inventory of the named hosts (plus `extra` entries), written to a file of its own."""
        hosts = {n: self.vars[n] for n in names}
        hosts.update(extra or {})
        path = self.dir / f"inventory-{len(list(self.dir.glob('inventory-*')))}.yml"
        path.write_text(yaml.safe_dump({"all": {"children": {"faults": {"hosts": hosts}}}}, sort_keys=False))
        return path

    def connect(self, name: str) -> paramiko.SSHClient:
        """A session on a lab host with the lab's key, trusting only its recorded host key."""
        h = self.host(name)
        client = paramiko.SSHClient()
        client.load_host_keys(str(self.lab.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", port=h.port, username=h.user, key_filename=str(self.lab.private_key),
                       look_for_keys=False, allow_agent=False, timeout=20)  # fmt: skip
        return client


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "not-authorized", "-f", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    return path


def _free_port() -> int:
    """A port nothing listens on (bound once by us, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(h: fleet.Host) -> bool:
    try:
        stat = Path(f"/proc/{h.pid}/stat").read_text()
    except OSError:
        return False
    rest = stat[stat.rindex(")") + 2 :].split()
    return rest[0] != "Z" and int(rest[19]) == h.start_time


@pytest.fixture(scope="module")
def faults(labkit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultLab]:
    why = labkit.unavailable()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("faults")
    state = work / "state"
    before, mounts = labkit.snapshot(), labkit.mounts()
    atexit.register(fleet.down, state)  # if the session dies before the finalizer runs
    try:
        lab = fleet.up([FAULTS_DIR], state)
        doc = yaml.safe_load(lab.inventory.read_text())
        hosts: dict[str, dict[str, Any]] = doc["all"]["children"]["lab"]["hosts"]
        healthy = hosts[HEALTHY]
        other_key = _keygen(work / "not_authorized")
        impostor = _keygen(work / "impostor_host_key")
        changed = work / "changed_known_hosts"
        changed.write_text(f"[127.0.0.1]:{healthy['ansible_port']} "
                           + " ".join(impostor.with_suffix(".pub").read_text().split()[:2]) + "\n")  # fmt: skip
        wrong_key = copy.deepcopy(healthy) | {"ansible_ssh_private_key_file": str(other_key)}
        changed_key = copy.deepcopy(healthy) | {
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={changed} -o StrictHostKeyChecking=yes"
        }
        down = copy.deepcopy(healthy) | {"ansible_port": _free_port()}
        all_vars = {**hosts, "wrong-key": wrong_key, "changed-host-key": changed_key, "host-down": down}
        yield FaultLab(lab, work, all_vars, other_key, changed)
    finally:
        fleet.down(state)
        atexit.unregister(fleet.down)
    assert not [h.name for h in lab.hosts if _alive(h)], "an sshd of the fault lab outlived `down`"
    assert labkit.mounts() == mounts, "a mount was left behind"
    after = labkit.snapshot()
    assert [k for k in after if after[k] != before.get(k)] == [], "the outer machine changed"


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word (a hung sshd, a tarpit); stopped on exit."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])  # held open, never written to, until the test ends

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for s in held:
            s.close()
        server.close()


def probe(inventory: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], float]:
    """`remediate probe -i INVENTORY --format json`: exit status, the document by host, seconds taken."""
    capsys.readouterr()
    started = time.monotonic()
    status = main(["probe", "-i", str(inventory), "--format", "json",
                   "--connect-timeout", str(CONNECT_TIMEOUT), *args])  # fmt: skip
    elapsed = time.monotonic() - started
    document = json.loads(capsys.readouterr().out)
    return status, {h["host"]: h for h in document["hosts"]}, elapsed


# --- one fault at a time -------------------------------------------------------------------------


def test_host_down_is_unreachable_connection_refused(faults: FaultLab, capsys: pytest.CaptureFixture[str]) -> None:
    status, hosts, elapsed = probe(faults.inventory("host-down"), capsys)
    port = faults.vars["host-down"]["ansible_port"]
    assert status == 1
    assert hosts["host-down"]["status"] == "unreachable"
    assert hosts["host-down"]["error"] == f"connection refused (127.0.0.1:{port})"
    assert f"listening on port {port}" in hosts["host-down"]["hint"]
    assert hosts["host-down"]["facts"] is None
    assert elapsed < 20, "a refused connection is answered at once; nothing waits for a timeout"


def test_host_that_accepts_and_never_answers_times_out(faults: FaultLab, capsys: pytest.CaptureFixture[str]) -> None:
    with silent_listener() as port:
        silent = faults.vars[HEALTHY] | {"ansible_port": port}
        status, hosts, _ = probe(faults.inventory(extra={"silent": silent}), capsys)
    assert status == 1
    r = hosts["silent"]
    assert r["status"] == "unreachable"
    assert r["error"] == f"timed out waiting for the SSH banner from 127.0.0.1:{port} after {CONNECT_TIMEOUT:g}s"
    assert "does not answer as sshd" in r["hint"]
    # Bounded by --connect-timeout, not by the probe's 180 s --timeout.
    assert CONNECT_TIMEOUT <= r["duration_s"] < 3 * CONNECT_TIMEOUT + 5, r["duration_s"]


def test_wrong_key_is_unreachable_permission_denied(faults: FaultLab, capsys: pytest.CaptureFixture[str]) -> None:
    status, hosts, _ = probe(faults.inventory("wrong-key"), capsys)
    port = faults.host(HEALTHY).port
    r = hosts["wrong-key"]
    assert status == 1 and r["status"] == "unreachable"
    assert r["error"] == f"permission denied (publickey) for ubuntu@127.0.0.1:{port}; tried {faults.other_key}"
    assert f"{faults.other_key}.pub is in ~ubuntu/.ssh/authorized_keys" in r["hint"]


def test_changed_host_key_is_refused_with_the_ssh_keygen_hint(
    faults: FaultLab, capsys: pytest.CaptureFixture[str]
) -> None:
    port = faults.host(HEALTHY).port
    recorded = faults.changed_known_hosts.read_text()
    for accept_new in ((), ("--accept-new-host-keys",)):  # accept-new takes unknown keys, never changed ones
        status, hosts, _ = probe(faults.inventory("changed-host-key"), capsys, *accept_new)
        r = hosts["changed-host-key"]
        assert status == 1 and r["status"] == "unreachable", accept_new
        assert r["error"].startswith(f"Host key for [127.0.0.1]:{port} has changed"), r["error"]
        assert "the server sent ED25519 SHA256:" in r["error"]
        assert f"{faults.changed_known_hosts}:1 records ED25519 SHA256:" in r["error"]
        assert r["hint"].endswith(f"ssh-keygen -R '[127.0.0.1]:{port}' -f {faults.changed_known_hosts}")
    assert faults.changed_known_hosts.read_text() == recorded, "known_hosts must not be touched"


def test_host_without_python3_fails_clearly(faults: FaultLab, capsys: pytest.CaptureFixture[str]) -> None:
    # The host really has no python3 on PATH (a whiteout in its /usr), while its sshd and shell work.
    client = faults.connect("fault-no-python3")
    try:
        _, out, _ = client.exec_command("command -v python3; echo rc=$?; ls /usr/bin/python3.11")
        assert out.read().decode().split() == ["rc=1", "/usr/bin/python3.11"]
    finally:
        client.close()
    status, hosts, _ = probe(faults.inventory("fault-no-python3"), capsys)
    r = hosts["fault-no-python3"]
    assert status == 1
    assert (r["status"], r["error"]) == ("failed", "python3 not found on host")
    assert "needs python3 (3.6 or newer)" in r["hint"] and r["facts"] is None


def test_probe_output_that_is_not_json_fails_clearly(faults: FaultLab, capsys: pytest.CaptureFixture[str]) -> None:
    status, hosts, _ = probe(faults.inventory("fault-banner"), capsys)
    r = hosts["fault-banner"]
    assert status == 1 and r["status"] == "failed" and r["facts"] is None
    assert r["error"] == (
        "probe output is not JSON (Expecting value); it begins 'Welcome to fault-banner: authorised use only'"
    )
    assert "printed to stdout before the probe" in r["hint"]


# --- hostile facts ---------------------------------------------------------------------------------

# What fault-hostile.yaml plants, as the facts must carry it: byte for byte, newlines included.
HOME = "/home/ubuntu"
HOSTILE_ENVS = {
    f"{HOME}/venvs/$(touch rmd-pwned-venv-dollar)",
    f"{HOME}/venvs/a;touch rmd-pwned-venv-semi;b`touch rmd-pwned-venv-tick`",
    f"{HOME}/venvs/new\nline ..dots.. $(touch rmd-pwned-venv-newline)",
    "/opt/tf`touch rmd-pwned-tf-dir`",
}
HOSTILE_PROFILES = {
    "/etc/profile.d/cuda$(touch rmd-pwned-profile-dollar).sh": "outside the quarantine allowlist",
    "/etc/profile.d/x;touch rmd-pwned-profile-semi;`touch rmd-pwned-profile-tick`.sh": "outside the quarantine "
    "allowlist",
    "/etc/profile.d/new\nline.sh": "contains control characters",
}
HOSTILE_LDCONF = "/etc/ld.so.conf.d/$(touch rmd-pwned-ldconf).conf"


def _host_canaries(faults: FaultLab, name: str) -> list[str]:
    """Canary files on a lab host: where its sessions start (home), /tmp, /, and anywhere it wrote."""
    client = faults.connect(name)
    try:
        _, out, _ = client.exec_command("ls -a ~ /tmp / /opt")
        listed = [n for n in out.read().decode().split("\n") if n.startswith(CANARY)]
    finally:
        client.close()
    upper = faults.lab.state / "hosts" / name / "upper"
    written = [str(p) for p in upper.rglob(f"{CANARY}*")]
    return listed + written


def _local_canaries(*dirs: Path) -> set[str]:
    return {str(d / n) for d in dirs for n in os.listdir(d) if n.startswith(CANARY)}


def test_the_canary_would_fire_if_a_payload_ran(tmp_path: Path) -> None:
    """The detector is not vacuous: the planted names are live shell, as a careless `sh -c` would run them."""
    for path in HOSTILE_ENVS:
        subprocess.run(f"ls -d {path} 2>/dev/null; true", shell=True, cwd=tmp_path, check=True)
    assert sorted(os.listdir(tmp_path)) == [
        "rmd-pwned-tf-dir", "rmd-pwned-venv-dollar", "rmd-pwned-venv-newline", "rmd-pwned-venv-semi",
        "rmd-pwned-venv-tick",
    ]  # fmt: skip


def test_hostile_facts_stay_inert_data(
    faults: FaultLab, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a relative payload run on the control node would land here
    tmp_before = _local_canaries(Path("/tmp"))
    assert _host_canaries(faults, "fault-hostile") == []
    inventory = faults.inventory("fault-hostile")

    # The probe succeeds and the JSON carries every hostile value verbatim.
    status, hosts, _ = probe(inventory, capsys)
    r = hosts["fault-hostile"]
    assert (status, r["status"], r["error"]) == (0, "ok", None)
    facts = r["facts"]
    assert {e["path"] for e in facts["envs"]} >= HOSTILE_ENVS
    frameworks = {fw["build_info_source"]: fw for e in facts["envs"] for fw in e["frameworks"]}
    tf = frameworks[
        "/opt/tf`touch rmd-pwned-tf-dir`/lib/python3.10/site-packages/tensorflow/python/platform/build_info.py"
    ]
    assert (tf["name"], tf["version"]) == ("tensorflow", "2.12.0")
    assert tf["cuda_build"] == "11.8$(touch /tmp/rmd-pwned-build-info-dollar)"
    assert tf["cudnn_build"] == "8\n../../../etc/$(touch /tmp/rmd-pwned-build-info-newline)"
    torch = frameworks[f"{HOME}/venvs/$(touch rmd-pwned-venv-dollar)/lib/python3.10/site-packages/torch/version.py"]
    assert torch["cuda_build"] == "12.1`touch /tmp/rmd-pwned-torch-tick`"
    loader = facts["loader"]
    assert {e["source"] for e in loader["ld_library_path"]} == set(HOSTILE_PROFILES)
    assert {"path": "/usr/local/cuda-12.1/../cuda-12.1/lib64", "source": HOSTILE_LDCONF, "exists": True} in (
        loader["ld_so_conf"]
    )
    assert any(e["path"] == "/opt/$(touch${IFS}rmd-pwned-ldconf-line)" for e in loader["ld_so_conf"])

    # `remediate plan` wants the shadowing profile.d files out of the way and refuses every one of them;
    # no action names a hostile path.
    capsys.readouterr()
    assert main(["plan", "-i", str(inventory), "--format", "json"]) == 2
    (plan,) = json.loads(capsys.readouterr().out)["hosts"]
    assert plan["status"] == "blocked"
    refused = {f["message"] for f in plan["findings"] if f["code"] == "PATH_REFUSED"}
    assert refused == {f"refusing to quarantine {p!r} (loader config): {why}" for p, why in HOSTILE_PROFILES.items()}
    assert plan["actions"], "the rest of the fix is still planned"
    planned = json.dumps([a["params"] for a in plan["actions"]])
    for bad in ("$(", "`", ";", "\\n", "..", CANARY):
        assert bad not in planned, (bad, planned)

    # Nothing ran: no canary on the host (its home, /tmp, /, or anything it wrote) nor on the control node.
    assert _host_canaries(faults, "fault-hostile") == []
    assert _local_canaries(cwd) == set()
    assert _local_canaries(Path("/tmp")) == tmp_before


# --- all at once -----------------------------------------------------------------------------------


def test_one_hosts_failure_never_stops_the_others(faults: FaultLab, capsys: pytest.CaptureFixture[str]) -> None:
    names = (HEALTHY, "fault-hostile", "fault-no-python3", "fault-banner", "wrong-key", "changed-host-key",
             "host-down")  # fmt: skip
    with silent_listener() as port:
        silent = faults.vars[HEALTHY] | {"ansible_port": port}
        inventory = faults.inventory(*names, extra={"silent": silent})
        status, hosts, elapsed = probe(inventory, capsys, "--forks", "4")
    assert status == 1
    assert set(hosts) == {*names, "silent"}
    outcome = {name: (r["status"], r["error"]) for name, r in hosts.items()}
    healthy_port = faults.host(HEALTHY).port
    assert outcome == {
        HEALTHY: ("ok", None),
        "fault-hostile": ("ok", None),
        "fault-no-python3": ("failed", "python3 not found on host"),
        "fault-banner": ("failed", "probe output is not JSON (Expecting value); it begins "
                                   "'Welcome to fault-banner: authorised use only'"),
        "wrong-key": ("unreachable", f"permission denied (publickey) for ubuntu@127.0.0.1:{healthy_port}; "
                                     f"tried {faults.other_key}"),
        "changed-host-key": ("unreachable", hosts["changed-host-key"]["error"]),
        "host-down": ("unreachable", f"connection refused (127.0.0.1:{faults.vars['host-down']['ansible_port']})"),
        "silent": ("unreachable", f"timed out waiting for the SSH banner from 127.0.0.1:{port} after "
                                  f"{CONNECT_TIMEOUT:g}s"),
    }  # fmt: skip
    assert hosts["changed-host-key"]["error"].startswith(f"Host key for [127.0.0.1]:{healthy_port} has changed")
    assert "ssh-keygen -R" in hosts["changed-host-key"]["hint"]
    for name, r in hosts.items():
        assert (r["facts"] is None) == (r["status"] != "ok"), name
        if r["status"] != "ok":
            assert r["hint"], f"{name}: every failure says what to do"
    healthy = hosts[HEALTHY]["facts"]
    assert healthy["driver"]["version"] == "580.159.04"
    assert [fw["version"] for e in healthy["envs"] for fw in e["frameworks"]] == ["2.11.0+cu130"]
    # The silent host costs its connect timeout, not the run: four forks, eight hosts, well under a minute.
    assert elapsed < 60, elapsed
