"""Reads the shipped matrix YAML into a validated `Matrix`; bad data stops here as a MatrixError.

The YAML lives in the package (`remediator/matrix/data`) and is read through importlib.resources,
so an installed wheel answers the same as a checkout. A directory may be passed instead (tests
use it to prove that broken rows are refused). The result is cached: the matrix is loaded once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

import yaml

from remediator.errors import MatrixError, UnknownVersionError
from remediator.matrix.model import (
    ARCH_ENTRY,
    FRAMEWORKS,
    CompatFloor,
    CondaPackage,
    CudaRelease,
    CudnnRelease,
    Defect,
    Matrix,
    Requirements,
    Variant,
    VersionRange,
)
from remediator.matrix.rules import CUDA_RULES, CUDNN_RULES, MINOR_COMPAT_RULES, python_range
from remediator.versions import RawVersion, try_version

DATA_FILES = ("rules.yaml", "cuda.yaml", "cudnn.yaml", "tensorflow.yaml", "pytorch.yaml", "conda.yaml")
_MATRIX_VERSION = re.compile(r"^\d{4}\.\d{2}\.\d{2}$")
_URL = re.compile(r"^https?://\S+$")
_DRIVER = re.compile(r"^>=\s*(\d+(?:\.\d+)*)$")
_HINT = "the compatibility matrix shipped with remediator is inconsistent; this is a bug, please report it"


class DataFile:
    """Error reporting and small typed readers for one YAML file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> NoReturn:
        raise MatrixError(f"matrix data {self.name}: {where}: {message}", hint=_HINT)

    def mapping(
        self, value: Any, where: str, required: AbstractSet[str], optional: AbstractSet[str] = frozenset()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping, got {type(value).__name__}")
        missing = sorted(required - value.keys())
        if missing:
            self.fail(where, f"missing {', '.join(missing)}")
        unknown = sorted(value.keys() - required - optional)
        if unknown:
            self.fail(where, f"unknown key(s) {', '.join(map(str, unknown))}")
        return value

    def string(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(where, f"expected a non-empty string, got {value!r}")
        return value

    def optional_string(self, value: Any, where: str) -> str | None:
        return None if value is None else self.string(value, where)

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            self.fail(where, f"expected true or false, got {value!r}")
        return value

    def version(self, value: Any, where: str) -> RawVersion:
        parsed = try_version(self.string(value, where))
        if parsed is None:
            self.fail(where, f"not a version: {value!r}")
        return parsed

    def strings(self, value: Any, where: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail(where, f"expected a non-empty list, got {value!r}")
        return tuple(self.string(v, f"{where}[{i}]") for i, v in enumerate(value))

    def sources(self, value: Any, where: str) -> tuple[str, ...]:
        if value is None:
            self.fail(where, "missing source (every row names the URL its facts come from)")
        urls = (self.string(value, where),) if isinstance(value, str) else self.strings(value, where)
        for url in urls:
            if not _URL.match(url):
                self.fail(where, f"source is not a URL: {url!r}")
        return urls

    def pins(self, value: Any, where: str) -> tuple[tuple[str, str], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.fail(where, f"expected a mapping of wheel name to version, got {value!r}")
        return tuple((self.string(k, where), self.string(v, f"{where}.{k}")) for k, v in value.items())


def read_data_file(data_dir: Path | None, name: str) -> tuple[DataFile, dict[str, Any], str]:
    file = DataFile(name)
    try:
        if data_dir is None:
            text = (
                resources.files("remediator.matrix")
                .joinpath("data")
                .joinpath(name)
                .read_text(encoding="utf-8")
            )
        else:
            text = (data_dir / name).read_text(encoding="utf-8")
    except OSError as exc:
        file.fail("file", f"cannot read: {exc}")
    try:
        # libyaml's loader (in PyYAML's wheels) reads the matrix ~10x faster: every command starts with it.
        document = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506
    except yaml.YAMLError as exc:
        file.fail("file", f"not valid YAML: {exc}")
    if not isinstance(document, dict):
        file.fail("file", "expected a mapping at the top level")
    version = document.get("matrix_version")
    if not isinstance(version, str) or not _MATRIX_VERSION.match(version):
        file.fail("matrix_version", f'expected "YYYY.MM.DD", got {version!r}')
    return file, document, version


def _dedupe(*groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(u for group in groups for u in group))


def _load_rules(file: DataFile, doc: dict[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    file.mapping(doc, "file", {"matrix_version", "rules"}, {"defects"})
    rules: dict[str, tuple[str, tuple[str, ...]]] = {}
    for i, row in enumerate(doc["rules"] or []):
        where = f"rules[{i}]"
        file.mapping(row, where, {"id", "applies_to", "range", "meaning", "source"})
        rule_id = file.string(row["id"], f"{where}.id")
        applies = file.string(row["applies_to"], f"{where}.applies_to")
        known = CUDA_RULES if applies == "cuda" else CUDNN_RULES if applies == "cudnn" else None
        if known is None:
            file.fail(where, f"applies_to must be cuda or cudnn, got {applies!r}")
        if rule_id not in known:
            file.fail(where, f"no code implements rule {rule_id!r} for {applies}")
        if rule_id in rules:
            file.fail(where, f"duplicate rule {rule_id!r}")
        file.string(row["meaning"], f"{where}.meaning")
        rules[rule_id] = (applies, file.sources(row["source"], f"{where}.source"))
    return rules


def _load_defects(file: DataFile, doc: dict[str, Any]) -> tuple[Defect, ...]:
    defects: list[Defect] = []
    seen: set[str] = set()
    for i, row in enumerate(doc.get("defects") or []):
        where = f"defects[{i}]"
        file.mapping(row, where, {"id", "framework", "affects", "symptom", "source"}, {"fixed_in", "workaround"})
        defect_id = file.string(row["id"], f"{where}.id")
        if defect_id in seen:
            file.fail(where, f"duplicate defect {defect_id!r}")
        seen.add(defect_id)
        framework = file.string(row["framework"], f"{where}.framework")
        if framework not in FRAMEWORKS:
            file.fail(f"{where}.framework", f"expected one of {', '.join(FRAMEWORKS)}, got {framework!r}")
        affects_raw = file.string(row["affects"], f"{where}.affects")
        try:
            affects = VersionRange(affects_raw, tuple(s.strip() for s in affects_raw.split("||")))
        except ValueError as exc:
            file.fail(f"{where}.affects", str(exc))
        fixed_in = file.optional_string(row.get("fixed_in"), f"{where}.fixed_in")
        sources = file.sources(row["source"], f"{where}.source")
        defect = Defect(
            id=defect_id,
            framework=framework,
            affects=affects,
            fixed_in=fixed_in,
            symptom=" ".join(file.string(row["symptom"], f"{where}.symptom").split()),
            workaround=(
                " ".join(row["workaround"].split())
                if file.optional_string(row.get("workaround"), f"{where}.workaround")
                else None
            ),
            source=sources[0],
            sources=sources,
        )
        if fixed_in is not None and defect.affects_version(fixed_in):
            file.fail(f"{where}.fixed_in", f"{fixed_in} is inside the affected range {affects_raw}")
        defects.append(defect)
    return tuple(defects)


def _load_conda(file: DataFile, doc: dict[str, Any], base: Matrix) -> tuple[CondaPackage, ...]:
    file.mapping(doc, "file", {"matrix_version", "packages"})
    rows: list[CondaPackage] = []
    seen: set[tuple[str, str]] = set()
    for i, row in enumerate(doc["packages"] or []):
        where = f"packages[{i}]"
        file.mapping(row, where, {"name", "version", "cuda", "channels", "source"}, {"depends", "note"})
        name = file.string(row["name"], f"{where}.name")
        version = file.string(row["version"], f"{where}.version")
        if (name, version) in seen:
            file.fail(where, f"duplicate {name} {version}")
        seen.add((name, version))
        cuda = file.version(row["cuda"], f"{where}.cuda")
        try:
            driver = base.min_driver_for_cuda(cuda)
        except UnknownVersionError:
            file.fail(where, f"CUDA {cuda.raw} is not in cuda.yaml")
        floor = base.cuda_compat_floor(cuda.major)
        sources = file.sources(row["source"], f"{where}.source")
        rows.append(
            CondaPackage(
                name=name,
                version=version,
                cuda=cuda,
                channels=file.strings(row["channels"], f"{where}.channels"),
                depends=file.pins(row.get("depends"), f"{where}.depends"),
                min_driver=driver,
                min_driver_compat=floor.min_driver if floor else None,
                source=sources[0],
                sources=sources,
                note=" ".join(row["note"].split()) if row.get("note") else None,
            )
        )
    if not rows:
        file.fail("packages", "no conda packages")
    return tuple(rows)


def _cuda_row(file: DataFile, row: Any, where: str, with_driver: bool) -> CudaRelease:
    required = {"version", "label", "source"} | ({"linux_driver"} if with_driver else set())
    file.mapping(row, where, required, {"ga", "note"})
    version = file.version(row["version"], f"{where}.version")
    driver_raw = file.string(row["linux_driver"], f"{where}.linux_driver") if with_driver else None
    driver: RawVersion | None = None
    if driver_raw is not None:
        match = _DRIVER.match(driver_raw.strip())
        if not match:
            file.fail(f"{where}.linux_driver", f'expected ">=DRIVER", got {driver_raw!r}')
        driver = RawVersion.parse(match.group(1))
    sources = file.sources(row["source"], f"{where}.source")
    return CudaRelease(
        version=version,
        label=file.string(row["label"], f"{where}.label"),
        min_driver=driver,
        driver_raw=driver_raw,
        ga=file.boolean(row.get("ga", False), f"{where}.ga"),
        source=sources[0],
        sources=sources,
        note=file.optional_string(row.get("note"), f"{where}.note"),
    )


_CudaData = tuple[tuple[CudaRelease, ...], tuple[CudaRelease, ...], dict[int, CompatFloor], str]


def _load_cuda(file: DataFile, doc: dict[str, Any]) -> _CudaData:
    required = {"matrix_version", "releases", "compat_floors", "forward_compat"}
    file.mapping(doc, "file", required, {"unconfirmed"})
    rows = tuple(_cuda_row(file, row, f"releases[{i}]", True) for i, row in enumerate(doc["releases"] or []))
    if not rows:
        file.fail("releases", "no CUDA releases")
    seen: set[RawVersion] = set()
    for i, row in enumerate(rows):
        if row.version in seen:
            file.fail(f"releases[{i}]", f"duplicate CUDA version {row.version.raw}")
        seen.add(row.version)
    ga_series: dict[tuple[int, int], int] = {}
    for row in rows:
        if row.ga:
            ga_series[row.version.major_minor()] = ga_series.get(row.version.major_minor(), 0) + 1
    for series, count in ga_series.items():
        if count > 1:
            file.fail("releases", f"CUDA {series[0]}.{series[1]} has {count} rows marked ga")
    for row in rows:
        if row.version.major_minor() not in ga_series:
            file.fail("releases", f"CUDA {row.version.raw} has no GA row in its series")
    unconfirmed = tuple(
        _cuda_row(file, row, f"unconfirmed[{i}]", False) for i, row in enumerate(doc.get("unconfirmed") or [])
    )
    floors: dict[int, CompatFloor] = {}
    for i, row in enumerate(doc["compat_floors"] or []):
        where = f"compat_floors[{i}]"
        file.mapping(row, where, {"major", "min_driver", "caveats", "source"})
        major = row["major"]
        if not isinstance(major, int) or major < 11:
            file.fail(f"{where}.major", f"minor-version compatibility starts at CUDA 11, got {major!r}")
        sources = file.sources(row["source"], f"{where}.source")
        floors[major] = CompatFloor(
            major=major,
            min_driver=file.version(row["min_driver"], f"{where}.min_driver"),
            caveats=" ".join(file.string(row["caveats"], f"{where}.caveats").split()),
            source=sources[0],
            sources=sources,
        )
    forward = file.mapping(doc["forward_compat"], "forward_compat", {"package", "note", "source"})
    file.sources(forward["source"], "forward_compat.source")
    note = " ".join(file.string(forward["note"], "forward_compat.note").split())
    return rows, unconfirmed, floors, note


def _load_cudnn(file: DataFile, doc: dict[str, Any]) -> tuple[CudnnRelease, ...]:
    file.mapping(doc, "file", {"matrix_version", "majors", "releases"})
    majors: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(doc["majors"] or []):
        where = f"majors[{i}]"
        file.mapping(row, where, {"major", "soname", "version_header", "apt", "source"}, {"pip", "note"})
        major = row["major"]
        if not isinstance(major, int):
            file.fail(f"{where}.major", f"expected an integer, got {major!r}")
        if file.string(row["soname"], f"{where}.soname") != f"libcudnn.so.{major}":
            file.fail(f"{where}.soname", f"cuDNN {major} is libcudnn.so.{major}, got {row['soname']!r}")
        if row["version_header"] not in ("cudnn.h", "cudnn_version.h"):
            header = row["version_header"]
            file.fail(f"{where}.version_header", f"expected cudnn.h or cudnn_version.h, got {header!r}")
        file.sources(row["source"], f"{where}.source")
        majors[major] = row
    releases: list[CudnnRelease] = []
    seen: set[RawVersion] = set()
    for i, row in enumerate(doc["releases"] or []):
        where = f"releases[{i}]"
        file.mapping(row, where, {"version", "cuda", "source"}, {"wheels", "note"})
        version = file.version(row["version"], f"{where}.version")
        if version in seen:
            file.fail(where, f"duplicate cuDNN version {version.raw}")
        seen.add(version)
        if version.major not in majors:
            file.fail(where, f"cuDNN {version.raw}: major {version.major} is not described under majors")
        cuda = file.strings(row["cuda"], f"{where}.cuda")
        for entry in cuda:
            if not re.match(r"^\d+\.(\d+|x)$", entry):
                file.fail(f"{where}.cuda", f'expected "X.Y" or "X.x", got {entry!r}')
        info = majors[version.major]
        apt = info["apt"]
        cuda_majors = [entry.split(".")[0] for entry in cuda]
        packages: list[str] = []
        if isinstance(apt, dict):
            for m in cuda_majors:
                packages.extend(apt.get(m, []))
        else:
            packages.extend(file.strings(apt, f"majors[{version.major}].apt"))
        pip = info.get("pip") or {}
        wheels = file.pins(row.get("wheels"), f"{where}.wheels")
        for name, _ in wheels:
            if name not in pip.values():
                file.fail(f"{where}.wheels", f"{name} is not a pip package of cuDNN {version.major}")
        packages.extend(name for name, _ in wheels)
        sources = file.sources(row["source"], f"{where}.source")
        releases.append(
            CudnnRelease(
                version=version,
                cuda=cuda,
                soname_major=version.major,
                version_header=info["version_header"],
                packages=_dedupe(packages),
                wheels=wheels,
                source=sources[0],
                sources=sources,
                note=file.optional_string(row.get("note"), f"{where}.note"),
            )
        )
    if not releases:
        file.fail("releases", "no cuDNN releases")
    return tuple(releases)


_SERIES_REQUIRED = {"series", "python", "packages", "cuda_rule", "cudnn_rule", "source", "releases"}
_SERIES_OPTIONAL = {
    "tested_as",
    "compiler",
    "build_tools",
    "cuda",
    "cudnn",
    "bundles_cuda",
    "pip_extra",
    "note",
    "default_variant",
    "variants",
    "cpu_index_url",
}


def _cudnn_known(base: Matrix, version: RawVersion) -> bool:
    if len(version.release) == 1:  # TensorFlow's table writes a bare "7"
        return any(r.version.major == version.major for r in base.cudnn_releases)
    try:
        base.cudnn_release(version)
    except UnknownVersionError:
        return False
    return True


def _load_framework(
    file: DataFile,
    doc: dict[str, Any],
    base: Matrix,
    rules: Mapping[str, tuple[str, tuple[str, ...]]],
    defects: tuple[Defect, ...] = (),
) -> tuple[str, dict[str, Requirements]]:
    file.mapping(doc, "file", {"matrix_version", "framework", "series"})
    framework = file.string(doc["framework"], "framework")
    if framework not in FRAMEWORKS:
        file.fail("framework", f"expected one of {', '.join(FRAMEWORKS)}, got {framework!r}")
    table: dict[str, Requirements] = {}
    for i, row in enumerate(doc["series"] or []):
        where = f"series[{i}]"
        file.mapping(row, where, _SERIES_REQUIRED, _SERIES_OPTIONAL)
        series = file.string(row["series"], f"{where}.series")
        where = f"series {series}"
        series_version = file.version(series, f"{where}.series")
        try:
            python = python_range(file.string(row["python"], f"{where}.python"))
        except ValueError as exc:
            file.fail(f"{where}.python", str(exc))
        packages = file.strings(row["packages"], f"{where}.packages")
        sources = file.sources(row.get("source"), f"{where}.source")
        cuda_rule = file.string(row["cuda_rule"], f"{where}.cuda_rule")
        cudnn_rule = file.string(row["cudnn_rule"], f"{where}.cudnn_rule")
        for rule, kind in ((cuda_rule, "cuda"), (cudnn_rule, "cudnn")):
            if rule not in rules or rules[rule][0] != kind:
                file.fail(where, f"{kind}_rule {rule!r} is not a {kind} rule of rules.yaml")
        bundles = file.boolean(row.get("bundles_cuda", False), f"{where}.bundles_cuda")
        pip_extra = file.optional_string(row.get("pip_extra"), f"{where}.pip_extra")
        notes = (" ".join(row["note"].split()),) if row.get("note") else ()

        variants: list[Variant] = []
        if row.get("variants") is not None:
            default_tag = file.string(row.get("default_variant"), f"{where}.default_variant")
            for j, v in enumerate(row["variants"]):
                vwhere = f"{where}.variants[{j}]"
                file.mapping(v, vwhere, {"tag", "cuda", "cudnn", "status", "index_url"}, {"toolkit", "archs"})
                vcuda = file.version(v["cuda"], f"{vwhere}.cuda")
                toolkit = file.version(v["toolkit"], f"{vwhere}.toolkit") if "toolkit" in v else None
                if toolkit is not None and toolkit.major_minor() != vcuda.major_minor():
                    file.fail(f"{vwhere}.toolkit", f"{toolkit.raw} is not a CUDA {vcuda.raw} toolkit")
                archs = file.strings(v["archs"], f"{vwhere}.archs") if "archs" in v else ()
                for arch in archs:
                    if not ARCH_ENTRY.match(arch):
                        file.fail(f"{vwhere}.archs", f'expected "X.Y" or "X.Y+PTX", got {arch!r}')
                try:
                    vdriver = base.min_driver_for_cuda(toolkit or vcuda)
                except UnknownVersionError:
                    file.fail(vwhere, f"CUDA {(toolkit or vcuda).raw} is not in cuda.yaml")
                floor = base.cuda_compat_floor(vcuda.major)
                variants.append(
                    Variant(
                        tag=file.string(v["tag"], f"{vwhere}.tag"),
                        cuda=vcuda,
                        cudnn=None if v["cudnn"] is None else file.version(v["cudnn"], f"{vwhere}.cudnn"),
                        default=v["tag"] == default_tag,
                        status=file.string(v["status"], f"{vwhere}.status"),
                        index_url=file.sources(v["index_url"], f"{vwhere}.index_url")[0],
                        min_driver=vdriver,
                        min_driver_compat=floor.min_driver if floor else None,
                        toolkit=toolkit,
                        archs=archs,
                    )
                )
            defaults = [v for v in variants if v.default]
            if len(defaults) != 1:
                file.fail(where, f"default_variant {default_tag!r} names {len(defaults)} variants")
            cuda = defaults[0].cuda
            cudnn = defaults[0].cudnn
            cuda_versions = [v.cuda for v in variants]
            cudnn_versions = [v.cudnn for v in variants if v.cudnn is not None]
        else:
            if "cuda" not in row or "cudnn" not in row:
                file.fail(where, "needs cuda and cudnn (or variants)")
            cuda = file.version(row["cuda"], f"{where}.cuda")
            cudnn = file.version(row["cudnn"], f"{where}.cudnn")
            cuda_versions = [cuda]
            cudnn_versions = [cudnn]
        if not cudnn_versions:
            file.fail(where, "no variant records a cuDNN version")
        for cv in cudnn_versions:
            if not _cudnn_known(base, cv):
                file.fail(where, f"cuDNN {cv.raw} is not in cudnn.yaml")
        try:
            cuda_row = base.cuda_release(cuda)
        except UnknownVersionError:
            file.fail(where, f"CUDA {cuda.raw} is not in cuda.yaml")
        assert cuda_row.min_driver is not None
        cpu_index_url = (
            file.sources(row["cpu_index_url"], f"{where}.cpu_index_url")[0] if row.get("cpu_index_url") else None
        )
        cuda_range: VersionRange = CUDA_RULES[cuda_rule](cuda_versions)
        cudnn_range: VersionRange = CUDNN_RULES[cudnn_rule](cudnn_versions)
        floor = base.cuda_compat_floor(cuda.major) if cuda_rule in MINOR_COMPAT_RULES else None
        rule_sources = rules[cuda_rule][1] + rules[cudnn_rule][1]
        floor_sources = floor.sources if floor else ()

        entries = row["releases"]
        if not isinstance(entries, list) or not entries:
            file.fail(f"{where}.releases", "expected a non-empty list")
        for j, entry in enumerate(entries):
            rwhere = f"{where}.releases[{j}]"
            if isinstance(entry, str):
                entry = {"version": entry}
            file.mapping(
                entry,
                rwhere,
                {"version"},
                {"requires_python", "wheels", "note", "source", "python", "torchvision", "torchaudio"},
            )
            raw = file.string(entry["version"], f"{rwhere}.version")
            parsed = file.version(raw, f"{rwhere}.version")
            if parsed.major_minor() != series_version.major_minor():
                file.fail(rwhere, f"{raw} is not in series {series}")
            if raw in table:
                file.fail(rwhere, f"duplicate release {raw}")
            release_sources = file.sources(entry["source"], f"{rwhere}.source") if "source" in entry else ()
            release_notes = (" ".join(entry["note"].split()),) if entry.get("note") else ()
            release_python = python
            if "python" in entry:
                try:
                    release_python = python_range(file.string(entry["python"], f"{rwhere}.python"))
                except ValueError as exc:
                    file.fail(f"{rwhere}.python", str(exc))
            pairs: dict[str, tuple[str, ...]] = {}
            for companion in ("torchvision", "torchaudio"):
                if companion in entry and framework != "pytorch":
                    file.fail(rwhere, f"{companion} pairs only with pytorch releases")
                pairs[companion] = (
                    file.strings(entry[companion], f"{rwhere}.{companion}") if (companion in entry) else ()
                )
                for pv in pairs[companion]:
                    file.version(pv, f"{rwhere}.{companion}")
            table[raw] = Requirements(
                framework=framework,
                version=raw,
                series=series,
                packages=packages,
                python=release_python,
                cuda=cuda,
                cuda_range=cuda_range,
                cudnn=cudnn,
                cudnn_range=cudnn_range,
                min_driver=cuda_row.min_driver,
                min_driver_compat=floor.min_driver if floor and cuda.major >= 11 else None,
                bundles_cuda=bundles,
                wheels=file.pins(entry.get("wheels"), f"{rwhere}.wheels"),
                variants=tuple(variants),
                sources=_dedupe(sources, release_sources, cuda_row.sources, floor_sources, rule_sources),
                pip_extra=pip_extra,
                compiler=row.get("compiler"),
                notes=notes + release_notes + ((cuda_row.note,) if cuda_row.note else ()),
                torchvision=pairs["torchvision"],
                torchaudio=pairs["torchaudio"],
                cpu_index_url=cpu_index_url,
                defects=tuple(d for d in defects if d.framework == framework and d.affects_version(raw)),
            )
    if not table:
        file.fail("series", "no releases")
    return framework, table


def _load(data_dir: Path | None) -> Matrix:
    docs = {name: read_data_file(data_dir, name) for name in DATA_FILES}
    versions = {version for _, _, version in docs.values()}
    if len(versions) != 1:
        file = docs["rules.yaml"][0]
        file.fail("matrix_version", f"the data files disagree: {', '.join(sorted(versions))}")
    rules = _load_rules(*docs["rules.yaml"][:2])
    defects = _load_defects(*docs["rules.yaml"][:2])
    cuda_rows, unconfirmed, floors, forward = _load_cuda(*docs["cuda.yaml"][:2])
    cudnn_rows = _load_cudnn(*docs["cudnn.yaml"][:2])
    base = Matrix(
        version=versions.pop(),
        releases={},
        cuda_releases=cuda_rows,
        cuda_unconfirmed=unconfirmed,
        compat_floors=floors,
        cudnn_releases=cudnn_rows,
        forward_compat_note=forward,
        rules={rule: kind for rule, (kind, _) in rules.items()},
    )
    releases: dict[str, dict[str, Requirements]] = {}
    for name in ("tensorflow.yaml", "pytorch.yaml"):
        file, doc, _ = docs[name]
        framework, table = _load_framework(file, doc, base, rules, defects)
        if framework in releases:
            file.fail("framework", f"{framework} is described twice")
        releases[framework] = table
    for defect in defects:
        fixed = defect.fixed_in
        if fixed is not None and fixed.split("+", 1)[0] not in releases.get(defect.framework, {}):
            docs["rules.yaml"][0].fail(f"defect {defect.id}", f"fixed_in {fixed} is not a known release")
    conda = _load_conda(docs["conda.yaml"][0], docs["conda.yaml"][1], base)
    return Matrix(
        version=base.version,
        releases=releases,
        cuda_releases=base.cuda_releases,
        cuda_unconfirmed=base.cuda_unconfirmed,
        compat_floors=base.compat_floors,
        cudnn_releases=base.cudnn_releases,
        forward_compat_note=base.forward_compat_note,
        rules=base.rules,
        conda_packages=conda,
        defects=defects,
    )


@functools.lru_cache(maxsize=8)
def load_matrix(data_dir: str | Path | None = None) -> Matrix:
    """The compatibility matrix: the shipped data, or the YAML files in `data_dir`.

    Raises MatrixError when the data is inconsistent. Cached per `data_dir`.
    """
    return _load(Path(data_dir) if data_dir is not None else None)
