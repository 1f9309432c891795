"""known_hosts files are read once per change, and keys decoded only for the lines that name the host.

A fleet checks every host's key against the same files; reading and decoding every line for every
connection made the checks quadratic in the fleet's size. The cache must never hide a change: a key
replaced in place (same size), a line revoked, an entry removed all count at the next connection.
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from remediator.transport import ssh
from remediator.transport.base import HostKeyError
from remediator.transport.ssh import KnownHosts


def keys() -> tuple[paramiko.PKey, paramiko.PKey]:
    # Two real ed25519 public keys (the same length, so a swap keeps the file's size).
    a = paramiko.Ed25519Key(data=bytes.fromhex(
        "0000000b7373682d6564323535313900000020" + "11" * 32))  # fmt: skip
    b = paramiko.Ed25519Key(data=bytes.fromhex(
        "0000000b7373682d6564323535313900000020" + "22" * 32))  # fmt: skip
    return a, b


def line(name: str, key: paramiko.PKey, marker: str = "") -> str:
    return f"{marker}{name} {key.get_name()} {key.get_base64()}\n"


def test_a_key_replaced_in_place_is_seen_at_once(tmp_path: Path) -> None:
    a, b = keys()
    path = tmp_path / "known_hosts"
    path.write_text(line("[gpu01]:2222", a) + line("[gpu02]:2222", a))
    known = KnownHosts([str(path)], system_files=())
    known.verify("[gpu01]:2222", a, accept_new=False)
    path.write_text(line("[gpu01]:2222", b) + line("[gpu02]:2222", a))  # same size, new key
    with pytest.raises(HostKeyError, match="has changed"):
        known.verify("[gpu01]:2222", a, accept_new=False)
    known.verify("[gpu01]:2222", b, accept_new=False)


def test_revoked_and_removed_entries_count_at_the_next_check(tmp_path: Path) -> None:
    a, _ = keys()
    path = tmp_path / "known_hosts"
    path.write_text(line("[gpu01]:2222", a))
    known = KnownHosts([str(path)], system_files=())
    known.verify("[gpu01]:2222", a, accept_new=False)
    path.write_text(line("[gpu01]:2222", a, "@revoked ") + line("[gpu01]:2222", a))
    with pytest.raises(HostKeyError, match="revoked"):
        known.verify("[gpu01]:2222", a, accept_new=False)
    path.write_text("")
    with pytest.raises(HostKeyError, match="not known"):
        known.verify("[gpu01]:2222", a, accept_new=False)


def test_only_the_lines_naming_the_host_are_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = keys()
    path = tmp_path / "known_hosts"
    path.write_text("".join(line(f"[gpu{i:04d}]:22", a) for i in range(500)) + "[bad]:22 ssh-ed25519 !!!\n")
    decoded: list[str] = []
    real = paramiko.PKey.from_type_string

    def counting(key_type: str, data: bytes) -> paramiko.PKey:
        decoded.append(key_type)
        return real(key_type, data)

    monkeypatch.setattr(paramiko.PKey, "from_type_string", counting)
    ssh._host_key.cache_clear()
    known = KnownHosts([str(path)], system_files=())
    for _ in range(3):
        assert [e.lineno for e in known.entries("[gpu0042]:22")] == [43]
    assert known.entries("[bad]:22") == []  # a corrupt line is skipped, as ssh does
    assert len(decoded) == 1  # one line named the host, decoded once; the bad one fails base64 first
    # read_known_hosts (the whole file, every key) still reads all but the corrupt line.
    assert len(ssh.read_known_hosts(str(path))) == 500
