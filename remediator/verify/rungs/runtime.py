"""Rung 3, the framework's runtime: it imports, runs a small GPU op, and the CUDA runtime / cuDNN / cuBLAS
it actually loaded (read from /proc/self/maps) fit its build and the matrix's requirements. On a host with no
GPU, what the framework saw and which libraries it would load."""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

from remediator.errors import RemediatorError
from remediator.hostscript import last_line
from remediator.verify.context import (
    _LIB_KIND,
    _MISSING_LIB,
    _SKIP_REASONS,
    _TF_DLOPEN,
    Context,
    _d,
    _f,
    _i,
    _l,
    _plural,
    _s,
    _skip,
    _within,
    cuda_version_text,
    cudnn_version_text,
    file_version,
    venv_python,
)
from remediator.verify.model import Library, Rung
from remediator.versions import try_version

_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV", 15: "SIGTERM"}


# --- rung 3: the framework's runtime --------------------------------------------------------------


def _child_failure(ctx: Context, fw: dict[str, Any], during: str) -> tuple[str, str, str] | None:
    """Summary, cause and fix when the framework child timed out, crashed or could not start."""
    step = _s(fw.get("last_step")) or "start"
    label = ctx.fw_label
    steps = {
        "import": f"importing {label}",
        "build_info": f"reading {label}'s build information",
        "devices": f"listing {label}'s GPUs",
        "op": "the first GPU operation",
        "maps": "reading the loaded libraries",
        "numpy": "importing numpy",
        "reference": "computing the NumPy reference",
    }
    where = steps.get(step, f"the matmul on GPU {step.split(':', 1)[1]}" if step.startswith("matmul:") else step)
    tail = last_line(_s(fw.get("stderr_tail")) or "")
    timeout = _f(_d(ctx.doc.get("options")).get("framework_timeout"))
    if fw.get("error"):
        return str(fw["error"]), f"the {during} check could not be started", "see the error; check the interpreter"
    if fw.get("timed_out"):
        return (f"the {during} check did not finish in {timeout:g}s (stuck in {where})" if timeout else
                f"the {during} check did not finish (stuck in {where})",
                f"{where} hung: a wedged GPU, or a slow first start (PTX JIT-compiling for a GPU the build has no "
                "kernels for)" + (" and it could not be killed (stuck in the driver)" if fw.get("stuck") else ""),
                "check `dmesg | grep -i xid`; give it longer with --timeout; reset the GPU or reboot if it is wedged")
    sig = _i(fw.get("signal"))
    if sig:
        name = _SIGNALS.get(sig, f"signal {sig}")
        return (f"the {during} check crashed with {name} during {where}",
                f"{label} crashed in native code during {where}" + (f": {tail}" if tail else "")
                + " (often CUDA libraries from two different installs mixed in one process)",
                "see the stderr in --format json (report.framework.stderr_tail); check LD_LIBRARY_PATH and "
                "LD_PRELOAD for other CUDA/cuDNN copies")
    rc = _i(fw.get("rc"))
    if rc not in (0, None):
        return (f"the {during} check exited with status {rc} during {where}", tail or "it printed no error",
                "see the stderr in --format json (report.framework.stderr_tail)")
    return None


def _classify_gpu_error(ctx: Context, error: str, gpu_name: str | None = None) -> tuple[str, str]:
    """Plain-language cause and fix for an error a framework raised running on the GPU."""
    low = error.lower()
    label = ctx.fw_label
    if "cudnn version incompatibility" in low or "cudnn_status_version_mismatch" in low:
        return (f"{label} was built for another cuDNN than the one it loaded: {error}",
                _cudnn_fix(ctx, None))
    if "no kernel image is available" in low or "not compatible with the current" in low:
        cc = ""
        for g in _l(_d(ctx.doc.get("cuda")).get("devices")):
            if isinstance(g, dict) and isinstance(g.get("compute_capability"), list):
                cc = ".".join(str(x) for x in g["compute_capability"])
                break
        return (f"this {label} build has no GPU code for {gpu_name or 'this GPU'}"
                + (f" (compute capability {cc})" if cc else ""),
                "install a build of the target compiled for this GPU's architecture; " + ctx.plan_hint())
    if "driver version is insufficient" in low or "driver on your system is too old" in low \
            or "insufficient_driver" in low:
        runtime = _runtime_cuda(ctx)
        need = ""
        if runtime:
            try:
                need = ctx.matrix.min_driver_for_cuda(runtime).raw
            except RemediatorError:
                need = ""
        return (f"driver {ctx.driver_version or '?'} is too old for the CUDA runtime {runtime or ''} that {label} "
                "uses".replace("  ", " "),
                (f"upgrade the driver to {need} or newer, " if need else "upgrade the driver, ")
                + f"or install a build of {label} for an older CUDA; " + ctx.plan_hint())
    if "out of memory" in low:
        return ("the GPU has no free memory for a CUDA context and our small buffers: other processes hold it",
                "run the check when the GPU is free (NVML's process list is in the rung 1 notes)")
    if "busy or unavailable" in low or "exclusive" in low:
        return ("the GPU is in exclusive-process mode and another process holds it",
                "run the check when the GPU is free, or `nvidia-smi -c DEFAULT`")
    return (f"{label} failed on the GPU: {error}",
            "see the error; `dmesg | grep -i xid` shows GPU faults")


def _runtime_cuda(ctx: Context) -> str | None:
    for lib in _l(_d(ctx.doc.get("runtime")).get("libraries")):
        if isinstance(lib, dict) and posixpath.basename(_s(lib.get("path")) or "").startswith("libcudart.so"):
            return cuda_version_text(_i(lib.get("api_version"))) or file_version(_s(lib.get("path")) or "")
    return _s(_d(_d(ctx.doc.get("runtime")).get("build")).get("cuda"))


def _cudnn_fix(ctx: Context, loaded: str | None) -> str:
    """The fix for a CUDA library the framework should not have loaded (`loaded`), or one it lacks."""
    ld = _s(ctx.env.get("LD_LIBRARY_PATH"))
    directory = posixpath.dirname(loaded) if loaded else None
    prefix = _s(_d(ctx.doc.get("python")).get("prefix"))
    if directory and ld and directory in ld.split(":"):
        return f"take {directory} off LD_LIBRARY_PATH (it is {ld!r}); the env's own wheels then load"
    if directory and not (prefix and _within(directory, prefix)):
        return (f"stop the loader from finding {directory} first (LD_PRELOAD, /etc/ld.so.conf.d, or a "
                "copy in the toolkit); the env's own wheels then load")
    if ctx.req is not None:
        pins = [f"{n}=={v}" for n, v in ctx.req.wheels if "cudnn" in n]
        if ctx.req.bundles_cuda and pins:
            return f"reinstall {ctx.req.install_spec} with its pinned {', '.join(pins)}"
        if ctx.req.cudnn_range is not None:
            return (f"install cuDNN {ctx.req.cudnn_range.raw} for CUDA {ctx.req.cuda} and pin the venv's "
                    f"LD_LIBRARY_PATH to it; {ctx.plan_hint()}")
    return ctx.plan_hint()


def _outside_env(rt: dict[str, Any], libs: tuple[Library, ...], family: str) -> list[Library]:
    """Libraries of a family (cudnn, cudart, cublas) loaded from outside the env while the env has its own:
    the classic shadowing, including a cuDNN split between the wheel's libcudnn.so.9 and another
    install's sub-libraries (cuDNN 9 loads libcudnn_graph, _ops, _engines_* by name)."""
    shadowed = [lib for lib, _ in _shadowed(rt, libs) if lib.kind.startswith(family)]
    if shadowed:
        return shadowed
    members = [lib for lib in libs if lib.kind.startswith(family) and lib.kind != "cuda"]
    if any(lib.origin == "env" for lib in members):
        return [lib for lib in members if lib.origin != "env"]
    return []


def _describe_outside(libs: list[Library]) -> str:
    directory = posixpath.dirname(libs[0].path)
    names = [posixpath.basename(lib.path) for lib in libs if posixpath.dirname(lib.path) == directory]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{shown} came from {directory}, not from the env"


def _local_free(version: str) -> str:
    return version.split("+", 1)[0]


def rung(ctx: Context) -> Rung:
    fw = _d(ctx.doc.get("framework"))
    label = ctx.fw_label
    if not fw.get("ran"):
        reason = _s(_d(ctx.doc.get("skipped")).get("framework")) or "driver"
        return _skip(3, "runtime", _SKIP_REASONS.get(reason, reason))
    rt = ctx.doc.get("runtime")
    if not isinstance(rt, dict):
        failure = _child_failure(ctx, fw, "framework") or (
            "the framework check reported nothing", "it exited without a result", "see report.framework.stderr_tail")
        return Rung(3, "runtime", "fail", *failure)
    evidence: list[tuple[str, str]] = [("python", ctx.python)]

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(3, "runtime", "fail", summary, cause, fix, tuple(evidence))

    if not rt.get("import_ok"):
        error = _s(rt.get("import_error")) or "unknown error"
        if "No module named" in error and label in error:
            venv = venv_python(ctx.target, matrix=ctx.matrix) if ctx.target else None
            return fail(f"cannot import {label}: {error}",
                        f"{label} is not installed for {ctx.python}",
                        "pass the interpreter of the venv that has it with --python PATH"
                        + (f"; or create the target's venv ({posixpath.dirname(posixpath.dirname(venv))}): "
                           f"{ctx.plan_hint()}, then `remediate apply`" if venv else ""))
        lib = _MISSING_LIB.search(error)
        if lib:
            return fail(f"cannot import {label}: {error}",
                        f"{label} could not load {lib.group(1)}: " + (
                            "a CUDA library it needs is missing or shadowed by an incompatible copy"),
                        (f"check LD_LIBRARY_PATH ({ctx.env.get('LD_LIBRARY_PATH')!r}) for other CUDA/cuDNN copies; "
                         if ctx.env.get("LD_LIBRARY_PATH") else "")
                        + (f"reinstall {ctx.req.install_spec} in the venv (it brings its CUDA wheels)"
                           if ctx.req else "reinstall the framework with its CUDA libraries"))
        return fail(f"cannot import {label}: {error}", f"{label} fails to import in {ctx.python}",
                    f"run `{ctx.python} -c 'import {label}'` on the host to see the whole error; reinstall it")
    build = _d(rt.get("build"))
    version = _s(build.get("version")) or "?"
    evidence.append((label, version + (f" ({_s(build.get('file'))})" if build.get("file") else "")))
    if build.get("cuda"):
        evidence.append(("built for CUDA", str(build.get("cuda"))))
    if build.get("cudnn"):
        evidence.append(("built for cuDNN", str(build.get("cudnn"))))
    if ctx.target is not None and ctx.req is not None:
        have = try_version(_local_free(version))
        want = try_version(ctx.req.version)
        if have is not None and want is not None and have != want:
            return fail(f"{label} {version} is installed in {ctx.python}, the target is {ctx.target}",
                        f"the interpreter that ran the check has another {label} than the target",
                        f"pass the target venv's interpreter with --python PATH, or install {ctx.req.install_spec}; "
                        + ctx.plan_hint())
    if build.get("is_cuda_build") is False:
        return fail(f"{label} {version} is a CPU-only build", f"this {label} has no CUDA support compiled in",
                    (f"install the CUDA build: pip install {ctx.req.install_spec}" if ctx.req else
                     f"install a CUDA build of {label}") + "; " + ctx.plan_hint())
    if fw.get("cpu_only") is True:
        return _cpu_runtime_rung(ctx, rt, build, evidence)
    devices = [d for d in _l(rt.get("devices")) if isinstance(d, dict)]
    cuda_n = _i(_d(ctx.doc.get("cuda")).get("device_count")) or 0
    stderr = _s(fw.get("stderr_tail")) or ""
    if not devices:
        missing = sorted(set(_TF_DLOPEN.findall(stderr)))
        if missing:
            return fail(f"{label} sees no GPU: it could not load {', '.join(missing)}",
                        f"{label} did not find the CUDA libraries it was built for (CUDA {build.get('cuda')}, cuDNN "
                        f"{build.get('cudnn')}), so it runs on the CPU only",
                        _cudnn_fix(ctx, None))
        error = _s(rt.get("devices_error")) or last_line(stderr)
        cause, fix = _classify_gpu_error(ctx, error or "no CUDA device")
        return fail(f"{label} sees no GPU, though CUDA sees {cuda_n}", cause, fix)
    op = _d(rt.get("op"))
    if not op.get("ok"):
        error = _s(op.get("error")) or "unknown error"
        cause, fix = _classify_gpu_error(ctx, error)
        return fail(f"the first GPU op failed on GPU {_i(op.get('index'))}: {error}", cause, fix)
    expected = [_f(x) for x in _l(op.get("expected"))] or [64.0, 9.0]
    got = [_f(op.get("matmul_value")), _f(op.get("conv_value"))]
    if got != expected:
        return fail(f"the first GPU op gave a wrong result: {got}, expected {expected}",
                    "a matmul and a convolution of ones gave wrong numbers: a broken library or faulty GPU",
                    "check `nvidia-smi -q -d ECC` and `dmesg | grep -i xid`; reinstall the framework")
    if op.get("cudnn_runtime_error"):
        error = str(op["cudnn_runtime_error"])
        loaded = _main_cudnn(ctx)
        outside = _outside_env(rt, libraries(ctx), "cudnn")
        evidence.append(("error", error))
        return fail(f"{label} rejects the loaded cuDNN {loaded[1] if loaded else ''}: it was built with "
                    f"{build.get('cudnn') or '?'}".replace("  ", " "),
                    f"{label} {version} was built with cuDNN {build.get('cudnn') or '?'} but cuDNN "
                    f"{loaded[1] if loaded else '?'} was loaded: "
                    + (_describe_outside(outside) if outside else f"from {loaded[0] if loaded else '?'}"),
                    _cudnn_fix(ctx, outside[0].path if outside else (loaded[0] if loaded else None)))
    return _judge_libraries(ctx, rt, build, evidence, fail)


#: What rungs 3 and 4 say on a host with no NVIDIA GPU where the framework ran on the CPU.
NO_DEVICE_CPU = "no device (no NVIDIA GPU on this host's PCI bus)"


def _cuda_library_text(lib: dict[str, Any]) -> str:
    """One soname the framework would dlopen, as the CPU check resolved it."""
    soname = _s(lib.get("soname")) or "?"
    if not lib.get("found"):
        return f"{soname} not found"
    path = _s(lib.get("path")) or "?"
    api = _i(lib.get("api_version"))
    if soname.startswith("libcudnn"):
        version = cudnn_version_text(api)
    elif soname.startswith("libcudart"):
        version = cuda_version_text(api)
    else:
        version = _s(lib.get("api_version_text"))
    version = version or file_version(path)
    return f"{soname} {version or '?'} from {path} (via {_s(lib.get('via')) or '?'})"


def _cpu_runtime_rung(ctx: Context, rt: dict[str, Any], build: dict[str, Any],
                      evidence: list[tuple[str, str]]) -> Rung:
    """Rung 3 on a host without a GPU: what the framework saw, as a skip (nothing GPU-side can fail here)."""
    label = ctx.fw_label
    version = _s(build.get("version")) or "?"
    libs = [x for x in _l(rt.get("cuda_libraries")) if isinstance(x, dict)]
    devices = [d for d in _l(rt.get("devices")) if isinstance(d, dict)]
    built = ", ".join(x for x in (f"CUDA {build.get('cuda')}" if build.get("cuda") else "",
                                  f"cuDNN {_cudnn_build_text(build.get('cudnn'))}" if build.get("cudnn") else "") if x)
    for lib in libs:
        evidence.append((_s(lib.get("soname")) or "?", _cuda_library_text(lib) + (
            "; searched " + ", ".join(str(p) for p in _l(lib.get("searched"))) if not lib.get("found") else "")))
    missing = [_s(lib.get("soname")) or "?" for lib in libs if not lib.get("found")]
    found = [_cuda_library_text(lib) for lib in libs if lib.get("found")]
    seen = "sees no GPU" if not devices else f"lists {_plural(len(devices), 'GPU')}"
    parts = []
    if missing:
        parts.append(f"{', '.join(missing)} not found in the env or on the loader path")
    if found:
        parts.append("would load " + "; ".join(found))
    if rt.get("cuda_libraries_error"):
        parts.append(f"its CUDA libraries could not be resolved: {rt['cuda_libraries_error']}")
    summary = (f"{NO_DEVICE_CPU}: {label} {version}" + (f" (built for {built})" if built else "") + f" {seen}"
               + ("; " + "; ".join(parts) if parts else ""))
    return Rung(3, "runtime", "skip", summary, evidence=tuple(evidence))



def _main_cudnn(ctx: Context) -> tuple[str, str] | None:
    for lib in _l(_d(ctx.doc.get("runtime")).get("libraries")):
        if isinstance(lib, dict):
            path = _s(lib.get("path")) or ""
            if posixpath.basename(path).startswith("libcudnn.so"):
                version = cudnn_version_text(_i(lib.get("api_version"))) or file_version(path) or "?"
                return path, version
    return None


def _judge_libraries(ctx: Context, rt: dict[str, Any], build: dict[str, Any],
                     evidence: list[tuple[str, str]], fail: Callable[[str, str, str], Rung]) -> Rung:
    label = ctx.fw_label
    version = _s(build.get("version")) or "?"
    libs = libraries(ctx)
    main = {lib.kind: lib for lib in libs if lib.kind in ("cudart", "cudnn", "cublas", "cuda")}
    for lib in libs:
        if lib.kind in ("cudart", "cudnn", "cublas"):
            evidence.append((lib.kind, f"{lib.version or '?'} {lib.path} ({lib.origin})"))
    built_cuda = try_version(_s(build.get("cuda")))
    built_cudnn = try_version(_cudnn_build_text(build.get("cudnn")))
    cudart = main.get("cudart")
    if cudart is None and build.get("cuda"):
        return fail("no CUDA runtime (libcudart) was loaded by the GPU op",
                    f"{label} ran on the GPU without a visible libcudart (statically linked?)",
                    "nothing to fix if the matmul rung passes; report it if it does not")
    if cudart is not None and cudart.version:
        loaded = try_version(cudart.version)
        if built_cuda is not None and loaded is not None and loaded.major != built_cuda.major:
            return fail(f"CUDA runtime {cudart.version} loaded from {cudart.path}, {label} {version} was built "
                        f"for CUDA {built_cuda.raw}",
                        f"a CUDA {loaded.major} runtime was loaded into a {label} built for CUDA {built_cuda.major}"
                        + (" (from outside the env)" if cudart.origin != "env" else ""),
                        _cudnn_fix(ctx, cudart.path))
        if ctx.req is not None and loaded is not None and ctx.req.cuda_range is not None \
                and not ctx.req.cuda_ok(loaded):
            return fail(f"CUDA runtime {cudart.version} ({cudart.path}) is outside what {ctx.target} supports "
                        f"({ctx.req.cuda_range.raw})",
                        f"{ctx.target} was built and tested with CUDA {ctx.req.cuda}",
                        _cudnn_fix(ctx, cudart.path))
    cudnn = main.get("cudnn")
    if cudnn is None:
        return fail("no cuDNN was loaded by the GPU op (a convolution)",
                    f"{label} ran a convolution without cuDNN: cuDNN is missing or disabled",
                    _cudnn_fix(ctx, None))
    loaded_dnn = try_version(cudnn.version)
    outside = _outside_env(rt, libs, "cudnn")
    culprit = outside[0].path if outside else cudnn.path
    where = _describe_outside(outside) if outside else f"loaded from {cudnn.path}"
    if loaded_dnn is not None and built_cudnn is not None and (
            loaded_dnn.major != built_cudnn.major or (len(built_cudnn.release) > 1 and loaded_dnn < built_cudnn)):
        return fail(f"cuDNN {cudnn.version} was loaded, {label} {version} was built with cuDNN {built_cudnn.raw}",
                    "the cuDNN that was loaded is "
                    + ("another major version" if loaded_dnn.major != built_cudnn.major else "older")
                    + f" than the one {label} was built with: {where}",
                    _cudnn_fix(ctx, culprit))
    if ctx.req is not None and loaded_dnn is not None and ctx.req.cudnn_range is not None \
            and not ctx.req.cudnn_ok(loaded_dnn):
        return fail(f"cuDNN {cudnn.version} is outside what {ctx.target} needs ({ctx.req.cudnn_range.raw})",
                    f"{ctx.target} was built with cuDNN {ctx.req.cudnn}; {where}",
                    _cudnn_fix(ctx, culprit))
    dnn_cuda = try_version(cudnn.built_for_cuda)
    if dnn_cuda is not None and built_cuda is not None and dnn_cuda.major != built_cuda.major:
        return fail(f"the cuDNN at {cudnn.path} was built for CUDA {cudnn.built_for_cuda}; {label} uses CUDA "
                    f"{built_cuda.raw}",
                    f"a cuDNN for CUDA {dnn_cuda.major} was loaded into a {label} built for CUDA {built_cuda.major}",
                    _cudnn_fix(ctx, cudnn.path))
    if ctx.req is not None and ctx.req.bundles_cuda:
        shadowed = _shadowed(rt, libs)
        if shadowed:
            lib, wheel_dir = shadowed[0]
            return fail(f"{lib.kind} {lib.version or ''} was loaded from {lib.path}, not from the env's wheel "
                        f"({wheel_dir})".replace("  ", " "),
                        f"{ctx.target} brings its own CUDA libraries as pip wheels, but "
                        f"{_describe_outside([x for x, _ in shadowed])}: the loader found them first, so the "
                        "build and the library can drift apart",
                        _cudnn_fix(ctx, lib.path))
    parts = []
    if cudart is not None:
        parts.append(f"CUDA runtime {cudart.version or '?'}")
    parts.append(f"cuDNN {cudnn.version or '?'}")
    if "cublas" in main:
        parts.append(f"cuBLAS {main['cublas'].version or '?'}")
    origins = sorted({lib.origin for lib in libs if lib.kind in ("cudart", "cudnn", "cublas")})
    where = "from the env's wheels" if origins == ["env"] else "from " + " and ".join(
        "the env" if o == "env" else "the system" for o in origins)
    built = ", ".join(x for x in (f"CUDA {build.get('cuda')}" if build.get("cuda") else "",
                                  f"cuDNN {_cudnn_build_text(build.get('cudnn'))}" if build.get("cudnn") else "") if x)
    return Rung(3, "runtime", "pass",
                f"{label} {version}" + (f" (built for {built})" if built else "") + f" loaded {', '.join(parts)} "
                + where, evidence=tuple(evidence))


def _cudnn_build_text(value: Any) -> str | None:
    """TF writes cudnn_version as "8" or "9"; torch's compile version comes as "9.19.0"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return cudnn_version_text(value) if value >= 1000 else str(value)
    return value if isinstance(value, str) else None


def _shadowed(rt: dict[str, Any], libs: tuple[Library, ...]) -> list[tuple[Library, str]]:
    """CUDA libraries loaded from outside the env although the env's wheels ship one of that name."""
    wheel_files: dict[str, str] = {}
    for entry in _l(rt.get("wheel_lib_dirs")):
        if isinstance(entry, dict) and isinstance(entry.get("dir"), str):
            for name in _l(entry.get("files")):
                if isinstance(name, str):
                    wheel_files.setdefault(_soname_stem(name), entry["dir"])
    out = []
    for lib in libs:
        if lib.kind == "cuda" or lib.origin == "env":
            continue
        wheel_dir = wheel_files.get(_soname_stem(posixpath.basename(lib.path)))
        if wheel_dir is not None:
            out.append((lib, wheel_dir))
    return out


def _soname_stem(name: str) -> str:
    """libcudnn.so.9.19.0 -> libcudnn.so.9: what the loader looks for."""
    stem, _, rest = name.partition(".so")
    major = rest.lstrip(".").split(".", 1)[0]
    return f"{stem}.so.{major}" if major else f"{stem}.so"


def libraries(ctx: Context) -> tuple[Library, ...]:
    rt = _d(ctx.doc.get("runtime"))
    sites = [s for s in _l(rt.get("site_dirs")) if isinstance(s, str)]
    prefix = _s(_d(rt.get("python")).get("prefix")) or _s(_d(ctx.doc.get("python")).get("prefix"))
    roots = sites + ([prefix] if prefix and prefix not in ("/usr", "/usr/local", "/") else [])
    out = []
    for lib in _l(rt.get("libraries")):
        if not isinstance(lib, dict) or not isinstance(lib.get("path"), str):
            continue
        path = lib["path"]
        base = posixpath.basename(path)
        match = _LIB_KIND.match(base)
        if not match:
            continue
        kind = match.group(1)
        fver = file_version(path)
        api = _i(lib.get("api_version"))
        if kind == "cudnn":
            version = cudnn_version_text(api) or fver
        elif kind in ("cudart", "cuda"):
            version = (cuda_version_text(api) if kind == "cudart" else fver) or fver
            if kind == "cudart" and fver and fver.count(".") >= 2:
                version = fver  # 13.0.96 says more than 13.0
        else:
            version = _s(lib.get("api_version_text")) or fver
        origin = "env" if any(_within(path, r) for r in roots) else "system"
        out.append(Library(kind, path, version, fver, origin,
                           cuda_version_text(_i(lib.get("cudart_version"))) if kind == "cudnn" else None))
    return tuple(out)
