"""apply's orchestration without ansible: batches, max-fail, stale and unreachable hosts, locks, resume,
the result document and exit statuses. The probe and the runner are stand-ins here; test_apply_runner.py
runs the real ansible-runner."""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from remediator import locks
from remediator.apply import (
    ApplyError,
    ApplyEvent,
    ApplyOptions,
    Serial,
    StopSignal,
    apply_plan,
    batches,
    connection_vars,
    extravars,
    failed_beyond,
    find_interrupted,
    read_plan,
    rollback_run,
    ssh_common_args,
)
from remediator.errors import ExitStatus, InputError, UsageError
from remediator.facts import Gpu, HostFacts
from remediator.fleet import FleetResult, HostResult
from remediator.inventory import InventoryHost
from remediator.plan import fingerprint
from remediator.runner import HostOutcome, RunOutcome

PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"


# --- helpers ------------------------------------------------------------------------------------------


def facts(name: str, variant: int = 0) -> HostFacts:
    return HostFacts(host=name, gpus=tuple(Gpu(index=i, name="NVIDIA A100") for i in range(variant)))


def host_entry(name: str, status: str = "changes", fp: str | None = None, actions: list[dict[str, Any]] | None = None,
               error: str | None = None) -> dict[str, Any]:
    if actions is None:
        actions = [{"kind": "create_venv", "params": {"path": "/opt/remediator/venvs/pytorch-2.4.0",
                                                      "python": "/usr/bin/python3"},
                    "finding": "FRAMEWORK_MISSING", "reason": "an isolated venv", "requires_approval": False}]
    return {"host": name, "status": status, "target": {"framework": "pytorch", "version": "2.4.0"},
            "findings": [], "actions": actions if status == "changes" else [], "kept": [], "manual": [],
            "fingerprint": fp if fp is not None else fingerprint(facts(name)), "error": error}


def write_plan(path: Path, hosts: list[dict[str, Any]]) -> Path:
    doc = {"schema_version": 1, "tool_version": "0", "matrix_version": "m", "created_at": "2026-01-01T00:00:00+00:00",
           "policy": {"venv_root": "/opt/remediator/venvs", "allow_driver_changes": False},
           "summary": {}, "hosts": hosts}
    path.write_text(json.dumps(doc))
    return path


def inv(*names: str) -> list[InventoryHost]:
    return [InventoryHost(name=n, address="10.0.0.1", port=2222, user="ops", private_key_file="/keys/id",
                          known_hosts_files=("/kh/known_hosts",), ssh_args="-o ProxyJump=bastion") for n in names]


class FakeProbe:
    def __init__(self, answers: Mapping[str, HostFacts | str] | None = None) -> None:
        self.answers = dict(answers or {})
        self.calls: list[list[str]] = []

    def __call__(self, hosts: Sequence[InventoryHost]) -> FleetResult[HostFacts]:
        self.calls.append([h.name for h in hosts])
        out = []
        for h in hosts:
            answer = self.answers.get(h.name, facts(h.name))
            if isinstance(answer, HostFacts):
                out.append(HostResult(h.name, "ok", answer))
            else:
                out.append(HostResult(h.name, "unreachable", None, answer))
        return FleetResult(tuple(out))


class FakeRun:
    """Stands in for run_playbook: each host ends as `outcomes` says (default ok)."""

    def __init__(self, outcomes: Mapping[str, str] | None = None,
                 during: Callable[[str, Sequence[str]], None] | None = None) -> None:
        self.outcomes = dict(outcomes or {})
        self.calls: list[dict[str, Any]] = []
        self.during = during

    def __call__(self, playbook: Path, hosts: Mapping[str, Mapping[str, Any]], extra: Mapping[str, Any], *,
                 private_data_dir: Path, check: bool, on_event: Callable[..., None], ident: str, forks: int,
                 cancel: Callable[[], bool], timeout: int | None = None,
                 envvars: Mapping[str, str] | None = None) -> RunOutcome:
        self.calls.append({"playbook": playbook, "hosts": dict(hosts), "extra": dict(extra), "ident": ident,
                           "check": check, "pdd": private_data_dir, "timeout": timeout,
                           "envvars": dict(envvars or {})})
        if self.during is not None:
            self.during(ident, list(hosts))
        result = {}
        for name in hosts:
            status = self.outcomes.get(name, "ok")
            result[name] = HostOutcome(name, status, ok=1, message=None if status == "ok" else f"{status} here",  # type: ignore[arg-type]
                                       task=None if status == "ok" else "a task",
                                       facts={"remediator_manifest": {"host": name}} if status == "ok" else {})
        return RunOutcome(ident, "successful", 0, str(private_data_dir / "artifacts" / ident), result, pid=None)

    def batches(self) -> list[list[str]]:
        return [list(c["hosts"]) for c in self.calls]


def options(tmp_path: Path, **kw: Any) -> ApplyOptions:
    kw.setdefault("record_state", False)
    kw.setdefault("verify", False)
    return ApplyOptions(playbooks_dir=PLAYBOOKS, state_dir=tmp_path / "state", **kw)


def statuses(result: Any) -> dict[str, str]:
    return {h.host: h.status for h in result.hosts}


# --- pure pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "total", "size"), [
    ("1", 10, 1), ("3", 10, 3), ("25%", 10, 2), ("25%", 3, 1), ("100%", 7, 7), ("50%", 9, 4),
])
def test_serial_batch_size_follows_ansible(text: str, total: int, size: int) -> None:
    assert Serial.parse(text).batch_size(total) == size


@pytest.mark.parametrize("text", ["0", "0%", "101%", "-1", "abc", "5.5", ""])
def test_serial_rejects_nonsense(text: str) -> None:
    with pytest.raises(UsageError):
        Serial.parse(text)


def test_batches_put_a_canary_first() -> None:
    hosts = [f"h{i}" for i in range(7)]
    assert batches(hosts, Serial.parse("3")) == [["h0"], ["h1", "h2", "h3"], ["h4", "h5", "h6"]]
    assert batches(hosts, Serial.parse("100%")) == [["h0"], hosts[1:]]
    assert batches(hosts, Serial.parse("3"), canary=False) == [hosts[:3], hosts[3:6], hosts[6:]]
    assert batches(["only"], Serial.parse("1")) == [["only"]]
    assert batches([], Serial.parse("1")) == []


@pytest.mark.parametrize(("failed", "tried", "pct", "stop"), [
    (0, 5, 0, False), (1, 5, 0, True), (1, 5, 20, False), (2, 5, 20, True), (1, 1, 99, True), (5, 5, 100, False),
])
def test_max_fail_percent_is_exceeded_not_reached(failed: int, tried: int, pct: int, stop: bool) -> None:
    assert failed_beyond(failed, tried, pct) is stop


def test_connection_vars_copy_paths_and_make_ssh_as_strict_as_the_probe() -> None:
    h = inv("gpu01")[0]
    v = connection_vars(h)
    assert v["ansible_host"] == "10.0.0.1" and v["ansible_port"] == 2222 and v["ansible_user"] == "ops"
    assert v["ansible_ssh_private_key_file"] == "/keys/id"
    assert v["ansible_ssh_common_args"].startswith(
        "-o UserKnownHostsFile=/kh/known_hosts -o StrictHostKeyChecking=yes")
    assert v["ansible_ssh_common_args"].endswith("-o ProxyJump=bastion")
    two = InventoryHost(name="x", address="x", known_hosts_files=("/a b", "/c"), port_defaulted=True)
    assert ssh_common_args(two).startswith("-o 'UserKnownHostsFile=/a b /c'")
    assert "ansible_port" not in connection_vars(two)
    assert connection_vars(InventoryHost(name="l", address="l", connection="local", become=True)) == {
        "ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "ansible_become": True}
    with_settings = InventoryHost(name="y", address="y", ansible_vars={"ansible_python_interpreter": "/usr/bin/python3",
                                                                        "ansible_become_method": "su"})
    assert connection_vars(with_settings)["ansible_python_interpreter"] == "/usr/bin/python3"
    assert connection_vars(with_settings)["ansible_become_method"] == "su"


def test_extravars_follow_the_contract(tmp_path: Path) -> None:
    ev = extravars("20260101T000000Z-abcdef", options(tmp_path, pip_extra_args=("--no-deps",)))
    assert ev == {"remediator_run_id": "20260101T000000Z-abcdef",
                  "remediator_quarantine_root": "/var/lib/remediator/quarantine",
                  "remediator_allow_approval": False, "remediator_pip_index_url": "",
                  "remediator_pip_find_links": "", "remediator_pip_extra_args": ["--no-deps"],
                  "remediator_control_pid": os.getpid(), "remediator_venv_root": "/opt/remediator/venvs",
                  "remediator_managed_roots": ["/opt/remediator/venvs"]}
    more = extravars("r", options(tmp_path, playbook_vars={"remediator_pip_installer": "uv"}))
    assert more["remediator_pip_installer"] == "uv"
    with pytest.raises(UsageError, match="--var"):
        options(tmp_path, playbook_vars={"remediator_run_id": "x"})
    with pytest.raises(UsageError, match="--var"):
        options(tmp_path, playbook_vars={"ansible_user": "x"})


@pytest.mark.parametrize("kw", [
    {"pip_index_url": "https://user:token@pypi.example/simple"}, {"max_fail_percent": 101},
    {"pip_extra_args": ("--extra-index-url", "https://u:p@mirror/simple")},
    {"playbook_vars": {"remediator_uv_index": "https://tok@mirror/simple"}},
    {"quarantine_root": "relative/q"}, {"quarantine_root": "/q"}, {"forks": 0},
])
def test_options_refuse_credentials_and_bad_values(tmp_path: Path, kw: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        options(tmp_path, **kw)


def test_read_plan_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_plan(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    for text, match in [("{", "not JSON"), ("[]", "not a plan"), ('{"hosts": [], "schema_version": 9}', "schema"),
                        ('{"schema_version": 1, "hosts": [{"host": "a", "status": "weird"}]}', "status"),
                        ('{"schema_version": 1, "hosts": [{"host": "a", "status": "changes", "actions": [1]}]}',
                         "action"),
                        ('{"schema_version": 1, "hosts": [{"host": "a", "status": "compliant"}, '
                         '{"host": "a", "status": "compliant"}]}', "twice")]:
        bad.write_text(text)
        with pytest.raises(InputError, match=match):
            read_plan(str(bad))
    good = write_plan(tmp_path / "plan.json", [host_entry("a"), host_entry("b", "compliant")])
    plan = read_plan(str(good))
    assert [h.host for h in plan.hosts] == ["a", "b"] and plan.host("a").actions[0].kind == "create_venv"
    assert len(plan.sha256) == 64


# --- orchestration ------------------------------------------------------------------------------------


def test_canary_then_batches_and_every_host_applied(tmp_path: Path) -> None:
    names = [f"gpu{i:02d}" for i in range(6)]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))
    run, events = FakeRun(), []
    result = apply_plan(plan, inv(*names), options(tmp_path, serial=Serial.parse("2")), probe=FakeProbe(), run=run,
                        on_event=events.append)
    assert run.batches() == [["gpu00"], ["gpu01", "gpu02"], ["gpu03", "gpu04"], ["gpu05"]]
    assert [c["ident"] for c in run.calls] == ["01-canary", "02-batch1", "03-batch2", "04-batch3"]
    assert set(statuses(result).values()) == {"applied"}
    assert result.exit_status == ExitStatus.OK and result.state == "finished"
    first = run.calls[0]
    hv = first["hosts"]["gpu00"]
    assert hv["remediator_actions"][0]["kind"] == "create_venv"
    assert hv["remediator_fingerprint"] == fingerprint(facts("gpu00"))
    assert hv["remediator_target"]["framework"] == "pytorch"
    assert first["extra"]["remediator_run_id"] == result.run_id
    assert first["pdd"] == tmp_path / "state" / "runs" / result.run_id
    h = result.hosts[0]
    assert h.quarantine_manifest == f"/var/lib/remediator/quarantine/{result.run_id}/manifest.json"
    assert h.manifest == {"host": "gpu00"}
    # The result document is on disk, complete.
    doc = json.loads((tmp_path / "state" / "runs" / result.run_id / "result.json").read_text())
    assert doc["state"] == "finished" and doc["exit_status"] == 0 and doc["summary"] == {"applied": 6}
    assert [b["ident"] for b in doc["batches"]] == ["01-canary", "02-batch1", "03-batch2", "04-batch3"]
    assert [e.kind for e in events].count("batch") == 4


def test_a_failed_canary_stops_the_rollout(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))
    run = FakeRun({"a": "failed"})
    result = apply_plan(plan, inv(*names), options(tmp_path, max_fail_percent=50), probe=FakeProbe(), run=run)
    assert run.batches() == [["a"]]
    assert statuses(result) == {"a": "failed", "b": "skipped", "c": "skipped"}
    assert result.stopped and "canary" in result.stopped
    assert "not run" in (result.hosts[1].error or "")
    assert result.exit_status == ExitStatus.ERROR


def test_max_fail_percent_lets_a_batch_fail_up_to_the_share(tmp_path: Path) -> None:
    names = [f"h{i}" for i in range(9)]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))
    # Batch 1 (h1..h4): one of four fails = 25%, allowed at 30; batch 2 (h5..h8): two of four = 50% > 30.
    run = FakeRun({"h2": "failed", "h5": "unreachable", "h6": "failed"})
    result = apply_plan(plan, inv(*names), options(tmp_path, serial=Serial.parse("4"), max_fail_percent=30),
                        probe=FakeProbe(), run=run)
    assert run.batches() == [["h0"], ["h1", "h2", "h3", "h4"], ["h5", "h6", "h7", "h8"]]
    assert result.stopped is None  # nothing was left to skip
    assert statuses(result)["h5"] == "unreachable" and statuses(result)["h2"] == "failed"
    assert result.exit_status == ExitStatus.CHANGES
    run0 = FakeRun({"h2": "failed"})
    result0 = apply_plan(plan, inv(*names), options(tmp_path, serial=Serial.parse("4")), probe=FakeProbe(), run=run0)
    assert run0.batches() == [["h0"], ["h1", "h2", "h3", "h4"]]  # default 0: the first failed batch stops it
    assert statuses(result0)["h5"] == "skipped"


def test_stale_and_unreachable_hosts_are_refused_alone(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in ("ok1", "stale", "down", "ok2")])))
    probe = FakeProbe({"stale": facts("stale", variant=2), "down": "connection refused (10.0.0.1:2222)"})
    run = FakeRun()
    result = apply_plan(plan, inv("ok1", "stale", "down", "ok2"), options(tmp_path), probe=probe, run=run)
    assert statuses(result) == {"ok1": "applied", "stale": "stale", "down": "unreachable", "ok2": "applied"}
    stale = next(h for h in result.hosts if h.host == "stale")
    assert stale.probed_fingerprint == fingerprint(facts("stale", 2)) != stale.plan_fingerprint
    assert "plan again" in (stale.hint or "")
    assert [h for b in run.batches() for h in b] == ["ok1", "ok2"]
    assert result.exit_status == ExitStatus.CHANGES
    # The refused hosts' locks were let go at once.
    assert not locks.is_locked(locks.lock_path(tmp_path / "state", "stale"))


def test_plan_statuses_and_inventory_decide_who_is_tried(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [
        host_entry("fine", "compliant"), host_entry("blocked", "blocked", error="driver too old"),
        host_entry("gone", "unreachable", error="timed out"), host_entry("elsewhere"), host_entry("outside"),
        host_entry("todo")])))
    run = FakeRun()
    result = apply_plan(plan, inv("fine", "blocked", "gone", "todo"), options(tmp_path), probe=FakeProbe(), run=run,
                        in_inventory={"fine", "blocked", "gone", "todo", "outside"})
    assert statuses(result) == {"fine": "skipped", "blocked": "skipped", "gone": "skipped", "elsewhere": "skipped",
                                "todo": "applied"}  # "outside" is not in the --limit: not part of this apply
    errors = {h.host: h.error for h in result.hosts}
    assert "driver too old" in (errors["blocked"] or "") and "plan again" in (errors["gone"] or "")
    assert errors["elsewhere"] == "not in the inventory"
    assert result.exit_status == ExitStatus.CHANGES  # blocked and unreachable hosts are not fixed
    only_fine = read_plan(str(write_plan(tmp_path / "q.json", [host_entry("fine", "compliant")])))
    assert apply_plan(only_fine, inv("fine"), options(tmp_path), probe=FakeProbe(), run=run).exit_status == 0


def test_a_quarantine_path_off_the_allowlist_is_refused_on_the_control_node(tmp_path: Path) -> None:
    evil = [{"kind": "quarantine_path", "params": {"path": "/etc/passwd", "what": "x"}, "finding": None,
             "reason": "edited by hand", "requires_approval": False}]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("h", actions=evil), host_entry("g")])))
    run = FakeRun()
    result = apply_plan(plan, inv("h", "g"), options(tmp_path), probe=FakeProbe(), run=run)
    assert statuses(result) == {"h": "failed", "g": "applied"}
    assert "allowlist" in (result.hosts[0].error or "") and run.batches() == [["g"]]


def _hold_lock(state: str, host: str, ready: Any, release: Any) -> None:
    held = locks.acquire(Path(state), [host], "20260101T000000Z-aaaaaa")
    ready.set()
    release.wait(30)
    held.release()


def test_a_host_locked_by_another_apply_is_skipped(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("busy"), host_entry("free")])))
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(str(tmp_path / "state"), "busy", ready, release))
    proc.start()
    try:
        assert ready.wait(10)
        result = apply_plan(plan, inv("busy", "free"), options(tmp_path), probe=FakeProbe(), run=FakeRun())
    finally:
        release.set()
        proc.join(10)
    busy = result.hosts[0]
    assert (busy.status, busy.error) == ("skipped", f"locked by run 20260101T000000Z-aaaaaa (pid {proc.pid})")
    assert statuses(result)["free"] == "applied"


def test_check_mode_reports_check_and_passes_it_on(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("a"), host_entry("b")])))
    run = FakeRun()
    result = apply_plan(plan, inv("a", "b"), options(tmp_path, check=True), probe=FakeProbe(), run=run)
    assert statuses(result) == {"a": "check", "b": "check"} and all(c["check"] for c in run.calls)
    assert result.hosts[0].quarantine_manifest is None and result.check
    assert result.exit_status == ExitStatus.OK


def test_an_interrupted_apply_is_resumed_with_its_run_id(tmp_path: Path) -> None:
    names = ["a", "b", "c", "d"]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))

    class Killed(BaseException):
        pass

    def die_in_batch_two(ident: str, hosts: Sequence[str]) -> None:
        if ident.startswith("02"):
            raise Killed  # as if the process died while batch 2 ran

    first = FakeRun(during=die_in_batch_two)
    opts = options(tmp_path, serial=Serial.parse("2"))
    with pytest.raises(Killed):
        apply_plan(plan, inv(*names), opts, probe=FakeProbe(), run=first)
    runs = list((tmp_path / "state" / "runs").iterdir())
    assert len(runs) == 1
    doc = json.loads((runs[0] / "result.json").read_text())
    assert doc["state"] == "interrupted"
    assert {h["host"]: h["status"] for h in doc["hosts"]} == {"a": "applied", "b": "running", "c": "running",
                                                              "d": "skipped"}
    # A SIGKILL leaves the state "running": what the next apply sees then.
    doc["state"] = "running"
    (runs[0] / "result.json").write_text(json.dumps(doc))
    assert find_interrupted(tmp_path / "state", plan.sha256)["run_id"] == runs[0].name  # type: ignore[index]

    # b and c were changed by the killed batch: their facts differ from the plan now, d's do not.
    probe = FakeProbe({"b": facts("b", 1), "c": facts("c", 1)})
    second = FakeRun()
    result = apply_plan(plan, inv(*names), opts, probe=probe, run=second)
    assert result.run_id == runs[0].name and result.resumed
    assert probe.calls == [["b", "c", "d"]]  # a was applied already
    assert second.batches() == [["b"], ["c", "d"]]
    assert second.calls[0]["ident"] == "03-canary"  # after the killed batch's number
    assert statuses(result) == dict.fromkeys(names, "applied")
    assert {h.host for h in result.hosts if h.resumed} == {"a", "b", "c"}
    assert result.exit_status == ExitStatus.OK
    assert find_interrupted(tmp_path / "state", plan.sha256) is None


def test_a_resume_with_a_narrower_limit_keeps_the_other_hosts_record(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))

    def die(ident: str, hosts: Sequence[str]) -> None:
        if ident.startswith("02"):
            raise KeyboardInterrupt

    opts = options(tmp_path, serial=Serial.parse("1"))
    with pytest.raises(KeyboardInterrupt):
        apply_plan(plan, inv(*names), opts, probe=FakeProbe(), run=FakeRun(during=die))
    result = apply_plan(plan, inv("c"), opts, probe=FakeProbe(), run=FakeRun(), in_inventory=set(names))
    assert statuses(result) == {"c": "applied", "a": "applied", "b": "failed"}
    assert "outside this apply's --limit" in (result.hosts[2].error or "")
    assert result.exit_status == ExitStatus.CHANGES  # b was left in the middle
    undo = FakeRun()
    rollback_run(result.run_id, inv(*names), opts, run=undo)
    assert undo.batches() == [["c", "a", "b"]]


def test_a_changed_host_is_stale_when_no_run_of_the_plan_touched_it(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("a")])))
    result = apply_plan(plan, inv("a"), options(tmp_path), probe=FakeProbe({"a": facts("a", 1)}), run=FakeRun())
    assert statuses(result) == {"a": "stale"} and result.exit_status == ExitStatus.ERROR


def test_stop_after_batch_skips_the_rest(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))
    stop = StopSignal()
    run = FakeRun(during=lambda ident, hosts: stop.request())
    result = apply_plan(plan, inv(*names), options(tmp_path, serial=Serial.parse("1")), probe=FakeProbe(), run=run,
                        stop=stop)
    assert run.batches() == [["a"]] and result.state == "interrupted"
    assert statuses(result) == {"a": "applied", "b": "skipped", "c": "skipped"}
    assert result.exit_status == ExitStatus.CHANGES


def test_a_state_store_error_is_a_warning(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("a")])))
    (tmp_path / "db").mkdir()  # a directory where the store wants a file
    events: list[ApplyEvent] = []
    result = apply_plan(plan, inv("a"), options(tmp_path, record_state=True, state_db=str(tmp_path / "db")),
                        probe=FakeProbe(), run=FakeRun(), on_event=events.append)
    assert statuses(result) == {"a": "applied"}
    assert any(e.kind == "warning" and "state store" in (e.message or "") for e in events)


def test_the_state_store_gets_the_run(tmp_path: Path) -> None:
    from remediator.state import open_store

    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("a"), host_entry("b", "compliant")])))
    db = tmp_path / "state.db"
    result = apply_plan(plan, inv("a", "b"), options(tmp_path, record_state=True, state_db=str(db)),
                        probe=FakeProbe(), run=FakeRun())
    with open_store(db) as store:
        assert store.last_run("apply")[0] == result.run_id  # type: ignore[index]
        assert [e.kind for e in store.history("a")] == ["apply"]
        assert store.history("b") == []


def test_missing_playbook_is_a_clear_error(tmp_path: Path) -> None:
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry("a")])))
    opts = ApplyOptions(playbooks_dir=tmp_path, state_dir=tmp_path / "s", record_state=False)
    with pytest.raises(ApplyError, match=r"remediate\.yml"):
        apply_plan(plan, inv("a"), opts, probe=FakeProbe(), run=FakeRun())


def test_rollback_runs_the_hosts_the_run_touched(tmp_path: Path) -> None:
    names = ["a", "b", "c"]
    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in names])))
    applied = apply_plan(plan, inv(*names), options(tmp_path), probe=FakeProbe({"c": facts("c", 3)}), run=FakeRun())
    assert statuses(applied) == {"a": "applied", "b": "applied", "c": "stale"}
    run = FakeRun({"b": "unreachable"})
    result = rollback_run(applied.run_id, inv(*names), options(tmp_path), run=run)
    assert run.batches() == [["a", "b"]]  # one batch, no canary; c was never touched
    assert run.calls[0]["playbook"].name == "rollback.yml"
    assert run.calls[0]["extra"]["remediator_run_id"] == applied.run_id
    assert run.calls[0]["extra"]["remediator_rollback_id"] == result.run_id != applied.run_id
    assert "remediator_actions" not in run.calls[0]["hosts"]["a"]
    assert statuses(result) == {"a": "rolled_back", "b": "unreachable"}
    assert result.undoes == applied.run_id and result.kind == "rollback"
    assert result.exit_status == ExitStatus.CHANGES
    limited = rollback_run(applied.run_id, inv("c"), options(tmp_path), run=FakeRun(), limited=True)
    assert statuses(limited) == {"c": "rolled_back"}
    with pytest.raises(UsageError):
        rollback_run("not-a-run", inv("a"), options(tmp_path), run=FakeRun())


def test_lock_files_name_their_holder_and_free_up_when_the_holder_dies(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ctx = multiprocessing.get_context("fork")
    proc = ctx.Process(target=lambda: (locks.acquire(state, ["gpu/01"], "20260101T000000Z-bbbbbb"), os._exit(0)))
    proc.start()
    proc.join(10)
    held = locks.acquire(state, ["gpu/01", "weird name\n"], "20260101T000000Z-cccccc")
    assert held.hosts() == ["gpu/01", "weird name\n"] and held.refused == []
    again = locks.acquire(state, ["gpu/01"], "x")
    assert again.refused and "20260101T000000Z-cccccc" in again.refused[0].reason
    held.release()
    assert locks.acquire(state, ["gpu/01"], "y").hosts() == ["gpu/01"]
    assert len({p.name for p in (state / "locks").iterdir()}) == 2


def test_a_lock_waits_for_the_ansible_playbook_of_a_killed_apply(tmp_path: Path) -> None:
    import subprocess
    import time

    state = tmp_path / "state"
    sleeper = subprocess.Popen(["sleep", "1.5"])
    try:
        first = locks.acquire(state, ["h"], "20260101T000000Z-dddddd")
        first.record_runner(["h"], sleeper.pid)
        first.held["h"].close()  # the apply dies; its ansible-playbook (the sleeper) does not
        first.held.clear()
        refused = locks.acquire(state, ["h"], "next")
        assert refused.refused and f"pid {sleeper.pid}" in refused.refused[0].reason
        started = time.monotonic()
        waited = locks.acquire(state, ["h"], "next", wait_s=10)
        assert waited.hosts() == ["h"] and time.monotonic() - started >= 0.5
    finally:
        sleeper.kill()
        sleeper.wait()


def test_applied_hosts_are_verified_with_their_plan_target(tmp_path: Path) -> None:
    from remediator.state import open_store

    plan = read_plan(str(write_plan(tmp_path / "p.json", [host_entry(n) for n in ("good", "bad", "broken")])))
    seen: list[tuple[list[str], str]] = []

    def verify(hosts: Sequence[tuple[InventoryHost, Mapping[str, Any]]], venv_root: str,
               opts: ApplyOptions) -> dict[str, dict[str, Any]]:
        seen.append(([f"{h.name}:{t['framework']}=={t['version']}" for h, t in hosts], venv_root))
        return {"good": {"passed": True, "verdict": "pass"}, "bad": {"passed": False, "verdict": "fail at rung 1"}}

    db = tmp_path / "state.db"
    result = apply_plan(plan, inv("good", "bad", "broken"),
                        options(tmp_path, verify=True, record_state=True, state_db=str(db)), probe=FakeProbe(),
                        run=FakeRun({"broken": "failed"}), verify=verify)
    assert seen == [(["good:pytorch==2.4.0", "bad:pytorch==2.4.0"], "/opt/remediator/venvs")]
    by = {h.host: h for h in result.hosts}
    assert by["good"].verify == {"passed": True, "verdict": "pass"} and by["broken"].verify is None
    assert result.exit_status == ExitStatus.CHANGES
    with open_store(db) as store:
        assert store.last_verify("bad").passed is False  # type: ignore[union-attr]
    only_good = read_plan(str(write_plan(tmp_path / "q.json", [host_entry("good")])))
    ok = apply_plan(only_good, inv("good"), options(tmp_path, verify=True), probe=FakeProbe(), run=FakeRun(),
                    verify=verify)
    assert ok.exit_status == ExitStatus.OK

    def crash(*args: Any) -> dict[str, dict[str, Any]]:
        raise RuntimeError("no route")

    events: list[ApplyEvent] = []
    crashed = apply_plan(only_good, inv("good"), options(tmp_path, verify=True), probe=FakeProbe(), run=FakeRun(),
                         verify=crash, on_event=events.append)
    assert crashed.hosts[0].status == "applied" and crashed.hosts[0].verify is None
    assert any("verify did not run: no route" in (e.message or "") for e in events)
