"""The one caller of ansible-runner: run a playbook on some hosts and say what happened on each.

apply and rollback hand it hosts with their vars and the run's extravars. It writes them into the run's
private data directory (the audit trail, see docs/apply.md), runs ansible-playbook with an environment
cut down to what ansible needs (the runner records the environment in its artifacts), streams events
to a callback, and reads every host's outcome from the runner's stats (`failures`, `dark`), never from
its return code alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from remediator.errors import RemediatorError
from remediator.files import write_private

EventKind = Literal["status", "play", "task", "start", "ok", "changed", "failed", "skipped", "unreachable", "stats"]
HostRunStatus = Literal["ok", "failed", "unreachable", "no_result"]

# Environment variables ansible-playbook is given; everything else of ours (tokens, cloud keys, ...) stays
# out of its process and out of the `command` artifact, where ansible-runner records the environment.
_ENV_KEEP = re.compile(
    r"(PATH|HOME|USER|LOGNAME|SHELL|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR|TERM|SSH_AUTH_SOCK"
    r"|ANSIBLE_[A-Z0-9_]+|RUNNER_[A-Z0-9_]+|AWX_ISOLATED_DATA_DIR|AD_HOC_COMMAND_ID|JOB_ID)"
)
_ENV_SECRET = re.compile(r"(PASS|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?)$")
_MESSAGE_MAX = 500


class RunnerError(RemediatorError):
    """ansible-playbook could not be started or its private data dir could not be written."""


@dataclass(frozen=True)
class RunnerEvent:
    """One thing the runner reported, cut down to what a progress display shows."""

    ident: str
    kind: EventKind
    host: str | None = None
    task: str | None = None
    message: str | None = None  # failure or unreachable message, or the runner's status word
    pid: int | None = None  # ansible-playbook's process id


@dataclass(frozen=True)
class HostOutcome:
    host: str
    status: HostRunStatus
    ok: int = 0
    changed: int = 0
    failures: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    task: str | None = None  # the task that failed or found the host unreachable
    message: str | None = None
    # What the playbook reported back with set_fact, for the names starting with `remediator_`
    # (docs/apply.md: `remediator_manifest`).
    facts: Mapping[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {"ok": self.ok, "changed": self.changed, "failures": self.failures, "skipped": self.skipped,
                "rescued": self.rescued, "ignored": self.ignored}


@dataclass(frozen=True)
class RunOutcome:
    ident: str
    status: str  # the runner's: successful, failed, timeout, canceled
    rc: int | None
    artifact_dir: str
    hosts: Mapping[str, HostOutcome]
    pid: int | None = None  # ansible-playbook's process id, from its events
    error: str | None = None  # why no stats came back (the end of ansible-playbook's output)
    stats: Mapping[str, Any] = field(default_factory=dict)


def venv_bin_dir() -> str:
    """Where this Python's ansible-playbook lives (the venv's bin dir), put first on PATH for the runner."""
    return os.path.dirname(os.path.abspath(sys.executable))


def run_playbook(
    playbook: Path,
    inventory_hosts: Mapping[str, Mapping[str, Any]],
    extravars: Mapping[str, Any],
    *,
    private_data_dir: Path,
    check: bool,
    on_event: Callable[[RunnerEvent], None] | None = None,
    ident: str = "run",
    forks: int = 10,
    envvars: Mapping[str, str] | None = None,
    cancel: Callable[[], bool] | None = None,
    rotate_artifacts: int = 0,
    timeout: int | None = None,
    worker: Sequence[str] | None = None,
) -> RunOutcome:
    """Run `playbook` on exactly `inventory_hosts` (name -> host vars) and return each host's outcome.

    Writes `inventory/hosts.yml`, `env/extravars` and `env/envvars` into `private_data_dir` (created if
    needed), then runs ansible-playbook (`--check` when `check`), its artifacts under `artifacts/<ident>/`.
    `on_event` is called from the runner's thread for every event and must return quickly (put it on a
    queue). `cancel` is polled while the playbook runs; when it returns True the runner kills it.
    `rotate_artifacts` keeps that many artifact dirs in this private data dir (0: all of them).
    `worker`: run the job through ansible-runner's streaming interface instead, handed to this command (an
    argv: `ansible-runner worker`, `ssh exec01 ansible-runner worker`, ...): see `remediator.runner_stream`.
    The outcome is read the same way from the same events.
    """
    from ansible_runner.config.runner import RunnerConfig
    from ansible_runner.exceptions import AnsibleRunnerException
    from ansible_runner.runner import Runner

    if not inventory_hosts:
        raise ValueError("run_playbook: no hosts")
    pdd = private_data_dir.absolute()
    playbook = playbook.absolute()
    if not playbook.is_file():
        raise RunnerError(f"playbook {playbook} not found",
                          hint="point --playbooks at the directory holding remediate.yml and rollback.yml")
    env = {
        "ANSIBLE_HOST_KEY_CHECKING": "True",  # ansible-runner would set False
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        **(envvars or {}),
    }
    try:
        _write_private_data_dir(pdd, inventory_hosts, extravars, env)
    except OSError as exc:
        raise RunnerError(f"cannot write the private data dir {pdd}: {exc.strerror or exc}") from None

    first_pid: list[int] = []
    failures: dict[str, RunnerEvent] = {}  # host -> its first failed or unreachable event
    reported: dict[str, dict[str, Any]] = {}  # host -> remediator_* facts it set

    def event_handler(data: dict[str, Any]) -> bool:
        event = _runner_event(ident, data)
        if event is not None and event.kind in ("ok", "changed") and event.host:
            _collect_facts(reported.setdefault(event.host, {}), data)
        if event is not None:
            if event.pid and not first_pid:
                first_pid.append(event.pid)
            if event.kind in ("failed", "unreachable") and event.host and event.host not in failures:
                failures[event.host] = event
            if on_event is not None:
                on_event(event)
        return True  # keep every event in artifacts/<ident>/job_events: the stats are read from there

    def status_handler(data: dict[str, Any], runner_config: Any = None) -> None:
        if on_event is not None:
            on_event(RunnerEvent(ident, "status", message=str(data.get("status"))))

    if worker:
        from remediator.runner_stream import run_streamed

        def worker_event(data: dict[str, Any]) -> bool:
            # ansible-playbook's pid is the worker machine's: no process of this one to watch or kill.
            return event_handler({k: v for k, v in data.items() if k != "pid"})

        streamed = run_streamed(list(worker), pdd, playbook, ident=ident, forks=forks, check=check, timeout=timeout,
                                cancel=cancel, event_handler=worker_event, status_handler=status_handler,
                                env=_scrub_env(os.environ))
        return _outcome(ident, pdd, inventory_hosts, streamed.status, streamed.rc, streamed.artifact_dir,
                        streamed.stats, failures, reported, first_pid, streamed.error)

    config = RunnerConfig(
        private_data_dir=str(pdd),
        project_dir=str(playbook.parent),
        playbook=playbook.name,
        ident=ident,
        forks=forks,
        cmdline="--check" if check else None,
        rotate_artifacts=rotate_artifacts,
        quiet=True,
        timeout=timeout,
    )
    try:
        config.prepare()
    except AnsibleRunnerException as exc:
        raise RunnerError(f"ansible-runner: {exc}") from None
    config.env = _scrub_env(config.env)
    runner = Runner(config=config, event_handler=event_handler, status_handler=status_handler,
                    cancel_callback=cancel or (lambda: False))
    try:
        status, rc = runner.run()
    except AnsibleRunnerException as exc:
        raise RunnerError(f"ansible-runner failed: {exc}") from None
    return _outcome(ident, pdd, inventory_hosts, status, rc, str(config.artifact_dir), runner.stats, failures,
                    reported, first_pid, None)


def _outcome(ident: str, pdd: Path, inventory_hosts: Mapping[str, Any], status: Any, rc: Any, artifact_dir: str,
             stats: Mapping[str, Any] | None, failures: Mapping[str, RunnerEvent],
             reported: Mapping[str, Mapping[str, Any]], first_pid: Sequence[int], error: str | None) -> RunOutcome:
    """Every host's outcome from the run's stats and events, a direct run's or a streamed one's alike."""
    with contextlib.suppress(OSError):
        shutil.copyfile(pdd / "inventory" / "hosts.yml", Path(artifact_dir) / "hosts.yml")
    if stats is None:
        error = error or _tail(Path(artifact_dir) / "stdout")
    hosts = {name: dataclasses.replace(_host_outcome(name, stats, failures, str(status), error),
                                       facts=reported.get(name, {}))
             for name in inventory_hosts}
    return RunOutcome(ident=ident, status=str(status), rc=rc if isinstance(rc, int) else None,
                      artifact_dir=artifact_dir, hosts=hosts, pid=first_pid[0] if first_pid else None,
                      error=error, stats=stats or {})


def _write_private_data_dir(pdd: Path, hosts: Mapping[str, Mapping[str, Any]], extravars: Mapping[str, Any],
                            envvars: Mapping[str, str]) -> None:
    for sub in ("inventory", "env"):
        (pdd / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    pdd.chmod(0o700)
    inventory = {"all": {"hosts": {name: {k: _unsafe(v) if k.startswith("remediator_") else _plain(v)
                                          for k, v in hostvars.items()}
                                   for name, hostvars in hosts.items()}}}
    _write(pdd / "inventory" / "hosts.yml",
           "# Written by remediate for one ansible-runner run; connection vars only, never secrets.\n"
           "# remediator_* values came from hosts or a plan file: !unsafe, so Ansible never templates them.\n"
           + yaml.dump(inventory, Dumper=_Dumper, sort_keys=False, default_flow_style=False))
    # ansible-runner hands this file to ansible-playbook as `-e @env/extravars`, read with Ansible's own
    # YAML loader: the same !unsafe marking holds there.
    _write(pdd / "env" / "extravars", yaml.dump(_unsafe(dict(extravars)), Dumper=_Dumper, sort_keys=True,
                                                default_flow_style=False))
    _write(pdd / "env" / "envvars", json.dumps(dict(envvars), indent=2, sort_keys=True) + "\n")
    # The runner looks at its cancel callback between reads of ansible's output, at least this often.
    _write(pdd / "env" / "settings", json.dumps({"pexpect_timeout": 1}) + "\n")


def _write(path: Path, text: str) -> None:
    write_private(path, text)


class UnsafeText(str):
    """A string Ansible must never template: written as `!unsafe` (Ansible's unsafe text)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(UnsafeText, lambda dumper, data: dumper.represent_scalar("!unsafe", str(data)))


def _unsafe(value: Any) -> Any:
    """`value` with every string in it (mapping keys aside) marked unsafe, for YAML."""
    return _plain(value, lambda leaf: UnsafeText(leaf) if isinstance(leaf, str) else leaf)


def _plain(value: Any, leaf: Callable[[Any], Any] = lambda v: v) -> Any:
    """Mappings and sequences (frozen ones included) as plain dicts and lists for YAML and JSON, each
    other value passed through `leaf`."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, leaf) for v in value]
    return leaf(value)


def _scrub_env(env: Mapping[str, str]) -> dict[str, str]:
    kept = {k: v for k, v in env.items() if _ENV_KEEP.fullmatch(k) and not _ENV_SECRET.search(k)}
    bin_dir = venv_bin_dir()
    path = kept.get("PATH", os.defpath)
    if bin_dir not in path.split(os.pathsep):
        kept["PATH"] = bin_dir + os.pathsep + path
    return kept


def _short(text: Any) -> str | None:
    if text is None:
        return None
    s = str(text).strip()
    if not s:
        return None
    return s if len(s) <= _MESSAGE_MAX else s[: _MESSAGE_MAX - 3] + "..."


def _failure_message(res: Mapping[str, Any]) -> str | None:
    items = res.get("results")
    if isinstance(items, list):  # a loop: "One or more items failed" says less than the item that did
        for item in items:
            if isinstance(item, Mapping) and (item.get("failed") or item.get("unreachable")):
                found = _failure_message(item)
                if found:
                    return found
    msg = str(res.get("msg") or res.get("reason") or "").strip()
    if "\n" in msg:  # a command's whole output (pip's "stdout: ... :stderr: ..."): its error line
        msg = _output_line(msg) or msg
    detail = _output_line(res.get("stderr")) or _output_line(res.get("module_stderr"))
    if msg and detail and (msg in _GENERIC or msg.startswith("MODULE FAILURE")):
        return _short(f"{msg}: {detail}")
    return _short(msg) if msg else _short(detail or _output_line(res.get("stdout")))


# ansible's messages that say only that a command failed: the command's own error says why.
_GENERIC = ("non-zero return code", "Task failed", "failed")


def _output_line(text: Any) -> str | None:
    """The line of a command's output that says what went wrong: its first `error...` line, else its last."""
    if not text:
        return None
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "fatal", "e: ", ":stderr: error"))]
    return (errors[0] if errors else lines[-1]) if lines else None


_RESULT_KINDS: dict[str, EventKind] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
    "runner_on_start": "start",
}


def _runner_event(ident: str, data: Mapping[str, Any]) -> RunnerEvent | None:
    name = str(data.get("event") or "")
    ed = data.get("event_data") or {}
    pid = data.get("pid") if isinstance(data.get("pid"), int) else None
    task = _short(ed.get("task"))
    host = str(ed["host"]) if ed.get("host") is not None else None
    if name == "playbook_on_play_start":
        return RunnerEvent(ident, "play", task=_short(ed.get("play") or ed.get("name")), pid=pid)
    if name == "playbook_on_task_start":
        return RunnerEvent(ident, "task", task=task, pid=pid)
    if name == "playbook_on_stats":
        return RunnerEvent(ident, "stats", pid=pid)
    kind = _RESULT_KINDS.get(name)
    if kind is None or host is None:
        return None
    raw = ed.get("res")
    res: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    message = None
    if kind == "failed":
        if ed.get("ignore_errors"):
            kind = "ok"
        else:
            message = _failure_message(res) or "failed"
    elif kind == "unreachable":
        message = _failure_message(res) or "unreachable"
    if kind == "ok" and res.get("changed"):
        kind = "changed"
    return RunnerEvent(ident, kind, host=host, task=task, message=message, pid=pid)


def _collect_facts(into: dict[str, Any], data: Mapping[str, Any]) -> None:
    ed = data.get("event_data") or {}
    res = ed.get("res") if isinstance(ed, Mapping) else None
    facts = res.get("ansible_facts") if isinstance(res, Mapping) else None
    if isinstance(facts, Mapping):
        into.update({str(k): v for k, v in facts.items() if str(k).startswith("remediator_")})


def _count(stats: Mapping[str, Any], key: str, host: str) -> int:
    value = (stats.get(key) or {}).get(host, 0)
    return int(value) if isinstance(value, int) else 0


def _host_outcome(host: str, stats: Mapping[str, Any] | None, failures: Mapping[str, RunnerEvent],
                  runner_status: str, error: str | None) -> HostOutcome:
    first = failures.get(host)
    task, message = (first.task, first.message) if first else (None, None)
    if stats is None:
        # Killed or broken before the stats: what the events said is all there is.
        if first is not None:
            return HostOutcome(host, "unreachable" if first.kind == "unreachable" else "failed", task=task,
                               message=message)
        why = f"no result: ansible-playbook ended ({runner_status}) before reporting stats"
        return HostOutcome(host, "no_result", message=why + (f": {error}" if error else ""))
    counts = {k: _count(stats, k, host) for k in ("ok", "changed", "failures", "skipped", "rescued", "ignored")}
    seen = any(host in (stats.get(k) or {}) for k in ("processed", "ok", "dark", "failures", "skipped", "changed"))
    status: HostRunStatus
    if _count(stats, "dark", host):
        status = "unreachable"
    elif counts["failures"]:
        status = "failed"
    elif seen:
        status = "ok"
    else:
        status, message = "no_result", message or "the playbook did not run on this host"
    if status == "ok":
        task, message = None, None
    return HostOutcome(host, status, counts["ok"], counts["changed"], counts["failures"], counts["skipped"],
                       counts["rescued"], counts["ignored"], task=task, message=message)


def _tail(path: Path, lines: int = 3) -> str | None:
    """ansible's error when it printed one ([ERROR]: or ERROR!), else the last lines of its output."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in kept if line.startswith(("[ERROR]", "ERROR!"))]
    if errors:
        return _short(errors[-1])
    return _short(" | ".join(kept[-lines:])) if kept else None


__all__ = ["HostOutcome", "RunOutcome", "RunnerError", "RunnerEvent", "run_playbook"]
