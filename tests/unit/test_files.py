"""`write_private`: the control node's files are mode 0600 whatever the umask, replace a planted symlink
instead of writing through it, leave no temporary file behind, and use unpredictable temporary names."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from remediator.cli.render import write_atomic
from remediator.errors import InputError
from remediator.files import write_private


@pytest.fixture
def umask_0() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.mark.usefixtures("umask_0")
def test_new_file_is_0600_even_with_umask_0(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    write_private(target, '{"hosts": []}\n')
    assert target.read_text() == '{"hosts": []}\n'
    assert mode_of(target) == 0o600


@pytest.mark.usefixtures("umask_0")
def test_an_existing_world_readable_file_becomes_0600(tmp_path: Path) -> None:
    target = tmp_path / "facts.json"
    target.write_text("old")
    target.chmod(0o666)
    write_private(str(target), b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600


def test_mode_can_be_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "fleet.html"
    write_private(target, "<html></html>", mode=0o644)
    assert mode_of(target) == 0o644


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    target = tmp_path / "result.json"
    target.symlink_to(victim)
    write_private(target, "ours\n")
    assert victim.read_text() == "precious\n"  # the link's old target is untouched
    assert mode_of(victim) == 0o644
    assert not target.is_symlink()
    assert target.read_text() == "ours\n"
    assert mode_of(target) == 0o600


def test_a_dangling_symlink_at_the_target_creates_nothing_where_it_points(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    target = tmp_path / "plan.json"
    target.symlink_to(elsewhere)
    write_private(target, "ours\n")
    assert not elsewhere.exists()
    assert not target.is_symlink() and target.read_text() == "ours\n"


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "plan.json"
    target.write_text("old\n")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        write_private(target, "new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    assert target.read_text() == "old\n"


def test_a_target_that_is_a_directory_fails_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "plan.json").mkdir()
    with pytest.raises(OSError):
        write_private(tmp_path / "plan.json", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_temporary_names_are_not_predictable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    names: list[str] = []
    real = tempfile.mkstemp

    def spy(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = real(*args, **kwargs)  # type: ignore[call-overload]
        names.append(name)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", spy)
    target = tmp_path / "facts.json"
    write_private(target, "1")
    write_private(target, "2")
    assert len(names) == 2 and names[0] != names[1]
    for name in names:
        assert os.path.dirname(name) == str(tmp_path)  # beside the target: the rename stays on one file system
        assert str(os.getpid()) not in os.path.basename(name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facts.json"]


def test_a_planted_file_at_a_guessable_temporary_name_is_left_alone(tmp_path: Path) -> None:
    # The old writers used `<path>.tmp-<pid>`: a link planted there was written through.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "plan.json"
    for guess in (f"{target}.tmp-{os.getpid()}", f"{target}.tmp", tmp_path / f".plan.json.tmp-{os.getpid()}"):
        Path(guess).symlink_to(victim)
    write_private(target, "ours\n")
    assert victim.read_text() == "precious\n"
    assert target.read_text() == "ours\n"


def test_write_atomic_of_the_cli_is_private_and_says_what_failed(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    write_atomic(str(target), "{}\n", "plan")
    assert mode_of(target) == 0o600
    with pytest.raises(InputError, match=r"cannot write the plan: No such file or directory"):
        write_atomic(str(tmp_path / "missing" / "plan.json"), "{}\n", "plan")
