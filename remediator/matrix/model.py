"""The compatibility matrix as typed values, and the queries diagnosis and planning ask of it.

Everything here is pure: `load.py` builds a `Matrix` once from the shipped YAML, and the questions
(what does tensorflow==2.4.1 need, which driver does CUDA 11.2 need, what runs on driver 450.80.02)
are answered from these frozen values without touching hosts, files or the clock.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from remediator.errors import UnknownVersionError, UsageError
from remediator.versions import RawVersion, try_version

FRAMEWORKS = ("tensorflow", "pytorch")

# Names people write for a framework, as pip package names or as the framework itself.
FRAMEWORK_ALIASES: Mapping[str, str] = {
    "tensorflow": "tensorflow",
    "tensorflow-gpu": "tensorflow",
    "tensorflow_gpu": "tensorflow",
    "pytorch": "pytorch",
    "torch": "pytorch",
}

_TARGET = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_.-]*)\s*==\s*(\S+)\s*$")


def normalize_framework(name: str) -> str:
    """Map `torch`, `tensorflow-gpu` ... to the matrix's framework name; UsageError if unknown."""
    key = name.strip().lower()
    if key not in FRAMEWORK_ALIASES:
        known = ", ".join(sorted(FRAMEWORK_ALIASES))
        raise UsageError(f"unknown framework {name!r}; known: {known}")
    return FRAMEWORK_ALIASES[key]


@dataclass(frozen=True)
class Target:
    """What a host should run, as the user asked for it (`tensorflow==2.4.1`)."""

    framework: str
    version: str

    def __str__(self) -> str:
        return f"{self.framework}=={self.version}"


def parse_target(text: str) -> Target:
    """Parse `FRAMEWORK==VERSION`; `torch` means pytorch and `tensorflow-gpu` means tensorflow."""
    expected = "expected FRAMEWORK==VERSION, e.g. tensorflow==2.4.1 or torch==2.11.0"
    match = _TARGET.match(text)
    if not match:
        raise UsageError(f"bad target {text!r}: {expected}")
    name, version = match.groups()
    if name.strip().lower() not in FRAMEWORK_ALIASES:
        known = ", ".join(sorted(FRAMEWORK_ALIASES))
        raise UsageError(f"bad target {text!r}: unknown framework {name!r} (known: {known}); {expected}")
    if try_version(version) is None:
        raise UsageError(f"bad target {text!r}: {version!r} is not a version; {expected}")
    return Target(FRAMEWORK_ALIASES[name.strip().lower()], version)


def _release_version(version: RawVersion) -> Version:
    return Version(".".join(str(n) for n in version.release))


@functools.lru_cache(maxsize=65536)
def _range_contains(sets: tuple[SpecifierSet, ...], parsed: RawVersion) -> bool:
    # Memoised: a fleet asks the same few ranges about the same few versions over and over.
    release = _release_version(parsed)
    return any(s.contains(release, prereleases=True) for s in sets)


@dataclass(frozen=True)
class VersionRange:
    """A set of versions: any of `specifiers` (PEP 440 sets), with the text it came from.

    `raw` is what the source wrote (TensorFlow's "2.7, 3.3-3.6") or, for a derived range, the
    specifier text; `rule` is the rule id that derived it (None for ranges copied from a source).
    Versions are compared on their release numbers only, so `450.51.06` and `11.2.1` work.
    """

    raw: str
    specifiers: tuple[str, ...]
    rule: str | None = None
    _sets: tuple[SpecifierSet, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            sets = tuple(SpecifierSet(s) for s in self.specifiers)
        except InvalidSpecifier as exc:
            raise ValueError(f"bad version range {self.raw!r}: {exc}") from exc
        if not sets:
            raise ValueError(f"empty version range {self.raw!r}")
        object.__setattr__(self, "_sets", sets)

    @property
    def spec(self) -> str:
        """The range as PEP 440 specifier sets, alternatives joined by ` || `."""
        return " || ".join(self.specifiers)

    def contains(self, version: str | RawVersion) -> bool:
        parsed = version if isinstance(version, RawVersion) else try_version(version)
        if parsed is None:
            return False
        return _range_contains(self._sets, parsed)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str | RawVersion):
            return self.contains(item)
        return False

    def to_dict(self) -> dict[str, Any]:
        return {"raw": self.raw, "spec": self.spec, "rule": self.rule}


ARCH_ENTRY = re.compile(r"^(\d+)\.(\d+)(\+PTX)?$")


def parse_compute_capability(text: str) -> tuple[int, int] | None:
    """ "8.6", "sm_86" or "86" as (8, 6); None when it is none of these."""
    raw = text.strip().lower().removeprefix("sm_").removeprefix("compute_")
    match = re.match(r"^(\d+)\.(\d+)$", raw) or re.match(r"^(\d+)(\d)$", raw)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class Variant:
    """One official CUDA build of a PyTorch release (`cu121`), and the driver it needs.

    `toolkit` is the exact CUDA toolkit the build used where the build scripts name it (11.0.3 for
    cu110); the driver floor comes from it, else from the series' GA row. `archs` is the build's
    TORCH_CUDA_ARCH_LIST as written ("3.7", "8.6", "3.7+PTX"); empty when not confirmed.
    """

    tag: str
    cuda: RawVersion
    cudnn: RawVersion | None
    default: bool
    status: str
    index_url: str
    min_driver: RawVersion
    min_driver_compat: RawVersion | None
    toolkit: RawVersion | None = None
    archs: tuple[str, ...] = ()

    @property
    def sm_archs(self) -> tuple[str, ...]:
        """The GPU architectures the build has machine code (SASS) for: ("sm_37", "sm_50", ...)."""
        out = []
        for arch in self.archs:
            match = ARCH_ENTRY.match(arch)
            if match:
                out.append(f"sm_{match.group(1)}{match.group(2)}")
        return tuple(out)

    @property
    def ptx_archs(self) -> tuple[str, ...]:
        """The virtual architectures the build also ships PTX for ("compute_37"), JIT-compiled on newer GPUs."""
        out = []
        for arch in self.archs:
            match = ARCH_ENTRY.match(arch)
            if match and match.group(3):
                out.append(f"compute_{match.group(1)}{match.group(2)}")
        return tuple(out)

    def has_kernels_for(self, compute_capability: str) -> bool | None:
        """Whether the build can run on a GPU of `compute_capability` ("8.6", "sm_86").

        SASS for X.y runs on X.z with z >= y; PTX for X.y can be JIT-compiled for any later GPU
        (CUDA C++ Programming Guide, "Binary Compatibility" / "PTX Compatibility"). None when the
        arch list of this build is not recorded or the capability cannot be read.
        """
        cc = parse_compute_capability(compute_capability)
        if not self.archs or cc is None:
            return None
        for arch in self.archs:
            match = ARCH_ENTRY.match(arch)
            if not match:
                continue
            major, minor = int(match.group(1)), int(match.group(2))
            if major == cc[0] and minor <= cc[1]:
                return True
            if match.group(3) and (major, minor) <= cc:
                return True
        return False

    def runs_on(self, compute_capability: str) -> bool | None:
        """Whether PyTorch itself accepts the GPU for this build: machine code (SASS) for the GPU's major at a
        minor not above its own. PTX is not counted, as torch's own check does not count it ("sm_80 is not
        compatible with the current PyTorch installation. The current PyTorch install supports CUDA
        capabilities sm_37 ... compute_37", pytorch/pytorch#57922). None when the arch list is not recorded."""
        cc = parse_compute_capability(compute_capability)
        if not self.archs or cc is None:
            return None
        for arch in self.archs:
            match = ARCH_ENTRY.match(arch)
            if match and int(match.group(1)) == cc[0] and int(match.group(2)) <= cc[1]:
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "cuda": self.cuda.raw,
            "toolkit": self.toolkit.raw if self.toolkit else None,
            "cudnn": self.cudnn.raw if self.cudnn else None,
            "default": self.default,
            "status": self.status,
            "index_url": self.index_url,
            "min_driver": self.min_driver.raw,
            "min_driver_compat": self.min_driver_compat.raw if self.min_driver_compat else None,
            "archs": list(self.archs),
            "sm_archs": list(self.sm_archs),
        }


@dataclass(frozen=True)
class Defect:
    """A known defect of some releases (rules.yaml `defects`): what breaks, which releases, the fix."""

    id: str
    framework: str
    affects: VersionRange
    fixed_in: str | None
    symptom: str
    workaround: str | None
    source: str
    sources: tuple[str, ...] = ()

    def affects_version(self, version: str | RawVersion) -> bool:
        """Full PEP 440 comparison where the text allows it, so that 2.15.0.post1 is not 2.15.0."""
        text = (version.raw if isinstance(version, RawVersion) else version).strip().split("+", 1)[0]
        try:
            parsed = Version(text)
        except InvalidVersion:
            return self.affects.contains(version)
        return any(SpecifierSet(s).contains(parsed, prereleases=True) for s in self.affects.specifiers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "framework": self.framework,
            "affects": self.affects.raw,
            "fixed_in": self.fixed_in,
            "symptom": self.symptom,
            "workaround": self.workaround,
            "sources": list(self.sources),
        }


@dataclass(frozen=True)
class CondaPackage:
    """A conda package that brings the CUDA runtime into an environment (`cudatoolkit`, `pytorch-cuda`).

    It ships user-space libraries only; the host still needs a driver at least `min_driver` (the
    toolkit's own, Table 3), or `min_driver_compat` through minor-version compatibility (CUDA >= 11).
    """

    name: str
    version: str
    cuda: RawVersion
    channels: tuple[str, ...]
    depends: tuple[tuple[str, str], ...]
    min_driver: RawVersion
    min_driver_compat: RawVersion | None
    source: str
    sources: tuple[str, ...] = ()
    note: str | None = None

    @property
    def driver_floor(self) -> RawVersion:
        if self.min_driver_compat is not None:
            return min(self.min_driver, self.min_driver_compat)
        return self.min_driver

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "cuda": self.cuda.raw,
            "channels": list(self.channels),
            "depends": [{"name": n, "spec": s} for n, s in self.depends],
            "min_driver": self.min_driver.raw,
            "min_driver_compat": self.min_driver_compat.raw if self.min_driver_compat else None,
            "driver_floor": self.driver_floor.raw,
            "sources": list(self.sources),
            "note": self.note,
        }


@dataclass(frozen=True)
class CompatFloor:
    """The oldest driver that runs any toolkit of a CUDA major through minor-version compatibility."""

    major: int
    min_driver: RawVersion
    caveats: str
    source: str
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class CudaRelease:
    """A row of NVIDIA's toolkit/driver table: the toolkit and the Linux x86_64 driver it needs."""

    version: RawVersion
    label: str
    min_driver: RawVersion | None
    driver_raw: str | None
    ga: bool
    source: str
    sources: tuple[str, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class CudnnRelease:
    """A cuDNN release: the CUDA toolkits it was built for, its soname and where its version lives."""

    version: RawVersion
    cuda: tuple[str, ...]
    soname_major: int
    version_header: str
    packages: tuple[str, ...]
    wheels: tuple[tuple[str, str], ...]
    source: str
    sources: tuple[str, ...] = ()
    note: str | None = None

    @property
    def cuda_range(self) -> VersionRange:
        """The CUDA versions this release has a build for ("11.x" means the whole 11 major)."""
        specs = []
        for entry in self.cuda:
            major, _, minor = entry.partition(".")
            specs.append(f">={major},<{int(major) + 1}" if minor == "x" else f"=={entry}.*")
        return VersionRange(", ".join(self.cuda), tuple(specs))

    def supports_cuda(self, version: str | RawVersion) -> bool:
        return self.cuda_range.contains(version)


@dataclass(frozen=True)
class Requirements:
    """What one framework release needs from a host, tested point and working ranges side by side."""

    framework: str
    version: str
    series: str
    packages: tuple[str, ...]
    python: VersionRange
    cuda: RawVersion | None
    cuda_range: VersionRange | None
    cudnn: RawVersion | None
    cudnn_range: VersionRange | None
    min_driver: RawVersion
    min_driver_compat: RawVersion | None
    bundles_cuda: bool
    wheels: tuple[tuple[str, str], ...]
    variants: tuple[Variant, ...]
    sources: tuple[str, ...]
    pip_extra: str | None = None
    compiler: str | None = None
    notes: tuple[str, ...] = ()
    torchvision: tuple[str, ...] = ()
    torchaudio: tuple[str, ...] = ()
    cpu_index_url: str | None = None
    defects: tuple[Defect, ...] = ()

    @property
    def default_variant(self) -> Variant | None:
        """The build a plain `pip install torch==X` gets from PyPI on Linux x86_64 (PyTorch only)."""
        for variant in self.variants:
            if variant.default:
                return variant
        return None

    def python_ok(self, version: str | RawVersion) -> bool:
        return self.python.contains(version)

    def cuda_ok(self, version: str | RawVersion) -> bool:
        return self.cuda_range is not None and self.cuda_range.contains(version)

    def cudnn_ok(self, version: str | RawVersion) -> bool:
        return self.cudnn_range is not None and self.cudnn_range.contains(version)

    @property
    def driver_floor(self) -> RawVersion:
        """The oldest driver that runs this release at all: the tested floor, the compat floor, or
        (PyTorch) the floor of whichever official variant asks least."""
        floors = [self.min_driver]
        if self.min_driver_compat is not None:
            floors.append(self.min_driver_compat)
        for variant in self.variants:
            floors.append(variant.min_driver)
            if variant.min_driver_compat is not None:
                floors.append(variant.min_driver_compat)
        return min(floors)

    def driver_ok(self, driver: str | RawVersion) -> bool:
        """True when `driver` runs this release in some supported way (see `driver_floor`)."""
        parsed = driver if isinstance(driver, RawVersion) else try_version(driver)
        return parsed is not None and parsed >= self.driver_floor

    def variant(self, tag: str) -> Variant | None:
        for variant in self.variants:
            if variant.tag == tag:
                return variant
        return None

    @property
    def install_spec(self) -> str:
        """The pip requirement that installs this release with GPU support."""
        extra = f"[{self.pip_extra}]" if self.pip_extra else ""
        return f"{self.packages[0]}{extra}=={self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "version": self.version,
            "series": self.series,
            "packages": list(self.packages),
            "install_spec": self.install_spec,
            "python": self.python.raw,
            "python_range": self.python.to_dict(),
            "compiler": self.compiler,
            "cuda": self.cuda.raw if self.cuda else None,
            "cuda_range": self.cuda_range.to_dict() if self.cuda_range else None,
            "cudnn": self.cudnn.raw if self.cudnn else None,
            "cudnn_range": self.cudnn_range.to_dict() if self.cudnn_range else None,
            "min_driver": self.min_driver.raw,
            "min_driver_compat": self.min_driver_compat.raw if self.min_driver_compat else None,
            "driver_floor": self.driver_floor.raw,
            "bundles_cuda": self.bundles_cuda,
            "pip_extra": self.pip_extra,
            "wheels": [{"name": n, "version": v} for n, v in self.wheels],
            "variants": [v.to_dict() for v in self.variants],
            "default_variant": self.default_variant.tag if self.default_variant else None,
            "cpu_index_url": self.cpu_index_url,
            "torchvision": list(self.torchvision),
            "torchaudio": list(self.torchaudio),
            "defects": [d.to_dict() for d in self.defects],
            "sources": list(self.sources),
            "notes": list(self.notes),
        }


def _distance(a: RawVersion, b: RawVersion) -> tuple[int, ...]:
    """How far apart two versions are: compared number by number, the first difference counts most."""
    width = max(len(a.release), len(b.release), 3)
    ra = a.release + (0,) * (width - len(a.release))
    rb = b.release + (0,) * (width - len(b.release))
    return tuple(abs(x - y) for x, y in zip(ra, rb, strict=True))


def nearest(query: str, known: Iterable[str], limit: int = 5) -> list[str]:
    """Up to `limit` of `known` closest to `query` by version distance (newest first on ties)."""
    candidates = [(k, try_version(k)) for k in known]
    parsed = try_version(query)
    usable = [(k, v) for k, v in candidates if v is not None]
    if parsed is None:
        return [k for k, _ in sorted(usable, key=lambda kv: kv[1], reverse=True)[:limit]]
    ranked = sorted(usable, key=lambda kv: (_distance(parsed, kv[1]), [-n for n in kv[1].release]))
    return [k for k, _ in ranked[:limit]]


def _sort_key(raw: str) -> tuple[Version, str]:
    try:
        return Version(raw), raw
    except InvalidVersion:  # pragma: no cover - the loader only admits PEP 440 framework versions
        return Version("0"), raw


@dataclass(frozen=True, eq=False)
class Matrix:
    """All compatibility facts, loaded and validated; the query methods are the public API."""

    version: str
    releases: Mapping[str, Mapping[str, Requirements]]
    cuda_releases: tuple[CudaRelease, ...]
    cuda_unconfirmed: tuple[CudaRelease, ...]
    compat_floors: Mapping[int, CompatFloor]
    cudnn_releases: tuple[CudnnRelease, ...]
    forward_compat_note: str = ""
    rules: Mapping[str, str] = field(default_factory=dict)
    conda_packages: tuple[CondaPackage, ...] = ()
    defects: tuple[Defect, ...] = ()

    def conda_package(self, name: str, version: str) -> CondaPackage:
        """The `cudatoolkit` / `pytorch-cuda` row for `version` ("11.3", "11.3.1" and "11.3.*" alike)."""
        rows = [p for p in self.conda_packages if p.name == name]
        parsed = try_version(version.strip().rstrip(".*"))
        for row in rows:
            if row.version == version.strip() or (
                parsed is not None and row.cuda.major_minor() == parsed.major_minor()
            ):
                return row
        raise UnknownVersionError(name, version, nearest(version, [p.version for p in rows]))

    def defects_for(self, framework: str, version: str) -> tuple[Defect, ...]:
        """Known defects (rules.yaml `defects`) that affect this release."""
        name = normalize_framework(framework)
        text = version.strip().split("+", 1)[0]
        return tuple(d for d in self.defects if d.framework == name and d.affects_version(text))

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(sorted(self.releases))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - Matrix is immutable and lives for the process
    def known_versions(self, framework: str) -> tuple[str, ...]:
        name = normalize_framework(framework)
        return tuple(sorted(self.releases.get(name, {}), key=_sort_key))

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - Matrix is immutable and lives for the process
    def requirements(self, framework: str, version: str) -> Requirements:
        name = normalize_framework(framework)
        table = self.releases.get(name, {})
        text = version.strip()
        if text in table:
            return table[text]
        local_free = text.split("+", 1)[0]  # torch reports 2.11.0+cu128
        if local_free in table:
            return table[local_free]
        parsed = try_version(local_free)
        if parsed is not None:
            # "2.4" means 2.4.0; RawVersion compares release numbers only, so prefer exact text.
            same = [raw for raw in table if try_version(raw) == parsed and "post" not in raw]
            if same:
                return table[sorted(same, key=_sort_key)[0]]
        raise UnknownVersionError(name, version, nearest(local_free, table))

    def requirements_for(self, target: Target) -> Requirements:
        return self.requirements(target.framework, target.version)

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - Matrix is immutable and lives for the process
    def _cuda_row(self, version: str | RawVersion) -> CudaRelease:
        parsed = version if isinstance(version, RawVersion) else try_version(str(version))
        label = str(version)
        if parsed is None:
            raise UnknownVersionError("CUDA", label, [r.version.raw for r in self.cuda_releases[:5]])
        series = parsed.major_minor()
        in_series = [r for r in self.cuda_releases if r.version.major_minor() == series]
        if in_series:
            exact = [r for r in in_series if r.version == parsed]
            if exact:
                return exact[0]
            if len(parsed.release) <= 2 or (len(parsed.release) == 3 and parsed.release[2] == 0):
                ga = [r for r in in_series if r.ga]
                if ga:
                    return ga[0]
            # An update or build number between rows (12.3.2, 10.1.243): the newest row not above it.
            below = [r for r in in_series if r.version <= parsed]
            if below:
                return max(below, key=lambda r: r.version)
            ga = [r for r in in_series if r.ga]
            if ga:
                return ga[0]
        known = [r.version.raw for r in self.cuda_releases]
        raise UnknownVersionError("CUDA", label, nearest(label, known))

    def cuda_release(self, version: str | RawVersion) -> CudaRelease:
        """The toolkit table row for `version`: "11.2" is 11.2 GA, "11.2.2" Update 2."""
        return self._cuda_row(version)

    def min_driver_for_cuda(self, version: str | RawVersion) -> RawVersion:
        row = self._cuda_row(version)
        if row.min_driver is None:  # pragma: no cover - the loader keeps driverless rows apart
            raise UnknownVersionError("CUDA", str(version), [])
        return row.min_driver

    def cuda_compat_floor(self, major: int) -> CompatFloor | None:
        return self.compat_floors.get(major)

    def cudnn_release(self, version: str | RawVersion) -> CudnnRelease:
        parsed = version if isinstance(version, RawVersion) else try_version(str(version))
        label = str(version)
        known = [r.version.raw for r in self.cudnn_releases]
        if parsed is None:
            raise UnknownVersionError("cuDNN", label, nearest(label, known))
        exact = [r for r in self.cudnn_releases if r.version == parsed]
        if exact:
            return exact[0]
        # 8.1.0.77 (a full build number) belongs to the 8.1.0 row.
        prefix = [
            r for r in self.cudnn_releases if parsed.release[: len(r.version.release)] == r.version.release
        ]
        if prefix:
            return max(prefix, key=lambda r: len(r.version.release))
        if len(parsed.release) == 2:  # "8.1": the newest release of that series
            series = [r for r in self.cudnn_releases if r.version.major_minor() == parsed.major_minor()]
            if series:
                return max(series, key=lambda r: r.version)
        raise UnknownVersionError("cuDNN", label, nearest(label, known))

    def cudnn_soname_major(self, version: str | RawVersion) -> int:
        """libcudnn.so.N for a cuDNN version: the known row's, else the version's own major."""
        try:
            return self.cudnn_release(version).soname_major
        except UnknownVersionError:
            parsed = version if isinstance(version, RawVersion) else try_version(str(version))
            if parsed is None or parsed.major < 5:
                raise
            return parsed.major

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - Matrix is immutable and lives for the process
    def runnable_with_driver(self, framework: str, driver: str | RawVersion) -> tuple[str, ...]:
        """Releases of `framework` that some supported setup runs on `driver` (see driver_floor)."""
        parsed = driver if isinstance(driver, RawVersion) else try_version(str(driver))
        if parsed is None:
            raise UsageError(
                f"not a driver version: {driver!r}", hint="write it as nvidia-smi does, e.g. 535.161.08"
            )
        name = normalize_framework(framework)
        table = self.releases.get(name, {})
        return tuple(v for v in self.known_versions(name) if parsed >= table[v].driver_floor)
