"""Become, as the inventory asks for it: the probe and the check run as root (or `ansible_become_user`)
through `sudo -n`, in the same single round trip, and never wait for a password.

The settings are Ansible's (`ansible_become`, `ansible_become_method`, `ansible_become_user`,
`ansible_become_flags`, `ansible_become_exe`); only the sudo method is run. sudo's words become part of
an argument list, never of a shell string. A host whose sudo wants a password fails alone, saying so.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from remediator.errors import RemediatorError

if TYPE_CHECKING:
    from remediator.inventory import InventoryHost

#: A user name as useradd and Ansible's become_user take it (with a leading letter or `_`, no `-` first).
USER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$")

#: What a sudo that needs a password prints under -n (sudo 1.8 and 1.9), or without -n and no terminal.
_PASSWORD_MARKERS = ("a password is required", "a terminal is required", "no tty present")
#: What a sudo that refuses the user or the command prints.
_REFUSED_MARKERS = ("is not in the sudoers file", "is not allowed to execute", "may not run sudo",
                    "unknown user")

NO_PROMPT_HINT = (
    "the probe never types a password: give {user} passwordless sudo for it (a sudoers NOPASSWD entry, e.g. "
    "`{user} ALL=(ALL) NOPASSWD: ALL` in /etc/sudoers.d/), or set ansible_become: false for this host to "
    "probe without privileges (places it cannot read are then named in the facts); --ask-become-pass and "
    "vault become passwords are not supported"
)


class BecomeError(RemediatorError):
    """Becoming another user failed on a host: sudo wants a password, refuses, or the method is unsupported."""

    def __init__(self, message: str, *, host: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.host = host


@dataclass(frozen=True)
class Become:
    """How to run a command as another user on one host: `exe -n flags -u user -- argv`."""

    user: str = "root"
    flags: tuple[str, ...] = ("-H",)
    exe: str = "sudo"
    login_user: str | None = None  # who sudo runs as: named in the password error

    def prefix(self, user: str | None = None) -> tuple[str, ...]:
        """The words in front of a command to run it as `user` (default: the become user); () when the
        login user already is that user (sudo would change nothing)."""
        who = user or self.user
        if not USER_RE.match(who):
            raise ValueError(f"{who!r} is not a user name")
        if who == self.login_user:
            return ()
        return (self.exe, "-n", *self.flags, "-u", who, "--")

    def wrap(self, argv: tuple[str, ...], user: str | None = None) -> tuple[str, ...]:
        return (*self.prefix(user), *argv)


def become_of(host: InventoryHost, *, enabled: bool | None = None) -> Become | None:
    """The host's become settings, or None without `ansible_become` (`enabled` overrides it).

    Raises BecomeError (this host's error) for a method other than sudo, or a become user that is no
    user name. `ansible_become_flags` replace sudo's default `-H` as in Ansible; `-S` is dropped (stdin
    carries the script, never a password) and `-n` is always given.
    """
    if not (host.become if enabled is None else enabled):
        return None
    av = host.ansible_vars
    method = str(av.get("ansible_become_method") or "sudo")
    if method != "sudo":
        raise BecomeError(
            f"become method {method!r} is not supported for the probe and the check",
            host=host.name,
            hint="su (and the other methods) need a password typed in, which remediate never does: use "
            "ansible_become_method: sudo with a NOPASSWD entry for the login user, or ansible_become: false",
        )
    user = str(av.get("ansible_become_user") or "root")
    if not USER_RE.match(user):
        raise BecomeError(f"ansible_become_user {user!r} is not a user name", host=host.name)
    raw = av.get("ansible_become_flags")
    try:
        words = shlex.split(str(raw)) if raw is not None else ["-H"]
    except ValueError as exc:
        raise BecomeError(f"cannot split ansible_become_flags {raw!r}: {exc}", host=host.name) from None
    flags = tuple(w for w in words if w not in ("-S", "--stdin", "-n", "--non-interactive"))
    exe = str(av.get("ansible_become_exe") or "sudo")
    return Become(user=user, flags=flags, exe=exe, login_user=host.user)


def check_become_failure(returncode: int, stderr: str, become: Become | None, *, host: str,
                         user: str | None = None) -> None:
    """Raise BecomeError when a command run through sudo failed because of sudo itself."""
    if become is None or returncode == 0:
        return
    who = user or become.user
    login = become.login_user or "the login user"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    said = next((line for line in lines if any(m in line for m in _PASSWORD_MARKERS)), None)
    if said is not None:
        raise BecomeError(
            f"sudo on the host wants a password to run as {who} ({said[:200]})",
            host=host,
            hint=NO_PROMPT_HINT.format(user=login),
        )
    said = next((line for line in lines if any(m in line for m in _REFUSED_MARKERS)), None)
    if said is not None:
        raise BecomeError(
            f"sudo refused to run the command as {who}: {said[:200]}",
            host=host,
            hint=f"allow {login} to run commands as {who} without a password in /etc/sudoers.d/, or set "
            "ansible_become: false for this host",
        )
    if returncode == 127 and any(become.exe in line and "not found" in line for line in lines):
        raise BecomeError(
            f"{become.exe} is not installed on the host (ansible_become is set)",
            host=host,
            hint="install sudo there, or set ansible_become: false for this host",
        )
