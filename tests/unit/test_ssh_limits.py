"""A hostile host fails alone: the SSH transport's deadlines and output caps against an in-process server.

The server is paramiko's own, on 127.0.0.1, with a throwaway host key; each test tells it how to
misbehave (never answer the exec request, flood a stream, never answer SFTP). The local transport is
capped the same way and is tested at the end.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paramiko
import pytest

from remediator.inventory import InventoryHost
from remediator.probe import probe_fleet
from remediator.transport import ssh
from remediator.transport.base import (
    DEFAULT_MAX_STDERR,
    DEFAULT_MAX_STDOUT,
    READ_CHUNK,
    CommandTimeout,
    OutputTooLarge,
    TransportError,
)
from remediator.transport.local import LocalTransport
from remediator.transport.ssh import SSHTransport, connect

pytestmark = pytest.mark.timeout(120)

MIB = 1 << 20
#: The pytest-level guard: a call that has not returned by then is taken to hang forever.
GUARD_S = 30.0
#: How long a misbehaving server holds out; far past every deadline the tests set.
HOLD_S = 60.0

ExecHandler = Callable[[paramiko.Channel, bytes], bool]


@dataclass
class Lab:
    """One in-process SSH server and what the client needs to reach it."""

    port: int
    host_key: paramiko.PKey
    client_key_path: Path
    known_hosts: Path
    release: threading.Event  # set at teardown: every handler that holds out gives up
    on_exec: ExecHandler | None = None
    subsystem: str = "answer"  # "answer" (paramiko's SFTP server), "never", "silent"
    global_requests: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)  # bytes a flooding handler got out, per stream
    flood_ended: threading.Event = field(default_factory=threading.Event)

    def host(self) -> InventoryHost:
        return InventoryHost(
            name="gpu0",
            address="127.0.0.1",
            port=self.port,
            user="tester",
            private_key_file=str(self.client_key_path),
            known_hosts_files=(str(self.known_hosts),),
        )


class _Server(paramiko.ServerInterface):
    def __init__(self, lab: Lab, client_key: paramiko.PKey) -> None:
        self.lab = lab
        self.client_key = client_key

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if key.asbytes() == self.client_key.asbytes():
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        if self.lab.on_exec is None:
            return False
        return self.lab.on_exec(channel, command)

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        if self.lab.subsystem == "never":
            # Blocks the server's transport thread: the request is never answered, as on a hung host.
            self.lab.release.wait(HOLD_S)
            return False
        if self.lab.subsystem == "silent":
            return True  # accepted, but nothing speaks SFTP on the channel: the version is never sent
        return bool(super().check_channel_subsystem_request(channel, name))

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        self.lab.global_requests.append(kind)
        return False


class _StalledSFTP(paramiko.SFTPServerInterface):
    """Answers SFTP's version exchange, then never answers an open."""

    release: threading.Event

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Any:
        self.release.wait(HOLD_S)
        return paramiko.SFTP_FAILURE


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    # Keep the client off the real ~/.ssh (config, keys, known_hosts) and any ssh-agent.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)

    host_key = paramiko.ECDSAKey.generate()
    client_key = paramiko.ECDSAKey.generate()
    client_key_path = tmp_path / "client_key"
    client_key.write_private_key_file(str(client_key_path))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = int(listener.getsockname()[1])
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.get_name()} {host_key.get_base64()}\n")
    release = threading.Event()
    lab = Lab(port, host_key, client_key_path, known_hosts, release)
    _StalledSFTP.release = release
    servers: list[paramiko.Transport] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except OSError:
                continue
            server = paramiko.Transport(sock)
            server.add_server_key(host_key)
            server.set_subsystem_handler("sftp", paramiko.SFTPServer, _StalledSFTP)
            servers.append(server)
            server.start_server(server=_Server(lab, client_key))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield lab
    release.set()
    stop.set()
    thread.join(5)
    listener.close()
    for server in servers:
        server.close()


@pytest.fixture
def conn(lab: Lab) -> Iterator[SSHTransport]:
    transport = connect(lab.host(), connect_timeout=5)
    yield transport
    transport.close()


def bounded(call: Callable[[], object]) -> BaseException | object:
    """Run `call` in a thread; what it returned or raised, or a test failure if it is still running."""
    outcome: list[BaseException | object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GUARD_S)
    if thread.is_alive():
        pytest.fail(f"the call did not return within {GUARD_S:g}s: an unbounded wait")
    return outcome[0]


def never_answer(lab: Lab) -> ExecHandler:
    def handler(channel: paramiko.Channel, command: bytes) -> bool:
        # Blocks the server's transport thread, so the exec request gets no reply at all.
        lab.release.wait(HOLD_S)
        return False

    return handler


def emit(lab: Lab, *, stdout: int = 0, stderr: int = 0, flood: str | None = None) -> ExecHandler:
    """Print exactly `stdout`/`stderr` bytes and exit 0; or, with `flood`, write to that stream until
    the client goes away (or HOLD_S passes)."""

    def work(channel: paramiko.Channel) -> None:
        chunk = b"x" * READ_CHUNK
        # The client closes its stdin once the exec reply reached it; output sent before that reply
        # would race it (paramiko's server sends the reply only after this handler returns).
        started = time.monotonic()
        while not channel.eof_received and time.monotonic() - started < HOLD_S:
            time.sleep(0.01)
        try:
            if flood is not None:
                send = channel.sendall if flood == "stdout" else channel.sendall_stderr
                lab.sent[flood] = 0
                started = time.monotonic()
                while not lab.release.is_set() and time.monotonic() - started < HOLD_S:
                    send(chunk)
                    lab.sent[flood] += len(chunk)
            else:
                for send, n in ((channel.sendall_stderr, stderr), (channel.sendall, stdout)):
                    while n > 0:
                        piece = chunk[: min(n, len(chunk))]
                        send(piece)
                        n -= len(piece)
                channel.send_exit_status(0)
                channel.close()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the client closed the channel or the connection: the point of the flood tests
        finally:
            lab.flood_ended.set()

    def handler(channel: paramiko.Channel, command: bytes) -> bool:
        threading.Thread(target=work, args=(channel,), daemon=True).start()
        return True

    return handler


# --------------------------------------------------------------------------- deadlines


def test_exec_request_never_answered_times_out(lab: Lab, conn: SSHTransport) -> None:
    lab.on_exec = never_answer(lab)
    outcome = bounded(lambda: conn.run(["nvidia-smi"], timeout=2))
    assert isinstance(outcome, CommandTimeout), outcome
    assert "nvidia-smi ran past its 2s timeout" in outcome.message
    assert "never answered the request to start it" in outcome.message


def test_run_without_timeout_still_has_a_deadline(
    lab: Lab, conn: SSHTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ssh, "DEFAULT_RUN_TIMEOUT", 1.0, raising=False)
    lab.on_exec = never_answer(lab)
    outcome = bounded(lambda: conn.run(["python3", "-"]))
    assert isinstance(outcome, CommandTimeout), outcome
    assert "ran past its 1s timeout" in outcome.message


@pytest.mark.parametrize(
    "where",
    ["subsystem request never answered", "sftp version never sent", "open never answered"],
)
def test_put_file_to_a_stalled_sftp_server_times_out(
    lab: Lab, conn: SSHTransport, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab.subsystem = {"subsystem request never answered": "never", "sftp version never sent": "silent"}.get(
        where, "answer"
    )
    monkeypatch.setattr(ssh, "DEFAULT_PUT_TIMEOUT", 2.0, raising=False)  # no timeout given: the default bounds it
    outcome = bounded(lambda: conn.put_file(b"data", "/tmp/remediator-probe.py"))
    assert isinstance(outcome, CommandTimeout), outcome
    assert "writing /tmp/remediator-probe.py" in outcome.message
    assert "ran past its 2s timeout" in outcome.message
    # an explicit timeout is honoured the same way, on a fresh SFTP session
    outcome = bounded(lambda: conn.put_file(b"data", "/tmp/remediator-probe.py", timeout=1))
    assert isinstance(outcome, CommandTimeout), outcome
    assert "ran past its 1s timeout" in outcome.message


def test_keepalives_are_sent_on_an_idle_connection(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "KEEPALIVE_INTERVAL", 1, raising=False)
    transport = connect(lab.host(), connect_timeout=5)
    try:
        deadline = time.monotonic() + 10
        while "keepalive@lag.net" not in lab.global_requests and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        transport.close()
    assert "keepalive@lag.net" in lab.global_requests


# --------------------------------------------------------------------------- output caps


@pytest.mark.parametrize(("stream", "cap"), [("stdout", DEFAULT_MAX_STDOUT), ("stderr", DEFAULT_MAX_STDERR)])
def test_a_flooded_stream_stops_the_reading(lab: Lab, conn: SSHTransport, stream: str, cap: int) -> None:
    lab.on_exec = emit(lab, flood=stream)
    outcome = bounded(lambda: conn.run(["python3", "-"], timeout=20))
    assert isinstance(outcome, OutputTooLarge), outcome
    assert (outcome.stream, outcome.cap, outcome.host) == (stream, cap, "gpu0")
    # what the client held of the stream: past the cap by at most one read
    assert cap < outcome.received <= cap + READ_CHUNK
    assert f"more than {cap // MIB} MiB on {stream}" in outcome.message
    # the host was cut off, not read to the end: its writes fail soon after
    assert lab.flood_ended.wait(10)
    assert lab.sent[stream] < cap + 16 * MIB
    # and the connection is gone, with a message that says why
    with pytest.raises(TransportError, match="was dropped"):
        conn.run(["true"], timeout=5)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_up_to_the_cap_is_read_and_one_byte_more_is_refused(
    lab: Lab, tmp_path: Path, stream: str
) -> None:
    cap = 256 * 1024
    caps = {"max_stdout": cap, "max_stderr": cap}
    with connect(lab.host(), connect_timeout=5) as transport:
        lab.on_exec = emit(lab, **{stream: cap})
        result = transport.run(["python3", "-"], timeout=20, **caps)
        assert result.returncode == 0
        assert len(getattr(result, stream)) == cap
    with connect(lab.host(), connect_timeout=5) as transport:
        lab.on_exec = emit(lab, **{stream: cap + 1})
        with pytest.raises(OutputTooLarge) as info:
            transport.run(["python3", "-"], timeout=20, **caps)
        assert (info.value.stream, info.value.received) == (stream, cap + 1)


def test_default_caps_hold_both_streams_at_once(lab: Lab, conn: SSHTransport) -> None:
    lab.on_exec = emit(lab, stdout=DEFAULT_MAX_STDOUT, stderr=DEFAULT_MAX_STDERR)
    result = bounded(lambda: conn.run(["python3", "-"], timeout=20))
    assert not isinstance(result, BaseException), result
    assert (len(result.stdout), len(result.stderr)) == (DEFAULT_MAX_STDOUT, DEFAULT_MAX_STDERR)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the local transport


def test_local_transport_caps_a_flooded_stream() -> None:
    flood = "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)\n"
    outcome = bounded(lambda: LocalTransport().run([sys.executable, "-c", flood], timeout=20, max_stdout=MIB))
    assert isinstance(outcome, OutputTooLarge), outcome
    assert outcome.stream == "stdout" and MIB < outcome.received <= MIB + READ_CHUNK

    flood_err = "import sys\nwhile True: sys.stderr.buffer.write(b'x' * 65536)\n"
    outcome = bounded(lambda: LocalTransport().run([sys.executable, "-c", flood_err], timeout=20))
    assert isinstance(outcome, OutputTooLarge), outcome
    assert outcome.stream == "stderr" and outcome.cap == DEFAULT_MAX_STDERR


def test_local_transport_reads_up_to_the_cap_and_times_out() -> None:
    script = f"import sys\nsys.stdout.buffer.write(b'o' * {MIB})\nsys.stderr.buffer.write(b'e' * {MIB})\n"
    result = LocalTransport().run([sys.executable, "-c", script], timeout=20, max_stdout=MIB, max_stderr=MIB)
    assert (result.returncode, len(result.stdout), len(result.stderr)) == (0, MIB, MIB)
    outcome = bounded(lambda: LocalTransport().run(["sleep", "30"], timeout=1))
    assert isinstance(outcome, CommandTimeout), outcome


# --------------------------------------------------------------------------- a fleet run


def test_a_hung_and_a_flooding_host_each_fail_alone(lab: Lab) -> None:
    flood, hang = emit(lab, flood="stdout"), never_answer(lab)
    calls = iter([flood, hang])
    lock = threading.Lock()

    def first_floods_second_hangs(channel: paramiko.Channel, command: bytes) -> bool:
        with lock:
            handler = next(calls)
        return handler(channel, command)

    lab.on_exec = first_floods_second_hangs
    hosts = [replace(lab.host(), name=name) for name in ("gpu0", "gpu1")]
    outcome = bounded(lambda: probe_fleet(hosts, timeout=3, forks=2))
    assert not isinstance(outcome, BaseException), outcome
    assert sorted(r.status for r in outcome) == ["failed", "failed"]  # type: ignore[attr-defined]
    messages = [r.error or "" for r in outcome]  # type: ignore[attr-defined]
    assert any("printed more than 8 MiB on stdout" in m for m in messages), messages
    assert any("ran past its 3s timeout" in m for m in messages), messages
