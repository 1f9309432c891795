"""Become for the probe and the check: the argv built from the inventory's settings (sudo -n in front of
the same single round trip), the per-host error when sudo wants a password, and the facts' unread places."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from remediator.facts import HostFacts
from remediator.inventory import InventoryHost
from remediator.matrix import load_matrix, parse_target
from remediator.probe import PROBE_ARGV, PROBE_BECOME_SCRIPT, ProbeError, parse_probe_document, probe_argv, probe_host
from remediator.transport.base import CommandResult
from remediator.transport.become import Become, BecomeError, become_of
from remediator.transport.fake import FakeTransport
from remediator.verify import VERIFY_ARGV, env_owner, verify_host


def inv_host(become: bool = True, user: str = "ubuntu", **av: Any) -> InventoryHost:
    return InventoryHost(name="gpu01", address="127.0.0.1", user=user, become=become,
                         ansible_vars=MappingProxyType(av))


def test_no_become_runs_the_probe_as_before() -> None:
    assert become_of(inv_host(become=False)) is None
    assert probe_argv(None) == PROBE_ARGV


def test_sudo_n_runs_python3_as_root_in_the_same_round_trip() -> None:
    how = become_of(inv_host())
    assert how == Become(user="root", flags=("-H",), exe="sudo", login_user="ubuntu")
    argv = probe_argv(how)
    # The shell finds python3 as the login user, then execs sudo's words (positional, never in the script).
    assert argv == ("sh", "-c", PROBE_BECOME_SCRIPT, "remediator-probe", "sudo", "-n", "-H", "-u", "root", "--")
    assert 'exec "$@" python3 -' in PROBE_BECOME_SCRIPT and "sudo" not in PROBE_BECOME_SCRIPT


def test_become_user_flags_and_exe_as_ansible_gives_them() -> None:
    how = become_of(inv_host(ansible_become_user="svc", ansible_become_flags="-H -S -n -E",
                             ansible_become_exe="/usr/local/bin/sudo"))
    assert how is not None
    # -S would make sudo read a password from stdin, which carries the script: dropped; -n always, once.
    assert how.prefix() == ("/usr/local/bin/sudo", "-n", "-H", "-E", "-u", "svc", "--")
    assert how.prefix("alice") == ("/usr/local/bin/sudo", "-n", "-H", "-E", "-u", "alice", "--")
    # The login user already is the become user: sudo would change nothing.
    assert probe_argv(become_of(inv_host(user="root"))) == PROBE_ARGV
    assert become_of(inv_host(), enabled=False) is None
    assert become_of(inv_host(become=False), enabled=True) is not None


@pytest.mark.parametrize("method", ["su", "doas", "pbrun"])
def test_methods_that_need_a_typed_password_are_refused_for_the_host(method: str) -> None:
    with pytest.raises(BecomeError, match=f"become method '{method}' is not supported") as err:
        become_of(inv_host(ansible_become_method=method))
    assert err.value.host == "gpu01" and err.value.hint and "sudo" in err.value.hint


@pytest.mark.parametrize("user", ["-oProxyCommand", "root; id", "$(id)", "a b", ""])
def test_a_become_user_that_is_no_user_name_is_refused(user: str) -> None:
    if user == "":
        assert become_of(inv_host(ansible_become_user=user)) is not None  # empty: the default, root
        return
    with pytest.raises(BecomeError, match="is not a user name"):
        become_of(inv_host(ansible_become_user=user))
    with pytest.raises(ValueError, match="is not a user name"):
        Become(login_user="ubuntu").prefix(user)


def test_sudo_wanting_a_password_is_a_clear_error_for_that_host() -> None:
    how = become_of(inv_host())
    fake = FakeTransport().on(list(probe_argv(how)), returncode=1, stderr="sudo: a password is required\n")
    with pytest.raises(BecomeError, match=r"sudo on the host wants a password to run as root") as err:
        probe_host(fake, "gpu01", become=how)
    assert err.value.host == "gpu01"
    assert err.value.hint and "NOPASSWD" in err.value.hint and "ansible_become: false" in err.value.hint
    # The payload went only to stdin; no password is ever part of the command.
    assert fake.calls[0].argv == probe_argv(how)


def test_sudo_refusing_the_user_is_a_clear_error_too() -> None:
    how = become_of(inv_host())
    fake = FakeTransport().on(list(probe_argv(how)), returncode=1,
                              stderr="ubuntu is not in the sudoers file.  This incident will be reported.\n")
    with pytest.raises(BecomeError):
        probe_host(fake, "gpu01", become=how)
    fake = FakeTransport().on(list(probe_argv(how)), returncode=1,
                              stderr="sudo: ubuntu is not in the sudoers file.  This incident will be reported.\n")
    with pytest.raises(BecomeError, match="sudo refused to run the command as root"):
        probe_host(fake, "gpu01", become=how)


def test_a_failing_script_under_sudo_is_still_the_scripts_error() -> None:
    how = become_of(inv_host())
    fake = FakeTransport().on(list(probe_argv(how)), returncode=1, stderr="Traceback ...\nOSError: boom\n")
    with pytest.raises(ProbeError, match="the probe script failed"):
        probe_host(fake, "gpu01", become=how)


def test_verify_runs_the_check_as_the_envs_owner() -> None:
    how = become_of(inv_host())
    assert how is not None
    python = "/home/alice/venvs/tf/bin/python"
    fake = FakeTransport(default=CommandResult(1, b"", b"sudo: a password is required\n"))
    with pytest.raises(BecomeError, match="to run as alice"):
        verify_host(fake, "gpu01", parse_target("tensorflow==2.16.1"), load_matrix(), python=python, become=how,
                    run_as="alice")
    # sudo's words in front of the same command; the owner is one argument, never part of a shell string.
    assert fake.calls[0].argv == ("sudo", "-n", "-H", "-u", "alice", "--", *VERIFY_ARGV, python)


def _doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema_version": 1, "probe": {"collected_at": "2026-01-01T00:00:00Z"},
                           "envs": [{"path": "/home/alice/venvs/tf", "kind": "venv", "owner": "alice",
                                     "python": "/home/alice/venvs/tf/bin/python", "site_packages": [],
                                     "dists": [], "files": []}]}
    doc.update(extra)
    return doc


def test_facts_name_the_places_the_probe_could_not_read_and_each_envs_owner() -> None:
    facts = parse_probe_document(_doc(unread=["/home/bob", "/root", "/root"]), host="gpu01")
    assert facts.unread == ("/home/bob", "/root")
    assert facts.envs[0].owner == "alice"
    assert env_owner(facts, "/home/alice/venvs/tf/bin/python") == "alice"
    assert env_owner(facts, "/usr/bin/python3") is None
    again = HostFacts.from_json(json.dumps(facts.to_dict()))
    assert again == facts
    # Facts written before these fields still load.
    old = facts.to_dict()
    del old["unread"]
    del old["envs"][0]["owner"]
    assert HostFacts.from_dict(old).unread == () and HostFacts.from_dict(old).envs[0].owner is None


def test_an_owner_that_is_no_user_name_is_dropped_and_unread_must_be_absolute() -> None:
    doc = _doc()
    doc["envs"][0]["owner"] = "-u root"
    assert parse_probe_document(doc, host="gpu01").envs[0].owner is None
    with pytest.raises(ProbeError, match=r"unread\[0\]: 'home' is not an absolute path"):
        parse_probe_document(_doc(unread=["home"]), host="gpu01")
