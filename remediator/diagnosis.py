"""Diagnosis: a pure function from a host's facts, a target and the matrix to findings.

No network, no files of a host, no clock: everything it knows comes in as arguments, so the same
facts always give the same findings. Each finding has a stable code (documented in docs/diagnosis.md),
a severity, a message a person understands, evidence (the paths and versions that prove it) and,
where the matrix knows one, the fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from remediator.errors import UnknownVersionError
from remediator.facts import CudaToolkit, CudnnInstall, Framework, HostFacts, PythonEnv
from remediator.frameworks import TF_RELEASE_NAMES, family
from remediator.hostpaths import for_facts, toolkit_target
from remediator.matrix import Matrix, Requirements, Target
from remediator.resolve import norm as _norm
from remediator.versions import RawVersion, try_version

Severity = Literal["error", "warning", "info"]
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

# Every code diagnosis can emit, with its severity; docs/diagnosis.md explains each.
CODES: dict[str, Severity] = {
    "DRIVER_MISSING": "error",
    "DRIVER_LIBRARY_MISMATCH": "error",
    "DRIVER_TOO_OLD": "error",
    "DRIVER_MINOR_COMPAT": "warning",
    "DRIVER_TOO_OLD_FOR_TOOLKIT": "warning",
    "CUDA_MISSING": "error",
    "CUDA_WRONG_DEFAULT": "error",
    "CUDNN_MISSING": "error",
    "CUDNN_MISMATCH": "error",
    "CUDNN_SHADOWED": "error",
    "PYTHON_UNSUPPORTED": "error",
    "FRAMEWORK_MISSING": "error",
    "FRAMEWORK_VERSION_MISMATCH": "error",
    "FRAMEWORK_CPU_ONLY": "error",
    "FRAMEWORK_CONFLICT": "error",
    "LIB_SHADOWED": "error",
    "LDPATH_MISSING_DIR": "warning",
    "UNPARSABLE_VERSION": "warning",
    # Decided by resolving each library like the loader (remediator.linkage):
    "DRIVER_USERSPACE_MISSING": "error",
    "LIBCUDA_STUB": "error",
    "CUDA_LIB_UNRESOLVED": "error",
    "GPU_ARCH_UNSUPPORTED": "error",
    "ENV_MIXED_CUDA_MAJORS": "error",
    "KNOWN_DEFECT": "warning",
    # From target inference (remediator.targets): an installed framework the matrix does not know.
    "INFERRED_TARGET_UNKNOWN": "warning",
    # A directory the probe was not allowed to list (no become): what is there is unknown, not absent.
    "PLACE_UNREAD": "warning",
}


_CUDA_LINK = "/usr/local/cuda"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    message: str
    evidence: tuple[tuple[str, str], ...] = ()
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "evidence": dict(self.evidence),
            "fix": self.fix,
        }


def _finding(code: str, message: str, evidence: Iterable[tuple[str, str]] = (), fix: str | None = None) -> Finding:
    return Finding(code, CODES[code], message, tuple(evidence), fix)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def diagnose(facts: HostFacts, target: Target | None, matrix: Matrix) -> list[Finding]:
    """All findings for one host, most severe first. `target` None checks only what needs no target."""
    req = matrix.requirements_for(target) if target is not None else None
    findings: list[Finding] = []
    findings += _driver(facts, req, matrix)
    findings += _loader(facts)
    findings += _unread(facts)
    if req is not None:
        envs = _target_envs(facts, req)
        findings += _framework(facts, req, envs)
        # Wheels (TF >= 2.14, PyTorch) or a conda cudatoolkit bring their own CUDA; the rest use the system's.
        own = [e for e in envs if req.bundles_cuda or _has_own_cuda(facts, e)]
        if own:
            findings += _bundled_stack(facts, req, own)
        if not req.bundles_cuda and (len(own) < len(envs) or not envs):
            findings += _system_stack(facts, req)
    findings += _shadowed_toolkit_cudnn(facts)
    # Every library each framework needs, resolved like the loader: what the judges above did not see.
    from remediator import linkage

    reported = frozenset(f.code for f in findings if f.severity == "error")
    findings += linkage.judge(facts, matrix, req, reported)
    # Stable order: severity, then code, then message (evidence differs per host, message includes it).
    return sorted(_dedupe(findings), key=lambda f: (_SEVERITY_ORDER[f.severity], f.code, f.message))


def _dedupe(findings: list[Finding]) -> Iterator[Finding]:
    seen: set[tuple[str, str]] = set()
    for f in findings:
        if (f.code, f.message) not in seen:
            seen.add((f.code, f.message))
            yield f


def _unread(facts: HostFacts) -> list[Finding]:
    """Each place the probe could not read: unknown, never empty (an env there is neither found nor
    missing)."""
    return [
        _finding(
            "PLACE_UNREAD",
            f"the probe could not read {path} (permission denied): environments and libraries there are "
            "unknown, not absent",
            [("path", path)],
            fix="probe with become (ansible_become: true, passwordless sudo for the login user) to read it",
        )
        for path in facts.unread
    ]


# --- driver ---------------------------------------------------------------------------------------


def _driver(facts: HostFacts, req: Requirements | None, matrix: Matrix) -> list[Finding]:
    d = facts.driver
    out: list[Finding] = []
    error = d.error or ""
    mismatch = "mismatch" in error.lower()
    if not mismatch and d.kernel_module_version and d.userspace_version:
        k, u = try_version(d.kernel_module_version), try_version(d.userspace_version)
        mismatch = k is not None and u is not None and k != u
    if mismatch:
        ev = [("kernel module", d.kernel_module_version or "?"), ("userspace library", d.userspace_version or "?")]
        if error:
            ev.append(("error", error))
        ev += _gpu_evidence(facts)
        return [_finding(
            "DRIVER_LIBRARY_MISMATCH",
            "the loaded NVIDIA kernel module and the userspace driver libraries differ "
            "(a driver upgrade without a reboot): no CUDA program can start",
            ev,
            fix="reboot the host (or unload and reload the nvidia kernel modules) so the new module loads",
        )]
    if d.version is None:
        ev = [("source", d.source)]
        if error:
            ev.append(("error", error))
        ev += _gpu_evidence(facts)
        return [_finding(
            "DRIVER_MISSING",
            "no NVIDIA driver answers on this host (NVML, nvidia-smi and /proc/driver/nvidia all failed)",
            ev,
            fix="install the NVIDIA driver from the distribution or NVIDIA packages and reboot",
        )]
    driver = try_version(d.version)
    if driver is None:
        return [_finding("UNPARSABLE_VERSION", f"driver version {d.version!r} is not a version",
                         [("driver", d.version)])]

    if req is not None:
        out += _driver_vs_target(driver, d.version, req, matrix)
    for tk in facts.toolkits:
        if tk.install_method in ("pip", "conda"):
            continue  # env-local runtimes are judged with their framework
        out += _driver_vs_toolkit(driver, d.version, tk, matrix, facts)
    return out


def _gpu_evidence(facts: HostFacts) -> list[tuple[str, str]]:
    """The GPUs, wherever they were seen: with NVML failing, /proc/driver/nvidia and the PCI bus still tell."""
    if not facts.gpus:
        return []
    counts: dict[str, int] = {}
    for g in facts.gpus:
        label = g.name + (f" (from {g.source})" if g.source in ("proc", "pci") else "")
        counts[label] = counts.get(label, 0) + 1
    return [("gpus", ", ".join(f"{n}x {label}" for label, n in counts.items()))]


def _driver_vs_target(driver: RawVersion, raw: str, req: Requirements, matrix: Matrix) -> list[Finding]:
    if driver >= req.min_driver:
        return []
    ev = [("driver", raw), ("needs", f">= {req.min_driver.raw}"), ("CUDA", str(req.cuda or "?"))]
    compat = req.min_driver_compat
    if compat is not None and driver >= compat:
        return [_finding(
            "DRIVER_MINOR_COMPAT",
            f"driver {raw} is older than the {req.min_driver.raw} that CUDA {req.cuda} was released with; "
            f"it runs under CUDA minor version compatibility (>= {compat.raw}), without PTX JIT",
            [*ev, ("compat floor", compat.raw)],
            fix=f"upgrade the driver to >= {req.min_driver.raw} for full support",
        )]
    alternatives = matrix.runnable_with_driver(req.framework, raw)
    alt = ", ".join(alternatives[-5:]) if alternatives else "none"
    return [_finding(
        "DRIVER_TOO_OLD",
        f"driver {raw} is too old for {req.framework} {req.version} (needs >= {req.min_driver.raw} "
        f"for CUDA {req.cuda})",
        [*ev, ("runs instead", alt)],
        fix=f"upgrade the driver to >= {req.min_driver.raw}, or choose a {req.framework} version this "
        f"driver runs ({alt})",
    )]


def _driver_vs_toolkit(driver: RawVersion, raw: str, tk: CudaToolkit, matrix: Matrix,
                       facts: HostFacts) -> list[Finding]:
    tkv = try_version(tk.version)
    if tkv is None:
        return [_finding("UNPARSABLE_VERSION", f"CUDA toolkit at {tk.path} has version {tk.version!r}",
                         [("path", tk.path)])]
    # Toolkits report component versions (11.2.152), not update numbers (11.2.2): judge by series GA.
    series = "{}.{}".format(*tkv.major_minor())
    try:
        floor = matrix.min_driver_for_cuda(series)
    except UnknownVersionError:  # a toolkit newer (or older) than the matrix: nothing to say about it
        return []
    if driver >= floor:
        return []
    compat = matrix.cuda_compat_floor(tkv.major)
    if compat is not None and driver >= compat.min_driver:
        return []
    fwd = [c for c in facts.compat_libcuda if c.path.startswith(tk.path.rstrip("/") + "/")]
    ev = [("toolkit", tk.path), ("CUDA", tk.version), ("driver", raw), ("needs", f">= {floor.raw}")]
    ev += [("forward-compat libcuda", f"{c.path} ({c.version})") for c in fwd]
    return [_finding(
        "DRIVER_TOO_OLD_FOR_TOOLKIT",
        f"driver {raw} is too old for the CUDA {tk.version} toolkit at {tk.path} (needs >= {floor.raw})"
        + (" unless its forward-compatibility libcuda is loaded" if fwd else ""),
        ev,
        fix=f"upgrade the driver to >= {floor.raw}, or quarantine the toolkit if nothing uses it",
    )]


# --- loader ---------------------------------------------------------------------------------------


def _loader(facts: HostFacts) -> list[Finding]:
    out = []
    seen: set[str] = set()
    for entry in facts.loader.ld_library_path:
        if not entry.exists and entry.path not in seen:
            seen.add(entry.path)
            out.append(_finding(
                "LDPATH_MISSING_DIR",
                f"LD_LIBRARY_PATH names {entry.path!r}, which does not exist (set in {entry.source})",
                [("path", entry.path), ("set in", entry.source)],
                fix=f"remove the entry from {entry.source}",
            ))
    return out


def _resolve_cuda_link(path: str, facts: HostFacts) -> str:
    """The directory a loader entry or install path really is, as far as the facts tell.

    /usr/local/cuda/... maps to the toolkit the link resolves to (as the probe recorded it), and a
    toolkit's lib64 to targets/<arch>/lib (x86_64-linux, sbsa-linux, ...: hostpaths), which it links to in
    every toolkit layout: the probe reports library copies by their real directory, while loader entries
    name lib64.
    """
    p = _norm(path)
    default = facts.default_toolkit()
    if default is not None and (p == _CUDA_LINK or p.startswith(_CUDA_LINK + "/")):
        p = _norm(default.path) + p[len(_CUDA_LINK):]
    return canonical_lib_dir(p, facts)


def canonical_lib_dir(path: str, facts: HostFacts) -> str:
    """A toolkit's lib64 (or a path below it) as the targets/<arch>/lib dir it links to on this host."""
    for t in facts.toolkits:
        r = _norm(t.path)
        if path == f"{r}/lib64" or path.startswith(f"{r}/lib64/"):
            return f"{r}/targets/{toolkit_target(facts, r)}/lib" + path[len(r) + len("/lib64"):]
    return path


def _search_order(facts: HostFacts) -> list[tuple[str, str]]:
    """Directories in the order the dynamic loader searches them, with where each came from.

    An entry through the /usr/local/cuda link is resolved to its toolkit, and says so in its source.
    """
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(path: str, source: str) -> None:
        p = _resolve_cuda_link(path, facts)
        if p != _norm(path):
            source = f"{source} as {path}"
        if p and p not in seen:
            seen.add(p)
            order.append((p, source))

    for e in facts.loader.ld_library_path:
        if e.exists:
            add(e.path, f"LD_LIBRARY_PATH ({e.source})")
    for e in facts.loader.ld_so_conf:
        add(e.path, e.source)
    for d in for_facts(facts).default_dirs:
        add(d, "default loader path")
    return order


def _owner_of(dir_: str, paths: Iterable[str]) -> str | None:
    for p in paths:
        root = _norm(p)
        if dir_ == root or dir_.startswith(root + "/"):
            return p
    return None


def _first_reached(facts: HostFacts, installs: list[CudnnInstall]) -> tuple[CudnnInstall, str] | None:
    by_dir = {_resolve_cuda_link(c.path, facts): c for c in installs}
    for dir_, source in _search_order(facts):
        if dir_ in by_dir:
            return by_dir[dir_], source
    return None


def _toolkit_reached(facts: HostFacts, toolkits: list[CudaToolkit]) -> tuple[CudaToolkit, str] | None:
    """The toolkit whose libcudart the loader finds first (a toolkit dir on the search path)."""
    by_root = {_norm(t.path): t for t in toolkits}
    for dir_, source in _search_order(facts):
        owner = _owner_of(dir_, by_root)
        if owner is not None:
            return by_root[owner], source
    return None


# --- framework and the envs that hold it -----------------------------------------------------------


def _family(req: Requirements) -> frozenset[str]:
    return family(req.framework) or frozenset(req.packages)


def _frameworks_in(env: PythonEnv, req: Requirements) -> list[Framework]:
    family = _family(req)
    return [fw for fw in env.frameworks if fw.name.lower() in family]


def _version_matches(installed: str, wanted: str) -> bool:
    a, b = try_version(installed), try_version(wanted)
    return a is not None and b is not None and a == b


def _target_envs(facts: HostFacts, req: Requirements) -> list[PythonEnv]:
    """Envs holding the target version; if none does, every env holding the framework at all."""
    with_fw = [e for e in facts.envs if _frameworks_in(e, req)]
    exact = [e for e in with_fw if any(_version_matches(fw.version, req.version) for fw in _frameworks_in(e, req))]
    return exact or with_fw


def _framework(facts: HostFacts, req: Requirements, envs: list[PythonEnv]) -> list[Finding]:
    label = f"{req.framework} {req.version}"
    if not envs:
        unread = list(facts.unread)
        missing = [_finding(
            "FRAMEWORK_MISSING",
            f"{req.framework} is not installed in any Python environment the probe could read on this host"
            + (f" (it could not read {', '.join(unread[:3])}{' ...' if len(unread) > 3 else ''}: probe with "
               "become to see envs there)" if unread else ""),
            [("searched envs", ", ".join(e.path for e in facts.envs) or "none"),
             *([("unread", ", ".join(unread))] if unread else [])],
            fix=f"create a venv with {req.packages[0]}=={req.version}",
        )]
        pythons = sorted({e.python_version for e in facts.envs if e.python_version})
        if pythons and not any(req.python_ok(v) for v in pythons):
            # Often the reason it is missing: pip finds no wheel of this release for these Pythons.
            missing.append(_finding(
                "PYTHON_UNSUPPORTED",
                f"no Python on this host is in {req.python.raw}, the range {label} publishes wheels for "
                f"(found {', '.join(pythons)})",
                [("pythons", ", ".join(pythons)), ("supported", req.python.raw)],
                fix=f"install a Python in {req.python.raw} and create the venv with it",
            ))
        return missing
    out: list[Finding] = []
    for env in envs:
        fws = _frameworks_in(env, req)
        installed = ", ".join(f"{fw.name} {fw.version}" for fw in fws)
        if not any(_version_matches(fw.version, req.version) for fw in fws):
            out.append(_finding(
                "FRAMEWORK_VERSION_MISMATCH",
                f"{env.path} has {installed}, not the target {label}",
                [("env", env.path), ("installed", installed), ("target", label)],
                fix=f"install {req.packages[0]}=={req.version} in an isolated venv",
            ))
        if not req.python_ok(env.python_version):
            out.append(_finding(
                "PYTHON_UNSUPPORTED",
                f"{env.path} runs Python {env.python_version}; {label} supports Python {req.python.raw}",
                [("env", env.path), ("python", env.python_version), ("supported", req.python.raw)],
                fix=f"create the venv with a Python in {req.python.raw}",
            ))
        names = {fw.name.lower() for fw in fws}
        if req.framework == "tensorflow" and len(names & TF_RELEASE_NAMES) > 1:
            out.append(_finding(
                "FRAMEWORK_CONFLICT",
                f"{env.path} has {installed} installed side by side: they share the `tensorflow` import and "
                "overwrite each other's files, so which one loads is an accident of install order",
                [("env", env.path), ("installed", installed)],
                fix=f"uninstall all of them and install only {req.packages[0]}=={req.version}",
            ))
        for fw in fws:
            cpu = _cpu_only_reason(fw, req)
            if cpu:
                out.append(_finding(
                    "FRAMEWORK_CPU_ONLY",
                    f"{fw.name} {fw.version} in {env.path} is a CPU-only build ({cpu}): it will never use the GPU",
                    [("env", env.path), ("package", f"{fw.name}=={fw.version}"), ("reason", cpu),
                     *([("build info", fw.build_info_source)] if fw.build_info_source else [])],
                    fix=f"replace it with {req.packages[0]}=={req.version}",
                ))
    return out


def _cpu_only_reason(fw: Framework, req: Requirements) -> str | None:
    name = fw.name.lower()
    if name == "tensorflow-cpu":
        return "the tensorflow-cpu package"
    if fw.is_cuda_build is False:
        return "its build info says is_cuda_build = False"
    if "+cpu" in fw.version:
        return "a +cpu wheel"
    if name == "tensorflow" and "tensorflow" not in req.packages and _version_matches(fw.version, req.version):
        return f"GPU support for {req.version} ships only in {'/'.join(req.packages)}"
    return None


# --- stacks ---------------------------------------------------------------------------------------


def _has_own_cuda(facts: HostFacts, env: PythonEnv) -> bool:
    if any(name == "cudatoolkit" for name, _ in env.conda_packages):
        return True
    root = _norm(env.path)
    return any(t.env is not None and _norm(t.env) == root for t in facts.toolkits)


def _system_stack(facts: HostFacts, req: Requirements) -> list[Finding]:
    """Frameworks that use the system CUDA toolkit and cuDNN (TensorFlow <= 2.13 and friends)."""
    out: list[Finding] = []
    system_tks = [t for t in facts.toolkits if t.install_method not in ("pip", "conda")]
    fitting = [t for t in system_tks if req.cuda_ok(t.version)]
    wanted = f"CUDA {req.cuda_range.raw}" if req.cuda_range is not None else f"CUDA {req.cuda}"
    if not fitting:
        have = ", ".join(f"{t.version} ({t.path})" for t in system_tks) or "none"
        out.append(_finding(
            "CUDA_MISSING",
            f"{req.framework} {req.version} needs {wanted} (tested with {req.cuda}); this host has {have}",
            [("toolkits", have), ("needs", wanted)],
            fix=f"install the CUDA {req.cuda} toolkit",
        ))
    else:
        default = facts.default_toolkit()
        reached = _toolkit_reached(facts, system_tks)
        if default is not None and default not in fitting:
            out.append(_finding(
                "CUDA_WRONG_DEFAULT",
                f"/usr/local/cuda points at CUDA {default.version} ({default.path}); {req.framework} "
                f"{req.version} needs {wanted}, which {fitting[0].path} has",
                [("/usr/local/cuda", default.path), ("fits", ", ".join(t.path for t in fitting)),
                 ("via alternatives", str(default.via_alternatives).lower())],
                fix=f"point /usr/local/cuda at {fitting[0].path}",
            ))
        if reached is not None and reached[0] not in fitting:
            tk, source = reached
            via_link = " as /usr/local/cuda" in source
            out.append(_finding(
                "CUDA_WRONG_DEFAULT",
                f"the loader finds CUDA {tk.version} ({tk.path}) first, through {source}; {req.framework} "
                f"{req.version} needs {wanted}",
                [("reached", tk.path), ("through", source), ("fits", ", ".join(t.path for t in fitting))],
                fix=(f"point /usr/local/cuda at {fitting[0].path}" if via_link
                     else f"remove {tk.path} from {source}") + f" and pin the venv's LD_LIBRARY_PATH to "
                f"{fitting[0].path}",
            ))

    system_cudnn = [c for c in facts.cudnn if c.install_method not in ("pip", "conda")]
    if not system_cudnn:
        out.append(_finding(
            "CUDNN_MISSING",
            f"{req.framework} {req.version} needs cuDNN {req.cudnn}; no cuDNN was found on this host",
            [("needs", str(req.cudnn))],
            fix=f"install cuDNN {req.cudnn} for CUDA {req.cuda}",
        ))
    else:
        reached_cudnn = _first_reached(facts, system_cudnn)
        chosen = reached_cudnn[0] if reached_cudnn else system_cudnn[0]
        how = reached_cudnn[1] if reached_cudnn else "not on the loader path"
        packaged_fits = [c for c in system_cudnn if c.install_method in ("deb", "rpm") and req.cudnn_ok(c.version)]
        # A copy in a toolkit dir reached before a fitting package is CUDNN_SHADOWED's cause, said there.
        if not req.cudnn_ok(chosen.version) and not (chosen.in_toolkit and packaged_fits):
            fits = [c for c in system_cudnn if req.cudnn_ok(c.version)]
            wanted_dnn = req.cudnn_range.raw if req.cudnn_range is not None else str(req.cudnn)
            out.append(_finding(
                "CUDNN_MISMATCH",
                f"the loader reaches cuDNN {chosen.version} ({chosen.path}) through {how}; {req.framework} "
                f"{req.version} was built with cuDNN {req.cudnn} and needs {wanted_dnn}",
                [("reached", f"{chosen.version} ({chosen.path})"), ("through", how), ("needs", wanted_dnn),
                 ("fits", ", ".join(f"{c.version} ({c.path})" for c in fits) or "none")],
                fix=f"pin the venv's LD_LIBRARY_PATH to {fits[0].path}" if fits
                else f"install cuDNN {req.cudnn} and pin the venv's LD_LIBRARY_PATH to it",
            ))
    # Wheel/conda libraries on the global search path shadow the system stack this framework needs.
    out += _env_libs_on_global_path(facts)
    return out


def _env_libs_on_global_path(facts: HostFacts) -> list[Finding]:
    out = []
    env_roots = [e.path for e in facts.envs if e.kind in ("venv", "conda")]
    for entry in facts.loader.ld_library_path:
        p = _norm(entry.path)
        owner = _owner_of(p, env_roots)
        if owner is None or not entry.exists:
            continue
        out.append(_finding(
            "LIB_SHADOWED",
            f"LD_LIBRARY_PATH ({entry.source}) puts {p}, a library dir inside the env {owner}, in front of "
            "the system CUDA/cuDNN for every program",
            [("path", p), ("set in", entry.source), ("env", owner)],
            fix=f"remove {p} from {entry.source}",
        ))
    return out


def _bundled_stack(facts: HostFacts, req: Requirements, envs: list[PythonEnv]) -> list[Finding]:
    """Frameworks whose CUDA and cuDNN come from pip wheels: only the driver and shadowing matter."""
    out: list[Finding] = []
    # Where the probe recorded what each dir holds, remediator.linkage resolves every library the wheels'
    # framework needs and says which one LD_LIBRARY_PATH really takes over; this dir-level guess (any system
    # CUDA dir on the path) is for older facts only.
    shadow_dirs = [] if facts.libdirs else [(p, s) for p, s in _search_order(facts) if s.startswith("LD_LIBRARY_PATH")]
    for env in envs:
        env_root = _norm(env.path)
        wheel_cudnn = [c for c in facts.cudnn if c.env and _norm(c.env) == env_root]
        sys_cudnn = {_resolve_cuda_link(c.path, facts): c for c in facts.cudnn
                     if c.install_method not in ("pip", "conda")}
        sys_tk = [t for t in facts.toolkits if t.install_method not in ("pip", "conda")]
        for dir_, source in shadow_dirs:
            if dir_.startswith(env_root + "/"):
                continue
            hit = sys_cudnn.get(dir_)
            if hit is not None:
                wheel = ", ".join(f"{c.version} ({c.path})" for c in wheel_cudnn) or "the env's cuDNN wheel"
                out.append(_finding(
                    "LIB_SHADOWED",
                    f"LD_LIBRARY_PATH puts the system cuDNN {hit.version} ({hit.path}) in front of {wheel} that "
                    f"{req.framework} {req.version} in {env.path} was built with; LD_LIBRARY_PATH wins over "
                    "the wheel's own library path",
                    [("env", env.path), ("shadowing", f"{hit.version} ({hit.path})"), ("through", source),
                     ("wheel cuDNN", wheel)],
                    fix=f"take {dir_} off LD_LIBRARY_PATH ({source.removeprefix('LD_LIBRARY_PATH ').strip('()')})",
                ))
                continue
            owner = _owner_of(dir_, [t.path for t in sys_tk])
            if owner is not None:
                out.append(_finding(
                    "LIB_SHADOWED",
                    f"LD_LIBRARY_PATH puts the system CUDA libraries of {owner} in front of the CUDA wheels "
                    f"that {req.framework} {req.version} in {env.path} was built with",
                    [("env", env.path), ("shadowing", dir_), ("through", source)],
                    fix=f"take {dir_} off LD_LIBRARY_PATH ({source.removeprefix('LD_LIBRARY_PATH ').strip('()')})",
                ))
        for fw in _frameworks_in(env, req):
            out += _wheel_cudnn_vs_build(env, fw, wheel_cudnn, req)
    return out


def _wheel_cudnn_vs_build(env: PythonEnv, fw: Framework, wheel_cudnn: list[CudnnInstall],
                          req: Requirements) -> list[Finding]:
    if not fw.cudnn_build or not wheel_cudnn:
        return []
    built = try_version(fw.cudnn_build)
    if built is None:
        return []
    out = []
    for c in wheel_cudnn:
        have = try_version(c.version)
        if have is None:
            continue
        # cuDNN >= 8 keeps its ABI within a major version; a newer minor of the same major is fine.
        if have.major != built.major or have < built:
            out.append(_finding(
                "CUDNN_MISMATCH",
                f"{fw.name} {fw.version} in {env.path} was built with cuDNN {fw.cudnn_build}, but the env's "
                f"cuDNN wheel is {c.version}",
                [("env", env.path), ("built with", fw.cudnn_build), ("wheel", f"{c.version} ({c.path})")],
                fix="reinstall the framework with its pinned nvidia-cudnn wheel"
                + (f" ({', '.join(f'{n}=={v}' for n, v in req.wheels if 'cudnn' in n)})" if req.wheels else ""),
            ))
    return out


def _shadowed_toolkit_cudnn(facts: HostFacts) -> list[Finding]:
    """A tarball cuDNN copied into a toolkit dir while a packaged cuDNN is installed too."""
    packaged = [c for c in facts.cudnn if c.install_method in ("deb", "rpm")]
    copies = [c for c in facts.cudnn if c.in_toolkit]
    out: list[Finding] = []
    if not (packaged and copies):
        return out
    rank = {d: i for i, (d, _) in enumerate(_search_order(facts))}
    unreached = len(rank)
    for copy in copies:
        for pkg in packaged:
            if _norm(pkg.path) == _norm(copy.path):
                continue
            same = try_version(pkg.version) == try_version(copy.version)
            if same:
                continue
            cp, pp = _resolve_cuda_link(copy.path, facts), _resolve_cuda_link(pkg.path, facts)
            first = copy if rank.get(cp, unreached) < rank.get(pp, unreached) else pkg
            out.append(_finding(
                "CUDNN_SHADOWED",
                f"cuDNN {copy.version} was copied into the toolkit at {copy.in_toolkit} ({copy.path}) beside the "
                f"packaged cuDNN {pkg.version} ({pkg.package or pkg.path}); the loader reaches "
                f"{first.version} first, and the package manager does not know the copy exists",
                [("copy", f"{copy.version} ({copy.path})"), ("package", f"{pkg.version} ({pkg.package or pkg.path})"),
                 ("reached first", first.path)],
                fix=f"quarantine the copied libcudnn files from {copy.path}",
            ))
    return out
