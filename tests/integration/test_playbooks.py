"""remediate.yml, rollback.yml and verify.yml run by ansible-playbook against lab hosts (real sshd, sudo).

A lab of its own (two hosts per scenario) is planned with the real `remediate plan`; the actions go into
the inventory the way apply hands them over (docs/apply.md). Host files are read from outside through
/proc/<sshd pid>/root, which resolves paths in the host's own mount namespace.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.lab import fleet
from tests.integration import wheelcache

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin"
PLAYBOOKS = REPO / "remediator" / "ansible_collections" / "remediator" / "gpu" / "playbooks"
SCENARIOS = [REPO / "remediator" / "lab" / "scenarios" / f"{s}.yaml" for s in
             ("cuda-wrong-default", "cudnn-shadowed", "lib-shadowed-pip", "healthy-pytorch")]
WATCHED = ("/usr/local", "/etc/profile.d", "/etc/ld.so.conf.d", "/etc/alternatives", "/opt", "/home")
# What rollback must leave exactly as it was (docs/apply.md, "Byte for byte"), the quarantine aside.
EXACT = ("/etc", "/usr/local", "/opt", "/home", "/root", "/var/lib")


def _bin(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name) or name


class PlaybookLab:
    def __init__(self, state: Path, lab: fleet.Lab) -> None:
        self.state = state
        self.lab = lab
        self.inventory = yaml.safe_load(lab.inventory.read_text())
        self.hosts: dict[str, dict[str, Any]] = self.inventory["all"]["children"]["lab"]["hosts"]
        self.pids = {h.name: h.pid for h in lab.hosts}
        plan_file = state / "plan.json"
        subprocess.run([_bin("remediate"), "plan", "-i", str(lab.inventory), "--out", str(plan_file)],
                       capture_output=True, text=True, timeout=300)
        self.plan = {h["host"]: h for h in json.loads(plan_file.read_text())["hosts"]}

    def replan(self, host: str, target: str) -> None:
        """Plan `host` again for another target (the real planner, as `remediate plan --target`)."""
        out = self.state / f"plan-{host}.json"
        subprocess.run([_bin("remediate"), "plan", "-i", str(self.lab.inventory), "--limit", host, "--target", target,
                        "--out", str(out)], capture_output=True, text=True, timeout=300)
        self.plan[host] = json.loads(out.read_text())["hosts"][0]

    def root(self, host: str) -> Path:
        return Path(f"/proc/{self.pids[host]}/root")

    def actions(self, host: str, *, pip: bool = False) -> list[dict[str, Any]]:
        """The plan's actions, runnable in the lab: no system packages (no NVIDIA repos here), the venv on
        the lab's Python, and no framework install unless asked (those targets do not install on it)."""
        out = []
        for a in self.plan[host]["actions"]:
            if a["kind"] in ("install_package", "install_python") or (a["kind"] == "pip_install" and not pip):
                continue
            if a["kind"] == "create_venv":
                params = {k: v for k, v in a["params"].items() if k != "uv"}  # no uv-managed CPython here
                a = {**a, "params": {**params, "python": "/usr/bin/python3"}}
            out.append(a)
        return out

    def play(self, playbook: str, hosts: dict[str, list[dict[str, Any]]], extravars: dict[str, Any], *,
             check: bool = False, diff: bool = False, tag: str = "run", wait: bool = True) -> Any:
        """Run `playbook` on `hosts` (name -> actions); returns {host: stats} (or the Popen when not wait)."""
        inv_hosts = {}
        for name, actions in hosts.items():
            inv_hosts[name] = {**self.hosts[name], "remediator_actions": actions,
                               "remediator_target": self.plan[name]["target"],
                               "remediator_fingerprint": self.plan[name]["fingerprint"]}
        inv = self.state / f"{tag}-inventory.yml"
        inv.write_text(yaml.safe_dump({"all": {"hosts": inv_hosts}}))
        extra = self.state / f"{tag}-extravars.json"
        extra.write_text(json.dumps(extravars))
        argv = [_bin("ansible-playbook"), "-i", str(inv), str(PLAYBOOKS / playbook), "-e", f"@{extra}"]
        argv += ["--check"] if check else []
        argv += ["--diff"] if diff else []
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg")}
        log = open(self.state / f"{tag}.log", "w")  # noqa: SIM115 - the child writes it
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PLAYBOOKS,
                                start_new_session=True)
        log.close()
        if not wait:
            return proc
        proc.wait(timeout=600)
        return self.stats(tag)

    def stats(self, tag: str) -> dict[str, dict[str, Any]]:
        """The PLAY RECAP per host, with the messages of its failed tasks under "errors"."""
        text = (self.state / f"{tag}.log").read_text()
        out: dict[str, dict[str, Any]] = {}
        for m in re.finditer(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", text, re.M):
            out[m[1]] = {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failures": int(m[5]),
                         "errors": []}
        for m in re.finditer(r"^fatal: \[([^\]]+)\]: FAILED! => (.*)$", text, re.M):
            try:
                msg = json.loads(m[2]).get("msg", m[2])
            except ValueError:
                msg = m[2]
            out.setdefault(m[1], {"errors": []})["errors"].append(str(msg))
        assert out, text[-3000:]
        return out

    def digest(self, host: str, trees: tuple[str, ...] = WATCHED, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """Names, types, modes, owners, link targets and file sha256 under each tree, as the host sees them."""
        out: dict[str, Any] = {}
        root = self.root(host)
        for top in trees:
            base = str(root) + top
            for d, dirs, files in os.walk(base):
                rel_d = d[len(str(root)):]
                # ~/.ansible/tmp is ansible's own scratch dir, not something the roles made.
                dirs[:] = sorted(x for x in dirs if os.path.join(rel_d, x) not in skip and x != ".ansible")
                for name in sorted(dirs + files):
                    p = os.path.join(d, name)
                    st = os.lstat(p)
                    key = p[len(str(root)):]
                    if os.path.islink(p):
                        out[key] = ("l", os.readlink(p), st.st_uid, st.st_gid)
                    elif os.path.isdir(p):
                        out[key] = ("d", st.st_mode, st.st_uid, st.st_gid)
                    else:
                        with open(p, "rb") as f:
                            out[key] = ("f", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                                        hashlib.sha256(f.read()).hexdigest())
        return out

    def manifest(self, host: str, run_id: str, root: str = "/var/lib/remediator/quarantine") -> dict[str, Any]:
        return json.loads((self.root(host) / root.lstrip("/") / run_id / "manifest.json").read_text())

    def sh(self, host: str, command: str) -> str:
        """Run a command as root inside the host (its mount namespace) and return stdout."""
        out = subprocess.run(["nsenter", "-t", str(self.pids[host]), "-m", "sh", "-c", command],
                             capture_output=True, text=True, timeout=120, check=True)
        return out.stdout


def _run_id(n: int) -> str:
    return f"20261126T0000{n:02d}Z-{n:06x}"


@pytest.fixture(scope="module")
def plab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlaybookLab]:
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.access("/usr/sbin/sshd", os.X_OK):
        pytest.skip("the lab needs root, unshare and /usr/sbin/sshd")
    state = tmp_path_factory.mktemp("playbook-lab")
    atexit.register(fleet.down, state)
    try:
        lab = fleet.up(SCENARIOS, state, count=2 * len(SCENARIOS))
        yield PlaybookLab(state, lab)
    finally:
        fleet.down(state)
        atexit.unregister(fleet.down)


def _ok(stats: dict[str, dict[str, Any]], host: str) -> dict[str, Any]:
    s = stats[host]
    assert s["failures"] == 0 and s["unreachable"] == 0, s
    return s


# --- the tests --------------------------------------------------------------------------------------------------


def test_check_mode_with_diff_changes_nothing(plab: PlaybookLab) -> None:
    hosts = {h: plab.actions(h, pip=True) for h in ("cuda-wrong-default-001", "cudnn-shadowed-001",
                                                    "lib-shadowed-pip-001")}
    before = {h: plab.digest(h, (*WATCHED, "/var/lib")) for h in hosts}
    stats = plab.play("remediate.yml", hosts, {"remediator_run_id": _run_id(1)}, check=True, diff=True, tag="check")
    for h in hosts:
        assert _ok(stats, h)["changed"] > 0  # it says what it would do ...
    assert {h: plab.digest(h, (*WATCHED, "/var/lib")) for h in hosts} == before  # ... and does none of it


def test_apply_is_idempotent_and_rollback_restores_byte_for_byte(plab: PlaybookLab) -> None:
    hosts = {h: plab.actions(h) for h in ("cuda-wrong-default-001", "cudnn-shadowed-001", "lib-shadowed-pip-001")}
    run = _run_id(2)
    before = {h: plab.digest(h, EXACT, skip=("/var/lib/remediator",)) for h in hosts}
    stats = plab.play("remediate.yml", hosts, {"remediator_run_id": run}, tag="apply1")
    for h in hosts:
        assert _ok(stats, h)["changed"] > 0

    # What the roles made: quarantined paths with a manifest, the link, the venv and its pin.
    root = plab.root("cuda-wrong-default-001")
    assert not (root / "usr/local/cuda-10.1").exists()
    assert os.readlink(root / "usr/local/cuda") == "/usr/local/cuda-11.2"
    m = plab.manifest("cuda-wrong-default-001", run)
    assert [(i["original_path"], i["state"]) for i in m["items"]] == [("/usr/local/cuda-10.1", "moved")]
    assert {c["kind"] for c in m["changes"]} == {"cuda_link", "venv", "loader_pin"}
    venv = root / "opt/remediator/venvs/tensorflow-2.5.0"
    assert "LD_LIBRARY_PATH=/usr/local/cuda-11.2/lib64" in (venv / "bin/remediator-env").read_text().splitlines()
    activated = plab.sh("cuda-wrong-default-001", "LD_LIBRARY_PATH=/elsewhere; export LD_LIBRARY_PATH; "
                        ". /opt/remediator/venvs/tensorflow-2.5.0/bin/activate; echo \"$LD_LIBRARY_PATH\"; "
                        "deactivate; echo \"$LD_LIBRARY_PATH\"")
    assert activated.split() == ["/usr/local/cuda-11.2/lib64", "/elsewhere"]
    shadowed = plab.manifest("cudnn-shadowed-001", run)["items"]
    planned = [a["params"]["path"] for a in hosts["cudnn-shadowed-001"] if a["kind"] == "quarantine_path"]
    assert [i["original_path"] for i in shadowed] == planned and len(planned) > 10
    assert all(i["sha256"] or i["type"] == "symlink" for i in shadowed)
    assert not (plab.root("lib-shadowed-pip-001") / "etc/profile.d/cuda.sh").exists()
    for h in hosts:  # the lock is released
        assert not (plab.root(h) / "var/lib/remediator/lock").exists()

    stats = plab.play("remediate.yml", hosts, {"remediator_run_id": run}, tag="apply2")
    for h in hosts:
        assert _ok(stats, h)["changed"] == 0, f"{h} changed on the second run"

    stats = plab.play("rollback.yml", hosts, {"remediator_run_id": run}, tag="rollback1")
    for h in hosts:
        assert _ok(stats, h)["changed"] > 0
        assert plab.digest(h, EXACT, skip=("/var/lib/remediator",)) == before[h]  # byte for byte
    stats = plab.play("rollback.yml", hosts, {"remediator_run_id": run}, tag="rollback2")
    for h in hosts:
        assert _ok(stats, h)["changed"] == 0


def test_hostile_path_is_refused_on_the_host_even_past_the_control_side(plab: PlaybookLab) -> None:
    host = "cuda-wrong-default-002"
    plab.sh(host, "ln -s /etc /usr/local/cuda-99.9 && mkdir -p /usr/local/cuda-98.0 && "
                  "ln -s /root /usr/local/cuda-98.0/lib64")
    before = plab.digest(host, (*WATCHED, "/etc", "/root"))
    for n, path in enumerate(("/etc/passwd", "/usr/local/cuda-99.9", "/usr/local/cuda-98.0/lib64/libcudnn.so.8",
                              "/usr/local/cuda-11.2/../../../etc")):
        actions = [{"kind": "quarantine_path", "params": {"path": "/usr/local/cuda-10.1", "what": "CUDA toolkit"},
                    "finding": None, "reason": "test", "requires_approval": False},
                   {"kind": "quarantine_path", "params": {"path": path, "what": "hostile"},
                    "finding": None, "reason": "test", "requires_approval": False}]
        stats = plab.play("remediate.yml", {host: actions}, {"remediator_run_id": _run_id(10 + n)}, tag=f"hostile{n}")
        assert stats[host]["failures"] == 1 and "refused" in " ".join(stats[host]["errors"]), stats[host]
    assert plab.digest(host, (*WATCHED, "/etc", "/root")) == before
    assert not (plab.root(host) / "var/lib/remediator/quarantine").exists() or not any(
        (plab.root(host) / "var/lib/remediator/quarantine").iterdir())
    plab.sh(host, "rm /usr/local/cuda-99.9 /usr/local/cuda-98.0/lib64 && rmdir /usr/local/cuda-98.0")


def test_no_free_space_aborts_the_host_before_anything_moves(plab: PlaybookLab) -> None:
    host = "cudnn-shadowed-002"
    plab.sh(host, "mkdir -p /var/lib/tiny && mount -t tmpfs -o size=32k tmpfs /var/lib/tiny")
    before = plab.digest(host)
    stats = plab.play("remediate.yml", {host: plab.actions(host)},
                      {"remediator_run_id": _run_id(20), "remediator_quarantine_root": "/var/lib/tiny",
                       "remediator_min_free_bytes": 0}, tag="nospace")
    assert stats[host]["failures"] == 1 and "not enough free space" in " ".join(stats[host]["errors"])
    assert plab.digest(host) == before
    assert not (plab.root(host) / "var/lib/tiny" / _run_id(20)).exists()


def test_sigkill_mid_run_then_rerun_converges(plab: PlaybookLab) -> None:
    host = "lib-shadowed-pip-002"
    # A toolkit big enough that its cross-filesystem copy and hashing take a while to kill into.
    plab.sh(host, "mkdir -p /usr/local/cuda-10.1/lib64 && head -c 400000000 /dev/urandom "
                  "> /usr/local/cuda-10.1/lib64/libbig.so && echo x > /usr/local/cuda-10.1/version.txt")
    tree = ("/usr/local/cuda-10.1", "/etc/profile.d")
    before = plab.digest(host, tree)
    actions = [{"kind": "quarantine_path", "params": {"path": p, "what": "test"}, "finding": None, "reason": "test",
                "requires_approval": False} for p in ("/etc/profile.d/cuda.sh", "/usr/local/cuda-10.1")]
    run = _run_id(30)
    proc = plab.play("remediate.yml", {host: actions}, {"remediator_run_id": run}, tag="killed", wait=False)
    items = plab.root(host) / "var/lib/remediator/quarantine" / run / "items"
    deadline = time.monotonic() + 120
    while not (items / "0002.partial").exists() and not (items / "0002").exists():
        assert proc.poll() is None, (plab.state / "killed.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the move never started"
        time.sleep(0.01)
    # Kill the control side and the module on the host (every python the run started in that namespace).
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ns = os.readlink(f"/proc/{plab.pids[host]}/ns/mnt")
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            if os.readlink(f"/proc/{pid}/ns/mnt") == ns and b"python" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            continue
    m = plab.manifest(host, run)
    assert [i["state"] for i in m["items"]][1] == "pending"

    stats = plab.play("remediate.yml", {host: actions}, {"remediator_run_id": run,
                                                          "remediator_lock_stale_after": 0}, tag="resumed")
    _ok(stats, host)
    m = plab.manifest(host, run)
    assert [i["state"] for i in m["items"]] == ["moved", "moved"]
    q = plab.root(host) / "var/lib/remediator/quarantine" / run
    for item in m["items"]:  # nothing lost: every byte is in the quarantine
        stored = plab.digest(host, (f"/var/lib/remediator/quarantine/{run}/{item['stored_as']}",))
        rel = {k.split(item["stored_as"], 1)[1]: v for k, v in stored.items()}
        orig = {k[len(item["original_path"]):]: v for k, v in before.items()
                if k.startswith(item["original_path"] + "/")}
        assert rel == orig
    assert not list(q.glob("items/*.partial"))
    stats = plab.play("rollback.yml", {host: actions}, {"remediator_run_id": run}, tag="killed-rollback")
    _ok(stats, host)
    assert plab.digest(host, tree) == before


def test_lock_refuses_a_live_run_and_takes_over_a_dead_one(plab: PlaybookLab) -> None:
    host = "cuda-wrong-default-002"
    lock = "/var/lib/remediator/lock"
    sleeper = subprocess.Popen(["sleep", "300"])  # stands in for a live control process on this machine
    try:
        owner = {"run_id": _run_id(40), "control_host": os.uname().nodename, "control_pid": sleeper.pid,
                 "taken_at_epoch": time.time()}
        plab.sh(host, f"mkdir -p {lock} && echo '{json.dumps(owner)}' > {lock}/owner.json")
        stats = plab.play("remediate.yml", {host: []}, {"remediator_run_id": _run_id(41)}, tag="locked")
        assert stats[host]["failures"] == 1 and "locked by remediator run" in " ".join(stats[host]["errors"])
    finally:
        sleeper.kill()
        sleeper.wait()
    stats = plab.play("remediate.yml", {host: []}, {"remediator_run_id": _run_id(41)}, tag="takeover")
    _ok(stats, host)
    assert not (plab.root(host) / lock.lstrip("/")).exists()


def test_ansible_lint_production_profile() -> None:
    lint = _bin("ansible-lint")
    if not Path(lint).exists() and not shutil.which(lint):
        pytest.skip("ansible-lint is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PLAYBOOKS / "ansible.cfg"), "NO_COLOR": "1"}
    out = subprocess.run([lint, "--profile", "production", "--offline"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]


# --- a real framework install: torch 2.14.1 and its CUDA 13 wheels, linked from a cache the lab hosts share ----

REAL_TARGET = "pytorch==2.14.1"


def test_real_torch_install_from_shared_wheel_cache(plab: PlaybookLab) -> None:
    try:
        cache = wheelcache.fill("torch==2.14.1")
    except wheelcache.CacheUnavailable as exc:
        pytest.skip(str(exc))
    # A host whose driver (580) runs PyPI's CUDA 13 build of 2.14.1, the wheels the cache holds; on an older
    # driver the plan picks the PyTorch index's build that driver runs (test_plan.py).
    host = "healthy-pytorch-001"
    plab.replan(host, REAL_TARGET)
    actions = plab.actions(host, pip=True)
    pip = next(a for a in actions if a["kind"] == "pip_install")
    assert pip["params"]["requirements"] == ["torch==2.14.1"]
    assert "nvidia-cudnn-cu13==9.24.0.43" in pip["params"]["expected_wheels"]
    extra = {"remediator_run_id": _run_id(50), "remediator_pip_installer": "uv", "remediator_uv_bin": str(cache.uv),
             "remediator_uv_cache_dir": str(cache.uv_cache), "remediator_uv_link_mode": "symlink",
             "remediator_pip_find_links": str(cache.wheelhouse),
             "remediator_pip_extra_args": ["--no-index", "--offline"]}
    t0 = time.monotonic()
    stats = plab.play("remediate.yml", {host: actions}, extra, tag="torch1")
    installed_in = time.monotonic() - t0
    assert _ok(stats, host)["changed"] > 0
    venv = plab.root(host) / "opt/remediator/venvs/pytorch-2.14.1"
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "torch").is_symlink() or any(p.is_symlink() for p in (site / "torch").iterdir())
    assert _ok(plab.play("remediate.yml", {host: actions}, extra, tag="torch2"), host)["changed"] == 0
    t0 = time.monotonic()
    stats = plab.play("verify.yml", {host: actions}, {**extra, "remediator_verify_args": ["--framework-timeout", "60"]},
                      tag="torch-verify")
    print(f"install {installed_in:.0f} s, verify {time.monotonic() - t0:.0f} s")
    _ok(stats, host)  # torch imports in the venv and reports 2.14.1; remote.py ran and printed its evidence
    assert installed_in < 600
    assert _ok(plab.play("rollback.yml", {host: actions}, extra, tag="torch-rollback"), host)["changed"] > 0
    assert not venv.exists()
