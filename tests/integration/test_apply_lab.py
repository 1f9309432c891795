"""`remediate apply` and `rollback` for real: the playbooks of playbooks/ through ansible-runner, against lab
hosts (real OpenSSH on loopback, strict host keys).

Real applies run on hosts of tests/fixtures/apply-lab (a lab of their own, so the shared lab of the
session stays as its scenarios say): plan -> apply -> probe and plan again (compliant) -> rollback ->
every file of the host as before; and the faults: SIGKILL of apply midway then apply again, a host
going down in a batch, no space for the quarantine, a stale plan. One test installs the real torch
2.14.1 wheels (from the lab's wheel cache, docs/playbooks.md). The scenarios of remediator/lab/scenarios
target old TensorFlow releases that cannot be installed here, so they run in check mode (which must
change nothing). docs/apply.md lists what runs how.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediator.apply import ApplyEvent, ApplyOptions, Serial, apply_plan, read_plan
from remediator.cli import main
from remediator.inventory import load_inventory
from remediator.lab import fleet
from tests.integration import wheelcache
from tests.integration.wheelcache import WheelCache

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "apply-lab"
PLAYBOOKS = REPO / "remediator" / "ansible_collections" / "remediator" / "gpu" / "playbooks"

# Prints {path: "kind:digest:mode:uid:gid"} for every file, dir and link a run may touch, as the host sees
# them. Left out: the quarantine and lock (the run's own records), ansible's temp dirs and caches.
TREE_SCRIPT = r"""
import hashlib, json, os, stat, sys
SKIP = ("/var/lib/remediator", "/var/cache/remediator-uv", "/home/ubuntu/.ansible", "/root/.ansible",
        "/home/ubuntu/.cache", "/root/.cache")
out = {}
for top in ("/etc", "/usr/local", "/opt", "/home", "/root", "/var/lib"):
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in sorted(dirs) if not os.path.join(root, d).startswith(SKIP)]
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            if p.startswith(SKIP):
                continue
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                kind = "l:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    kind = "f:" + hashlib.sha256(f.read()).hexdigest()
            else:
                kind = "d" if stat.S_ISDIR(st.st_mode) else "o"
            out[p] = "%s:%o:%d:%d" % (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
json.dump(out, sys.stdout)
"""


@dataclass(frozen=True)
class ApplyLab:
    state: Path
    inventory: Path
    hosts: dict[str, fleet.Host]
    work: Path  # plans, results, apply's state dir and store

    def argv(self) -> list[str]:
        return ["-i", str(self.inventory), "--playbooks", str(PLAYBOOKS), "--state-dir", str(self.work / "runs"),
                "--state-db", str(self.work / "state.db")]

    def in_host(self, name: str, argv: list[str], stdin: str | None = None) -> str:
        """Run a command inside the host's mount namespace (its files, as its sessions see them)."""
        ns = f"/proc/{self.hosts[name].pid}/ns/mnt"
        done = subprocess.run(["nsenter", f"--mount={ns}", "--", *argv], input=stdin, capture_output=True,
                              text=True, timeout=120, check=True)
        return done.stdout

    def tree(self, name: str) -> dict[str, str]:
        return json.loads(self.in_host(name, ["/usr/bin/python3", "-"], TREE_SCRIPT))  # type: ignore[no-any-return]

    def manifest(self, name: str, run_id: str) -> dict[str, Any]:
        text = self.in_host(name, ["cat", f"/var/lib/remediator/quarantine/{run_id}/manifest.json"])
        return json.loads(text)  # type: ignore[no-any-return]

    def take_down(self, name: str) -> list[int]:
        """SIGKILL every process of the host (its sshd and sessions): it stops answering, mid-run."""
        ns = os.readlink(f"/proc/{self.hosts[name].pid}/ns/mnt")
        killed = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == ns:
                        os.kill(int(entry), signal.SIGKILL)
                        killed.append(int(entry))
        return killed


def plan(lab: ApplyLab, hosts: list[str], name: str) -> Path:
    out = lab.work / f"{name}.plan.json"
    status = main(["plan", "-i", str(lab.inventory), "--limit", ",".join(hosts), "--out", str(out)])
    assert status == 2, f"plan exit {status}"  # changes planned
    return out


def replan_statuses(lab: ApplyLab, hosts: list[str]) -> dict[str, str]:
    out = lab.work / "replan.json"
    main(["plan", "-i", str(lab.inventory), "--limit", ",".join(hosts), "--out", str(out), "--format", "json"])
    return {h["host"]: h["status"] for h in json.loads(out.read_text())["hosts"]}


def apply_cli(lab: ApplyLab, plan_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = lab.work / f"result-{time.monotonic_ns()}.json"
    status = main(["apply", str(plan_path), *lab.argv(), "--yes", "--result", str(result), *extra])
    return status, json.loads(result.read_text())


def rollback_cli(lab: ApplyLab, run_id: str, *extra: str) -> tuple[int, dict[str, Any]]:
    result = lab.work / f"rollback-{time.monotonic_ns()}.json"
    status = main(["rollback", run_id, *lab.argv(), "--yes", "--result", str(result), *extra])
    return status, json.loads(result.read_text())


def by_host(doc: dict[str, Any]) -> dict[str, str]:
    return {h["host"]: h["status"] for h in doc["hosts"]}


@contextlib.contextmanager
def own_lab(labkit: Any, tmp_path_factory: pytest.TempPathFactory, scenario: Path, count: int,
            label: str) -> Iterator[ApplyLab]:
    why = labkit.unavailable()
    if why:
        pytest.skip(why)
    if not (PLAYBOOKS / "remediate.yml").is_file():
        pytest.skip("playbooks/remediate.yml is not there yet")
    state = tmp_path_factory.mktemp(label)
    work = tmp_path_factory.mktemp(label + "-work")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REMEDIATE_STATE_DB", str(work / "state.db"))  # plan records there, not in ~/.local
        try:
            up = fleet.up([scenario], state, count=count)
            yield ApplyLab(state, up.inventory, {h.name: h for h in up.hosts}, work)
        finally:
            fleet.down(state)


@pytest.fixture(scope="module")
def quick(labkit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApplyLab]:
    """Eleven hosts whose plan is one quarantine (their torch venv is right already): applies take seconds."""
    with own_lab(labkit, tmp_path_factory, FIXTURES / "torch-venv-shadowed.yaml", 11, "apply-quick") as lab:
        yield lab


def names(lab: ApplyLab, *numbers: int) -> list[str]:
    return [f"torch-venv-shadowed-{n:03d}" for n in numbers]


def assert_nothing_lost(lab: ApplyLab, name: str, run_id: str, before: dict[str, str]) -> None:
    """Every item of the run's manifest was moved whole: its stored copy is the original, byte for byte."""
    manifest = lab.manifest(name, run_id)
    assert manifest["items"], name
    for item in manifest["items"]:
        assert item["state"] == "moved", (name, item)
        stored = f"/var/lib/remediator/quarantine/{run_id}/{item['stored_as']}"
        digest = lab.in_host(name, ["sha256sum", stored]).split()[0]
        assert digest == item["sha256"], (name, item)
        assert before[item["original_path"]].startswith(f"f:{digest}:"), (name, item)


# --- a whole cycle --------------------------------------------------------------------------------------


def test_plan_apply_probe_rollback_leaves_the_host_as_it_was(quick: ApplyLab) -> None:
    [host] = names(quick, 1)
    before = quick.tree(host)
    plan_path = plan(quick, [host], "cycle")

    status, doc = apply_cli(quick, plan_path)
    h = doc["hosts"][0]
    assert (h["status"], h["error"]) == ("applied", None), doc
    assert h["quarantine_manifest"] == f"/var/lib/remediator/quarantine/{doc['run_id']}/manifest.json"
    assert "/etc/profile.d/cuda.sh" not in quick.tree(host)
    assert_nothing_lost(quick, host, doc["run_id"], before)
    assert replan_statuses(quick, [host]) == {host: "compliant"}

    status_undo, undone = rollback_cli(quick, doc["run_id"])
    assert status_undo == 0 and by_host(undone) == {host: "rolled_back"}, undone
    assert quick.tree(host) == before
    assert replan_statuses(quick, [host]) == {host: "changes"}

    # Verify ran at the end of the apply; a lab host has no GPU, so the rungs that need one must say skip.
    assert h["verify"] is not None, h
    assert h["verify"]["passed"] is True, h["verify"]
    assert status == 0, doc


# --- faults ---------------------------------------------------------------------------------------------


def test_sigkill_midway_then_apply_again_converges(quick: ApplyLab) -> None:
    hosts = names(quick, 2, 3, 4)
    before = {h: quick.tree(h) for h in hosts}
    plan_path = plan(quick, hosts, "kill")
    env = {**os.environ, "REMEDIATE_STATE_DB": str(quick.work / "state.db")}
    cmd = [sys.executable, "-m", "remediator", "apply", str(plan_path), *quick.argv(), "--yes", "--serial", "1",
           "--no-verify"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            # The second host has just quarantined its file; the run goes on to its next task.
            if line.startswith(f"{hosts[1]}: changed: Quarantine"):
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    [run] = [r for r in (quick.work / "runs" / "runs").iterdir()
             if (json.loads((r / "result.json").read_text()).get("plan") or {}).get("path") == str(plan_path)]
    killed = json.loads((run / "result.json").read_text())
    assert killed["state"] == "running" and by_host(killed) == {hosts[0]: "applied", hosts[1]: "running",
                                                                hosts[2]: "skipped"}

    # Apply again: the same run carries on (waiting, if need be, for the killed run's ansible-playbook).
    status, doc = apply_cli(quick, plan_path, "--serial", "1", "--lock-wait", "300", "--no-verify")
    assert status == 0, doc
    assert doc["run_id"] == run.name and doc["resumed"] and set(by_host(doc).values()) == {"applied"}
    for h in hosts:
        assert_nothing_lost(quick, h, run.name, before[h])

    status, undone = rollback_cli(quick, run.name)
    assert status == 0 and set(by_host(undone).values()) == {"rolled_back"}, undone
    for h in hosts:
        assert quick.tree(h) == before[h], h


def test_a_host_going_down_midway_leaves_the_others_applied(quick: ApplyLab) -> None:
    hosts = names(quick, 5, 6, 7)
    victim = hosts[2]
    plan_path = plan(quick, hosts, "down")
    inventory = load_inventory(str(quick.inventory))
    downed: list[int] = []

    def on_event(event: ApplyEvent) -> None:
        r = event.runner
        # Once the victim has answered its first task in the batch after the canary, it goes away.
        if r is not None and r.host == victim and r.kind in ("ok", "changed") and not downed:
            downed.extend(quick.take_down(victim))

    options = ApplyOptions(playbooks_dir=PLAYBOOKS, state_dir=quick.work / "runs", serial=Serial.parse("100%"),
                           state_db=str(quick.work / "state.db"), verify=False)
    result = apply_plan(read_plan(str(plan_path)), inventory.hosts, options, on_event=on_event)
    assert downed
    statuses = {h.host: h.status for h in result.hosts}
    assert statuses == {hosts[0]: "applied", hosts[1]: "applied", victim: "unreachable"}, result.hosts
    assert [b.hosts for b in result.batches] == [(hosts[0],), (hosts[1], victim)]
    assert int(result.exit_status) == 2
    assert replan_statuses(quick, hosts[:2]) == dict.fromkeys(hosts[:2], "compliant")


def test_no_space_for_the_quarantine_aborts_that_host_before_anything_moves(quick: ApplyLab) -> None:
    hosts = names(quick, 8, 9)
    full = hosts[1]
    before = quick.tree(full)
    quick.in_host(full, ["sh", "-c", "mkdir -p /var/lib/remediator/quarantine && "
                         "mount -t tmpfs -o size=1m remediator-full /var/lib/remediator/quarantine"])
    plan_path = plan(quick, hosts, "nospace")
    status, doc = apply_cli(quick, plan_path, "--no-canary", "--max-fail-percent", "100", "--no-verify")
    assert status == 2, doc
    assert by_host(doc) == {hosts[0]: "applied", full: "failed"}
    failed = next(h for h in doc["hosts"] if h["host"] == full)
    assert "space" in (failed["error"] or "").lower(), failed
    assert quick.tree(full) == before  # nothing moved


def test_a_stale_plan_is_refused_for_that_host_only(quick: ApplyLab) -> None:
    hosts = names(quick, 10, 11)
    changed = hosts[1]
    plan_path = plan(quick, hosts, "stale")
    # After the plan: someone adds a loader entry on one host.
    quick.in_host(changed, ["sh", "-c", "echo 'export LD_LIBRARY_PATH=/usr/local/cuda-12.4/extras/CUPTI/lib64"
                            "${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}' >> /etc/profile.d/cuda.sh"])
    before = quick.tree(changed)
    status, doc = apply_cli(quick, plan_path, "--no-verify")
    assert status == 2, doc
    assert by_host(doc) == {hosts[0]: "applied", changed: "stale"}
    stale = next(h for h in doc["hosts"] if h["host"] == changed)
    assert stale["plan_fingerprint"] != stale["probed_fingerprint"] and stale["batch"] is None
    assert quick.tree(changed) == before


# --- the framework, installed for real -------------------------------------------------------------------


TORCH = "torch==2.14.1"


@pytest.fixture(scope="module")
def wheel_cache() -> WheelCache:
    """torch 2.14.1 and its cu13 wheels in the lab's shared cache (tests/integration/wheelcache.py)."""
    try:
        return wheelcache.fill(TORCH)
    except wheelcache.CacheUnavailable as exc:
        pytest.skip(str(exc))


def test_torch_is_installed_from_real_wheels_and_rolled_back(labkit: Any, tmp_path_factory: pytest.TempPathFactory,
                                                             wheel_cache: WheelCache) -> None:
    with own_lab(labkit, tmp_path_factory, FIXTURES / "torch-missing.yaml", 1, "apply-torch") as lab:
        [host] = lab.hosts
        before = lab.tree(host)
        plan_path = plan(lab, [host], "torch")
        status, doc = apply_cli(
            lab, plan_path,
            "--pip-find-links", str(wheel_cache.wheelhouse), "--pip-arg=--no-index", "--pip-arg=--offline",
            "--var", "remediator_pip_installer=uv", "--var", f"remediator_uv_bin={wheel_cache.uv}",
            "--var", f"remediator_uv_cache_dir={wheel_cache.uv_cache}", "--var", "remediator_uv_link_mode=symlink")
        h = doc["hosts"][0]
        assert h["status"] == "applied", doc
        venv = "/opt/remediator/venvs/pytorch-2.14.1"
        version = lab.in_host(host, [f"{venv}/bin/python", "-c",
                                     "import importlib.metadata as m; print(m.version('torch'))"])
        assert version.strip() == "2.14.1"
        assert replan_statuses(lab, [host]) == {host: "compliant"}
        status_undo, undone = rollback_cli(lab, doc["run_id"])
        assert status_undo == 0, undone
        assert lab.tree(host) == before
        assert h["verify"] is not None and h["verify"]["passed"] is True, h["verify"]
        assert status == 0, doc


# --- check mode on every scenario of the shared lab ------------------------------------------------------


def upper_digest(lab: Any, name: str) -> dict[str, str]:
    """What a host has written since it started, as its overlay upper dirs hold it (not home and logs)."""
    out: dict[str, str] = {}
    base = Path(lab.state) / "hosts" / name / "upper"
    for layer in ("etc", "usr", "var", "opt"):
        for path in sorted((base / layer).rglob("*")):
            rel = str(path.relative_to(base))
            if rel.startswith(("var/log", "var/tmp")):
                continue
            st = path.lstat()
            out[rel] = f"{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}"
    return out


def test_check_mode_on_every_broken_scenario_changes_nothing(lab: Any, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if not (PLAYBOOKS / "remediate.yml").is_file():
        pytest.skip("playbooks/remediate.yml is not there yet")
    monkeypatch.setenv("REMEDIATE_STATE_DB", str(tmp_path / "state.db"))
    plan_path = tmp_path / "plan.json"
    main(["plan", "-i", str(lab.inventory), "--out", str(plan_path)])
    planned = {h["host"]: h for h in json.loads(plan_path.read_text())["hosts"]}
    broken = [n for n, h in planned.items() if h["status"] == "changes"]
    assert len(broken) >= 5
    before = {n: upper_digest(lab, n) for n in broken}
    result = tmp_path / "result.json"
    status = main(["apply", str(plan_path), "-i", str(lab.inventory), "--playbooks", str(PLAYBOOKS), "--check",
                   "--max-fail-percent", "100", "--state-dir", str(tmp_path / "runs"), "--state-db",
                   str(tmp_path / "state.db"), "--result", str(result)])
    doc = json.loads(result.read_text())
    hosts = {h["host"]: h for h in doc["hosts"]}
    for name in broken:
        h = hosts[name]
        kinds = {a["kind"] for a in planned[name]["actions"]}
        if kinds & {"install_package", "remove_package"}:
            # System packages come from the host's apt sources, which do not have them here: check mode may
            # say so, and must say why.
            assert h["status"] in ("check", "failed"), h
            assert h["status"] == "check" or h["error"], h
        else:
            assert h["status"] == "check", h
        assert h["quarantine_manifest"] is None
    for name, h in hosts.items():
        if planned[name]["status"] != "changes":
            assert h["status"] == "skipped" and h["planned"] == planned[name]["status"]
    assert status in (0, 2) and doc["check"] is True
    for name in broken:
        assert upper_digest(lab, name) == before[name], name
