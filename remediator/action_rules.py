"""The per-field rules every planned action must pass, when planned and again in apply.

An action's values come from a host (package names and versions from its dpkg/rpm database, paths of its
toolkits, its Pythons) or from a plan file a user hands us: both are untrusted. Each field of each action
kind has one strict grammar here: the package manager's own for names and versions, absolute normalised
paths on the allowlist for what is moved or linked, a real interpreter path for the Python, an exact pin
for pip. A value that does not fit is refused with the field named, and the host goes no further.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from remediator.safety import check_path, check_venv_root

# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two characters, starting alphanumeric.
_DEB_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]{1,127}")
# RPM names: letters (either case), digits and - . _ + (no spaces, no shell or template characters).
_RPM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}")
# Debian policy 5.6.12 ([epoch:]upstream[-revision]) and RPM's [epoch:]version[-release]: digits first,
# then letters, digits and . + ~ - : _ ^ only.
_PKG_VERSION = re.compile(r"(?:\d{1,9}:)?\d[A-Za-z0-9.+~_^-]{0,127}")
# What the planner asks a package manager for: a version with `*` globs (`8.6.*+cuda11.8`).
_PKG_VERSION_GLOB = re.compile(r"(?:\d{1,9}:)?\d[A-Za-z0-9.+~_^*-]{0,127}")
# PEP 508 names, and an exact pin with optional extras: what the planner writes for pip.
_PY_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,100}[A-Za-z0-9])?"
_PIP_PIN = re.compile(rf"{_PY_NAME}(?:\[{_PY_NAME}(?:,{_PY_NAME})*\])?==[0-9][A-Za-z0-9.+!]{{0,63}}")
_PIP_WHEEL = re.compile(rf"{_PY_NAME}(?:==|>=|<=|~=|>|<|!=)[0-9][A-Za-z0-9.+!*]{{0,63}}"
                        rf"(?:,(?:==|>=|<=|~=|>|<|!=)[0-9][A-Za-z0-9.+!*]{{0,63}}){{0,4}}")
# The PyTorch indexes the matrix names for its CUDA builds: the only package source a plan may add.
_TORCH_INDEX = re.compile(r"https://download\.pytorch\.org/whl/[A-Za-z0-9_.-]{1,40}(?:/[A-Za-z0-9_.-]{1,60})?")
_INTERPRETER = re.compile(r"python(?:[23](?:\.\d{1,2})?)?")
_DRIVER = re.compile(r"\d{2,4}(?:\.\d{1,3}){1,2}")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,47}")
_PATH_CHARS = re.compile(r"/[A-Za-z0-9_.+@-][A-Za-z0-9_.+@/-]{0,1023}")
# The library dirs a venv's loader path may be pinned to: a toolkit's, the system's default ones, or a
# cuDNN unpacked under /usr/local or /opt. Each is written into the venv's activate script.
_LOADER_DIRS = (
    re.compile(r"/(?:usr/local|opt)/cuda(?:-\d{1,2}\.\d{1,2}(?:\.\d{1,3})?)?"
               r"(?:/lib64|/lib|/targets/(?:x86_64|sbsa|aarch64)-linux/lib)(?:/stubs)?"),
    re.compile(r"/(?:usr/)?lib(?:64|32)?(?:/(?:x86_64|aarch64)-linux-gnu)?"),
    re.compile(r"/(?:usr/local|opt)/(?:nvidia/)?cudnn[A-Za-z0-9_.+-]{0,60}/lib(?:64)?"),
)
_KINDS = frozenset({"quarantine_path", "remove_package", "set_cuda_link", "install_package", "install_python",
                    "create_venv", "pip_install", "pin_loader_path", "upgrade_driver", "reboot"})
# A Python mirror (remediator_python_mirror): https:// or file://, then only URL path characters; no
# credentials, query, fragment, whitespace, quotes or shell and template characters.
_MIRROR = re.compile(r"https://[A-Za-z0-9.-]{1,253}(?::\d{1,5})?(?:/[A-Za-z0-9._~+-]{1,200}){0,32}/?"
                     r"|file://(?:/[A-Za-z0-9._~+-]{1,200}){1,32}/?")
# What uv is asked to install: a CPython range as the matrix writes it (>=3.6,<3.9) or one minor.
_PY_REQUEST = re.compile(r"(?:>=3\.\d{1,2},<3\.\d{1,2}|3\.\d{1,2})")
_TEXT_MAX = 2000


@dataclass(frozen=True)
class RuleViolation:
    """Why one field of one action was refused."""

    index: int  # the action's place in the host's list
    kind: str
    field: str
    value: str  # repr() of the value, cut short
    why: str

    def __str__(self) -> str:
        return f"action {self.index} ({self.kind}): {self.field} {self.value}: {self.why}"


def check_actions(actions: Sequence[Any], venv_root: str) -> list[RuleViolation]:
    """Every field of every action against its rule; [] when all pass.

    `actions` are plan.Action objects or their dicts (as a plan file holds them). `venv_root` is where
    remediate keeps its venvs: apply's own option, never the plan's.
    """
    out: list[RuleViolation] = []
    root_problem = check_venv_root(venv_root)
    for i, action in enumerate(actions):
        if isinstance(action, Mapping):
            kind, params = action.get("kind"), action.get("params")
            extra = {"finding": action.get("finding"), "reason": action.get("reason"),
                     "requires_approval": action.get("requires_approval", False)}
        else:
            kind, params = getattr(action, "kind", None), getattr(action, "params", None)
            extra = {"finding": action.finding, "reason": action.reason, "requires_approval": action.requires_approval}
        if not isinstance(kind, str) or kind not in _KINDS:
            out.append(RuleViolation(i, str(kind)[:40], "kind", _show(kind), "not an action remediate knows"))
            continue
        if not isinstance(params, Mapping):
            out.append(RuleViolation(i, kind, "params", _show(params), "not a mapping"))
            continue
        found: list[tuple[str, Any, str]] = []
        if root_problem is not None and kind in ("create_venv", "pip_install", "pin_loader_path", "quarantine_path",
                                                 "install_python"):
            found.append(("venv root", venv_root, root_problem))
        found += _common(extra)
        found += _RULES[kind](params, venv_root)
        unknown = sorted(str(k) for k in params if str(k) not in _FIELDS[kind])
        found += [(f"params.{k}", params.get(k), "not a field of this action") for k in unknown]
        out += [RuleViolation(i, kind, name, _show(value), why) for name, value, why in found]
    return out


def check_target(target: object) -> str | None:
    """Why a plan's `target` entry is not one remediate wrote, or None."""
    if target is None:
        return None
    if not isinstance(target, Mapping):
        return "target: not a mapping"
    fw, version = target.get("framework"), target.get("version")
    if fw not in ("tensorflow", "pytorch"):
        return f"target.framework {_show(fw)}: not tensorflow or pytorch"
    if not (isinstance(version, str) and re.fullmatch(r"\d{1,3}(?:\.\d{1,4}){0,3}(?:[a-z]{1,5}\d{0,4})?", version)):
        return f"target.version {_show(version)}: not a release number"
    for key, value in target.items():
        if isinstance(value, str) and (len(value) > 200 or _bad_text(value)):
            return f"target.{key} {_show(value)}: control characters or template markers"
    return None


# --- the fields of each kind ------------------------------------------------------------------------

Problems = list[tuple[str, Any, str]]

_FIELDS: dict[str, frozenset[str]] = {
    "quarantine_path": frozenset({"path", "what"}),
    "remove_package": frozenset({"manager", "name", "version"}),
    "set_cuda_link": frozenset({"link", "target", "previous", "via_alternatives"}),
    "install_package": frozenset({"manager", "name", "version", "extra"}),
    "install_python": frozenset({"version", "home", "mirror"}),
    "create_venv": frozenset({"path", "python", "uv"}),
    "pip_install": frozenset({"venv", "requirements", "expected_wheels", "package_index"}),
    "pin_loader_path": frozenset({"venv", "ld_library_path"}),
    "upgrade_driver": frozenset({"current", "min_version", "reboot"}),
    "reboot": frozenset(),
}


def _quarantine(p: Mapping[str, Any], root: str) -> Problems:
    verdict = check_path(p.get("path"), managed_roots=(root,))
    out: Problems = [] if verdict.allowed else [("params.path", p.get("path"), verdict.reason)]
    return out + _label(p, "what")


def _remove_package(p: Mapping[str, Any], root: str) -> Problems:
    manager = p.get("manager")
    if manager not in ("deb", "rpm"):
        return [("params.manager", manager, "not deb or rpm")]
    out = _package_name(p.get("name"), str(manager), "params.name")
    version = p.get("version")
    if version is not None and not _fits(_PKG_VERSION, version):
        out.append(("params.version", version, f"not a {manager} version"))
    return out


def _install_package(p: Mapping[str, Any], root: str) -> Problems:
    manager = p.get("manager")
    if manager not in ("system", "deb", "rpm"):
        return [("params.manager", manager, "not system, deb or rpm")]
    out = _package_name(p.get("name"), str(manager), "params.name")
    version = p.get("version")
    if version is not None and not _fits(_PKG_VERSION_GLOB, version):
        out.append(("params.version", version, "not a package version"))
    extra = p.get("extra", [])
    if not isinstance(extra, list) or len(extra) > 20:
        out.append(("params.extra", extra, "not a list of at most 20 package names"))
    else:
        for j, name in enumerate(extra):
            out += _package_name(name, str(manager), f"params.extra[{j}]")
    return out


def _set_cuda_link(p: Mapping[str, Any], root: str) -> Problems:
    out: Problems = []
    link = check_path(p.get("link"))
    if not (link.allowed and link.reason == "CUDA link"):
        out.append(("params.link", p.get("link"), "not /usr/local/cuda or /usr/local/cuda-N"))
    for name in ("target", "previous"):
        value = p.get(name)
        if name == "previous" and value is None:
            continue
        verdict = check_path(value)
        if not (verdict.allowed and verdict.reason in ("toolkit dir", "CUDA link")):
            out.append((f"params.{name}", value, "not a CUDA toolkit dir (/usr/local/cuda-X.Y, /opt/cuda-X.Y)"))
    if not isinstance(p.get("via_alternatives", False), bool):
        out.append(("params.via_alternatives", p.get("via_alternatives"), "not true or false"))
    return out


def _install_python(p: Mapping[str, Any], root: str) -> Problems:
    out = _venv(p.get("home"), root, "params.home")
    if not _fits(_PY_REQUEST, p.get("version")):
        out.append(("params.version", p.get("version"), "not a CPython range (>=3.6,<3.9) or minor (3.8)"))
    why = mirror_problem(p.get("mirror"))
    if why is not None:
        out.append(("params.mirror", p.get("mirror"), why))
    return out


def mirror_problem(url: object) -> str | None:
    """Why `url` is not a Python mirror remediate hands to uv, or None."""
    if not isinstance(url, str) or not url:
        return "not a URL"
    if not _fits(_MIRROR, url) or "/../" in url + "/" or "/./" in url + "/":
        return ("not an https:// or file:// URL of plain path characters (no credentials, query, spaces, quotes, "
                "shell or template characters)")
    return None


def _create_venv(p: Mapping[str, Any], root: str) -> Problems:
    out = _venv(p.get("path"), root, "params.path")
    python = p.get("python")
    if not _is_interpreter(python):
        out.append(("params.python", python, "not an interpreter path (an absolute normalised path "
                                             "ending in bin/python, bin/python3 or bin/python3.N)"))
    uv = p.get("uv")
    if uv is not None:
        # The uv that install_python copied beside the venv: <venv root>/<name>-python/uv, nothing else.
        home = posixpath.dirname(uv) if isinstance(uv, str) else None
        if (posixpath.basename(str(uv)) != "uv" or home is None or _venv(home, root, "params.uv")
                or not home.endswith("-python")):
            out.append(("params.uv", uv, "not the uv of a Python home under the venv root (<root>/<name>-python/uv)"))
        elif isinstance(python, str) and not python.startswith(home + "/"):
            out.append(("params.python", python, "not the interpreter of the Python home uv made"))
    return out


def _pip_install(p: Mapping[str, Any], root: str) -> Problems:
    out = _venv(p.get("venv"), root, "params.venv")
    reqs = p.get("requirements")
    if not isinstance(reqs, list) or not 1 <= len(reqs) <= 10:
        out.append(("params.requirements", reqs, "not a list of 1 to 10 pins"))
    else:
        out += [(f"params.requirements[{j}]", r, "not an exact pin (name[extras]==version)")
                for j, r in enumerate(reqs) if not _fits(_PIP_PIN, r)]
    index = p.get("package_index")
    if index is not None and not _fits(_TORCH_INDEX, index):
        out.append(("params.package_index", index, "not a PyTorch package index (https://download.pytorch.org/whl/...)"))
    wheels = p.get("expected_wheels", [])
    if not isinstance(wheels, list) or len(wheels) > 64:
        out.append(("params.expected_wheels", wheels, "not a list of at most 64 requirements"))
    else:
        out += [(f"params.expected_wheels[{j}]", w, "not name==version or name>=version")
                for j, w in enumerate(wheels) if not _fits(_PIP_WHEEL, w)]
    return out


def _pin_loader_path(p: Mapping[str, Any], root: str) -> Problems:
    out = _venv(p.get("venv"), root, "params.venv")
    dirs = p.get("ld_library_path")
    if not isinstance(dirs, list) or not 1 <= len(dirs) <= 16:
        return [*out, ("params.ld_library_path", dirs, "not a list of 1 to 16 directories")]
    for j, d in enumerate(dirs):
        name = f"params.ld_library_path[{j}]"
        why = _path_problem(d)
        if why is None and not (any(rx.fullmatch(str(d)) for rx in _LOADER_DIRS) or _under(str(d), root)):
            why = "not a toolkit, cuDNN or system library dir"
        if why is not None:
            out.append((name, d, why))
    return out


def _upgrade_driver(p: Mapping[str, Any], root: str) -> Problems:
    out: Problems = []
    for name in ("current", "min_version"):
        value = p.get(name)
        if value is None and name == "current":
            continue
        if not _fits(_DRIVER, value):
            out.append((f"params.{name}", value, "not a driver version (535.161.08)"))
    if not isinstance(p.get("reboot", False), bool):
        out.append(("params.reboot", p.get("reboot"), "not true or false"))
    return out


def _reboot(p: Mapping[str, Any], root: str) -> Problems:
    return []


_RULES = {
    "quarantine_path": _quarantine, "remove_package": _remove_package, "set_cuda_link": _set_cuda_link,
    "install_package": _install_package, "install_python": _install_python, "create_venv": _create_venv,
    "pip_install": _pip_install,
    "pin_loader_path": _pin_loader_path, "upgrade_driver": _upgrade_driver, "reboot": _reboot,
}


# --- small rules ------------------------------------------------------------------------------------


def _common(extra: Mapping[str, Any]) -> Problems:
    out: Problems = []
    finding = extra.get("finding")
    if finding is not None and not _fits(_CODE, finding):
        out.append(("finding", finding, "not a finding code"))
    reason = extra.get("reason")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= _TEXT_MAX and not _CTRL.search(reason)):
        out.append(("reason", reason, f"not text of at most {_TEXT_MAX} characters without control characters"))
    if not isinstance(extra.get("requires_approval"), bool):
        out.append(("requires_approval", extra.get("requires_approval"), "not true or false"))
    return out


def _label(p: Mapping[str, Any], name: str) -> Problems:
    value = p.get(name)
    if value is None or (isinstance(value, str) and len(value) <= 100 and not _bad_text(value)):
        return []
    return [(f"params.{name}", value, "not a short label without control characters or template markers")]


def _package_name(name: object, manager: str, where: str) -> Problems:
    # The planner's own names ("system") are Debian's; the playbook maps them for dnf.
    grammar, what = (_RPM_NAME, "RPM") if manager == "rpm" else (_DEB_NAME, "Debian")
    return [] if _fits(grammar, name) else [(where, name, f"not a {what} package name")]


def _venv(path: object, root: str, where: str) -> Problems:
    why = _path_problem(path)
    if why is None and posixpath.dirname(str(path)) != root:
        why = f"not a venv directly under the venv root {root}"
    if why is None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,100}", posixpath.basename(str(path))):
        why = "not a plain venv name"
    return [] if why is None else [(where, path, why)]


def _is_interpreter(path: object) -> bool:
    if _path_problem(path) is not None:
        return False
    parent, leaf = posixpath.split(str(path))
    return posixpath.basename(parent) == "bin" and bool(_INTERPRETER.fullmatch(leaf))


def _path_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path:
        return "not a path"
    if not _PATH_CHARS.fullmatch(path):
        return "not an absolute path of plain characters (letters, digits, _ . + @ - /)"
    if posixpath.normpath(path) != path or path.startswith("//") or "/../" in path + "/" or "/./" in path + "/":
        return f"not normalised (would be {posixpath.normpath(path)})"
    return None


def _under(path: str, root: str) -> bool:
    return path.startswith(root.rstrip("/") + "/")


_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _bad_text(value: str) -> bool:
    return bool(_CTRL.search(value)) or "{{" in value or "{%" in value or "{#" in value


def _fits(pattern: re.Pattern[str], value: object) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["RuleViolation", "check_actions", "check_target", "mirror_problem"]
