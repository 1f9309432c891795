"""SSH transport (paramiko): how the probe reaches an inventory host, as ansible-playbook's ssh would.

Host keys are checked against the OpenSSH known_hosts files (refusing unknown and changed keys unless
told to accept new ones), ~/.ssh/config is honoured below the inventory's own variables, and every
paramiko or socket exception is translated here into the typed errors of `transport.base`. Every wait
on the host has a deadline and every output stream a cap, so a host that hangs or floods fails alone.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import getpass
import logging
import os
import re
import secrets
import shlex
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paramiko

from remediator.errors import InputError
from remediator.inventory import InventoryHost
from remediator.transport.base import (
    DEFAULT_MAX_STDERR,
    DEFAULT_MAX_STDOUT,
    DEFAULT_PUT_TIMEOUT,
    DEFAULT_RUN_TIMEOUT,
    READ_CHUNK,
    AuthenticationError,
    CommandResult,
    CommandTimeout,
    HostKeyError,
    HostUnreachable,
    OutputTooLarge,
    TransportError,
    format_size,
)

# Paramiko logs handshake failures with tracebacks; with no handler configured Python's last-resort
# handler would print them to the terminal. Our errors already say what happened.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SYSTEM_KNOWN_HOSTS = ("/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2")
USER_KNOWN_HOSTS = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
DEFAULT_IDENTITIES = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")
USER_SSH_CONFIG = "~/.ssh/config"
_MAX_JUMPS = 8
#: Seconds without traffic before paramiko sends a keepalive request; with TCP_USER_TIMEOUT below, a
#: host that died or vanished behind a firewall is noticed on an idle connection too.
KEEPALIVE_INTERVAL = 15
#: Data the host's kernel has not acknowledged for this long ends the connection (Linux only):
#: otherwise TCP retransmits for about a quarter of an hour before giving up on a dead peer.
TCP_USER_TIMEOUT_S = 60
#: After a deadline, how long closing the channel may take before the whole connection is dropped.
CLOSE_GRACE = 5.0

# known_hosts files are appended to from several fleet worker threads at once.
_KNOWN_HOSTS_WRITE_LOCK = threading.Lock()


# --------------------------------------------------------------------------- known_hosts


@dataclass(frozen=True)
class KnownHostEntry:
    path: str
    lineno: int
    marker: str | None  # "@revoked", "@cert-authority" or None
    patterns: tuple[str, ...]
    key: paramiko.PKey


def key_label(key: paramiko.PKey) -> str:
    """`ED25519 SHA256:...` as OpenSSH prints a key."""
    name = key.get_name()
    kind = {"ssh-ed25519": "ED25519", "ssh-rsa": "RSA"}.get(name)
    if kind is None:
        kind = "ECDSA" if name.startswith("ecdsa-") else name.upper()
    return f"{kind} {key.fingerprint}"


def known_hosts_name(hostname: str, port: int) -> str:
    """The name OpenSSH records a host under: `host` on port 22, `[host]:port` elsewhere."""
    hostname = hostname.lower()
    return hostname if port == 22 else f"[{hostname}]:{port}"


def read_known_hosts(path: str) -> list[KnownHostEntry]:
    """Parse one known_hosts file, skipping lines we cannot read (as ssh does) rather than failing."""
    entries: list[KnownHostEntry] = []
    for line in _known_host_lines(path):
        key = _host_key(line[3], line[4])
        if key is not None:
            entries.append(KnownHostEntry(path, line[0], line[1], line[2], key))
    return entries


# (line number, marker, host patterns, key type, base64 key) of one known_hosts line.
_KnownHostLine = tuple[int, str | None, tuple[str, ...], str, str]
# Each file's lines, by path, with the (inode, size, mtime, ctime) they were read at: a fleet checks every
# host's key against the same files, so they are read once, and again only when they change (an
# accepted new key appends to one). Keys are decoded only for the lines that name the host: decoding
# every line for every connection made a fleet's host-key checks quadratic in its size.
_KNOWN_HOSTS_CACHE: dict[str, tuple[tuple[int, int, int, int], tuple[_KnownHostLine, ...]]] = {}
_KNOWN_HOSTS_CACHE_LOCK = threading.Lock()


def _known_host_lines(path: str) -> tuple[_KnownHostLine, ...]:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            st = os.fstat(fh.fileno())
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            with _KNOWN_HOSTS_CACHE_LOCK:
                cached = _KNOWN_HOSTS_CACHE.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            text = fh.read()
    except OSError:
        return ()
    lines: list[_KnownHostLine] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        marker = None
        if fields[0].startswith("@"):
            marker, fields = fields[0], fields[1:]
        if len(fields) < 3:
            continue
        lines.append((lineno, marker, tuple(fields[0].split(",")), fields[1], fields[2]))
    result = tuple(lines)
    with _KNOWN_HOSTS_CACHE_LOCK:
        _KNOWN_HOSTS_CACHE[path] = (stamp, result)
    return result


@functools.lru_cache(maxsize=4096)
def _host_key(key_type: str, data: str) -> paramiko.PKey | None:
    try:
        return paramiko.PKey.from_type_string(key_type, base64.b64decode(data, validate=True))
    except Exception:  # unknown key types and corrupt lines are skipped, as ssh does
        return None


def _pattern_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("|1|"):
        try:
            return secrets.compare_digest(paramiko.HostKeys.hash_host(name, pattern), pattern)
        except Exception:
            return False
    if "*" not in pattern and "?" not in pattern:
        return pattern.lower() == name
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.fullmatch(regex, name) is not None


def _entry_matches(entry: KnownHostEntry, name: str) -> bool:
    return _patterns_match(entry.patterns, name)


def _patterns_match(patterns: tuple[str, ...], name: str) -> bool:
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if _pattern_matches(pattern[1:] if negated else pattern, name):
            if negated:
                return False
            matched = True
    return matched


class KnownHosts:
    """The known_hosts files consulted for one connection, and where a newly accepted key is written."""

    def __init__(self, user_files: Sequence[str], system_files: Sequence[str] = SYSTEM_KNOWN_HOSTS) -> None:
        self.user_files = tuple(os.path.expanduser(p) for p in user_files) or tuple(
            os.path.expanduser(p) for p in USER_KNOWN_HOSTS
        )
        self.system_files = tuple(system_files)

    @property
    def write_file(self) -> str:
        return self.user_files[0]

    def entries(self, name: str) -> list[KnownHostEntry]:
        found: list[KnownHostEntry] = []
        for path in (*self.user_files, *self.system_files):
            for lineno, marker, patterns, key_type, data in _known_host_lines(path):
                if not _patterns_match(patterns, name):
                    continue
                key = _host_key(key_type, data)
                if key is not None:
                    found.append(KnownHostEntry(path, lineno, marker, patterns, key))
        return found

    def verify(self, name: str, key: paramiko.PKey, *, accept_new: bool, hash_name: bool = False) -> None:
        """Accept a recorded key, record an unknown one when `accept_new`, refuse everything else."""
        entries = self.entries(name)
        blob = key.asbytes()
        for e in entries:
            if e.marker == "@revoked" and e.key.asbytes() == blob:
                raise HostKeyError(
                    f"Host key for {name} ({key_label(key)}) is marked as revoked in {e.path}:{e.lineno}",
                    hint="the key was revoked on purpose; ask the host's owner before connecting",
                )
        same_type = [e for e in entries if e.marker is None and e.key.get_name() == key.get_name()]
        if any(e.key.asbytes() == blob for e in same_type):
            return
        if same_type:
            old = same_type[0]
            raise HostKeyError(
                f"Host key for {name} has changed and you have requested strict checking: the server "
                f"sent {key_label(key)}, {old.path}:{old.lineno} records {key_label(old.key)}",
                hint="if the host was reinstalled, remove the old key with: "
                f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(old.path)}",
            )
        if not accept_new:
            raise HostKeyError(
                f"Host key for {name} is not known ({key_label(key)}); refusing to connect",
                hint="check the fingerprint with the host's owner, then accept new host keys once "
                f"(StrictHostKeyChecking=accept-new) to record it in {self.write_file}",
            )
        self.add(name, key, hash_name=hash_name)

    def add(self, name: str, key: paramiko.PKey, *, hash_name: bool = False) -> None:
        path = self.write_file
        host_field = paramiko.HostKeys.hash_host(name) if hash_name else name
        line = f"{host_field} {key.get_name()} {key.get_base64()}\n"
        try:
            with _KNOWN_HOSTS_WRITE_LOCK:
                parent = os.path.dirname(path)
                if parent and not os.path.isdir(parent):
                    os.makedirs(parent, mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    size = os.fstat(fd).st_size
                    if size and os.pread(fd, 1, size - 1) != b"\n":
                        line = "\n" + line
                    os.write(fd, line.encode())
                finally:
                    os.close(fd)
        except OSError as exc:
            raise HostKeyError(
                f"cannot record the host key for {name} in {path}: {exc.strerror or exc}",
                hint="make the file writable, or name a writable one with -o UserKnownHostsFile=FILE",
            ) from None


# --------------------------------------------------------------------------- ssh config


@dataclass(frozen=True)
class Endpoint:
    """One SSH hop after merging inventory values over ~/.ssh/config."""

    label: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    explicit_key: str | None
    identities_only: bool
    host_key_name: str
    known_hosts: tuple[str, ...]
    strict_host_key_checking: str | None
    hash_known_hosts: bool
    proxy_jump: str | None

    @property
    def where(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{host}:{self.port}"


def load_ssh_config(path: str | None = None) -> paramiko.SSHConfig:
    """The user's ssh config (or `path`); a missing default file is an empty config."""
    full = os.path.expanduser(path or USER_SSH_CONFIG)
    if not os.path.exists(full):
        if path is not None:
            raise InputError(full, "no such ssh config file")
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(full)
    except Exception as exc:
        raise InputError(full, f"cannot read ssh config: {exc}") from None


def _parse_jump(spec: str) -> tuple[str | None, str, int | None]:
    """`[user@]host[:port]` or `ssh://[user@]host[:port]`, as ssh -J takes it."""
    rest = spec.strip().removeprefix("ssh://")
    user, _, hostport = rest.rpartition("@")
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", hostport) or re.fullmatch(r"([^:]+)(?::(\d+))?", hostport)
    if not m or not m.group(1):
        raise InputError(
            "ProxyJump", f"cannot read jump host {spec!r}", hint="write it as [user@]host[:port]"
        )
    return (user or None), m.group(1), int(m.group(2)) if m.group(2) else None


def resolve_endpoint(
    config: paramiko.SSHConfig,
    alias: str,
    *,
    label: str,
    port: int | None = None,
    user: str | None = None,
    key_file: str | None = None,
    proxy_jump: str | None = None,
    known_hosts: Sequence[str] = (),
    strict_host_key_checking: str | None = None,
) -> Endpoint:
    """Merge explicit (inventory) values over the ssh config's, as ansible's ssh -o options do."""
    try:
        opts = config.lookup(alias)
    except Exception as exc:
        raise InputError("ssh config", f"cannot apply it to {alias}: {exc}") from None
    hostname = str(opts.get("hostname", alias))
    if port is None:
        try:
            port = int(opts.get("port", 22))
        except ValueError:
            raise InputError(
                "ssh config", f"Port {opts.get('port')!r} is not a number", field=alias
            ) from None
    user = user or opts.get("user") or getpass.getuser()
    identities: list[str] = [os.path.expanduser(key_file)] if key_file else []
    for path in opts.get("identityfile", []):
        full = os.path.expanduser(path)
        if full not in identities:
            identities.append(full)
    jump = proxy_jump if proxy_jump is not None else opts.get("proxyjump")
    if jump is not None and jump.strip().lower() == "none":
        jump = None
    config_known = tuple(os.path.expanduser(p) for p in opts.get("userknownhostsfile", "").split())
    alias_name = opts.get("hostkeyalias")
    return Endpoint(
        label=label,
        hostname=hostname,
        port=port,
        user=str(user),
        identity_files=tuple(identities),
        explicit_key=os.path.expanduser(key_file) if key_file else None,
        identities_only=str(opts.get("identitiesonly", "no")).lower() == "yes",
        host_key_name=alias_name.lower() if alias_name else known_hosts_name(hostname, port),
        known_hosts=tuple(known_hosts) or config_known,
        strict_host_key_checking=(strict_host_key_checking or opts.get("stricthostkeychecking") or None),
        hash_known_hosts=str(opts.get("hashknownhosts", "no")).lower() == "yes",
        proxy_jump=jump or None,
    )


# --------------------------------------------------------------------------- connecting


def connect(
    host: InventoryHost,
    *,
    accept_new_host_keys: bool = False,
    connect_timeout: float = 10.0,
    ssh_config_path: str | None = None,
) -> SSHTransport:
    """Open an authenticated SSH connection to an inventory host (through its ProxyJump hosts, if any).

    `accept_new_host_keys` behaves like StrictHostKeyChecking=accept-new, as does an inventory's
    `StrictHostKeyChecking=accept-new` or `=no` (changed keys are refused in every case).
    """
    config = load_ssh_config(ssh_config_path)
    endpoint = resolve_endpoint(
        config,
        host.address,
        label=host.name,
        port=None if host.port_defaulted else host.port,
        user=host.user,
        key_file=host.private_key_file,
        proxy_jump=host.proxy_jump,
        known_hosts=host.known_hosts_files,
        strict_host_key_checking=host.strict_host_key_checking,
    )
    opener = _Opener(config, accept_new_host_keys, connect_timeout, host.known_hosts_files)
    transport, hops = opener.open(endpoint)
    return SSHTransport(host.name, transport, hops, endpoint, connect_timeout)


_Hop = tuple[str, paramiko.Transport]  # a jump host's label and its connection


class _Opener:
    def __init__(
        self, config: paramiko.SSHConfig, accept_new: bool, timeout: float, known_hosts: Sequence[str]
    ) -> None:
        self.config = config
        self.accept_new = accept_new
        self.timeout = timeout
        # Jump hosts are checked against the same files the inventory named for the target.
        self.known_hosts = tuple(known_hosts)

    def open(self, ep: Endpoint, depth: int = 0) -> tuple[paramiko.Transport, list[_Hop]]:
        """Connect to `ep`; returns its transport and the jump transports under it, outermost first."""
        hops: list[_Hop] = []
        try:
            if ep.proxy_jump:
                sock: socket.socket | paramiko.Channel = self._via_jump(ep, hops, depth)
            else:
                sock = self._socket(ep)
            return self._session(sock, ep), hops
        except BaseException:
            for _, hop in reversed(hops):
                hop.close()
            raise

    def _via_jump(self, ep: Endpoint, hops: list[_Hop], depth: int) -> paramiko.Channel:
        if depth >= _MAX_JUMPS:
            raise InputError(
                "ProxyJump", f"more than {_MAX_JUMPS} jump hosts for {ep.label} (a loop in ~/.ssh/config?)"
            )
        jumps = [j.strip() for j in (ep.proxy_jump or "").split(",") if j.strip()]
        if not jumps:
            raise InputError("ProxyJump", f"empty jump host list {ep.proxy_jump!r} for {ep.label}")
        *earlier, last = jumps
        user, alias, port = _parse_jump(last)
        jump = resolve_endpoint(
            self.config,
            alias,
            label=last,
            port=port,
            user=user,
            # ssh -J a,b reaches b through a; a lone jump host keeps its own config's ProxyJump.
            proxy_jump=",".join(earlier) if earlier else None,
            known_hosts=self.known_hosts,
            strict_host_key_checking=ep.strict_host_key_checking,
        )
        try:
            jump_transport, jump_hops = self.open(jump, depth + 1)
        except TransportError as exc:
            if exc.message.startswith("jump host "):
                raise
            # Say which hop failed: "connection refused (10.0.0.1:22)" alone would read as the target.
            raise type(exc)(f"jump host {jump.label}: {exc.message}", hint=exc.hint) from None
        hops.extend(jump_hops)
        hops.append((jump.label, jump_transport))
        try:
            return jump_transport.open_channel(
                "direct-tcpip", (ep.hostname, ep.port), ("127.0.0.1", 0), timeout=self.timeout
            )
        except paramiko.ChannelException as exc:
            raise HostUnreachable(
                f"jump host {jump.label} could not reach {ep.where}: {exc.text or exc}",
                hint="check the address and port as the jump host sees them",
            ) from None
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise HostUnreachable(
                f"jump host {jump.label} could not open a channel to {ep.where}: {exc}"
            ) from None

    def _socket(self, ep: Endpoint) -> socket.socket:
        try:
            sock = socket.create_connection((ep.hostname, ep.port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise HostUnreachable(
                f"connection refused ({ep.where})", hint=f"is sshd running and listening on port {ep.port}?"
            ) from None
        except socket.gaierror as exc:
            raise HostUnreachable(
                f"cannot resolve {ep.hostname}: {exc.strerror or exc}",
                hint="check ansible_host in the inventory",
            ) from None
        except TimeoutError:
            raise HostUnreachable(
                f"timed out connecting to {ep.where} after {self.timeout:g}s",
                hint="check the address, the port and any firewall on the way",
            ) from None
        except OSError as exc:
            raise HostUnreachable(f"cannot connect to {ep.where}: {exc.strerror or exc}") from None
        # Small request/reply packets (open a channel, exec, exit status) otherwise wait out Nagle's
        # algorithm against delayed ACKs: about 40 ms per command.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
        if user_timeout is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, user_timeout, TCP_USER_TIMEOUT_S * 1000)
        return sock

    def _session(self, sock: socket.socket | paramiko.Channel, ep: Endpoint) -> paramiko.Transport:
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = self.timeout
            transport.handshake_timeout = self.timeout
            transport.auth_timeout = self.timeout
            self._prefer_known_key_types(transport, ep)
            _prefer_aead_ciphers(transport)
            self._handshake(transport, ep)
            key = transport.get_remote_server_key()
            strict = (ep.strict_host_key_checking or "").lower()
            self._known_hosts(ep).verify(
                ep.host_key_name,
                key,
                accept_new=self.accept_new or strict in ("accept-new", "no", "off"),
                hash_name=ep.hash_known_hosts,
            )
            _authenticate(transport, ep)
            transport.set_keepalive(KEEPALIVE_INTERVAL)
        except BaseException:
            transport.close()
            raise
        return transport

    def _known_hosts(self, ep: Endpoint) -> KnownHosts:
        return KnownHosts(ep.known_hosts or self.known_hosts)

    def _prefer_known_key_types(self, transport: paramiko.Transport, ep: Endpoint) -> None:
        # Ask for the key type we have on record (as ssh orders HostKeyAlgorithms), so a host known by its
        # RSA key is not reported as unknown because it also has an ED25519 one.
        known: list[str] = []
        for e in self._known_hosts(ep).entries(ep.host_key_name):
            if e.marker is None:
                names = (
                    ["rsa-sha2-512", "rsa-sha2-256"] if e.key.get_name() == "ssh-rsa" else [e.key.get_name()]
                )
                known.extend(n for n in names if n not in known)
        if not known:
            return
        options = transport.get_security_options()
        available = list(options.key_types)
        preferred = [k for k in known if k in available]
        if preferred:
            options.key_types = preferred + [k for k in available if k not in preferred]

    def _handshake(self, transport: paramiko.Transport, ep: Endpoint) -> None:
        # Banner and key exchange each get the connect timeout; start_client gives up without an
        # error after its own timeout, so it gets both and a failure is read from the transport after.
        try:
            transport.start_client(timeout=2 * self.timeout + 1)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise self._handshake_error(exc, ep) from None
        if not transport.is_active() or transport.host_key is None:
            failure = transport.get_exception()
            if failure is not None:
                raise self._handshake_error(failure, ep) from None
            raise HostUnreachable(
                f"timed out negotiating SSH with {ep.where} after {self.timeout:g}s",
                hint="the host answers but does not complete the key exchange",
            )

    def _handshake_error(self, exc: BaseException, ep: Endpoint) -> HostUnreachable:
        # paramiko wraps the socket error of a banner read in an SSHException; the cause tells which.
        cause = exc.__context__ if isinstance(exc, paramiko.SSHException) else exc
        if "banner" in str(exc):
            if isinstance(cause, TimeoutError):
                return HostUnreachable(
                    f"timed out waiting for the SSH banner from {ep.where} after {self.timeout:g}s",
                    hint="something accepts connections on that port but does not answer as sshd",
                )
            return HostUnreachable(
                f"connection to {ep.where} closed before the SSH banner"
                + (f" ({cause})" if cause is not None and str(cause) else ""),
                hint="sshd may refuse connections (MaxStartups, tcp wrappers) or this is not an SSH port",
            )
        if isinstance(exc, (EOFError, OSError)):
            return HostUnreachable(
                f"connection to {ep.where} closed during the SSH handshake ({exc or type(exc).__name__})"
            )
        return HostUnreachable(f"SSH negotiation with {ep.where} failed: {exc}")


#: AES-GCM first (OpenSSH has offered it since 6.2): one AEAD call per packet, where paramiko's default
#: aes128-ctr + hmac-sha2-256 computes the MAC and compares it byte by byte in Python, which is most of
#: what a connection's packets cost this process. The others stay offered, in paramiko's order.
AEAD_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _prefer_aead_ciphers(transport: paramiko.Transport) -> None:
    options = transport.get_security_options()
    available = list(options.ciphers)
    first = [c for c in AEAD_CIPHERS if c in available]
    options.ciphers = tuple(first + [c for c in available if c not in first])


# Private keys by (path, inode, size, mtime): a fleet's connections mostly use one key file, whose
# parse (and KDF, for bcrypt-protected OpenSSH keys that paramiko decrypts) is paid once, not per host.
_KEY_CACHE: dict[tuple[str, int, int, int], paramiko.PKey] = {}
_KEY_CACHE_LOCK = threading.Lock()


def _load_key(path: str) -> paramiko.PKey:
    """Load a private key; raises InputError naming the file, or PasswordRequiredException."""
    try:
        st = os.stat(path)
        stamp = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = None
    if stamp is not None:
        with _KEY_CACHE_LOCK:
            cached = _KEY_CACHE.get(stamp)
        if cached is not None:
            return cached
    key = _read_key(path)
    if stamp is not None:
        with _KEY_CACHE_LOCK:
            if len(_KEY_CACHE) > 64:
                _KEY_CACHE.clear()
            _KEY_CACHE[stamp] = key
    return key


def _read_key(path: str) -> paramiko.PKey:
    try:
        return paramiko.PKey.from_path(path)
    except (TypeError, paramiko.PasswordRequiredException):
        # cryptography says TypeError("password was not given ...") for encrypted keys
        raise paramiko.PasswordRequiredException(path) from None
    except FileNotFoundError:
        raise InputError(
            path, "private key file not found", hint="check ansible_ssh_private_key_file"
        ) from None
    except OSError as exc:
        raise InputError(path, f"cannot read private key file: {exc.strerror or exc}") from None
    except Exception as exc:
        raise InputError(
            path,
            f"not a private key paramiko can read ({type(exc).__name__})",
            hint="use an OpenSSH or PEM ED25519, ECDSA or RSA private key (not the .pub file)",
        ) from None


def _authenticate(transport: paramiko.Transport, ep: Endpoint) -> None:
    """Offer each key (explicit files, then agent keys, then default files) until one is accepted."""
    keys: list[tuple[str, Callable[[], paramiko.PKey]]] = []
    notes: list[str] = []
    files = list(ep.identity_files)
    if not files:
        files = [p for p in (os.path.expanduser(d) for d in DEFAULT_IDENTITIES) if os.path.exists(p)]
    for path in files:
        if path != ep.explicit_key and not os.path.exists(path):
            continue  # ssh also skips IdentityFile entries that are not there
        keys.append((path, lambda path=path: _load_key(path)))  # type: ignore[misc]
    agent: paramiko.Agent | None = None
    if os.environ.get("SSH_AUTH_SOCK") and not ep.identities_only:
        try:
            agent = paramiko.Agent()
            for agent_key in agent.get_keys():
                keys.append((f"agent key {agent_key.fingerprint}", lambda k=agent_key: k))  # type: ignore[misc]
        except paramiko.SSHException:
            notes.append("ssh-agent did not answer")
    try:
        tried: list[str] = []
        for label, load in keys:
            try:
                key = load()
            except paramiko.PasswordRequiredException:
                notes.append(
                    f"{label} is protected by a passphrase (load it with ssh-add {shlex.quote(label)})"
                )
                continue
            except InputError:
                if label == ep.explicit_key:
                    raise
                notes.append(f"{label} could not be read")
                continue
            try:
                remaining = transport.auth_publickey(ep.user, key)
            except paramiko.BadAuthenticationType as exc:
                raise AuthenticationError(
                    f"{ep.user}@{ep.where} does not accept public keys "
                    f"(allowed: {', '.join(exc.allowed_types)})",
                    hint="remediator logs in with keys only; set up key authentication for this user",
                ) from None
            except paramiko.AuthenticationException:
                tried.append(label)
                continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise AuthenticationError(
                    f"connection to {ep.where} closed during authentication as {ep.user} ({exc or 'EOF'})",
                    hint="the server may limit authentication attempts (MaxAuthTries); name the key to use "
                    "with ansible_ssh_private_key_file",
                ) from None
            if remaining:
                raise AuthenticationError(
                    f"{ep.user}@{ep.where} requires further authentication ({', '.join(remaining)})",
                    hint="remediator logs in with one key; multi-factor logins are not supported",
                )
            return
    finally:
        if agent is not None:
            agent.close()
    detail = f"; tried {', '.join(tried)}" if tried else "; no key to offer"
    if notes:
        detail += "; " + "; ".join(notes)
    first = ep.explicit_key or (tried[0] if tried and not tried[0].startswith("agent") else None)
    hint = (
        f"check that {first}.pub is in ~{ep.user}/.ssh/authorized_keys on the host, "
        "or set ansible_ssh_private_key_file to the right key"
        if first
        else "set ansible_ssh_private_key_file or IdentityFile in ~/.ssh/config, or load a key into ssh-agent"
    )
    raise AuthenticationError(f"permission denied (publickey) for {ep.user}@{ep.where}{detail}", hint=hint)


# --------------------------------------------------------------------------- the transport


class _Watchdog:
    """One deadline over paramiko calls that have none of their own.

    `Channel.exec_command` and `invoke_subsystem` wait for the server's reply without a timeout, and an
    SFTP request waits for its response the same way. At the deadline the watched channel is closed,
    which ends every wait on it (a request's reply, recv, the send window, the exit status). Closing
    sends a message, and a host that stopped reading its socket blocks even that; if the guarded work
    has not finished `grace` seconds later, `drop` closes the whole connection, which nothing in
    paramiko waits through.
    """

    def __init__(self, deadline: float, drop: Callable[[], None], grace: float) -> None:
        self.deadline = deadline
        self.expired = threading.Event()
        self._channel: paramiko.Channel | None = None
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._drop = drop
        self._grace = grace
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def watch(self, channel: paramiko.Channel) -> None:
        with self._lock:
            self._channel = channel
        if self.expired.is_set():
            _close_quietly(channel)

    def _fire(self) -> None:
        self.expired.set()
        with self._lock:
            channel = self._channel
        if channel is not None:
            # In its own thread: the close may block on a stuck socket, and the drop below must still come.
            threading.Thread(target=_close_quietly, args=(channel,), daemon=True).start()
        if not self._done.wait(self._grace):
            self._drop()

    def finish(self) -> None:
        self._done.set()
        self._timer.cancel()


def _close_quietly(channel: paramiko.Channel) -> None:
    with contextlib.suppress(Exception):  # the connection may already be gone; closing is best effort
        channel.close()


@dataclass
class _Sink:
    """What has been read of one stream; `overflowed` once it passed `cap` (and reading stopped)."""

    stream: str
    cap: int
    data: bytearray
    overflowed: bool = False


class SSHTransport:
    """An authenticated SSH connection to one host; safe to use from several threads.

    Every call is bounded: a command by its timeout (DEFAULT_RUN_TIMEOUT when none is given) and by
    what it may print (`max_stdout`, `max_stderr`), a file write by its own timeout. A command that
    floods an output stream drops the connection: paramiko keeps buffering whatever a host sends for
    a channel until the host acknowledges its close, so only closing the socket stops the reading.
    """

    def __init__(
        self,
        name: str,
        transport: paramiko.Transport,
        hops: Sequence[tuple[str, paramiko.Transport]],
        endpoint: Endpoint,
        channel_timeout: float,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self._transport = transport
        self._hops = list(hops)
        self._channel_timeout = channel_timeout
        self._sftp: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()
        self._closed = False
        self._dropped: str | None = None  # why the connection was dropped, for later calls' errors

    @property
    def via(self) -> tuple[str, ...]:
        """The jump hosts this connection goes through, outermost first (empty for a direct one)."""
        return tuple(label for label, _ in self._hops)

    def __repr__(self) -> str:
        return f"<SSHTransport {self.name} {self.endpoint.user}@{self.endpoint.where}>"

    def __enter__(self) -> SSHTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lost(self, what: str, exc: BaseException | None = None) -> HostUnreachable:
        detail = f": {exc}" if exc is not None and str(exc) else ""
        return HostUnreachable(f"connection to {self.endpoint.where} lost {what}{detail}")

    def _closed_error(self, what: str) -> TransportError:
        if self._dropped is not None:
            return TransportError(
                f"the connection to {self.name} was dropped ({self._dropped}) before {what}",
                hint="connect again; the host misbehaved on an earlier command",
            )
        return TransportError(f"the connection to {self.name} was closed before {what}")

    def _watchdog(self, limit: float, what: str) -> _Watchdog:
        return _Watchdog(time.monotonic() + limit, lambda: self._drop(f"{what} ran past its deadline"), CLOSE_GRACE)

    def _timed_out(self, program: str, limit: float, detail: str = "") -> CommandTimeout:
        return CommandTimeout(
            f"{program} ran past its {limit:g}s timeout on {self.endpoint.where}{detail}",
            hint="the command was abandoned; a hung driver can make nvidia-smi block, and a host that "
            "stops answering SSH requests is reported the same way",
        )

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = None,
        max_stdout: int = DEFAULT_MAX_STDOUT,
        max_stderr: int = DEFAULT_MAX_STDERR,
    ) -> CommandResult:
        if not argv:
            raise ValueError("run() needs a command")
        if self._closed:
            raise self._closed_error(f"running {argv[0]}")
        limit = DEFAULT_RUN_TIMEOUT if timeout is None else timeout
        watchdog = self._watchdog(limit, argv[0])
        sinks = (_Sink("stdout", max_stdout, bytearray()), _Sink("stderr", max_stderr, bytearray()))
        channel: paramiko.Channel | None = None
        try:
            channel = self._start(watchdog, shlex.join(argv), argv[0], limit)
            return self._collect(channel, watchdog, argv[0], limit, stdin, sinks)
        finally:
            if channel is not None:
                _close_quietly(channel)  # still under the watchdog: a stuck close ends with a drop
            watchdog.finish()

    def _open_session(self, watchdog: _Watchdog, timed_out: TransportError, what: str) -> paramiko.Channel:
        """A new session channel; `timed_out` when the reply did not come before the deadline."""
        # The channel-open reply has a timeout of its own: the connect timeout, or less when the deadline is nearer.
        budget = watchdog.remaining()
        wait = max(0.1, min(self._channel_timeout, budget))
        started = time.monotonic()
        try:
            return self._transport.open_session(timeout=wait)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if watchdog.expired.is_set() or (budget <= self._channel_timeout and time.monotonic() - started >= wait):
                raise timed_out from None
            raise self._lost(what, exc) from None

    def _start(self, watchdog: _Watchdog, command: str, program: str, limit: float) -> paramiko.Channel:
        """Open a session and send the exec request, both within the command's deadline."""
        channel = self._open_session(
            watchdog, self._timed_out(program, limit, " before the host opened a session for it"),
            f"before running {program}",
        )
        watchdog.watch(channel)
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            _close_quietly(channel)
            if watchdog.expired.is_set():
                raise self._timed_out(program, limit, "; the host never answered the request to start it") from None
            raise self._lost(f"starting {program}", exc) from None
        return channel

    def _collect(
        self,
        channel: paramiko.Channel,
        watchdog: _Watchdog,
        program: str,
        limit: float,
        stdin: bytes | None,
        sinks: tuple[_Sink, _Sink],
    ) -> CommandResult:
        errors: list[BaseException] = []
        settled = threading.Event()  # every helper ended, or a stream overflowed
        pending = [3]
        pending_lock = threading.Lock()

        def ended() -> None:
            with pending_lock:
                pending[0] -= 1
                if pending[0] == 0:
                    settled.set()

        def pump(recv: Callable[[int], bytes], sink: _Sink) -> None:
            try:
                while chunk := recv(READ_CHUNK):
                    sink.data += chunk
                    if len(sink.data) > sink.cap:
                        sink.overflowed = True
                        settled.set()
                        return  # reading no further is the point: the caller drops the connection
            except Exception as exc:  # surfaced below, after the command ends
                errors.append(exc)
            finally:
                ended()

        def feed() -> None:
            try:
                if stdin:
                    channel.sendall(stdin)
                channel.shutdown_write()
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the command exited without reading all its input, as with a closed pipe
            finally:
                ended()

        # Both streams are drained at once and only then is the exit status read: a command that fills
        # the stderr window while we wait on stdout would otherwise block forever (paramiko #448, #1778).
        stdout, stderr = sinks
        for target, args in ((pump, (channel.recv, stdout)), (pump, (channel.recv_stderr, stderr)), (feed, ())):
            threading.Thread(target=target, args=args, daemon=True).start()
        settled.wait(watchdog.remaining())
        flooded = next((s for s in sinks if s.overflowed), None)
        if flooded is not None:
            self._drop(f"{program} printed more than {format_size(flooded.cap)} on {flooded.stream}")
            raise OutputTooLarge(
                self.name, program, flooded.stream, flooded.cap, len(flooded.data), where=self.endpoint.where
            )
        if not settled.is_set() or watchdog.expired.is_set():
            raise self._timed_out(program, limit)
        if not channel.status_event.wait(watchdog.remaining()) or watchdog.expired.is_set():
            raise self._timed_out(program, limit)
        if errors:
            raise TransportError(f"reading the output of {program} failed: {errors[0]}")
        status = channel.recv_exit_status()
        if status == -1 and not self._transport.is_active():
            raise self._lost(f"while {program} ran")
        return CommandResult(status, bytes(stdout.data), bytes(stderr.data))

    def _sftp_client(self, watchdog: _Watchdog, timed_out: CommandTimeout) -> paramiko.SFTPClient | None:
        """The connection's SFTP session, opened under the put's deadline; None when the host has none."""
        with self._sftp_lock:
            if self._sftp is not None:
                channel = self._sftp.get_channel()
                if channel is not None:
                    watchdog.watch(channel)
                return self._sftp
            # SFTPClient.from_transport, by hand: its open_session and subsystem request have no timeout.
            channel = self._open_session(watchdog, timed_out, "opening SFTP")
            watchdog.watch(channel)
            try:
                channel.invoke_subsystem("sftp")
                self._sftp = paramiko.SFTPClient(channel)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                _close_quietly(channel)
                if watchdog.expired.is_set():
                    raise timed_out from None
                if isinstance(exc, paramiko.SSHException):
                    return None  # no SFTP subsystem on this host: put_file falls back to cat
                raise self._lost("opening SFTP", exc) from None
            return self._sftp

    def _forget_sftp(self, sftp: paramiko.SFTPClient) -> None:
        with self._sftp_lock:
            if self._sftp is sftp:
                self._sftp = None
        with contextlib.suppress(Exception):
            sftp.close()

    def put_file(self, data: bytes, remote_path: str, *, mode: int = 0o644, timeout: float | None = None) -> None:
        """Write `data` to `remote_path` atomically: a temporary name beside it, then a rename.

        The whole write, SFTP session set-up included, gets `timeout` (DEFAULT_PUT_TIMEOUT when None).
        A session that stalls is abandoned, for every write that was using it.
        """
        if self._closed:
            raise self._closed_error(f"writing {remote_path}")
        limit = DEFAULT_PUT_TIMEOUT if timeout is None else timeout
        tmp = f"{remote_path}.remediator-{secrets.token_hex(4)}.tmp"
        timed_out = CommandTimeout(
            f"writing {remote_path} on {self.endpoint.where} ran past its {limit:g}s timeout",
            hint="the host stopped answering SFTP requests; the write was abandoned",
        )
        watchdog = self._watchdog(limit, f"writing {remote_path}")
        try:
            sftp = self._sftp_client(watchdog, timed_out)
            if sftp is None:
                self._put_with_cat(data, tmp, remote_path, mode, max(0.1, watchdog.remaining()))
                return
            try:
                with sftp.open(tmp, "wb") as fh:
                    fh.chmod(mode)
                    fh.set_pipelined(True)
                    fh.write(data)
                sftp.posix_rename(tmp, remote_path)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if watchdog.expired.is_set():
                    self._forget_sftp(sftp)
                    raise timed_out from None
                with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                    sftp.remove(tmp)
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                raise TransportError(f"cannot write {remote_path} on {self.endpoint.where}: {reason}") from None
        finally:
            watchdog.finish()

    def _put_with_cat(self, data: bytes, tmp: str, remote_path: str, mode: int, timeout: float) -> None:
        script = 'umask 077 && cat > "$1" && chmod "$2" "$1" && mv -f "$1" "$3" || { rm -f "$1"; exit 1; }'
        result = self.run(["sh", "-c", script, "sh", tmp, f"{mode:o}", remote_path], stdin=data, timeout=timeout)
        if result.returncode != 0:
            reason = result.stderr.decode(errors="replace").strip() or f"exit status {result.returncode}"
            raise TransportError(f"cannot write {remote_path} on {self.endpoint.where}: {reason}")

    def _drop(self, reason: str) -> None:
        """Close the connection at once: a host that floods or stalls gets nothing more from us."""
        if self._dropped is None:
            self._dropped = reason
        self._close_connection()

    def _close_connection(self) -> None:
        self._closed = True
        # Transport.close is bounded (it marks everything closed before it waits on anything), and
        # after it no channel or SFTP close can block on a host that stopped reading its socket.
        self._transport.close()
        for _, hop in reversed(self._hops):
            hop.close()
        with self._sftp_lock:
            sftp, self._sftp = self._sftp, None
        if sftp is not None:
            with contextlib.suppress(Exception):
                sftp.close()

    def close(self) -> None:
        self._close_connection()


__all__ = [
    "CLOSE_GRACE",
    "KEEPALIVE_INTERVAL",
    "Endpoint",
    "KnownHosts",
    "SSHTransport",
    "connect",
    "key_label",
    "known_hosts_name",
    "load_ssh_config",
    "read_known_hosts",
    "resolve_endpoint",
]
