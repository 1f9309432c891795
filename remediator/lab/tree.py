"""A host's file tree being written into overlay layer directories, with the host's own view of paths.

Paths are absolute paths as the host sees them (/usr/local/cuda/lib64/libcudnn.so.8); each top-level
private root (/etc, /usr, /var, /opt, /home, /root, /proc/driver) is a separate layer directory. Symlinks
are resolved the way the host would resolve them, never against the outer machine's root.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from dataclasses import dataclass, field
from pathlib import Path

from remediator.errors import RemediatorError

# Host path prefix -> layer directory name under a template.
LAYERS: dict[str, str] = {
    "/etc": "etc",
    "/usr": "usr",
    "/var": "var",
    "/opt": "opt",
    "/home": "home",
    "/root": "root",
    "/proc/driver": "procdriver",
}


class TreeError(RemediatorError):
    """A scenario asks for a file layout that cannot exist (a file where a directory must be, a loop)."""


@dataclass
class Tree:
    """Writes one template: `root/<layer>/...`; `outer` is how unmodified paths look (the real root)."""

    root: Path
    outer: Path = Path("/")
    links: dict[str, str] = field(default_factory=dict)  # host path -> link target, as written here
    written: list[str] = field(default_factory=list)  # host paths of files and links, in order
    opaques: set[str] = field(default_factory=set)  # host dirs that hide the outer machine's contents

    def layer_path(self, host_path: str) -> Path:
        for prefix in sorted(LAYERS, key=len, reverse=True):
            if host_path == prefix or host_path.startswith(prefix + "/"):
                rest = host_path[len(prefix) :].lstrip("/")
                return self.root / LAYERS[prefix] / rest
        raise TreeError(f"{host_path}: not under a private root ({', '.join(LAYERS)})")

    def resolve(self, host_path: str, *, follow_last: bool = True) -> str:
        """Resolve symlinks of `host_path` as the host would see them (links written here, then the outer
        machine's own links for paths this tree does not cover)."""
        parts = [p for p in host_path.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if done:
                    done.pop()
                continue
            if name == ".":
                continue
            candidate = "/" + "/".join([*done, name])
            target = self.links.get(candidate)
            if target is None:
                with contextlib.suppress(TreeError, OSError):
                    target = os.readlink(self.layer_path(candidate))
            if target is None and not self._covered(candidate) and self._outer_visible(candidate):
                outer = self.outer / candidate.lstrip("/")
                if outer.is_symlink():
                    target = os.readlink(outer)
            if target is not None and (parts or follow_last):
                hops += 1
                if hops > 40:
                    raise TreeError(f"{host_path}: too many levels of symbolic links")
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p] + parts
                continue
            done.append(name)
        return "/" + "/".join(done)

    def _outer_visible(self, host_path: str) -> bool:
        """Whether the host sees the outer machine's file at this path where the tree has none."""
        if not host_path.startswith(("/etc/", "/usr/", "/var/")):
            return host_path in ("/etc", "/usr", "/var")
        return not any(host_path == o or host_path.startswith(o + "/") for o in self.opaques)

    def _covered(self, host_path: str) -> bool:
        try:
            p = self.layer_path(host_path)
        except TreeError:
            return False
        return os.path.lexists(p)

    def _prepare(self, host_path: str) -> Path:
        real = self.resolve(posixpath.dirname(host_path)) + "/" + posixpath.basename(host_path)
        target = self.layer_path(real)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            raise TreeError(f"{host_path}: is a directory")
        if os.path.lexists(target):
            target.unlink()
        return target

    def mkdir(self, host_path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        target = self.layer_path(self.resolve(host_path))
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        if uid or gid:
            os.chown(target, uid, gid)

    def write(self, host_path: str, data: bytes | str, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
        target = self._prepare(host_path)
        target.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(target, mode)
        if uid or gid:
            os.chown(target, uid, gid)
        self.written.append(host_path)

    def append(self, host_path: str, text: str) -> None:
        target = self.layer_path(self.resolve(host_path))
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text)

    def symlink(self, host_path: str, link_target: str, uid: int = 0, gid: int = 0) -> None:
        real_dir = self.resolve(posixpath.dirname(host_path))
        real = real_dir + "/" + posixpath.basename(host_path)
        target = self._prepare(host_path)
        os.symlink(link_target, target)
        if uid or gid:
            os.lchown(target, uid, gid)
        self.links[real] = link_target
        self.written.append(host_path)

    def whiteout(self, host_path: str) -> None:
        """Hide a file of the outer machine in this layer (an overlayfs whiteout: char device 0/0); one this
        tree wrote at that path is replaced by the whiteout."""
        target = self.layer_path(host_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(target) and not stat.S_ISCHR(os.lstat(target).st_mode):
            if target.is_dir() and not target.is_symlink():
                raise TreeError(f"{host_path}: is a directory")
            target.unlink()
            self.links.pop(host_path, None)
        if not os.path.lexists(target):
            os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))

    def opaque(self, host_path: str, mode: int = 0o755) -> None:
        """Make a directory hide whatever the outer machine has at the same path."""
        target = self.layer_path(host_path)
        target.mkdir(parents=True, exist_ok=True)
        os.chmod(target, mode)
        os.setxattr(target, "trusted.overlay.opaque", b"y")
        self.opaques.add(host_path)

    def exists(self, host_path: str) -> bool:
        try:
            return os.path.lexists(self.layer_path(self.resolve(host_path)))
        except TreeError:
            return False
