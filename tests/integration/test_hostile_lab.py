"""Hostile hosts against the whole flow (issue 10): probe -> plan -> apply --check -> apply, for real.

A lab of its own: the hostile scenarios of remediator/lab/scenarios (group hostile: template payloads in dpkg
records and a venv name, terminal escapes in nvidia-smi and on stderr, an endless stdout, a session that
never answers) beside a normal host whose plan is one quarantine. Every command runs as a user runs it,
the real CLI in a child process, so what is checked is what an operator gets: no payload ever runs on
the control node (a canary file would appear), the control node's memory stays bounded, every command
ends (a hung host costs its timeout, nothing more), the hostile hosts fail or are refused one by one
while the normal host is applied, and the terminal output holds no raw escape byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remediator.apply import collection_dir
from remediator.lab import fleet, scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
NORMAL = "torch-venv-shadowed"
HOSTILE = ("hostile-templates", "hostile-flood", "hostile-hang", "hostile-stderr")
PROBE_TIMEOUT = "15"
# A generous guard, not a measurement: a command that is still running then has hung on a host.
COMMAND_GUARD_S = 300
# What the control node may use at most while one host floods it (the probe alone is ~80 MB; before the
# cap, one flooding host cost 400 MiB read plus 1.4 GiB in json.loads).
MEMORY_BOUND_KIB = 400 * 1024
# Bytes that would act on a terminal: ESC, BEL, CSI (C1), and the bidi override.
RAW = ("\x1b", "\x07", "\x9b", "\u202e")
# Runs the CLI and reports the peak RSS of it and everything it started (ansible-playbook included).
MEASURE = ("import resource, subprocess, sys\n"
           "rc = subprocess.call(sys.argv[1:])\n"
           "sys.stderr.write('\\nPEAK_RSS_KIB=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
           "sys.exit(rc)\n")


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str
    peak_kib: int


@dataclass(frozen=True)
class HostileLab:
    inventory: Path
    work: Path  # the commands' working directory: a relative `touch` would land here

    def remediate(self, *argv: str) -> Run:
        env = {**os.environ, "REMEDIATE_STATE_DB": str(self.work / "state.db"), "COLUMNS": "200"}
        done = subprocess.run([sys.executable, "-c", MEASURE, sys.executable, "-m", "remediator", *argv],
                              cwd=self.work, env=env, capture_output=True, timeout=COMMAND_GUARD_S)
        out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
        head, _, peak = err.rpartition("PEAK_RSS_KIB=")
        return Run(done.returncode, out, head, int(peak.strip()))


def canaries(*dirs: Path) -> set[str]:
    return {str(d / n) for d in dirs if d.is_dir() for n in os.listdir(d) if "pwned" in n.lower()}


@pytest.fixture(scope="module")
def hostile(labkit: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileLab]:
    why = labkit.unavailable()
    if why:
        pytest.skip(why)
    files = [Path(s.path) for s in scenario.load_all([labkit.scenario_dir]) if "hostile" in s.groups]
    assert sorted(p.stem for p in files) == sorted(HOSTILE)
    state = tmp_path_factory.mktemp("hostile-lab")
    work = tmp_path_factory.mktemp("hostile-work")
    try:
        up = fleet.up([*files, REPO / "tests" / "fixtures" / "apply-lab" / f"{NORMAL}.yaml"], state)
        yield HostileLab(up.inventory, work)
    finally:
        fleet.down(state)


def assert_inert(*texts: str) -> None:
    for text in texts:
        for raw in RAW:
            assert raw not in text, (raw, text[-2000:])


def test_hostile_hosts_fail_alone_and_nothing_runs_on_the_control_node(hostile: HostileLab) -> None:
    watched = (hostile.work, Path("/tmp"), REPO, Path.cwd())
    before = canaries(*watched)
    inv = str(hostile.inventory)

    # Probe: the templates host is read (its values as data), each of the others fails alone.
    probe = hostile.remediate("probe", "-i", inv, "--timeout", PROBE_TIMEOUT, "--format", "json",
                              "--out", str(hostile.work / "facts.json"))
    assert probe.status == 1, probe.err
    hosts = {h["host"]: h for h in json.loads(probe.out)["hosts"]}
    assert {n: h["status"] for n, h in hosts.items()} == {
        NORMAL: "ok", "hostile-templates": "ok", "hostile-flood": "failed", "hostile-hang": "failed",
        "hostile-stderr": "failed"}  # fmt: skip
    assert "more than 8 MiB on stdout" in hosts["hostile-flood"]["error"]
    assert f"past its {PROBE_TIMEOUT}s timeout" in hosts["hostile-hang"]["error"]
    assert "[bold red]FAKE[/]" in hosts["hostile-stderr"]["error"]
    facts = hosts["hostile-templates"]["facts"]
    assert any("{{ lookup(" in e["path"] for e in facts["envs"]), "the venv name is carried as data"
    assert probe.peak_kib < MEMORY_BOUND_KIB, probe.peak_kib

    # The same as people see it: every hostile string escaped, markup shown as text.
    table = hostile.remediate("probe", "-i", inv, "--timeout", PROBE_TIMEOUT)
    assert_inert(table.out, table.err)
    assert "[bold red]FAKE[/]" in table.out and "\\x1b]0;pwned\\x07" in table.out

    # Plan: the hostile dpkg records are refused, field named; the normal host gets its one quarantine.
    plan_path = hostile.work / "plan.json"
    plan_run = hostile.remediate("plan", "-i", inv, "--timeout", PROBE_TIMEOUT, "--out", str(plan_path))
    assert_inert(plan_run.out, plan_run.err)
    assert plan_run.status == 1  # some hosts could not be probed
    plan = {h["host"]: h for h in json.loads(plan_path.read_text())["hosts"]}
    templates = plan["hostile-templates"]
    assert templates["status"] == "blocked"
    refused = {(f["evidence"]["field"], f["evidence"]["value"]) for f in templates["findings"]
               if f["code"] == "VALUE_REFUSED"}
    assert refused == {("params.name", repr("cuda-{{ lookup('ansible.builtin.pipe', 'touch rmd-pwned-dpkg-name') }}"
                                              "-12-4")),
                       ("params.version", repr("1.0{{ 7*7 }}"))}
    assert "{{" not in json.dumps(templates["actions"])
    assert plan[NORMAL]["status"] == "changes"
    assert {plan[h]["status"] for h in ("hostile-flood", "hostile-hang", "hostile-stderr")} == {"unreachable"}

    # A plan file edited by hand is untrusted too: the templates host gets a hostile action back, and the
    # hanging host is claimed to need a change, so apply must probe it again (and give up at the timeout).
    doc = json.loads(plan_path.read_text())
    for h in doc["hosts"]:
        if h["host"] == "hostile-templates":
            h["status"] = "changes"
            h["actions"].insert(0, {"kind": "remove_package", "finding": None, "reason": "{{ 7*7 }}",
                                    "requires_approval": False,
                                    "params": {"manager": "deb", "version": "1",
                                               "name": "cuda-{{ lookup('ansible.builtin.pipe', 'touch "
                                                       "rmd-pwned-edited') }}-12-4"}})
        if h["host"] == "hostile-hang":
            h.update(status="changes", fingerprint="sha256:" + "0" * 64,
                     actions=[{"kind": "reboot", "params": {}, "finding": None, "reason": "x",
                               "requires_approval": False}])
    edited = hostile.work / "edited.json"
    edited.write_text(json.dumps(doc))
    apply_argv = ["-i", inv, "--yes", "--timeout", PROBE_TIMEOUT, "--playbooks", str(collection_dir() / "playbooks"),
                  "--state-dir", str(hostile.work / "runs"), "--no-verify"]

    for check in (True, False):
        result_path = hostile.work / f"result-{check}.json"
        run = hostile.remediate("apply", str(edited), *apply_argv, "--result", str(result_path),
                                *(["--check"] if check else []))
        assert_inert(run.out, run.err)
        assert run.status == 2, run.err  # a partial apply
        result = {h["host"]: h for h in json.loads(result_path.read_text())["hosts"]}
        assert {n: h["status"] for n, h in result.items()} == {
            NORMAL: "check" if check else "applied", "hostile-templates": "failed", "hostile-hang": "failed",
            "hostile-flood": "skipped", "hostile-stderr": "skipped"}  # fmt: skip
        assert "params.name" in result["hostile-templates"]["error"]
        assert f"past its {PROBE_TIMEOUT}s timeout" in result["hostile-hang"]["error"]
        assert run.peak_kib < MEMORY_BOUND_KIB, run.peak_kib

    assert canaries(*watched) == before
