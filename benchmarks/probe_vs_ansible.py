"""Benchmark `remediate probe` side by side with `ansible -m setup` and plain `ssh HOST true` (issue 4, Speed).

Run as root from the repository root (the lab needs it):

    .venv/bin/python benchmarks/probe_vs_ansible.py                      # 50 and 200 hosts
    .venv/bin/python benchmarks/probe_vs_ansible.py --counts 50 --runs 3 --ansible-runs 2

For each fleet size a lab is brought up (`remediate lab up --count N`: real sshd processes on 127.0.0.1,
cycling through the scenarios of remediator/lab/scenarios), then, `runs` times in turn:

- `ssh HOST true` for every host, 50 at a time (a thread pool of OpenSSH clients with the lab's key and
  known_hosts, strict checking): the floor any SSH tool pays, key exchange and a session;
- `remediate probe -i INV --forks 50`, as a subprocess under `/usr/bin/time -v`: wall time and peak RSS
  (one process: paramiko runs in threads, so its peak RSS is the tree's);
- `ansible all -i INV -m setup -f 50` (what users run today), with the lab's inventory (same key, same
  strict known_hosts, become for sudo users), each host's outcome read from its output, its process
  tree's RSS sampled every 0.25 s (the sum over ansible, its forks and their ssh clients).

CPU is accounted exactly with two cgroups (v1 cpuacct): one holds the control-node side of each
command (the ssh clients, remediate, ansible and everything they start), the other every host's sshd,
so its connections, sessions and what runs in them (the probe script, ansible's modules). In the lab
both share this machine's cores, so wall time follows their sum; on a real fleet only the first is the
control node's. Also measured, to say where the probe's time goes: control-node CPU per paramiko
connection, and host-side CPU of one session step by step. Every timing carries the 1-minute load
average before and after it: the machine is shared (and 50 concurrent sessions load it themselves).

Issue 13 (item 4) added, in the same run on the same hosts: the host-side CPU of one probe as the
script itself reports it (`probe.cpu_s`: its own CPU, interpreter start-up included, and its
commands'), for this checkout's payload and for the one before the rewrite (commit BEFORE: shipped
pynvml, `python3 -`), on 20 hosts serially; the control node's CPU per host, as the whole `remediate
probe` process (start-up included) and as `probe_fleet` alone in this process; and, with `--big
1000`, a lab of 1,000 hosts probed once with `--forks 50` (wall time, control-node peak RSS).

The lab cycles through the scenarios whose probe can succeed: hostile-*, become-sudo-password and
python-unsupported are left out (their hosts hang, flood, want a password or have no usable python3,
by design).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from remediator.hostscript import pynvml_blob
from remediator.inventory import load_inventory
from remediator.lab import fleet
from remediator.probe import PROBE_ARGV, build_payload, probe_argv, probe_fleet
from remediator.transport.become import become_of
from remediator.transport.ssh import connect

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
FORKS = 50
_PAGE = os.sysconf("SC_PAGE_SIZE")
#: The probe before issue 13's rewrite (shipped pynvml, compiled on every host), for the side-by-side.
BEFORE = "dbc8398"
NOT_PROBED = ("hostile-", "become-sudo-password", "python-unsupported")


def scenario_dir(work: Path) -> Path:
    """The shipped scenarios whose probe can succeed, copied into `work` (see the module docstring)."""
    out = work / "scenarios"
    out.mkdir(exist_ok=True)
    for path in sorted((REPO / "remediator" / "lab" / "scenarios").glob("*.yaml")):
        if not path.name.startswith(NOT_PROBED):
            shutil.copy(path, out / path.name)
    return out


def payload_before() -> bytes | None:
    """The payload as commit BEFORE built it (its script, pynvml compressed in, default options)."""
    proc = subprocess.run(["git", "-C", str(REPO), "show",
                           f"{BEFORE}:remediator/ansible_collections/remediator/gpu/plugins/module_utils/gpu_probe.py"],
                          capture_output=True, text=True)  # fmt: skip
    blob = pynvml_blob()
    if proc.returncode != 0 or blob is None:
        return None
    options = {"root": "/", "venv_roots": ["/opt", "/home/*", "/root"], "max_depth": 4, "nvml": True,
               "deadline_s": 90.0, "command_timeout": 20.0, "nvml_timeout": 20.0, "systemd_units": [],
               "session_user_from_sudo": False}  # fmt: skip
    source = proc.stdout.replace("PYNVML_SOURCE_Z = None\n", f"PYNVML_SOURCE_Z = {blob!r}\n", 1)
    source = source.replace("PAYLOAD_OPTIONS = None\n", f"PAYLOAD_OPTIONS = json.loads({json.dumps(options)!r})\n", 1)
    return source.encode()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _timed(groups: dict[str, CpuGroup], fn: Any, *args: Any) -> dict[str, Any]:
    """Run one measurement; add the CPU seconds its control-node and host-side processes used."""
    before = _load()
    cpu = {k: g.usage() for k, g in groups.items()}
    result: dict[str, Any] = fn(*args)
    for k, g in groups.items():
        result[f"{k}_cpu_s"] = round(g.usage() - cpu[k], 2)
    result["load_before"], result["load_after"] = before, _load()
    return result


class CpuGroup:
    """A cgroup (v1 cpuacct) whose `cpuacct.usage` is the CPU time of every process put in it and of all
    their descendants, however they exit or are reaped. Removed again by `close`."""

    ROOT = Path("/sys/fs/cgroup/cpuacct")

    def __init__(self, name: str) -> None:
        self.path = self.ROOT / f"remediate-bench-{os.getpid()}-{name}"
        self.path.mkdir()

    @classmethod
    def available(cls) -> bool:
        return (cls.ROOT / "cpuacct.usage").is_file() and os.access(cls.ROOT, os.W_OK)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run so that it joins this group before it starts (a shell that moves itself, then execs)."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def usage(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def close(self) -> None:
        for _ in range(50):  # move stragglers out (a cgroup with processes cannot be removed)
            left = (self.path / "cgroup.procs").read_text().split()
            for pid in left:
                with contextlib.suppress(OSError):
                    (self.ROOT / "cgroup.procs").write_text(pid)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


# --- the process tree's memory ----------------------------------------------------------------------


def _tree_rss(root: int) -> int:
    """Sum of RSS (bytes) of `root` and all its descendants."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent[int(entry)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree and p not in tree}
        tree |= more
        grew = bool(more)
    total = 0
    for pid in tree:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


class _TreeSampler:
    """Samples the RSS of a process tree every `interval` seconds; `peak` is the largest sum seen."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _tree_rss(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


# --- the three contenders ----------------------------------------------------------------------------


def ssh_floor(lab: fleet.Lab, forks: int, control: CpuGroup) -> dict[str, Any]:
    """`ssh HOST true` to every host, `forks` at a time: OpenSSH's key exchange and one session each."""

    def one(h: fleet.Host) -> int:
        argv = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={lab.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ControlMaster=no", "-o", "ConnectTimeout=30",
                "-i", str(lab.private_key), "-p", str(h.port), f"{h.user}@127.0.0.1", "true"]  # fmt: skip
        return subprocess.run(control.wrap(argv), stdin=subprocess.DEVNULL, capture_output=True).returncode

    t0 = time.perf_counter()
    with ThreadPoolExecutor(forks) as pool:
        codes = list(pool.map(one, lab.hosts))
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "failed": sum(c != 0 for c in codes)}


def _time_v(stderr: str) -> dict[str, float]:
    """Fields of GNU time's -v report."""
    fields = {
        "user_s": r"User time \(seconds\): ([\d.]+)",
        "sys_s": r"System time \(seconds\): ([\d.]+)",
        "max_rss_kb": r"Maximum resident set size \(kbytes\): (\d+)",
    }
    out = {}
    for key, pattern in fields.items():
        m = re.search(pattern, stderr)
        out[key] = float(m.group(1)) if m else float("nan")
    return out


def remediate_probe(inventory: Path, forks: int, work: Path, control: CpuGroup) -> dict[str, Any]:
    out = work / "facts.json"
    env = dict(os.environ, REMEDIATE_STATE_DB=str(work / "state.db"))
    argv = ["/usr/bin/time", "-v", str(VENV_BIN / "remediate"), "probe", "-i", str(inventory),
            "--forks", str(forks), "--format", "json", "--out", str(out)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(control.wrap(argv), capture_output=True, text=True, env=env, cwd=work)
    wall = time.perf_counter() - t0
    doc = json.loads(out.read_text())
    bad = [h for h in doc["hosts"] if h["status"] != "ok"]
    cost = _time_v(proc.stderr)
    per_host = sorted(h["duration_s"] for h in doc["hosts"])
    return {
        "wall_s": round(wall, 2),
        "exit": proc.returncode,
        "failed": len(bad),
        "failures": sorted({f"{h['status']}: {h['error']}" for h in bad})[:3],
        "peak_rss_mb": round(cost["max_rss_kb"] / 1024, 1),
        # The whole `remediate probe` process (interpreter and imports included), per host.
        "process_cpu_ms_per_host": round(1000 * (cost["user_s"] + cost["sys_s"]) / len(doc["hosts"]), 2),
        "host_median_s": round(statistics.median(per_host), 2),
        "host_max_s": round(per_host[-1], 2),
    }


def ansible_setup(inventory: Path, forks: int, work: Path, control: CpuGroup) -> dict[str, Any]:
    cp = Path(tempfile.mkdtemp(prefix="cp-", dir=work))  # ControlPath sockets: short, and ours to close
    env = dict(
        os.environ,
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(cp),
        ANSIBLE_LOCAL_TEMP=str(work / "ansible-tmp"),
        ANSIBLE_DEPRECATION_WARNINGS="0",
    )
    argv = ["/usr/bin/time", "-v", str(VENV_BIN / "ansible"), "all", "-i", str(inventory), "-m", "setup",
            "-f", str(forks)]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.Popen(control.wrap(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=work)
    sampler = _TreeSampler(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    peak = sampler.stop()
    # ansible's ssh leaves ControlPersist masters behind (60 s): end ours, by their sockets.
    for sock in cp.iterdir():
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "lab"], capture_output=True)
    cost = _time_v(stderr.decode())
    # The default callback starts each host's result with `NAME | STATUS`.
    outcome = dict(re.findall(r"^(\S+) \| (SUCCESS|CHANGED|FAILED!|UNREACHABLE!)", (stdout + stderr).decode(), re.M))
    if not outcome:
        raise SystemExit(f"ansible reported no host (exit {proc.returncode}): {stderr.decode()[-2000:]}")
    return {
        "wall_s": round(wall, 2),
        "exit": proc.returncode,
        "ok": sum(s in ("SUCCESS", "CHANGED") for s in outcome.values()),
        "failed": sum(s == "FAILED!" for s in outcome.values()),
        "unreachable": sum(s == "UNREACHABLE!" for s in outcome.values()),
        "reported": len(outcome),
        "peak_tree_rss_mb": round(peak / 2**20, 1),
        "largest_process_rss_mb": round(cost["max_rss_kb"] / 1024, 1),
    }


# --- where the probe's time goes ---------------------------------------------------------------------


def control_connect_cost(inventory: Path, n: int) -> dict[str, Any]:
    """CPU of this process per paramiko connect + close (key exchange, host key check, auth), serially."""
    hosts = load_inventory(str(inventory)).hosts[:n]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for h in hosts:
        connect(h).close()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"connections": len(hosts), "cpu_ms_each": round(1000 * cpu / len(hosts), 1),
            "wall_ms_each": round(1000 * wall / len(hosts), 1)}  # fmt: skip


def host_side_cost(lab: fleet.Lab, hosts_group: CpuGroup, n: int = 10) -> dict[str, Any]:
    """Host-side CPU (ms, from the hosts' cgroup) of one session, serially, `n` times each: an sshd
    connection alone, python3's start, the probe without NVML, and the whole probe, as sent now
    (`python3 -I -S -`, bytecode for this python) and as BEFORE sent it (`python3 -`, pynvml compiled
    on a host with a driver); on a host with a driver and on one without."""
    payload = build_payload()
    old = payload_before()
    by_scenario = {h.scenario: h for h in lab.hosts}
    steps = [("ssh true", "true", b""), ("python3 -I -S -c pass", "python3 -I -S -c pass", b""),
             ("probe --no-nvml", "python3 -I -S - --no-nvml", payload),
             ("probe", "python3 -I -S -", payload)]  # fmt: skip
    if old is not None:
        steps.append((f"probe as of {BEFORE}", "python3 -", old))
    out: dict[str, Any] = {"payload_bytes": len(payload), "payload_bytes_before": len(old or b"")}
    for scenario in ("healthy-pytorch", "no-driver"):
        if scenario not in by_scenario:
            continue
        h = by_scenario[scenario]
        base = ["ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={lab.known_hosts}",
                "-i", str(lab.private_key), "-p", str(h.port), f"{h.user}@127.0.0.1"]  # fmt: skip
        costs = {}
        for label, command, stdin in steps:
            before = hosts_group.usage()
            for _ in range(n):
                subprocess.run([*base, command], input=stdin, capture_output=True, check=True)
            costs[label] = round(1000 * (hosts_group.usage() - before) / n, 1)
        out[scenario] = costs
    return out


def _argv(host: Any, now: bool) -> tuple[str, ...]:
    """The probe's argv for a host (with its become words), as sent now or as BEFORE sent it."""
    argv = probe_argv(become_of(host))
    if now:
        return argv
    return tuple(a.replace("python3 -I -S -", "python3 -") for a in argv)


def host_cpu_from_documents(lab: fleet.Lab, n: int = 20) -> dict[str, Any]:
    """Host-side CPU of one probe as the script reports it (probe.cpu_s: self, interpreter start-up
    included, plus the commands it ran), serially on `n` hosts, for this checkout's payload and for
    BEFORE's (which reports no cpu_s: its share is taken from the hosts' cgroup instead, below)."""
    inventory = load_inventory(str(lab.inventory))
    hosts = inventory.hosts[:n]
    selfs, children = [], []
    for h in hosts:
        argv = _argv(h, True)
        payload = build_payload(session_user_from_sudo=argv != PROBE_ARGV)
        t = connect(h)
        try:
            doc = json.loads(t.run(argv, stdin=payload, timeout=120).stdout)
        finally:
            t.close()
        cpu = doc["probe"]["cpu_s"]
        selfs.append(1000 * cpu["self"])
        children.append(1000 * cpu["children"])
    totals = [a + b for a, b in zip(selfs, children, strict=True)]
    return {
        "hosts": len(hosts),
        "self_ms_median": round(statistics.median(selfs), 1),
        "children_ms_median": round(statistics.median(children), 1),
        "total_ms_median": round(statistics.median(totals), 1),
        "total_ms_min": round(min(totals), 1),
        "total_ms_max": round(max(totals), 1),
    }


def host_cpu_by_cgroup(lab: fleet.Lab, hosts_group: CpuGroup, payloads: dict[str, bytes | None],
                       n: int = 20) -> dict[str, float]:  # fmt: skip
    """Host-side CPU per probe from the hosts' cgroup (sshd, its session, python3 and the commands),
    serially over paramiko on the same `n` hosts, once per payload: the same measure for before and now."""
    inventory = load_inventory(str(lab.inventory))
    hosts = inventory.hosts[:n]
    out = {}
    for label, payload in payloads.items():
        if payload is None:
            continue
        transports = [connect(h) for h in hosts]  # connected first: the key exchange is not the probe's
        try:
            before = hosts_group.usage()
            for h, t in zip(hosts, transports, strict=True):
                argv = _argv(h, label == "now")
                data = payload
                if label == "now" and argv != PROBE_ARGV:
                    data = build_payload(session_user_from_sudo=True)
                t.run(argv, stdin=data, timeout=120)
            out[label] = round(1000 * (hosts_group.usage() - before) / len(hosts), 1)
        finally:
            for t in transports:
                t.close()
    return out


def library_control_cpu(lab: fleet.Lab, forks: int) -> dict[str, Any]:
    """Control-node CPU of `probe_fleet` alone (this process, imports and start-up already paid), per host."""
    hosts = load_inventory(str(lab.inventory)).hosts
    t0, c0 = time.perf_counter(), time.process_time()
    result = probe_fleet(hosts, forks=forks)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return {"hosts": len(hosts), "ok": sum(r.ok for r in result), "cpu_ms_per_host": round(1000 * cpu / len(hosts), 2),
            "wall_s": round(wall, 2)}  # fmt: skip


def big_fleet(count: int, work: Path, scenarios: Path) -> dict[str, Any]:
    """`remediate probe --forks 50` over a lab of `count` hosts, once: wall time, peak RSS, CPU."""
    state = work / f"big{count}"
    t0 = time.perf_counter()
    lab = fleet.up([scenarios], state, count=count)
    up_s = time.perf_counter() - t0
    try:
        control = CpuGroup(f"big{count}")
        try:
            row = _timed({"control": control}, remediate_probe, lab.inventory, FORKS, work, control)
        finally:
            control.close()
    finally:
        fleet.down(state)
    row["lab_up_s"] = round(up_s, 1)
    row["hosts"] = count
    return row


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rows))


def bench(count: int, runs: int, ansible_runs: int, work: Path) -> dict[str, Any]:
    state = work / f"lab{count}"
    t0 = time.perf_counter()
    groups = {"control": CpuGroup(f"control{count}"), "hosts": CpuGroup(f"hosts{count}")}
    control = groups["control"]
    try:
        lab = fleet.up([scenario_dir(work)], state, count=count)
    except BaseException:
        for g in groups.values():
            g.close()
        raise
    result: dict[str, Any] = {"hosts": count, "lab_up_s": round(time.perf_counter() - t0, 1)}
    try:
        for h in lab.hosts:  # each host's sshd: its connections and sessions are forked from it
            groups["hosts"].add(h.pid)
        ssh_floor(lab, FORKS, control)  # warm-up: page cache, sshd binaries, the first key exchanges
        rows: dict[str, list[dict[str, Any]]] = {"ssh": [], "probe": [], "ansible": []}
        for i in range(runs):
            rows["ssh"].append(_timed(groups, ssh_floor, lab, FORKS, control))
            rows["probe"].append(_timed(groups, remediate_probe, lab.inventory, FORKS, work, control))
            if i < ansible_runs:
                rows["ansible"].append(_timed(groups, ansible_setup, lab.inventory, FORKS, work, control))
        result["runs"] = rows
        if not rows["ansible"]:
            del rows["ansible"]
        ssh, probe = (_median(rows[k], "wall_s") for k in ("ssh", "probe"))
        result["median"] = {
            "ssh_true_s": ssh,
            "probe_s": probe,
            "probe_hosts_per_s": round(count / probe, 1),
            "ssh_hosts_per_s": round(count / ssh, 1),
            "probe_over_ssh": round(probe / ssh, 2),
            "probe_peak_rss_mb": max(r["peak_rss_mb"] for r in rows["probe"]),
            # CPU seconds, on the control node and on the hosts (all on this machine's cores in the lab)
            "control_cpu_s": {k: _median(rows[k], "control_cpu_s") for k in rows},
            "hosts_cpu_s": {k: _median(rows[k], "hosts_cpu_s") for k in rows},
            "probe_process_cpu_ms_per_host": _median(rows["probe"], "process_cpu_ms_per_host"),
        }
        if "ansible" in rows:
            ansible = _median(rows["ansible"], "wall_s")
            result["median"].update({
                "ansible_setup_s": ansible,
                "ansible_hosts_per_s": round(count / ansible, 1),
                "ansible_over_probe": round(ansible / probe, 1),
                "ansible_peak_tree_rss_mb": max(r["peak_tree_rss_mb"] for r in rows["ansible"]),
            })
        payloads = {"now": build_payload(), "before": payload_before()}
        result["host_cpu"] = {
            "from_documents": host_cpu_from_documents(lab),
            "by_cgroup_ms_per_probe": host_cpu_by_cgroup(lab, groups["hosts"], payloads),
        }
        result["library_control_cpu"] = [library_control_cpu(lab, FORKS) for _ in range(runs)]
        result["profile"] = {
            "control_connect": _timed(groups, control_connect_cost, lab.inventory, 20),
            "host_side_ms": _timed(groups, host_side_cost, lab, groups["hosts"]),
        }
    finally:
        fleet.down(state)
        for g in groups.values():
            g.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--runs", type=int, default=3, help="runs of ssh and probe per fleet (median)")
    parser.add_argument("--ansible-runs", type=int, default=1, help="runs of ansible per fleet")
    parser.add_argument("--big", type=int, nargs="*", default=[], help="also probe a lab this big once (1000)")
    parser.add_argument("--skip-ansible", action="store_true", help="leave out ansible -m setup")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    for tool in ("/usr/bin/time", "ssh"):
        if shutil.which(tool) is None:
            print(f"{tool} is missing (Debian packages time, openssh-client)", file=sys.stderr)
            return 1
    if not CpuGroup.available():
        print(f"needs a writable cgroup v1 cpuacct hierarchy at {CpuGroup.ROOT}", file=sys.stderr)
        return 1
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}",
        "load_at_start": [round(x, 2) for x in os.getloadavg()],
        "fleets": [],
    }
    with tempfile.TemporaryDirectory(prefix="pva-") as tmp:
        for count in args.counts:
            ansible_runs = 0 if args.skip_ansible else max(1, min(args.ansible_runs, args.runs))
            report["fleets"].append(bench(count, args.runs, ansible_runs, Path(tmp)))
            print(json.dumps(report["fleets"][-1]["median"]), file=sys.stderr)
        report["big"] = []
        for count in args.big:
            report["big"].append(big_fleet(count, Path(tmp), scenario_dir(Path(tmp))))
            print(json.dumps(report["big"][-1]), file=sys.stderr)
    report["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
