"""The project's files as git sees them, for tests that build archives from a clean copy of the tree.

Tracked files and new files git would add (not ignored), as they are in the working tree: a checkout's
.venv, build/, egg-info or bytecode never reach a built archive, while a change not yet committed does.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def project_files(*under: str) -> list[str]:
    """The files git tracks or would add, relative to the repository (only those under `under`, if given)."""
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                            "--", *under], capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    return sorted(n for n in set(names) if n and ((REPO / n).is_file() or (REPO / n).is_symlink()))


def project_copy(dst: Path, under: str = "") -> None:
    """Copy the project's files (those under `under`, relative to it) to `dst`."""
    for rel in project_files(*([under] if under else [])):
        target = dst / (Path(rel).relative_to(under) if under else Path(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target, follow_symlinks=False)


def have_git_checkout() -> bool:
    return (REPO / ".git").exists() and shutil.which("git") is not None
