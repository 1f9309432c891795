"""Rung 1, the driver: kernel module loaded, NVML answers, device nodes present, NVML's GPU count equals
PCI's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remediator.verify.context import NO_DEVICE, Context, _d, _i, _l, _plural, _s, kernel_module_version
from remediator.verify.model import Rung
from remediator.versions import try_version

# --- rung 1: the driver --------------------------------------------------------------------------


def rung(ctx: Context) -> Rung:
    driver = _d(ctx.doc.get("driver"))
    nvml = ctx.nvml
    proc_version = _s(driver.get("proc_version"))
    kernel = kernel_module_version(proc_version)
    pci = driver.get("pci")
    pci_list = [p for p in _l(pci) if isinstance(p, dict)]
    container = driver.get("container") is True
    evidence: list[tuple[str, str]] = [
        ("/proc/driver/nvidia/version", f"kernel module {kernel}" if kernel else ("present" if proc_version else
                                                                                   "missing")),
        ("PCI", "unreadable" if pci is None else f"{_plural(len(pci_list), 'NVIDIA GPU')}" + (
            " (" + ", ".join(f"{_s(p.get('address'))} driver={_s(p.get('driver')) or 'none'}" for p in pci_list)
            + ")" if pci_list else "")),
    ]
    if nvml.get("error"):
        evidence.append(("NVML", str(nvml.get("error"))))

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(1, "driver", "fail", summary, cause, fix, tuple(evidence))

    floor = f" {ctx.req.min_driver}" if ctx.req else ""
    target_text = f" for {ctx.target}" if ctx.target else ""
    if pci is not None and not pci_list and not nvml.get("ok"):
        # No NVIDIA GPU on the bus at all (a CPU host, a lab host, CI): nothing to check, nothing broken
        # that a GPU would reveal. A GPU on the bus with a broken driver still fails below.
        return Rung(1, "driver", "skip", NO_DEVICE, evidence=tuple(evidence))
    if proc_version is None and not nvml.get("ok"):
        summary = "no NVIDIA kernel module loaded (/proc/driver/nvidia/version missing)"
        if pci is None:
            return fail(summary, "the kernel module is not loaded, and /sys/bus/pci cannot be read to tell whether "
                        "the host has an NVIDIA GPU at all",
                        f"check for a GPU with `lspci | grep -i nvidia`; then install the NVIDIA driver{floor}"
                        f"{target_text} and `sudo modprobe nvidia`")
        if not pci_list:
            return fail(summary, "this host has no NVIDIA GPU on its PCI bus and no NVIDIA driver: there is nothing "
                        "for CUDA to run on",
                        "run the check on a GPU host (nothing to fix here if this host is not meant to have a GPU)")
        bound = sorted({_s(p.get("driver")) or "no driver" for p in pci_list})
        if "nouveau" in bound:
            return fail(summary, f"the host's {_plural(len(pci_list), 'NVIDIA GPU')} are driven by nouveau, the "
                        "open-source display driver, which has no CUDA",
                        f"install the NVIDIA driver{floor}{target_text} (it blacklists nouveau), then reboot; "
                        + ctx.plan_hint())
        if "vfio-pci" in bound:
            return fail(summary, "the NVIDIA GPUs are bound to vfio-pci (reserved for passing through to a VM), "
                        "not to the nvidia driver", "unbind them from vfio-pci (check the kernel command line and "
                        "/etc/modprobe.d for vfio-pci ids), then `sudo modprobe nvidia`")
        return fail(summary, f"the host has {_plural(len(pci_list), 'NVIDIA GPU')} on its PCI bus "
                    f"({', '.join(bound)}), but the nvidia kernel module is not loaded",
                    f"`sudo modprobe nvidia`; if that fails (`dmesg | grep -i nvrm`), install the NVIDIA driver"
                    f"{floor}{target_text} for the running kernel and reboot; " + ctx.plan_hint())
    if not nvml.get("ok"):
        return _nvml_failure(ctx, nvml, kernel, fail)
    count = _i(nvml.get("device_count"))
    gpus = ctx.nvml_gpus
    n = count if count is not None else len(gpus)
    version = _s(nvml.get("driver_version")) or "?"
    evidence.insert(0, ("driver", version))
    if n == 0:
        return fail(f"driver {version} loaded, but NVML sees no GPU",
                    "the driver is loaded but found no usable GPU" + (" (in a container: none was given to it)"
                                                                      if container else ""),
                    "check `nvidia-smi -L` and `dmesg | grep -i -e nvrm -e xid`" + (
                        "; run the container with --gpus all (NVIDIA container toolkit)" if container else ""))
    nodes = {k: v for k, v in _d(driver.get("device_nodes")).items() if isinstance(v, bool)}
    missing = sorted(k for k, v in nodes.items() if not v and k != "/dev/nvidia-uvm")
    if missing:
        return fail(f"device node(s) missing: {', '.join(missing)}",
                    "NVML answers, but programs cannot open the GPUs without their /dev/nvidia* nodes",
                    "`sudo nvidia-modprobe -c 0 -u` creates them (udev rules of the driver package do it at boot)"
                    + ("; in a container, pass the devices (--gpus all)" if container else ""))
    notes = []
    if nodes.get("/dev/nvidia-uvm") is False:
        notes.append("/dev/nvidia-uvm is not there yet; the first CUDA program creates it (rung 2 shows whether "
                     "it can)")
    if pci is not None and len(pci_list) != n:
        extra = [p for p in pci_list if _s(p.get("driver")) != "nvidia"]
        detail = ", ".join(f"{_s(p.get('address'))} is bound to {_s(p.get('driver')) or 'no driver'}" for p in extra)
        if container or len(pci_list) < n:
            notes.append(f"{_plural(len(pci_list), 'NVIDIA GPU')} on the PCI bus, NVML sees {n}"
                         + (" (in a container: only the GPUs given to it are visible)" if container else ""))
        else:
            return fail(
                f"{_plural(len(pci_list), 'NVIDIA GPU')} on the PCI bus, but NVML sees only {n}",
                (f"{detail}, so the nvidia driver does not drive it" if extra else
                 "a GPU bound to the nvidia driver failed to initialise (it may have fallen off the bus)"),
                "look for the failing GPU in `dmesg | grep -i -e nvrm -e xid`; a GPU that fell off the bus needs a "
                "reset or reboot, one bound to another driver needs rebinding to nvidia",
            )
    floor_version = ctx.req.driver_floor if ctx.req else None
    parsed = try_version(version)
    if floor_version is not None and parsed is not None and parsed < floor_version and ctx.req is not None:
        return fail(f"driver {version} is older than any supported setup of {ctx.target} allows "
                    f"(at least {floor_version.raw})",
                    f"{ctx.target} needs driver {ctx.req.min_driver.raw} (tested), or at least {floor_version.raw} "
                    "with an older CUDA build or minor-version compatibility",
                    f"upgrade the NVIDIA driver to {ctx.req.min_driver.raw} or newer (needs a reboot); "
                    + ctx.plan_hint())
    for gpu in gpus:
        procs = [p for p in _l(gpu.get("processes")) if isinstance(p, dict)]
        if procs:
            who = ", ".join(f"{_i(p.get('pid'))} ({_s(p.get('name')) or '?'})" for p in procs[:5])
            notes.append(f"GPU {_i(gpu.get('index'))} is busy: {_plural(len(procs), 'compute process')}: {who}")
    names = sorted({_s(g.get("name")) or "?" for g in gpus})
    summary = (f"driver {version} loaded; NVML sees {_plural(n, 'GPU')} ({', '.join(names)})"
               + (", as many as on the PCI bus" if len(pci_list) == n else "")
               + "; device nodes present")
    if kernel and version != "?" and kernel != version:
        notes.append(f"kernel module {kernel} differs from NVML's driver {version}")
    ctx.notes.extend(notes)
    return Rung(1, "driver", "pass", summary, evidence=tuple(evidence), notes=tuple(notes))


def _nvml_failure(ctx: Context, nvml: dict[str, Any], kernel: str | None,
                  fail: Callable[[str, str, str], Rung]) -> Rung:
    error = _s(nvml.get("error")) or "unknown error"
    code = _i(nvml.get("error_code"))
    if nvml.get("timed_out"):
        return fail("NVML did not answer in time", "the driver is hung: NVML calls block (often after a GPU error, "
                    "an Xid in the kernel log)",
                    "check `dmesg | grep -i xid`; reset the GPU (`nvidia-smi -r`, with no jobs on it) or reboot")
    if nvml.get("loaded") is False:
        return fail(f"NVML could not be asked: {error}",
                    f"the check's interpreter ({ctx.python}) cannot load the NVML bindings (pynvml)",
                    "run the check with a newer Python (--python PATH, 3.6 or newer)")
    if code == 18 or "mismatch" in error.lower():
        return fail(f"NVML: {error}",
                    f"the loaded kernel module{' ' + kernel if kernel else ''} differs from the driver's userspace "
                    "libraries: the driver was upgraded (or downgraded) without a reboot",
                    "reboot (or unload and reload the nvidia modules with no GPU job running)")
    if code == 12:
        return fail("NVML library not found (libnvidia-ml.so.1)",
                    f"the kernel module{' ' + kernel if kernel else ''} is loaded, but the driver's userspace "
                    "libraries are missing" + (" (or not mounted into this container)"
                                               if _d(ctx.doc.get("driver")).get("container") else ""),
                    f"install the driver's userspace packages matching kernel module {kernel or '(its version)'} "
                    "(Ubuntu: libnvidia-compute-<branch>, nvidia-utils-<branch>); in a container use the NVIDIA "
                    "container toolkit (--gpus all)")
    if code == 9:
        return fail(f"NVML: {error}", "the nvidia kernel module is not loaded",
                    "`sudo modprobe nvidia` (see `dmesg | grep -i nvrm` if it fails)")
    if code == 4:
        return fail(f"NVML: {error}", "this user may not open the GPU device nodes",
                    "check the permissions of /dev/nvidia* (the driver's NVreg_DeviceFileMode/-GID settings), or "
                    "run as a user in the group that owns them")
    if code == 15:
        return fail(f"NVML: {error}", "a GPU fell off the bus (it no longer answers on PCIe)",
                    "see `dmesg | grep -i -e xid -e nvrm`; reboot, and reseat or replace the GPU if it repeats")
    pci = _d(ctx.doc.get("driver")).get("pci")
    no_gpu = isinstance(pci, list) and not pci
    if code == 13:
        return fail(f"NVML: {error}",
                    "libnvidia-ml.so.1 lacks functions every driver's NVML has: it is not the driver's own library "
                    "(a stub or a copy from elsewhere)" + ("; and the PCI bus shows no NVIDIA GPU" if no_gpu else ""),
                    "find which libnvidia-ml.so.1 is loaded (`ldconfig -p | grep nvidia-ml`) and reinstall the "
                    "driver's userspace packages")
    return fail(f"NVML: {error}", "the driver does not answer NVML queries"
                + (" (and the PCI bus shows no NVIDIA GPU)" if no_gpu else ""),
                "check `nvidia-smi` and `dmesg | grep -i nvrm`; reinstall the driver if it is damaged")


