"""The ansible-runner wrapper against real ansible-playbook runs on `localhost` (ansible_connection=local):
per-host outcome from the stats, events, the private data dir it writes, a dark host on a closed port."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from remediator.runner import RunnerError, RunnerEvent, run_playbook

PLAYBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "playbooks"
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run over a host that changes something, one told to fail, one nobody listens for."""
    tmp = tmp_path_factory.mktemp("runner")
    out = tmp / "out"
    out.mkdir()
    hosts = {
        "good": {**LOCAL, "out_dir": str(out)},
        "bad": {**LOCAL, "fail_here": True},
        "down": {"ansible_host": "127.0.0.1", "ansible_port": closed_port(),
                 "ansible_ssh_common_args": "-o UserKnownHostsFile=/dev/null"},
    }
    events: list[RunnerEvent] = []
    mp = pytest.MonkeyPatch()
    mp.setenv("REMEDIATE_TEST_API_TOKEN", "do-not-leak-this")
    mp.setenv("MY_SECRET_PASSWORD", "nor-this")
    try:
        outcome = run_playbook(PLAYBOOKS / "runner-test.yml", hosts, {"remediator_run_id": "R1"},
                               private_data_dir=tmp / "pdd", check=False, on_event=events.append, ident="01-canary")
    finally:
        mp.undo()
    return {"outcome": outcome, "events": events, "pdd": tmp / "pdd", "out": out}


def test_each_host_outcome_comes_from_the_stats(mixed: dict[str, Any]) -> None:
    o = mixed["outcome"]
    assert o.status == "failed" and o.rc not in (0, None)  # the rc alone says only "something failed"
    good, bad, down = o.hosts["good"], o.hosts["bad"], o.hosts["down"]
    assert (good.status, good.changed, good.ignored, good.failures) == ("ok", 1, 1, 0)
    assert (good.task, good.message) == (None, None)
    assert (bad.status, bad.failures, bad.task, bad.message) == ("failed", 1, "fail when told to",
                                                                 "told to fail on bad")
    assert down.status == "unreachable" and "Connection refused" in (down.message or "")
    assert o.stats["dark"] == {"down": 1}
    assert (mixed["out"] / "good.txt").read_text() == "R1\n"


def test_set_facts_named_remediator_come_back(mixed: dict[str, Any]) -> None:
    good = mixed["outcome"].hosts["good"]
    assert good.facts == {"remediator_manifest": {"run_id": "R1", "items": []}}
    assert mixed["outcome"].hosts["bad"].facts == {}  # it failed before


def test_events_stream_per_host_with_the_playbook_pid(mixed: dict[str, Any]) -> None:
    events: list[RunnerEvent] = mixed["events"]
    statuses = [e.message for e in events if e.kind == "status"]
    assert statuses == ["starting", "running", "failed"]
    assert {e.ident for e in events} == {"01-canary"}
    tasks = [e.task for e in events if e.kind == "task"]
    assert tasks[:2] == ["say hello", "change something"]
    assert ("good", "change something") in {(e.host, e.task) for e in events if e.kind == "changed"}
    assert [(e.host, e.message) for e in events if e.kind == "failed"] == [("bad", "told to fail on bad")]
    assert [e.host for e in events if e.kind == "unreachable"] == ["down"]
    pids = {e.pid for e in events if e.kind not in ("status",)}
    assert len(pids) == 1 and mixed["outcome"].pid in pids


def test_private_data_dir_holds_the_run_and_no_secret(mixed: dict[str, Any]) -> None:
    pdd: Path = mixed["pdd"]
    inventory = yaml.safe_load((pdd / "inventory" / "hosts.yml").read_text())
    assert set(inventory["all"]["hosts"]) == {"good", "bad", "down"}
    assert yaml.load((pdd / "env" / "extravars").read_text(), Loader=_UnsafeLoader) == {"remediator_run_id": "R1"}
    assert json.loads((pdd / "env" / "envvars").read_text())["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    artifacts = pdd / "artifacts" / "01-canary"
    assert (artifacts / "hosts.yml").read_text() == (pdd / "inventory" / "hosts.yml").read_text()
    command = json.loads((artifacts / "command").read_text())
    assert command["env"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert command["env"]["PATH"].split(":")[0] == str(Path(sys.executable).parent)
    for path in pdd.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert "do-not-leak-this" not in text and "nor-this" not in text, path
    assert (pdd.stat().st_mode & 0o777) == 0o700


class _UnsafeLoader(yaml.SafeLoader):
    pass


_UnsafeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]

# A dpkg record, a version and a reason as a hostile host could report them, and a hand-edited plan's
# target: each asks Ansible to run a command on the control node if it templates the value.
_PAYLOAD = "cuda-{{{{ lookup('ansible.builtin.pipe', 'touch {}') }}}}-12-4"


def test_host_and_plan_values_reach_the_playbook_verbatim_never_templated(tmp_path: Path) -> None:
    canary = tmp_path / "PWNED"
    payload = _PAYLOAD.format(canary)
    extra_payload = "{{ lookup('ansible.builtin.pipe', 'touch " + f"{canary}-extra') }}}}"
    actions = [{"kind": "remove_package", "params": {"manager": "deb", "name": payload, "version": "1.0{{ 7*7 }}"},
                "finding": None, "reason": "{% for x in range(3) %}x{% endfor %}", "requires_approval": False}]
    target = {"framework": "tensorflow", "version": "{{ 6*7 }}", "note": ["{# c #}", {"k": "{{ 1+1 }}"}]}
    out = tmp_path / "out"
    out.mkdir()
    o = run_playbook(PLAYBOOKS / "runner-unsafe.yml",
                     {"solo": {**LOCAL, "out_dir": str(out), "remediator_actions": actions,
                               "remediator_target": target}},
                     {"remediator_pip_index_url": extra_payload},
                     private_data_dir=tmp_path / "pdd", check=False, ident="01")
    assert o.hosts["solo"].status == "ok", o.hosts["solo"]
    seen = json.loads((out / "solo.json").read_text())
    assert seen["actions"] == actions
    assert seen["target"] == target
    assert seen["label"] == payload + "=1.0{{ 7*7 }}"
    assert seen["extra"] == extra_payload
    assert not canary.exists() and not Path(f"{canary}-extra").exists()


def test_a_hung_task_fails_its_host_alone_at_the_task_timeout(tmp_path: Path) -> None:
    """What apply passes (ANSIBLE_TASK_TIMEOUT): the hung host fails, the other finishes, the run ends."""
    o = run_playbook(PLAYBOOKS / "runner-hang.yml", {"stuck": {**LOCAL, "hang_here": True}, "fine": LOCAL}, {},
                     private_data_dir=tmp_path, check=False, ident="01", envvars={"ANSIBLE_TASK_TIMEOUT": "3"},
                     timeout=600)
    stuck, fine = o.hosts["stuck"], o.hosts["fine"]
    assert (stuck.status, stuck.task) == ("failed", "a task that hangs where told to")
    assert "timed out" in (stuck.message or "").lower(), stuck.message
    assert fine.status == "ok" and fine.ok == 1


def test_check_mode_changes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    o = run_playbook(PLAYBOOKS / "runner-test.yml", {"solo": {**LOCAL, "out_dir": str(out)}}, {},
                     private_data_dir=tmp_path / "pdd", check=True, ident="01")
    assert o.hosts["solo"].status == "ok" and o.status == "successful"
    assert not (out / "solo.txt").exists()
    assert "--check" in json.loads((tmp_path / "pdd" / "artifacts" / "01" / "command").read_text())["command"]


def test_a_playbook_that_does_not_parse_gives_no_result_with_the_reason(tmp_path: Path) -> None:
    o = run_playbook(PLAYBOOKS / "runner-broken.yml", {"solo": LOCAL}, {}, private_data_dir=tmp_path, check=False,
                     ident="01")
    assert o.status == "failed" and o.stats == {}
    h = o.hosts["solo"]
    assert h.status == "no_result" and "before reporting stats" in (h.message or "")
    assert "this_module_does_not_exist_anywhere" in (o.error or "")


def test_cancel_kills_the_playbook(tmp_path: Path) -> None:
    started = threading.Event()

    def on_event(e: RunnerEvent) -> None:
        if e.kind == "start":
            started.set()

    begun = time.monotonic()
    o = run_playbook(PLAYBOOKS / "runner-slow.yml", {"solo": LOCAL}, {}, private_data_dir=tmp_path, check=False,
                     ident="01", on_event=on_event, cancel=started.is_set)
    assert time.monotonic() - begun < 30
    assert o.status == "canceled" and o.hosts["solo"].status == "no_result"


def test_a_missing_playbook_is_a_runner_error(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="not found"):
        run_playbook(tmp_path / "nope.yml", {"solo": LOCAL}, {}, private_data_dir=tmp_path, check=False)
