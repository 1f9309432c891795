"""The paramiko SSH transport against a real, throwaway OpenSSH server on 127.0.0.1."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from remediator.errors import InputError
from remediator.inventory import InventoryHost, load_inventory
from remediator.transport.base import (
    DEFAULT_MAX_STDERR,
    DEFAULT_MAX_STDOUT,
    READ_CHUNK,
    AuthenticationError,
    CommandTimeout,
    HostKeyError,
    HostUnreachable,
    OutputTooLarge,
    Transport,
    TransportError,
)
from remediator.transport.ssh import SSHTransport, connect

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not (os.path.exists(SSHD) and os.path.exists(SSH_KEYGEN)),
        reason="needs OpenSSH (apt-get install openssh-server; see scripts/system-deps.sh)",
    ),
]

MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path, *, passphrase: str = "", kind: str = "ed25519") -> Path:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", kind, "-N", passphrase, "-C", "remediator-test", "-f", str(path)], check=True
    )
    return path


def public_line(pub: Path) -> str:
    kind, blob = pub.read_text().split()[:2]
    return f"{kind} {blob}"


@dataclass
class Sshd:
    port: int
    user: str
    host_key_pub: Path
    rsa_host_key_pub: Path
    client_key: Path
    log: Path
    dir: Path

    @property
    def known_hosts_line(self) -> str:
        return f"[127.0.0.1]:{self.port} {public_line(self.host_key_pub)}\n"

    def known_hosts(self, where: Path, *, content: str | None = None) -> Path:
        path = where / "known_hosts"
        path.write_text(self.known_hosts_line if content is None else content)
        return path

    def host(self, tmp_path: Path, **overrides: object) -> InventoryHost:
        host = InventoryHost(
            name="gpu0",
            address="127.0.0.1",
            port=self.port,
            user=self.user,
            private_key_file=str(self.client_key),
            known_hosts_files=(str(self.known_hosts(tmp_path)),),
        )
        return replace(host, **overrides)  # type: ignore[arg-type]

    def accepted_logins(self) -> int:
        return self.log.read_text(errors="replace").count("Accepted publickey")


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("sshd did not answer within 15s")


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    d = tmp_path_factory.mktemp("sshd")
    host_key = keygen(d / "ssh_host_ed25519_key")
    rsa_host_key = keygen(d / "ssh_host_rsa_key", kind="rsa")
    client_key = keygen(d / "client_key")
    (d / "authorized_keys").write_text(public_line(client_key.with_suffix(".pub")) + "\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    port = free_port()
    log = d / "sshd.log"
    candidates = ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server")
    sftp_server = next((p for p in candidates if os.path.exists(p)), "internal-sftp")
    config = d / "sshd_config"
    config.write_text(
        f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
HostKey {rsa_host_key}
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
MaxStartups 50:30:100
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp {sftp_server}
"""
    )
    proc = subprocess.Popen([SSHD, "-D", "-f", str(config), "-E", str(log)])
    try:
        wait_for_banner(port, proc, log)
        yield Sshd(
            port,
            getpass.getuser(),
            host_key.with_suffix(".pub"),
            rsa_host_key.with_suffix(".pub"),
            client_key,
            log,
            d,
        )
    finally:
        proc.terminate()  # this sshd only, by its PID
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the tests off the real ~/.ssh (known_hosts, config, keys) and any ssh-agent."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture
def conn(sshd: Sshd, tmp_path: Path) -> Iterator[SSHTransport]:
    t = connect(sshd.host(tmp_path), connect_timeout=10)
    yield t
    t.close()


# --------------------------------------------------------------------------- commands


def test_is_a_transport(conn: SSHTransport) -> None:
    assert isinstance(conn, Transport)
    assert conn.name == "gpu0"


def test_run_returns_output_and_exit_status(conn: SSHTransport) -> None:
    result = conn.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert conn.run(["true"]).returncode == 0


def test_argv_reaches_the_host_verbatim(conn: SSHTransport) -> None:
    args = ["a b", "$HOME", "`id`", "; touch /tmp/remediator-pwned", "it's", "*", ""]
    result = conn.run(["printf", "%s|", *args])
    assert result.stdout.decode() == "".join(f"{a}|" for a in args)
    assert not os.path.exists("/tmp/remediator-pwned")


def test_stdin_is_passed_and_closed(conn: SSHTransport) -> None:
    data = bytes(range(256)) * 10
    assert conn.run(["cat"], stdin=data).stdout == data
    # without stdin the command sees end of file at once instead of waiting forever
    assert conn.run(["cat"], timeout=10).stdout == b""


def test_missing_command_is_127(conn: SSHTransport) -> None:
    result = conn.run(["remediator-no-such-command"])
    assert result.returncode == 127


def test_several_mib_on_both_streams_do_not_deadlock(conn: SSHTransport) -> None:
    n = 6 * MIB
    caps = {"max_stdout": 8 * MIB, "max_stderr": 8 * MIB}  # stderr's default cap is 1 MiB
    # stderr first: a reader that waited on stdout alone would stall once the stderr window filled
    script = f"head -c {n} /dev/zero | tr '\\0' e >&2; head -c {n} /dev/zero | tr '\\0' o"
    result = conn.run(["sh", "-c", script], timeout=60, **caps)
    assert result.returncode == 0
    assert len(result.stdout) == n and set(result.stdout) == {ord("o")}
    assert len(result.stderr) == n and set(result.stderr) == {ord("e")}
    # both at once, interleaved, with a large stdin going the other way
    data = os.urandom(5 * MIB)
    script = f"head -c {n} /dev/zero | tr '\\0' e >&2 & cat; wait"
    result = conn.run(["sh", "-c", script], stdin=data, timeout=60, **caps)
    assert result.returncode == 0
    assert result.stdout == data
    assert len(result.stderr) == n


@pytest.mark.parametrize(("stream", "cap"), [("stdout", DEFAULT_MAX_STDOUT), ("stderr", DEFAULT_MAX_STDERR)])
def test_output_past_the_cap_is_abandoned(sshd: Sshd, tmp_path: Path, stream: str, cap: int) -> None:
    redirect = ">&2" if stream == "stderr" else ""
    with connect(sshd.host(tmp_path), connect_timeout=10) as t:
        # exactly the cap is read whole
        result = t.run(["sh", "-c", f"head -c {cap} /dev/zero {redirect}"], timeout=60)
        assert len(getattr(result, stream)) == cap
        # a flood is cut off past it: the command never ends by itself
        started = time.monotonic()
        with pytest.raises(OutputTooLarge) as info:
            t.run(["sh", "-c", f"cat /dev/zero {redirect}"], timeout=60)
        assert time.monotonic() - started < 30
        assert (info.value.stream, info.value.cap) == (stream, cap)
        assert cap < info.value.received <= cap + READ_CHUNK
        with pytest.raises(TransportError, match="dropped"):
            t.run(["true"])


def test_command_timeout(conn: SSHTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match="sleep ran past its 1s timeout"):
        conn.run(["sleep", "30"], timeout=1)
    assert time.monotonic() - started < 5
    # the connection survives an abandoned command
    assert conn.run(["echo", "still here"]).stdout == b"still here\n"


def test_commands_from_several_threads(conn: SSHTransport) -> None:
    results: dict[int, bytes] = {}

    def work(i: int) -> None:
        results[i] = conn.run(["echo", str(i)]).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: f"{i}\n".encode() for i in range(8)}


def test_put_file_writes_atomically_with_mode(conn: SSHTransport, tmp_path: Path) -> None:
    target = tmp_path / "probe.py"
    conn.put_file(b"print('hello')\n", str(target), mode=0o750)
    assert target.read_bytes() == b"print('hello')\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o750
    conn.put_file(b"second", str(target))  # replaces an existing file
    assert target.read_bytes() == b"second"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir() if "remediator-" in p.name] == []
    big = os.urandom(3 * MIB)
    conn.put_file(big, str(target))
    assert target.read_bytes() == big


def test_put_file_into_missing_directory(conn: SSHTransport, tmp_path: Path) -> None:
    with pytest.raises(TransportError, match=r"cannot write .*/missing/x"):
        conn.put_file(b"x", str(tmp_path / "missing" / "x"))


def test_close_is_idempotent(sshd: Sshd, tmp_path: Path) -> None:
    t = connect(sshd.host(tmp_path))
    t.close()
    t.close()
    with pytest.raises(TransportError, match="was closed"):
        t.run(["true"])
    with pytest.raises(TransportError, match="was closed"):
        t.put_file(b"x", "/tmp/x")


# --------------------------------------------------------------------------- reaching the host


def test_connection_refused(sshd: Sshd, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(HostUnreachable, match="connection refused") as exc:
        connect(sshd.host(tmp_path, port=port))
    assert f"127.0.0.1:{port}" in str(exc.value)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """Accepts TCP connections and never says a word (a hung sshd, a wrong port on a firewall box)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


def test_listener_that_never_answers_times_out(sshd: Sshd, tmp_path: Path, silent_listener: int) -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match="timed out waiting for the SSH banner"):
        connect(sshd.host(tmp_path, port=silent_listener), connect_timeout=1.5)
    assert time.monotonic() - started < 6


def test_unresolvable_name(sshd: Sshd, tmp_path: Path) -> None:
    with pytest.raises(HostUnreachable, match="cannot resolve"):
        connect(sshd.host(tmp_path, address="no-such-host.invalid"), connect_timeout=5)


# --------------------------------------------------------------------------- authentication


def test_wrong_client_key(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "other_key")
    with pytest.raises(AuthenticationError, match="permission denied") as exc:
        connect(sshd.host(tmp_path, private_key_file=str(other)))
    assert str(other) in str(exc.value)
    assert exc.value.hint is not None and f"{other}.pub" in exc.value.hint


def test_missing_key_file_names_the_file(sshd: Sshd, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_key"
    with pytest.raises(InputError, match="private key file not found") as exc:
        connect(sshd.host(tmp_path, private_key_file=str(missing)))
    assert str(missing) in str(exc.value)


def test_file_that_is_not_a_key(sshd: Sshd, tmp_path: Path) -> None:
    pub = sshd.client_key.with_suffix(".pub")
    with pytest.raises(InputError, match="not a private key") as exc:
        connect(sshd.host(tmp_path, private_key_file=str(pub)))
    assert str(pub) in str(exc.value)


def test_passphrase_protected_key(sshd: Sshd, tmp_path: Path) -> None:
    locked = keygen(tmp_path / "locked_key", passphrase="secret-passphrase")
    with pytest.raises(AuthenticationError, match="protected by a passphrase") as exc:
        connect(sshd.host(tmp_path, private_key_file=str(locked)))
    assert str(locked) in str(exc.value)


def test_default_identity_in_home_is_used(sshd: Sshd, tmp_path: Path, isolated_home: Path) -> None:
    (isolated_home / ".ssh").mkdir()
    shutil.copy(sshd.client_key, isolated_home / ".ssh" / "id_ed25519")
    with connect(sshd.host(tmp_path, private_key_file=None)) as t:
        assert t.run(["true"]).returncode == 0


# --------------------------------------------------------------------------- host keys


def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    kh.write_text("")
    with pytest.raises(HostKeyError, match=rf"Host key for \[127.0.0.1\]:{sshd.port} is not known") as exc:
        connect(host)
    assert "ED25519 SHA256:" in str(exc.value)
    assert kh.read_text() == ""


def test_accept_new_host_keys_records_the_key(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    other = keygen(tmp_path / "other_host_key")
    kh.write_text(f"# my hosts\nother.example {public_line(other.with_suffix('.pub'))}")  # no final newline
    with connect(host, accept_new_host_keys=True) as t:
        assert t.run(["true"]).returncode == 0
    lines = kh.read_text().splitlines()
    assert lines[0] == "# my hosts" and lines[1].startswith("other.example ")
    assert lines[2] == sshd.known_hosts_line.strip()
    with connect(host) as t:  # now known: strict checking passes
        assert t.run(["true"]).returncode == 0


def test_accept_new_from_inventory_ssh_args(sshd: Sshd, tmp_path: Path) -> None:
    kh = tmp_path / "fleet_known_hosts"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"[gpu]\ngpu0 ansible_host=127.0.0.1 ansible_port={sshd.port} "
        f"ansible_user={sshd.user} ansible_ssh_private_key_file={sshd.client_key}\n"
        "[gpu:vars]\n"
        f"ansible_ssh_common_args='-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=accept-new'\n"
    )
    (host,) = load_inventory(str(inventory)).hosts
    with connect(host) as t:
        assert t.run(["true"]).returncode == 0
    assert kh.read_text() == sshd.known_hosts_line


def test_accept_new_writes_user_known_hosts_by_default(
    sshd: Sshd, tmp_path: Path, isolated_home: Path
) -> None:
    with connect(sshd.host(tmp_path, known_hosts_files=()), accept_new_host_keys=True) as t:
        assert t.run(["true"]).returncode == 0
    kh = isolated_home / ".ssh" / "known_hosts"
    assert kh.read_text() == sshd.known_hosts_line
    assert stat.S_IMODE(kh.stat().st_mode) == 0o600


def test_changed_host_key_is_refused_even_with_accept_new(sshd: Sshd, tmp_path: Path) -> None:
    impostor = keygen(tmp_path / "old_host_key")
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    kh.write_text(f"[127.0.0.1]:{sshd.port} {public_line(impostor.with_suffix('.pub'))}\n")
    for accept in (False, True):
        with pytest.raises(HostKeyError) as exc:
            connect(host, accept_new_host_keys=accept)
        message = str(exc.value)
        assert f"Host key for [127.0.0.1]:{sshd.port} has changed" in message
        assert f"{kh}:1" in message and "ED25519 SHA256:" in message
        assert exc.value.hint is not None
        assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {kh}" in exc.value.hint
    assert kh.read_text().count("\n") == 1  # nothing was added


def test_hashed_known_hosts_entry(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    subprocess.run([SSH_KEYGEN, "-H", "-f", str(kh)], check=True, capture_output=True)
    assert kh.read_text().startswith("|1|")
    with connect(host) as t:
        assert t.run(["true"]).returncode == 0


def test_host_known_by_its_rsa_key_only(sshd: Sshd, tmp_path: Path) -> None:
    # The server prefers ED25519; the client must ask for the type on record, as ssh does.
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    kh.write_text(f"[127.0.0.1]:{sshd.port} {public_line(sshd.rsa_host_key_pub)}\n")
    with connect(host) as t:
        assert t.run(["true"]).returncode == 0
    assert kh.read_text().count("\n") == 1


def test_hash_known_hosts_from_ssh_config(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  HashKnownHosts yes\n")
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    kh.write_text("")
    with connect(host, accept_new_host_keys=True, ssh_config_path=str(config)) as t:
        assert t.run(["true"]).returncode == 0
    recorded = kh.read_text()
    assert recorded.startswith("|1|") and "127.0.0.1" not in recorded
    # OpenSSH itself finds the hashed entry
    found = subprocess.run(
        [SSH_KEYGEN, "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(kh)], capture_output=True, text=True
    )
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout


def test_known_hosts_patterns_and_revoked_keys(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    key = public_line(sshd.host_key_pub)
    kh.write_text(f"[127.0.0.*]:*,!other {key}\n")  # wildcards, as OpenSSH allows
    with connect(host) as t:
        assert t.run(["true"]).returncode == 0
    kh.write_text(f"[127.0.0.*]:*,![127.0.0.1]:{sshd.port} {key}\n")  # negated: no match, so unknown
    with pytest.raises(HostKeyError, match="is not known"):
        connect(host)
    kh.write_text(f"{sshd.known_hosts_line}@revoked * {key}\n")
    with pytest.raises(HostKeyError, match="marked as revoked"):
        connect(host, accept_new_host_keys=True)


def test_corrupt_known_hosts_lines_are_skipped(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(tmp_path)
    kh = Path(host.known_hosts_files[0])
    kh.write_text("garbage\n[127.0.0.1]:1 ssh-ed25519 !!notbase64!!\n" + sshd.known_hosts_line)
    with connect(host) as t:
        assert t.run(["true"]).returncode == 0


# --------------------------------------------------------------------------- ~/.ssh/config


def test_ssh_config_user_port_identity(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host gpu-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n"
    )
    host = InventoryHost(
        name="gpu0",
        address="gpu-alias",
        port_defaulted=True,
        known_hosts_files=(str(sshd.known_hosts(tmp_path)),),
    )
    with connect(host, ssh_config_path=str(config)) as t:
        assert t.run(["id", "-un"]).stdout.decode().strip() == sshd.user
        assert t.endpoint.port == sshd.port and t.endpoint.hostname == "127.0.0.1"


def test_inventory_values_take_precedence_over_ssh_config(sshd: Sshd, tmp_path: Path) -> None:
    wrong_key = keygen(tmp_path / "wrong_key")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host 127.0.0.1\n  Port {free_port()}\n  User nobody-here\n  IdentityFile {wrong_key}\n"
    )
    with connect(sshd.host(tmp_path), ssh_config_path=str(config)) as t:
        assert t.run(["id", "-un"]).stdout.decode().strip() == sshd.user
        assert t.endpoint.port == sshd.port and t.endpoint.user == sshd.user
        # the inventory's key is offered before the config's
        assert t.endpoint.identity_files == (str(sshd.client_key), str(wrong_key))


def test_missing_explicit_ssh_config(sshd: Sshd, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such ssh config file"):
        connect(sshd.host(tmp_path), ssh_config_path=str(tmp_path / "nope"))


def test_proxy_jump_through_the_same_sshd(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.client_key}\n"
        f"Host behind\n  HostName 127.0.0.1\n  Port {sshd.port}\n  ProxyJump bastion\n"
    )
    host = sshd.host(tmp_path, address="behind", port_defaulted=True)
    before = sshd.accepted_logins()
    with connect(host, ssh_config_path=str(config)) as t:
        assert t.via == ("bastion",)
        assert t.run(["echo", "behind"]).stdout == b"behind\n"
        # two logins (bastion, then the target through a direct-tcpip channel of the first)
        deadline = time.monotonic() + 5
        while sshd.accepted_logins() < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sshd.accepted_logins() == before + 2


def test_proxy_jump_from_inventory_args(sshd: Sshd, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host bastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n  IdentityFile {sshd.client_key}\n"
    )
    host = sshd.host(tmp_path, proxy_jump=f"{sshd.user}@bastion")
    with connect(host, ssh_config_path=str(config)) as t:
        assert t.via == (f"{sshd.user}@bastion",)
        assert t.run(["true"]).returncode == 0


def test_proxy_jump_cannot_reach_target(sshd: Sshd, tmp_path: Path) -> None:
    closed = free_port()
    host = sshd.host(tmp_path, port=closed, proxy_jump=f"{sshd.user}@127.0.0.1:{sshd.port}")
    config = tmp_path / "ssh_config"
    config.write_text(f"Host 127.0.0.1\n  IdentityFile {sshd.client_key}\n")
    with pytest.raises(HostUnreachable, match=f"could not reach 127.0.0.1:{closed}"):
        connect(host, ssh_config_path=str(config))


def test_unknown_jump_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(tmp_path, proxy_jump=f"{sshd.user}@127.0.0.1:{sshd.port}")
    Path(host.known_hosts_files[0]).write_text("")
    with pytest.raises(
        HostKeyError, match=f"^jump host {sshd.user}@127.0.0.1:{sshd.port}: Host key .* not known"
    ):
        connect(host)


def test_unreachable_jump_host_is_named(sshd: Sshd, tmp_path: Path) -> None:
    closed = free_port()
    host = sshd.host(tmp_path, proxy_jump=f"bastion:{closed},{sshd.user}@127.0.0.1:{sshd.port}")
    with pytest.raises(HostUnreachable, match=f"^jump host bastion:{closed}: ") as exc:
        connect(host, ssh_config_path=str(_config(tmp_path, "Host bastion\n  HostName 127.0.0.1\n")))
    assert "connection refused" in str(exc.value)


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return path


def test_ssh_args_with_known_hosts_file_are_honoured_from_an_inventory(sshd: Sshd, tmp_path: Path) -> None:
    kh = sshd.known_hosts(tmp_path)
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        f"""\
all:
  children:
    gpu:
      hosts:
        gpu0:
          ansible_host: 127.0.0.1
          ansible_port: {sshd.port}
      vars:
        ansible_user: {sshd.user}
        ansible_ssh_private_key_file: {sshd.client_key}
        ansible_ssh_extra_args: -oUserKnownHostsFile={kh}
"""
    )
    (host,) = load_inventory(str(inventory)).hosts
    assert host.known_hosts_files == (str(kh),)
    with connect(host) as t:
        assert t.run(["true"]).returncode == 0


def test_no_paramiko_log_output_reaches_the_terminal(silent_listener: int, tmp_path: Path) -> None:
    # paramiko logs handshake failures with a traceback; outside pytest (which captures logging) it
    # would reach stderr through logging's last-resort handler unless the transport prevents it.
    script = (
        "import sys\n"
        "from remediator.inventory import InventoryHost\n"
        "from remediator.transport.base import HostUnreachable\n"
        "from remediator.transport.ssh import connect\n"
        "try:\n"
        f"    connect(InventoryHost('gpu0', '127.0.0.1', {silent_listener}), connect_timeout=0.5)\n"
        "except HostUnreachable as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert "timed out waiting for the SSH banner" in proc.stdout
    assert proc.stderr == ""
