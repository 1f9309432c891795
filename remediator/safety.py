"""The allowlist of paths a plan may ever quarantine, and the checks that make host paths safe to name.

Host facts are untrusted: a path that came from a host is only ever acted on when it is absolute,
normalised, free of control characters and `..`, and matches one of the patterns below. Apply checks
again on the host (the real path must still match) because a symlink there can point anywhere.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

# Each pattern matches a whole normalised path. Toolkit dirs are /usr/local/cuda-X.Y or /opt/cuda-X.Y
# (runfile and deb installs), cuDNN files live inside a toolkit's lib/include dirs, and loader config
# files are single files in the two directories the loader and login shells read.
_VER = r"\d{1,2}\.\d{1,2}(?:\.\d{1,3})?"
ALLOWLIST: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("toolkit dir", re.compile(rf"/(?:usr/local|opt)/cuda-{_VER}")),
    ("CUDA link", re.compile(r"/usr/local/cuda(?:-\d{1,2})?")),
    ("cuDNN file in a toolkit", re.compile(
        rf"/(?:usr/local|opt)/cuda(?:-{_VER})?/(?:lib64|lib|include|targets/(?:x86_64|sbsa|aarch64|ppc64le)-linux/(?:lib|include))"
        r"/(?:libcudnn[A-Za-z_]*\.so(?:\.\d{1,3}){0,3}|libcudnn[A-Za-z_]*_static\.a|cudnn[A-Za-z_]*\.h)")),
    ("loader config", re.compile(r"/etc/ld\.so\.conf\.d/[A-Za-z0-9_.+-]{1,100}\.conf")),
    ("login environment script", re.compile(r"/etc/profile\.d/[A-Za-z0-9_.+-]{1,100}\.sh")),
)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,100}")


@dataclass(frozen=True)
class PathVerdict:
    path: str
    allowed: bool
    reason: str  # the pattern it matched, or why it was refused


def check_path(path: object, managed_roots: tuple[str, ...] = ()) -> PathVerdict:
    """Whether `path` (from a host) may be quarantined, and why.

    `managed_roots` are directories remediate itself fills (the venv root): their direct children
    (the venvs it made) may be quarantined too.
    """
    if not isinstance(path, str) or not path:
        return PathVerdict(str(path), False, "not a path")
    if _CONTROL.search(path):
        return PathVerdict(path, False, "contains control characters")
    if not path.startswith("/"):
        return PathVerdict(path, False, "not absolute")
    if ".." in path.split("/"):
        return PathVerdict(path, False, "contains '..'")
    norm = posixpath.normpath(path)
    if norm != (path.rstrip("/") or "/") or norm.startswith("//"):
        return PathVerdict(path, False, f"not normalised (would be {norm})")
    for name, pattern in ALLOWLIST:
        if pattern.fullmatch(norm):
            return PathVerdict(path, True, name)
    for root in managed_roots:
        parent, leaf = posixpath.split(norm)
        if parent == posixpath.normpath(root) and _NAME.fullmatch(leaf) and check_venv_root(root) is None:
            return PathVerdict(path, True, "venv made by remediate")
    return PathVerdict(path, False, "outside the quarantine allowlist")


# Directories whose children belong to the system or to other software: a venv root there would make
# `/usr/bin/sudo` or `/etc/passwd` "a venv made by remediate", which the quarantine may move.
# (Only names to refuse: nothing is ever written in them, hence the noqa for ruff's /tmp rule.)
_SYSTEM_ROOTS = (
    "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/boot", "/dev", "/proc", "/sys", "/run",
    "/tmp", "/var/tmp",  # noqa: S108
    "/var/run", "/var/lock", "/var/lib/dpkg", "/var/lib/rpm", "/var/lib/apt", "/var/cache", "/var/log", "/var/spool",
    "/snap", "/root", "/home", "/media", "/mnt", "/lost+found",
)
# ... except these, where local software lives (checked first).
_LOCAL_ROOTS = ("/usr/local",)
_LOCAL_SYSTEM = ("/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/usr/local/lib64", "/usr/local/include",
                 "/usr/local/share", "/usr/local/etc", "/usr/local/libexec", "/usr/local/man", "/usr/local/src",
                 "/usr/local/games")
_ROOT_CHARS = re.compile(r"[A-Za-z0-9_.+/-]{1,200}")


def check_venv_root(root: object) -> str | None:
    """Why `root` may not hold the venvs remediate makes (and quarantines again), or None when it may.

    The root comes from apply's own options, never from a plan file. It must be absolute, normalised, at
    least two levels deep once normalised (`/etc/` is one level), of plain characters, and outside the
    system's own directories and every toolkit.
    """
    if not isinstance(root, str) or not root:
        return "not a path"
    if not _ROOT_CHARS.fullmatch(root):
        return "holds characters other than letters, digits and _ . + - /"
    if not root.startswith("/") or root.startswith("//"):
        return "not absolute"
    if ".." in root.split("/") or "." in root.split("/"):
        return "contains '.' or '..'"
    norm = posixpath.normpath(root)
    if norm != (root.rstrip("/") or "/"):
        return f"not normalised (would be {norm})"
    if norm.count("/") < 2:
        return "less than two levels deep"

    def under(base: str) -> bool:
        return norm == base or norm.startswith(base + "/")

    if any(under(r) for r in _LOCAL_SYSTEM) or re.match(r"/(?:usr/local|opt)/cuda(?:-[0-9.]+)?(?:/|$)", norm):
        return "inside a system directory or a CUDA toolkit"
    if any(under(r) for r in _LOCAL_ROOTS):
        return None
    if any(under(r) for r in _SYSTEM_ROOTS):
        return "inside a system directory"
    return None
