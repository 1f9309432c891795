"""run_playbook through ansible-runner's streaming interface: a real `ansible-runner worker` on local hosts,
and workers that misbehave (garbage, a hang, hostile artifacts), as real subprocesses."""

from __future__ import annotations

import io
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import remediator.runner_stream as rs
from remediator.errors import UsageError
from remediator.runner import RunnerError, run_playbook

RUNNER = str(Path(sys.executable).parent / "ansible-runner")
HOSTS = {name: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable} for name in ("h1", "h2")}


@pytest.fixture
def playbook(tmp_path: Path) -> Path:
    d = tmp_path / "playbooks"
    d.mkdir()
    (d / "site.yml").write_text(textwrap.dedent("""\
        - hosts: all
          gather_facts: false
          tasks:
            - name: Say hello
              ansible.builtin.command: echo hello
              changed_when: false
            - name: Fail on h2
              ansible.builtin.fail:
                msg: h2 says no
              when: inventory_hostname == 'h2'
            - name: Report
              ansible.builtin.set_fact:
                remediator_manifest: {moved: 1}
        """))
    return d / "site.yml"


def _worker(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text("import sys, json, base64, time\nsys.stdin.buffer.read()\n" + textwrap.dedent(body))
    return [sys.executable, str(script)]


def test_a_real_worker_gives_the_outcome_of_a_direct_run(tmp_path, playbook) -> None:  # type: ignore[no-untyped-def]
    direct = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "direct", check=False, ident="01-a",
                          timeout=120)
    streamed = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "streamed", check=False, ident="01-a",
                            timeout=120, worker=[RUNNER, "worker"])
    assert (direct.status, direct.rc) == (streamed.status, streamed.rc) == ("failed", 2)
    assert direct.hosts == streamed.hosts
    assert streamed.hosts["h2"].status == "failed" and streamed.hosts["h2"].message == "h2 says no"
    assert dict(streamed.hosts["h1"].facts) == {"remediator_manifest": {"moved": 1}}
    assert direct.stats == streamed.stats
    art = Path(streamed.artifact_dir)
    assert art == tmp_path / "streamed" / "artifacts" / "01-a"
    assert {p.name for p in art.iterdir()} >= {"job_events", "rc", "status", "stdout", "hosts.yml"}
    assert len(list(art.joinpath("job_events").iterdir())) == len(
        list(Path(direct.artifact_dir).joinpath("job_events").iterdir()))
    # What the worker got: the run's inventory and env, the playbooks and the collection beside them.
    job = tmp_path / "streamed" / "stream" / "01-a"
    assert (job / "project" / "collections" / "ansible_collections" / "remediator" / "gpu" / "galaxy.yml").is_file()
    assert not (job / "artifacts").exists() or not any((job / "artifacts").iterdir())


def test_a_worker_that_writes_garbage_fails_its_hosts_with_a_clear_error(tmp_path, playbook) -> None:  # type: ignore[no-untyped-def]
    argv = _worker(tmp_path, 'print("Welcome to exec01! Last login: yesterday")\n')
    out = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "pdd", check=False, ident="01-a",
                       worker=argv)
    assert out.status == "error"
    assert "something other than ansible-runner's stream" in (out.error or "")
    assert {h.status for h in out.hosts.values()} == {"no_result"}


def test_a_worker_that_dies_says_so(tmp_path, playbook) -> None:  # type: ignore[no-untyped-def]
    argv = _worker(tmp_path, 'sys.stderr.write("exec01: ansible-runner: command not found\\n"); sys.exit(127)\n')
    out = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "pdd", check=False, ident="01-a",
                       worker=argv)
    assert out.hosts["h1"].status == "no_result"
    assert "exited with status 127" in (out.error or "") and "command not found" in (out.error or "")


def test_a_hanging_worker_is_stopped_at_the_batch_timeout(tmp_path, playbook, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rs, "GRACE_S", 0.0)
    monkeypatch.setattr(rs, "TERM_WAIT_S", 2.0)
    pid_file = tmp_path / "pid"
    argv = _worker(tmp_path, f'open({str(pid_file)!r}, "w").write(str(__import__("os").getpid()))\n'
                             'time.sleep(3600)\n')
    out = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "pdd", check=False, ident="01-a",
                       worker=argv, timeout=1)
    assert out.status == "timeout"
    assert "ran past the batch timeout (1s)" in (out.error or "")
    assert {h.status for h in out.hosts.values()} == {"no_result"}
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_cancel_stops_the_worker(tmp_path, playbook, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rs, "TERM_WAIT_S", 2.0)
    argv = _worker(tmp_path, "time.sleep(3600)\n")
    out = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "pdd", check=False, ident="01-a",
                       worker=argv, cancel=lambda: True)
    assert out.status == "canceled"


def test_a_worker_that_cannot_start(tmp_path, playbook) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RunnerError, match="cannot start the runner worker"):
        run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "pdd", check=False, ident="01-a",
                     worker=[str(tmp_path / "no-such-worker")])


def test_hostile_artifacts_stay_inside_the_artifact_dir(tmp_path, playbook) -> None:  # type: ignore[no-untyped-def]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("rc", "0")
        z.writestr("../../../escaped", "x")
        z.writestr("/tmp/absolute-" + tmp_path.name, "x")
        link = zipfile.ZipInfo("job_events")
        link.external_attr = (0o120777 << 16)
        z.writestr(link, str(tmp_path))
        z.writestr("job_events/inside.json", "{}")
    data = buf.getvalue()
    event = {"event": "runner_on_ok", "counter": 1, "uuid": "../../../../evil", "event_data": {"host": "h1"}}
    body = f"""
        out = sys.stdout.buffer
        out.write(b'{{"status": "starting"}}\\n')
        out.write(json.dumps({event!r}).encode() + b"\\n")
        out.write(json.dumps({{"zipfile": {len(data)}}}).encode() + b"\\n")
        out.write(base64.b64encode({data!r}))
        out.write(b'{{"status": "successful"}}\\n{{"eof": true}}\\n')
    """
    out = run_playbook(playbook, HOSTS, {}, private_data_dir=tmp_path / "pdd", check=False, ident="01-a",
                       worker=_worker(tmp_path, body))
    art = Path(out.artifact_dir)
    assert out.rc == 0
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/absolute-" + tmp_path.name).exists()
    assert not (tmp_path / "evil.json").exists() and not list(tmp_path.glob("**/*evil*"))
    assert not art.joinpath("job_events").is_symlink() and art.joinpath("job_events", "inside.json").is_file()
    assert {h.status for h in out.hosts.values()} == {"no_result"}  # no stats came back


def test_worker_argv() -> None:
    assert rs.worker_argv("ssh -o 'ProxyJump=bastion' exec01 ansible-runner worker") == [
        "ssh", "-o", "ProxyJump=bastion", "exec01", "ansible-runner", "worker"]
    with pytest.raises(UsageError, match="No closing quotation"):
        rs.worker_argv("ansible-runner 'worker")
    with pytest.raises(UsageError, match="needs a command"):
        rs.worker_argv("   ")


def test_stream_line_cap() -> None:
    stream = rs._BoundedStream(io.BytesIO(b"{" + b"x" * 100 + b"\n"))
    old = rs.MAX_LINE_BYTES
    try:
        rs.MAX_LINE_BYTES = 10
        with pytest.raises(OSError, match="longer than 10 bytes"):
            stream.readline()
    finally:
        rs.MAX_LINE_BYTES = old
