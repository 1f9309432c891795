"""One lab host's OpenSSH server: its keys, its sshd_config and the script that starts it in its namespace.

The script runs under `unshare --mount --uts --propagation private`: it mounts the host's private copies
(overlays of the scenario's template over /etc, /usr, /var and private /opt, /home, /root, /proc/driver,
/run, /tmp), names the host, and execs sshd, which keeps the namespace alive for every session.
"""

from __future__ import annotations

import base64
import shlex
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SSHD = "/usr/sbin/sshd"
# Host path -> (layer name, whether the outer machine's own directory lies under the template's layer).
OVERLAYS: tuple[tuple[str, str, bool], ...] = (
    ("/etc", "etc", True),
    ("/usr", "usr", True),
    ("/var", "var", True),
    ("/opt", "opt", False),
    ("/home", "home", False),
    ("/root", "root", False),
    ("/proc/driver", "procdriver", False),
)


@dataclass(frozen=True)
class KeyPair:
    private_openssh: bytes
    public_line: str  # "ssh-ed25519 AAAA... comment"

    @property
    def public_blob(self) -> str:
        return self.public_line.split()[1]


def keypair(comment: str) -> KeyPair:
    """A fresh ed25519 key pair in OpenSSH formats."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return KeyPair(private, f"{public.decode()} {comment}")


def fingerprint(public_line: str) -> str:
    import hashlib

    digest = hashlib.sha256(base64.b64decode(public_line.split()[1])).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def sshd_config(name: str, port: int, *, root_login: bool) -> str:
    return (
        f"# remediate lab host {name}: private to its mount namespace, written by `remediate lab up`.\n"
        "ListenAddress 127.0.0.1\n"
        f"Port {port}\n"
        "AddressFamily inet\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        "PubkeyAuthentication yes\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        f"PermitRootLogin {'prohibit-password' if root_login else 'no'}\n"
        "AuthorizedKeysFile .ssh/authorized_keys\n"
        # PAM would need a session stack of the outer machine's; keys alone need none of it.
        "UsePAM no\n"
        "PidFile none\n"
        "PrintMotd no\n"
        "PrintLastLog no\n"
        "MaxStartups 100:30:200\n"
        "MaxSessions 64\n"
        "AcceptEnv LANG LC_*\n"
        "Subsystem sftp internal-sftp\n"
    )


def start_script(name: str, scenario: str, template: Path, host_dir: Path, state: Path) -> str:
    """The shell script that mounts the host's private files and execs sshd (run inside the namespace)."""
    q = shlex.quote
    mounts: list[tuple[str, str]] = []  # (target, command)
    for target, layer, with_outer in OVERLAYS:
        lower = f"{template}/{layer}" + (f":{target}" if with_outer else "")
        opts = f"lowerdir={lower},upperdir={host_dir}/upper/{layer},workdir={host_dir}/work/{layer}"
        mounts.append((target, f"mount -t overlay overlay -o {q(opts)} {target}"))
    mounts.append(("/run", "mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs /run"))
    mounts.append(("/tmp", "mount -t tmpfs -o mode=1777,nosuid,nodev,size=1g tmpfs /tmp"))  # noqa: S108
    # A mount over a directory that holds the state dir hides the template and upper dirs from every
    # later mount: do those last (state dirs under /etc, /usr, /var are refused before we get here).
    state_s = str(state)
    mounts.sort(key=lambda m: state_s == m[0] or state_s.startswith(m[0].rstrip("/") + "/"))
    lines = [
        "#!/bin/sh",
        f"# remediate lab host {name} (scenario {scenario}), run by `unshare --mount --uts`.",
        "set -e",
        f"hostname {q(name)}",
        *[cmd for _, cmd in mounts],
        "mkdir -m 0755 /run/sshd",
        "mkdir -m 1777 /run/lock",
        f"exec {SSHD} -D -f /etc/ssh/sshd_config -E /var/log/sshd.log",
    ]
    return "\n".join(lines) + "\n"


def banner(port: int, timeout: float = 2.0) -> bytes:
    """The first bytes an SSH server on 127.0.0.1:port sends, or b'' when none answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            data = b""
            while b"\n" not in data and len(data) < 256:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
            return data
    except OSError:
        return b""
