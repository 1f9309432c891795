"""Rung 2, the CUDA driver API: libcuda (through ctypes) initialises and sees the GPUs."""

from __future__ import annotations

import posixpath

from remediator.verify.context import (
    _SKIP_REASONS,
    Context,
    _d,
    _i,
    _l,
    _plural,
    _s,
    _skip,
    bus_key,
    cuda_version_text,
    file_version,
)
from remediator.verify.model import Rung

_CUDA_ERRORS = {
    2: "CUDA_ERROR_OUT_OF_MEMORY",
    3: "CUDA_ERROR_NOT_INITIALIZED",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
    46: "CUDA_ERROR_DEVICES_UNAVAILABLE",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    304: "CUDA_ERROR_OPERATING_SYSTEM",
    803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
    804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
    999: "CUDA_ERROR_UNKNOWN",
}


# --- rung 2: the CUDA driver API ------------------------------------------------------------------


def rung(ctx: Context) -> Rung:
    cuda = ctx.doc.get("cuda")
    if not isinstance(cuda, dict):
        return _skip(2, "cuda", _SKIP_REASONS.get(_s(_d(ctx.doc.get("skipped")).get("cuda")) or "driver",
                                                  "driver rung failed"))
    cvd = _s(ctx.env.get("CUDA_VISIBLE_DEVICES"))
    nvml_n = len(ctx.nvml_gpus)
    path = _s(cuda.get("path"))
    lib_version = file_version(path) if path else None
    evidence: list[tuple[str, str]] = [("libcuda", f"{path or 'libcuda.so.1'}")]
    if cvd is not None:
        evidence.append(("CUDA_VISIBLE_DEVICES", repr(cvd)))

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(2, "cuda", "fail", summary, cause, fix, tuple(evidence))

    driver = ctx.driver_version
    if cuda.get("timed_out"):
        return fail(_s(cuda.get("error")) or "cuInit did not return in time",
                    "the GPU or the driver is wedged: cuInit blocks",
                    "check `dmesg | grep -i xid`; reset the GPU (`nvidia-smi -r`, with no jobs on it) or reboot")
    error = _s(cuda.get("error"))
    if error and error.startswith("cannot load libcuda"):
        return fail("libcuda.so.1 not found",
                    "NVML works, but the driver's CUDA library (libcuda.so.1) is not on the loader path",
                    f"install the driver's CUDA userspace package matching driver {driver or '(its version)'} "
                    "(Ubuntu: libnvidia-compute-<branch>; RHEL: nvidia-driver-cuda-libs); in a container set "
                    "NVIDIA_DRIVER_CAPABILITIES=compute,utility")
    rc = _i(cuda.get("init_rc"))
    count = _i(cuda.get("device_count"))
    if rc not in (0, None) or (rc == 0 and count == 0):
        name = _s(cuda.get("init_error")) or _CUDA_ERRORS.get(rc or 0, f"error {rc}")
        if rc == 0:
            name = "no devices"
        evidence.append(("cuInit", f"{rc} ({name})"))
        if rc in (100, 0, 101):
            if cvd is not None:
                return fail(f"CUDA sees no device: cuInit returned {name}",
                            f"CUDA_VISIBLE_DEVICES={cvd!r} hides every GPU from CUDA (NVML, which ignores it, "
                            f"sees {nvml_n})",
                            f"unset CUDA_VISIBLE_DEVICES, or set it to GPUs that exist (0..{max(nvml_n - 1, 0)} or "
                            "their UUIDs from `nvidia-smi -L`)")
            return fail(f"CUDA sees no device: cuInit returned {name}",
                        f"NVML sees {_plural(nvml_n, 'GPU')}, but CUDA finds none usable (device permissions, a "
                        "GPU in an error state, or MIG enabled without instances)",
                        "check `nvidia-smi`, the permissions of /dev/nvidia*, and `dmesg | grep -i xid`")
        if rc in (803, 804):
            why = ("the libcuda on the loader path is a CUDA forward-compatibility library "
                   f"({path or 'libcuda.so.1'}{', ' + lib_version if lib_version else ''}) that "
                   + ("this driver does not accept" if rc == 803 else "this GPU does not support "
                      "(forward compatibility works on data-center GPUs only)"))
            directory = posixpath.dirname(path) if path else "the cuda-compat directory"
            return fail(f"cuInit failed: {name}", why,
                        f"take {directory} off LD_LIBRARY_PATH / ld.so.conf (or remove the cuda-compat package), "
                        "or upgrade the driver")
        if rc == 35:
            return fail(f"cuInit failed: {name}", f"libcuda ({path or 'libcuda.so.1'}) is older than the kernel "
                        "driver expects", "reinstall the driver's userspace libraries matching its kernel module")
        if rc == 46:
            return fail(f"cuInit failed: {name}", "every GPU is in exclusive-process compute mode and already in "
                        "use by another process", "run the check when the GPUs are free, or "
                        "`nvidia-smi -c DEFAULT` to allow shared use")
        uvm_missing = _d(_d(ctx.doc.get("driver")).get("device_nodes")).get("/dev/nvidia-uvm") is False
        modules = [m for m in _l(_d(ctx.doc.get("driver")).get("modules")) if isinstance(m, str)]
        if uvm_missing and "nvidia_uvm" not in modules:
            return fail(f"cuInit failed: {name}",
                        "the nvidia_uvm kernel module is not loaded (/dev/nvidia-uvm is missing); CUDA needs it",
                        "`sudo modprobe nvidia-uvm` (or `sudo nvidia-modprobe -u -c 0`); see `dmesg` if it fails")
        return fail(f"cuInit failed: {name}", f"the CUDA driver API does not initialise ({name})",
                    "check `dmesg | grep -i -e nvrm -e xid` and the permissions of /dev/nvidia*, /dev/nvidia-uvm")
    if error:
        return fail(error, "the CUDA driver API initialised but cannot enumerate the GPUs",
                    "check `dmesg | grep -i -e nvrm -e xid`")
    devices = [d for d in _l(cuda.get("devices")) if isinstance(d, dict)]
    n = count or 0
    cuda_api = cuda_version_text(_i(cuda.get("driver_version")))
    summary = (f"libcuda {lib_version or '?'}" + (f" (CUDA {cuda_api})" if cuda_api else "")
               + f" initialised; CUDA sees {_plural(n, 'device')}")
    notes = []
    if lib_version and driver and lib_version != driver:
        notes.append(f"libcuda {lib_version} ({path}) is not the driver's own {driver}: a CUDA forward-compatibility "
                     "library")
    if n < nvml_n:
        seen = {_s(d.get("uuid")) for d in devices} | {bus_key(_s(d.get("pci_bus_id"))) for d in devices}
        hidden = [g for g in ctx.nvml_gpus if _s(g.get("uuid")) not in seen
                  and bus_key(_s(g.get("pci_bus_id"))) not in seen]
        listing = ", ".join(f"GPU {_i(g.get('index'))} ({_s(g.get('name')) or '?'})" for g in hidden)
        if cvd is not None:
            notes.append(f"CUDA_VISIBLE_DEVICES={cvd!r} shows CUDA {n} of the {nvml_n} GPUs; "
                         f"not checked: {listing or 'the others'}")
        else:
            return fail(f"CUDA sees {n} of the {nvml_n} GPUs NVML sees",
                        f"CUDA cannot use {listing or 'some GPUs'} (MIG mode, an error state, or permissions)",
                        "check `nvidia-smi -q` for those GPUs (MIG mode, retired pages, Xid errors in `dmesg`)")
    ctx.notes.extend(notes)
    return Rung(2, "cuda", "pass", summary, evidence=tuple(evidence), notes=tuple(notes))
