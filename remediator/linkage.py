"""The judge of what each framework really loads: every library it needs, resolved like the loader.

For every env holding a framework, each CUDA library that framework needs (its objects' DT_NEEDED, and
what it `dlopen`s, derived from the CUDA and cuDNN it was built with) is resolved under every way of
starting that env's Python the probe saw (remediator.resolve). A library that resolves to nothing, to a
link-time stub, or to a version the build cannot use is a finding that names the soname, the file it
reaches, how, and what it should reach. The same mechanism decides the driver's userspace (libcuda.so.1)
and the GPU architectures a PyTorch build has kernels for.

It runs where the probe recorded `libdirs` (older facts have none: then only the other judges speak),
and it stays quiet about a library class another judge already reported as an error for the host.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from remediator.diagnosis import Finding, _finding
from remediator.errors import UnknownVersionError
from remediator.facts import ElfDeps, Framework, Gpu, HostFacts, LaunchEnv, PythonEnv
from remediator.frameworks import framework_of
from remediator.matrix import Matrix, Requirements, Target, Variant
from remediator.matrix.gpus import gpu_compute_capability
from remediator.resolve import Resolution, Resolver, cuda_family, cuda_sonames, norm
from remediator.versions import try_version

# Judges that already say a library is absent or wrong for the whole host, and, per library family, the
# codes of the other judges that already name that family's problem (the same cause, said once).
_MISSING = frozenset({"CUDA_MISSING", "CUDNN_MISSING", "DRIVER_MISSING", "DRIVER_LIBRARY_MISMATCH",
                      "DRIVER_USERSPACE_MISSING", "LIBCUDA_STUB"})
_SAID = {
    "cudart": frozenset({"CUDA_WRONG_DEFAULT", "LIB_SHADOWED"}),
    "cublas": frozenset({"CUDA_WRONG_DEFAULT", "LIB_SHADOWED"}),
    "cudnn": frozenset({"CUDNN_MISMATCH", "CUDNN_SHADOWED", "LIB_SHADOWED"}),
}


@dataclass(frozen=True)
class Need:
    """One library a framework needs, the object that asks for it, and what it must be."""

    soname: str
    obj: ElfDeps | None
    family: str
    wants: str  # "cuDNN 8.x >= 8.1", for messages


def judge(facts: HostFacts, matrix: Matrix, req: Requirements | None, reported: frozenset[str]) -> list[Finding]:
    """Findings of the resolution mechanism for one host; `reported` are error codes other judges gave."""
    if not facts.libdirs:
        return []
    resolver = Resolver(facts)
    out: list[Finding] = []
    out += _driver_userspace(facts, resolver, reported)
    reported = reported | {f.code for f in out}
    for env in facts.envs:
        out += _mixed_majors(env)
        out += _conda_runtime(facts, env, matrix, reported)
        for fw in env.frameworks:
            fw_req = _requirements(matrix, fw, req)
            if fw_req is None or fw.is_cuda_build is False or "+cpu" in fw.version:
                continue
            if req is not None and fw_req is not req:
                continue  # with a target, only the envs that hold it: the others are replaced, not judged
            out += _framework_libs(facts, resolver, env, fw, fw_req, reported)
            if fw_req.framework == "pytorch":
                out += _torch_build(facts, env, fw, fw_req, reported)
            out += _defects(matrix, env, fw, fw_req)
    return out


def _conda_runtime(facts: HostFacts, env: PythonEnv, matrix: Matrix, reported: frozenset[str]) -> list[Finding]:
    """A conda `cudatoolkit` / `pytorch-cuda` is a CUDA runtime with its own driver floor (matrix conda.yaml)."""
    driver = try_version(facts.driver.version or "")
    if driver is None or "DRIVER_TOO_OLD" in reported:
        return []
    out: list[Finding] = []
    for name, version in env.conda_packages:
        if name not in ("cudatoolkit", "pytorch-cuda"):
            continue
        try:
            pkg = matrix.conda_package(name, version)
        except UnknownVersionError:
            continue
        if driver >= pkg.min_driver or (pkg.min_driver_compat is not None and driver >= pkg.min_driver_compat):
            continue
        out.append(_finding(
            "DRIVER_TOO_OLD",
            f"driver {facts.driver.version} is too old for the conda {name} {version} in {env.path} (CUDA "
            f"{pkg.cuda}, needs >= {pkg.min_driver.raw})",
            [("env", env.path), ("package", f"{name}={version}"), ("driver", facts.driver.version or "?"),
             ("needs", f">= {pkg.min_driver.raw}")],
            fix=f"upgrade the driver to >= {pkg.min_driver.raw}, or install a {name} for an older CUDA in the env",
        ))
    return out


def _defects(matrix: Matrix, env: PythonEnv, fw: Framework, req: Requirements) -> list[Finding]:
    """Known defects of the installed release (rules.yaml `defects`, each with its upstream issue)."""
    return [_finding(
        "KNOWN_DEFECT",
        f"{fw.name} {fw.version} in {env.path} has a known defect ({d.id}): {' '.join(d.symptom.split())}",
        [("env", env.path), ("defect", d.id), ("affects", d.affects.raw), ("fixed in", d.fixed_in or "not yet"),
         ("source", d.source)],
        fix=d.workaround or (f"install {d.fixed_in}" if d.fixed_in else None),
    ) for d in matrix.defects_for(req.framework, fw.version)]


def _mixed_majors(env: PythonEnv) -> list[Finding]:
    """Two frameworks of one env built for CUDA runtimes of different majors: one process, two runtimes."""
    builds: dict[int, str] = {}
    for fw in env.frameworks:
        v = try_version(fw.cuda_build or "")
        if v is not None and fw.is_cuda_build is not False and framework_of(fw.name) is not None:
            builds.setdefault(v.major, f"{fw.name} {fw.version} (CUDA {fw.cuda_build})")
    if len(builds) < 2:
        return []
    which = ", ".join(builds[m] for m in sorted(builds))
    return [_finding(
        "ENV_MIXED_CUDA_MAJORS",
        f"{env.path} holds frameworks built for CUDA runtimes of different majors ({which}): imported into one "
        "process, one binds the other's libcudart symbols (crashes such as a segfault in cudaFree)",
        [("env", env.path), ("frameworks", which)],
        fix="give each framework a venv of its own (or install builds for one CUDA major)",
    )]


# --- libcuda.so.1: the driver's userspace ----------------------------------------------------------


def _driver_userspace(facts: HostFacts, resolver: Resolver, reported: frozenset[str]) -> list[Finding]:
    d = facts.driver
    if "DRIVER_MISSING" in reported or "DRIVER_LIBRARY_MISMATCH" in reported:
        return []
    module_loaded = bool(d.kernel_module_version) or bool(facts.gpus)
    if not module_loaded:
        return []
    contexts: list[LaunchEnv | None] = list(facts.launch_envs) or [None]
    out: list[Finding] = []
    for le in contexts:
        r = resolver.resolve("libcuda.so.1", le)
        if r.file is None:
            out.append(_finding(
                "DRIVER_USERSPACE_MISSING",
                f"the NVIDIA kernel module is loaded ({d.kernel_module_version or 'GPUs present'}) but libcuda.so.1, "
                f"the driver's userspace library every CUDA program loads, resolves to nothing in the {r.launch}",
                [("soname", "libcuda.so.1"), ("reaches", "nothing"), ("how", r.how), ("launch", r.launch),
                 ("should reach", f"libcuda.so.{d.kernel_module_version or '<driver version>'} of the driver")],
                fix="install the driver's userspace libraries at the kernel module's version "
                f"(e.g. libnvidia-compute-{(d.kernel_module_version or 'NNN').split('.')[0]} on Debian/Ubuntu)",
            ))
            break
        if r.file.stub:
            out.append(_finding(
                "LIBCUDA_STUB",
                f"the only libcuda.so.1 the loader reaches in the {r.launch} is the toolkit's link-time stub "
                f"({r.path}): no CUDA program can start (cuInit fails with CUDA_ERROR_STUB_LIBRARY)",
                [("soname", "libcuda.so.1"), ("reaches", r.path or "?"), ("how", r.how), ("launch", r.launch),
                 ("should reach", f"libcuda.so.{d.kernel_module_version or d.version or '?'} of the driver")],
                fix=f"take {posixpath.dirname(r.path or '')} off the loader path ({r.how})",
            ))
            break
        module = try_version(d.kernel_module_version or "")
        have = try_version(r.version or "")
        if module is None or have is None or have == module or len(have.release) < 2:
            continue
        if "/compat/" in (r.path or "") + (r.file.real or "") and have > module:
            continue  # a newer forward-compatibility libcuda (cuda-compat) on an older driver: by design
        out.append(_finding(
            "DRIVER_LIBRARY_MISMATCH",
            f"the libcuda.so.1 the loader reaches in the {r.launch} is {r.version} ({r.file.real or r.path}), "
            f"not the loaded kernel module's {d.kernel_module_version}: CUDA programs fail to initialise "
            "(a driver's userspace left from another version"
            + (", or a forward-compatibility libcuda older than the driver" if "/compat/" in (r.path or "") else "")
            + ")",
            [("soname", "libcuda.so.1"), ("reaches", f"{r.path} ({r.version})"), ("how", r.how),
             ("launch", r.launch), ("kernel module", d.kernel_module_version or "?"),
             ("should reach", f"libcuda.so.{d.kernel_module_version}")],
            fix="make the driver's userspace the module's version (reinstall the driver packages, or reboot if "
            f"the module is the old one), or take {r.dir} off the loader path ({r.how})",
        ))
        break
    return out


# --- the libraries of each framework --------------------------------------------------------------


def _requirements(matrix: Matrix, fw: Framework, target: Requirements | None) -> Requirements | None:
    name = fw.name.lower()
    framework = framework_of(name)
    if framework is None:
        return None
    version = fw.version.split("+", 1)[0]
    if target is not None and target.framework == framework and try_version(target.version) == try_version(version):
        return target
    return _known(matrix, framework, version)


@functools.lru_cache(maxsize=4096)
def _known(matrix: Matrix, framework: str, version: str) -> Requirements | None:
    """The release's requirements, or None for one the matrix does not know (remembered either way: the
    nearest-version search behind an unknown one is the costly part)."""
    try:
        return matrix.requirements_for(Target(framework, version))
    except UnknownVersionError:
        return None


def _variant(req: Requirements, fw: Framework) -> Variant | None:
    local = fw.version.split("+", 1)[1] if "+" in fw.version else ""
    if local:
        return next((v for v in req.variants if v.tag == local), None)
    return req.default_variant


def needs(facts: HostFacts, env: PythonEnv, fw: Framework, req: Requirements) -> list[Need]:
    """The CUDA libraries `fw` loads: its objects' DT_NEEDED, then what it dlopens, by soname."""
    objs = list(fw.elf) or [_implied_object(facts, env, fw, req)]
    if fw.elf and req.framework == "tensorflow" and req.bundles_cuda:
        # TensorFlow >= 2.14 finds its nvidia-* wheels' libraries itself (tensorflow/tensorflow#63362 is the
        # release where that broke): they come after LD_LIBRARY_PATH, as a RUNPATH would.
        implied = _implied_object(facts, env, fw, req)
        objs[0] = ElfDeps(objs[0].path, objs[0].needed, objs[0].rpath, objs[0].runpath + implied.runpath)
    cuda = try_version(fw.cuda_build or "") or req.cuda
    cudnn = try_version(fw.cudnn_build or "") or req.cudnn
    variant = _variant(req, fw) if req.framework == "pytorch" else None
    if variant is not None:
        cuda, cudnn = variant.cuda, variant.cudnn or cudnn
    out: list[Need] = []
    seen: set[str] = set()
    for obj in objs:
        for soname in cuda_sonames(obj.needed):
            if soname not in seen and soname != "libcuda.so.1":
                seen.add(soname)
                out.append(Need(soname, obj, cuda_family(soname) or "", _wants(cuda_family(soname), cuda, cudnn, req)))
    if req.framework == "tensorflow" or not any(n.family in ("cudart", "cudnn") for n in out):
        # TensorFlow dlopens its CUDA libraries by soname; so does a torch whose objects we could not read.
        bundled = _bundled_in_torch(facts, env) if req.framework == "pytorch" else False
        if not bundled and cuda is not None:
            requester = objs[0]
            for soname, family in _dlopened(cuda, cudnn):
                if soname not in seen:
                    seen.add(soname)
                    out.append(Need(soname, requester, family, _wants(family, cuda, cudnn, req)))
    return out


def _implied_object(facts: HostFacts, env: PythonEnv, fw: Framework, req: Requirements) -> ElfDeps:
    """Without the framework's ELF: its wheels' dirs stand in for the RUNPATH the real objects carry."""
    root = env.path.rstrip("/") + "/"
    wheel_dirs = tuple(d.path for d in facts.libdirs if d.path.startswith(root) and "/nvidia/" in d.path
                       and d.exists)
    torch_lib = tuple(d.path for d in facts.libdirs if d.path.startswith(root) and d.path.endswith("/torch/lib"))
    if req.framework == "pytorch" or req.bundles_cuda:
        return ElfDeps(path=f"{env.path}/<{fw.name} {fw.version}>", runpath=torch_lib + wheel_dirs)
    return ElfDeps(path=f"{env.path}/<{fw.name} {fw.version}>")


def _bundled_in_torch(facts: HostFacts, env: PythonEnv) -> bool:
    """Older torch wheels carry cudart and cuDNN inside torch/lib under hashed names."""
    root = env.path.rstrip("/") + "/"
    return any(d.path.startswith(root) and d.path.endswith("/torch/lib")
               and any(f.name.startswith(("libcudart-", "libcudnn")) for f in d.libs) for d in facts.libdirs)


def _dlopened(cuda: object, cudnn: object) -> list[tuple[str, str]]:
    cv, dv = try_version(str(cuda)), try_version(str(cudnn)) if cudnn is not None else None
    if cv is None:
        return []
    major, minor = cv.major_minor()
    if major < 11:
        cudart = f"libcudart.so.{major}.{minor}"
        cublas = f"libcublas.so.{major}.{minor}" if (major, minor) < (10, 1) else f"libcublas.so.{major}"
    else:
        cudart = f"libcudart.so.{major}.0" if major == 11 else f"libcudart.so.{major}"
        cublas = f"libcublas.so.{major}"
    out = [(cudart, "cudart"), (cublas, "cublas")]
    if dv is not None:
        out.append((f"libcudnn.so.{dv.major}", "cudnn"))
    return out


def _wants(family: str | None, cuda: object, cudnn: object, req: Requirements) -> str:
    if family == "cudnn":
        return f"cuDNN {req.cudnn_range.raw if req.cudnn_range is not None else cudnn}"
    if family in ("cudart", "cublas"):
        return f"CUDA {req.cuda_range.raw if req.cuda_range is not None else cuda}"
    return "any"


def _framework_libs(facts: HostFacts, resolver: Resolver, env: PythonEnv, fw: Framework, req: Requirements,
                    reported: frozenset[str]) -> list[Finding]:
    out: list[Finding] = []
    label = f"{fw.name} {fw.version} in {env.path}"
    launches = resolver.launch_envs_for(env.path)
    for need in needs(facts, env, fw, req):
        results = [resolver.resolve(need.soname, le, need.obj) for le in launches]
        judged = [(r, _problem(r, need, req, facts, env)) for r in results]
        bad = [(r, why) for r, why in judged if why is not None]
        if not bad:
            out += _companions(facts, resolver, env, label, need, results, launches, reported)
            continue
        r, why = bad[0]
        good = [g.launch for g, why in judged if why is None]
        works = f" (it does resolve in the {', '.join(good)})" if good else ""
        evidence = [("env", env.path), ("soname", need.soname),
                    ("reaches", r.path or "nothing"), ("how", r.how), ("launch", r.launch),
                    ("should reach", need.wants)]
        if r.file is None:
            code = "CUDA_LIB_UNRESOLVED"
            message = f"{label} needs {need.soname}, which resolves to nothing in the {r.launch}{works}"
        elif r.how.startswith("LD_LIBRARY_PATH") and _own_copy_fits(facts, resolver, env, need, req):
            # The env has a copy that would do; LD_LIBRARY_PATH puts another in front of it.
            code = "LIB_SHADOWED"
            message = f"{label} loads {r.describe()} in the {r.launch}: {why}, it needs {need.wants}{works}"
        elif need.family == "cudnn":
            code = "CUDNN_MISMATCH"
            message = f"{label} loads {r.describe()} in the {r.launch}: {why}, it needs {need.wants}{works}"
        else:
            code = "CUDA_WRONG_DEFAULT"
            message = f"{label} loads {r.describe()} in the {r.launch}: {why}, it needs {need.wants}{works}"
        if code in reported or reported & _MISSING or reported & _SAID.get(need.family, frozenset()):
            continue
        out.append(_finding(code, message, evidence, fix=_fix(code, req, r)))
    return out


def _own_copy_fits(facts: HostFacts, resolver: Resolver, env: PythonEnv, need: Need, req: Requirements) -> bool:
    root = norm(env.path) + "/"
    for d in facts.libdirs:
        if d.exists and (d.path.startswith(root) or (d.real or "").startswith(root)):
            hit = resolver.lib(d.path, need.soname)
            if hit is not None:
                r = Resolution(need.soname, "", hit, norm(d.path), "the env's own copy")
                if _problem(r, need, req, facts, env) is None:
                    return True
    return False


def _companions(facts: HostFacts, resolver: Resolver, env: PythonEnv, label: str, need: Need,
                results: list[Resolution], launches: Sequence[LaunchEnv], reported: frozenset[str]) -> list[Finding]:
    """The libraries a resolved cuDNN or cuBLAS loads in turn (cuDNN 8's libcudnn_*_infer.so.8, cuDNN 9's
    libcudnn_graph.so.9 ..., cuBLAS's libcublasLt): NVIDIA's libraries carry only RUNPATH $ORIGIN, so
    LD_LIBRARY_PATH comes first for them even when the framework's RPATH fixed the first one
    (pytorch/builder#1150 made torch's own RPATH win; PaddlePaddle/Paddle#78285 shows libcublasLt still
    taken from LD_LIBRARY_PATH). A companion from another copy than its library is a mixed install."""
    if need.family not in ("cudnn", "cublas") or "LIB_SHADOWED" in reported:
        return []
    for r in results:
        if r.file is None or r.dir is None:
            continue
        major = need.soname.rsplit(".so.", 1)[-1]
        prefix = "libcudnn_" if need.family == "cudnn" else "libcublasLt"
        d = resolver.dirs.get(norm(r.dir))
        names = [f.name for f in (d.libs if d else ()) if f.name.startswith(prefix) and f.name.endswith(f".so.{major}")]
        launch = next((le for le in launches if le.name == r.launch), None)
        own = ElfDeps(r.path or r.dir, runpath=(r.dir,))
        mine = precise_version(r, need.family, facts, env)
        for name in names:
            c = resolver.resolve(name, launch, own)
            if c.file is None or c.dir is None or norm(c.dir) == norm(r.dir):
                continue
            theirs = precise_version(c, need.family, facts, env)
            if mine is not None and theirs is not None and try_version(mine) == try_version(theirs):
                continue
            return [_finding(
                "LIB_SHADOWED",
                f"{label} loads {r.describe()}, but that library's own {name} comes from {c.dir} "
                f"({theirs or 'another copy'}) via {c.how} in the {c.launch}: two copies of one library mixed "
                "in one process",
                [("env", env.path), ("soname", name), ("reaches", c.path or "?"), ("how", c.how),
                 ("launch", c.launch), ("should reach", f"{r.dir}/{name} ({mine or 'the same copy'})")],
                fix=f"take {c.dir} off LD_LIBRARY_PATH ({c.how.split(' from ', 1)[-1]})",
            )]
    return []


def _problem(r: Resolution, need: Need, req: Requirements, facts: HostFacts | None = None,
             env: PythonEnv | None = None) -> str | None:
    if r.file is None:
        return "not found"
    if r.file.stub:
        return "a link-time stub"
    version = precise_version(r, need.family, facts, env)
    if version is None:
        return None  # the soname matched, and nothing tells more than its major version
    if need.family == "cudnn":
        return None if req.cudnn_range is None or req.cudnn_ok(version) or _same_major_not_older(
            version, req.cudnn) else f"cuDNN {version}"
    if need.family == "cudart":
        return None if req.cuda_range is None or req.cuda_ok(version) else f"CUDA runtime {version}"
    return None


_WHEEL_OF = {"cudart": "nvidia-cuda-runtime-cu", "cublas": "nvidia-cublas-cu", "cudnn": "nvidia-cudnn-cu"}


def precise_version(r: Resolution, family: str, facts: HostFacts | None, env: PythonEnv | None) -> str | None:
    """The version of the file reached, past its soname's major: from its real name, else from what owns
    its directory (the cuDNN install's header, the toolkit, the nvidia-* wheel); None when only the major
    (which the soname already matched) is known."""
    named = r.version
    soname_version = r.soname.split(".so.", 1)[1] if ".so." in r.soname else ""
    if named and named != soname_version and "." in named:
        return named
    if facts is None or r.dir is None:
        return None
    here = norm(r.dir)
    if family == "cudnn":
        for c in facts.cudnn:
            if norm(c.path) == here:
                return c.version
    if family in ("cudart", "cublas"):
        for t in facts.toolkits:
            root = norm(t.path)
            if here == root or here.startswith(root + "/"):
                return t.version
    prefix = _WHEEL_OF.get(family)
    if env is not None and prefix and here.startswith(norm(env.path) + "/"):
        for dist, version in env.nvidia_wheels:
            if dist.startswith(prefix):
                return version
    return None


def _same_major_not_older(have: str, built: object) -> bool:
    h, b = try_version(have), try_version(str(built)) if built is not None else None
    return h is not None and b is not None and h.major == b.major and h >= b


def _fix(code: str, req: Requirements, r: Resolution) -> str:
    target = f"{req.packages[0]}=={req.version}"
    if code == "CUDA_LIB_UNRESOLVED":
        extra = f"{req.packages[0]}[{req.pip_extra}]=={req.version}" if req.pip_extra else target
        return (f"install {extra} (its CUDA wheels) in an isolated venv" if req.bundles_cuda
                else f"install the CUDA/cuDNN {target} needs and pin the venv's LD_LIBRARY_PATH to it, in every "
                "way the env is started (not only an interactive shell)")
    if r.how.startswith("LD_LIBRARY_PATH"):
        return f"take {r.dir} off LD_LIBRARY_PATH ({r.how.split(' from ', 1)[-1]})"
    return f"make {target} load the libraries it was built with (an isolated venv with its loader path pinned)"


# --- the build of an installed torch ---------------------------------------------------------------


def _torch_build(facts: HostFacts, env: PythonEnv, fw: Framework, req: Requirements,
                 reported: frozenset[str]) -> list[Finding]:
    variant = _variant(req, fw)
    if variant is None:
        return []
    out: list[Finding] = []
    driver = try_version(facts.driver.version or "")
    if driver is not None and driver < variant.min_driver and "DRIVER_TOO_OLD" not in reported and not (
            variant.min_driver_compat is not None and driver >= variant.min_driver_compat):
        out.append(_finding(
            "DRIVER_TOO_OLD",
            f"driver {facts.driver.version} is too old for {fw.name} {fw.version} in {env.path}: its {variant.tag} "
            f"build needs >= {variant.min_driver.raw} (CUDA {variant.cuda})",
            [("env", env.path), ("build", variant.tag), ("driver", facts.driver.version or "?"),
             ("needs", f">= {variant.min_driver.raw}")],
            fix=f"upgrade the driver to >= {variant.min_driver.raw}, or install a torch build for an older CUDA",
        ))
    for gpu in _distinct(facts):
        cc = gpu_compute_capability(gpu.compute_capability, gpu.name)
        if cc and variant.runs_on(cc) is False:
            out.append(_finding(
                "GPU_ARCH_UNSUPPORTED",
                f"{fw.name} {fw.version} in {env.path} ({variant.tag}) has no kernels for the {gpu.name} "
                f"(compute capability {cc}): it ships {', '.join(variant.sm_archs)}, so CUDA "
                "ops fail with 'no kernel image is available for execution on the device'",
                [("env", env.path), ("build", variant.tag), ("gpu", gpu.name),
                 ("compute capability", cc), ("kernels for", " ".join(variant.sm_archs))],
                fix="install a build of torch whose CUDA variant ships kernels for this GPU (`remediate matrix show "
                f"pytorch=={req.version}` lists each variant's architectures)",
            ))
    return out


def _distinct(facts: HostFacts) -> Sequence[Gpu]:
    seen: dict[tuple[str, str | None], Gpu] = {}
    for g in facts.gpus:
        seen.setdefault((g.name, g.compute_capability), g)
    return list(seen.values())


__all__ = ["Need", "judge", "needs"]
