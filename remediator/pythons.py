"""Where a venv's Python comes from: the host, its distro's archive, or a uv-managed CPython from a mirror.

A plan that needs a Python the host lacks used to ask the package manager for `python3.8` whatever the
distro; most archives have no such package, so apply failed at install time. The choice is now made at
plan time, from data (`matrix/data/distro_pythons.yaml`: which release's archive ships which minors, each
row with its source), in this order:

1. a Python already on the host that fits the target (its system interpreter);
2. the distro's archive, only where that release ships a fitting minor (the newest such);
3. a uv-managed CPython from the host's `remediator_python_mirror` (or `remediate plan --python-mirror`):
   an https:// or file:// python-build-standalone mirror, for air-gapped fleets;
4. otherwise nothing: the host is blocked with the Python it needs, its distro release, and how to unblock.

Pure: no network, no host, no clock. The data file is read once, with the matrix loader's conventions.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from remediator.facts import HostFacts, OsRelease
from remediator.matrix.load import DataFile, read_data_file
from remediator.matrix.model import VersionRange
from remediator.versions import try_version

DATA_FILE = "distro_pythons.yaml"
_MINOR = re.compile(r"^3\.\d{1,2}$")

PythonSourceKind = Literal["host", "distro", "uv", "none"]


@dataclass(frozen=True)
class DistroPython:
    version: str  # the minor, "3.8"
    package: str  # what the archive calls it: python3.8 (Debian, Ubuntu), python38 (RHEL 8 module)
    extra: tuple[str, ...]  # what `python -m venv` needs besides (python3.8-venv)
    source: str


@dataclass(frozen=True)
class DistroRelease:
    distro: str  # os-release ID: debian, ubuntu, rhel, amzn
    release: str  # "12", "22.04", "8", "2023"
    name: str  # "Debian 12 (bookworm)"
    pythons: tuple[DistroPython, ...]


@dataclass(frozen=True)
class DistroPythons:
    matrix_version: str
    releases: tuple[DistroRelease, ...]
    aliases: Mapping[str, str]

    def release_for(self, os: OsRelease) -> DistroRelease | None:
        """The release row of a host's os-release, or None when this file does not know it."""
        distro = self.aliases.get(os.id.lower(), os.id.lower())
        version = os.version_id.strip()
        for r in self.releases:
            # Debian/RHEL/Amazon VERSION_IDs carry minors ("8.9", "12"); Ubuntu's is the release itself.
            if r.distro == distro and (version == r.release or version.startswith(r.release + ".")):
                return r
        return None


@dataclass(frozen=True)
class PythonChoice:
    """Where the venv's interpreter comes from, with what the plan writes into its actions."""

    source: PythonSourceKind
    interpreter: str | None = None  # the path create_venv runs; None: blocked
    package: DistroPython | None = None  # source "distro": what to install
    request: str | None = None  # source "uv": the PEP 440 range uv installs from the mirror
    home: str | None = None  # source "uv": where the uv-managed CPython lives (under the venv root)
    mirror: str | None = None
    why: str = ""  # one line: how it was chosen, or why there is none


@functools.cache
def load_distro_pythons(data_dir: str | None = None) -> DistroPythons:
    file, doc, version = read_data_file(Path(data_dir) if data_dir else None, DATA_FILE)
    file.mapping(doc, "file", {"matrix_version", "releases"}, {"aliases"})
    aliases = doc.get("aliases") or {}
    if not isinstance(aliases, dict):
        file.fail("aliases", "expected a mapping of os-release ID to distro")
    rows = _list(file, doc["releases"], "releases")
    releases = tuple(_release(file, row, f"releases[{i}]") for i, row in enumerate(rows))
    seen: set[tuple[str, str]] = set()
    for r in releases:
        if (r.distro, r.release) in seen:
            file.fail("releases", f"{r.distro} {r.release} appears twice")
        seen.add((r.distro, r.release))
    return DistroPythons(version, releases, {str(k): file.string(v, f"aliases.{k}") for k, v in aliases.items()})


def _release(file: DataFile, row: Any, where: str) -> DistroRelease:
    row = file.mapping(row, where, {"distro", "release", "name", "pythons"})
    pythons = []
    for j, p in enumerate(_list(file, row["pythons"], f"{where}.pythons")):
        at = f"{where}.pythons[{j}]"
        p = file.mapping(p, at, {"version", "package", "source"}, {"extra"})
        minor = file.string(p["version"], f"{at}.version")
        if not _MINOR.match(minor):
            file.fail(f"{at}.version", f"expected a Python minor like 3.8, got {minor!r}")
        extra = file.strings(p["extra"], f"{at}.extra") if p.get("extra") else ()
        pythons.append(DistroPython(minor, file.string(p["package"], f"{at}.package"), extra,
                                    file.sources(p["source"], f"{at}.source")[0]))
    return DistroRelease(file.string(row["distro"], f"{where}.distro"), file.string(row["release"], f"{where}.release"),
                         file.string(row["name"], f"{where}.name"), tuple(pythons))


def _list(file: DataFile, value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        file.fail(where, f"expected a non-empty list, got {value!r}")
    return value


def python_home(venv: str) -> str:
    """Where a venv's uv-managed CPython goes: beside it under the venv root, so rollback moves both aside."""
    return venv + "-python"


def choose_python(facts: HostFacts, python: VersionRange, venv: str, mirror: str | None,
                  data: DistroPythons | None = None) -> PythonChoice:
    """The venv's Python for a target that runs on `python` (see the module's docstring for the order)."""
    data = data or load_distro_pythons()
    candidates = sorted(((try_version(e.python_version), e.python) for e in facts.envs if e.kind == "system"),
                        key=lambda c: c[0].release if c[0] else (), reverse=True)
    for version, path in candidates:
        if version is not None and python.contains(version):
            return PythonChoice("host", interpreter=path, why=f"the host's Python {version.raw} fits {python.raw}")
    release = data.release_for(facts.os)
    fitting = [p for p in (release.pythons if release else ()) if python.contains(p.version + ".0")]
    if release is not None and fitting:
        best = max(fitting, key=lambda p: tuple(int(x) for x in p.version.split(".")))
        return PythonChoice("distro", interpreter=f"/usr/bin/python{best.version}", package=best,
                            why=f"{release.name}'s archive ships {best.package} ({best.source})")
    where = release.name if release else _os_name(facts.os)
    has = (f"its archive ships {', '.join('Python ' + p.version for p in release.pythons)} only" if release
           else "remediate does not know which Pythons its archive ships (matrix/data/distro_pythons.yaml)")
    if mirror:
        mirror = mirror.rstrip("/") or mirror  # the role appends /downloads.json
        home = python_home(venv)
        return PythonChoice("uv", interpreter=posixpath.join(home, "bin", "python3"), request=_request(python),
                            home=home, mirror=mirror,
                            why=f"no Python in {python.raw} on the host and {where}: {has}; a uv-managed CPython "
                                f"from the mirror {mirror}")
    return PythonChoice("none", why=f"needs Python {python.raw}, which {where} does not provide ({has}) and no "
                                    "Python on the host fits; set remediator_python_mirror (inventory) or "
                                    "--python-mirror to a python-build-standalone mirror (docs/plan.md, "
                                    "\"Where the Python comes from\")")


def _request(python: VersionRange) -> str:
    """What uv is asked for: the range itself (the newest alternative when there are several)."""
    return python.specifiers[-1]


def _os_name(os: OsRelease) -> str:
    if os.pretty_name:
        return os.pretty_name
    if os.id:
        return f"{os.id} {os.version_id}".strip()
    return "this host's distro (os-release unread)"


__all__ = ["DistroPython", "DistroPythons", "DistroRelease", "PythonChoice", "choose_python", "load_distro_pythons",
           "python_home"]
