"""Rung 4, the matmul: the framework sees every GPU and multiplies float32 matrices on each, compared
with a float64 NumPy reference; on a host with no GPU, the same check on the CPU, never a GPU pass."""

from __future__ import annotations

from remediator.verify.context import NO_DEVICE, Context, _d, _f, _i, _l, _s, _skip, bus_key
from remediator.verify.model import REL_TOLERANCE, GpuProcess, GpuReport, Matmul, Rung
from remediator.verify.rungs.runtime import NO_DEVICE_CPU, _child_failure, _classify_gpu_error

# --- rung 4: the matmul ---------------------------------------------------------------------------


def _gpu_reports(ctx: Context, matmul: dict[int, Matmul]) -> tuple[GpuReport, ...]:
    cuda_devices = [d for d in _l(_d(ctx.doc.get("cuda")).get("devices")) if isinstance(d, dict)]
    by_uuid = {_s(d.get("uuid")): _i(d.get("ordinal")) for d in cuda_devices if d.get("uuid")}
    by_bus = {bus_key(_s(d.get("pci_bus_id"))): _i(d.get("ordinal")) for d in cuda_devices if d.get("pci_bus_id")}
    out = []
    for g in ctx.nvml_gpus:
        ordinal = by_uuid.get(_s(g.get("uuid")))
        if ordinal is None:
            ordinal = by_bus.get(bus_key(_s(g.get("pci_bus_id"))))
        procs = tuple(
            GpuProcess(_i(p.get("pid")) or 0, _s(p.get("name")),
                       (_i(p.get("used_memory")) or 0) // (1024 * 1024) if _i(p.get("used_memory")) else None)
            for p in _l(g.get("processes")) if isinstance(p, dict)
        )
        total = _i(g.get("memory_total"))
        out.append(GpuReport(
            index=_i(g.get("index")) or 0,
            name=_s(g.get("name")),
            uuid=_s(g.get("uuid")),
            pci_bus_id=_s(g.get("pci_bus_id")),
            memory_mib=total // (1024 * 1024) if total else None,
            cuda_ordinal=ordinal,
            processes=procs,
            matmul=matmul.get(ordinal) if ordinal is not None else None,
        ))
    return tuple(out)


def rung(ctx: Context, runtime: Rung) -> tuple[Rung, tuple[GpuReport, ...]]:
    fw = _d(ctx.doc.get("framework"))
    rt = ctx.doc.get("runtime")
    mm = ctx.doc.get("matmul")
    label = ctx.fw_label
    if not fw.get("ran"):
        return _skip(4, "matmul", runtime.summary), _gpu_reports(ctx, {})
    op_ok = isinstance(rt, dict) and _d(rt.get("op")).get("ok") is True
    if not op_ok or not isinstance(mm, dict):
        if op_ok:  # the runtime rung reported, then the child died before the matmul started
            failure = _child_failure(ctx, fw, "matmul")
            if failure is not None:
                return Rung(4, "matmul", "fail", *failure), _gpu_reports(ctx, {})
        return _skip(4, "matmul", "runtime rung failed: no GPU op ran"), _gpu_reports(ctx, {})
    devices = [d for d in _l(_d(rt).get("devices")) if isinstance(d, dict)]
    cuda_n = _i(_d(ctx.doc.get("cuda")).get("device_count")) or 0
    n = _i(mm.get("size")) or 0
    evidence: list[tuple[str, str]] = [
        ("matmul", f"{n}x{n} float32 (TF32 off), {_i(mm.get('repeats'))} timed runs after a warm-up"),
        ("reference", f"first {_i(mm.get('reference_rows'))} rows in float64 NumPy on the CPU"),
        ("tolerance", f"relative error (Frobenius) <= {REL_TOLERANCE:g}"),
    ]
    results: dict[int, Matmul] = {}
    nvml_index = {g.cuda_ordinal: g.index for g in _gpu_reports(ctx, {}) if g.cuda_ordinal is not None}

    def gpu_label(ordinal: int) -> str:
        """GPUs are named by nvidia-smi's index; CUDA's ordinal differs under CUDA_VISIBLE_DEVICES."""
        if ordinal in nvml_index:
            return f"GPU {nvml_index[ordinal]}"
        return f"CUDA device {ordinal}"

    failures: list[tuple[int, str, str, str]] = []
    gpus_data = [g for g in _l(mm.get("gpus")) if isinstance(g, dict)]
    for g in gpus_data:
        index = _i(g.get("index"))
        if index is None:
            continue
        name = _s(g.get("name"))
        if g.get("skipped"):
            results[index] = Matmul("skip", reason="busy: other processes compute on this GPU (--force runs it)")
            continue
        if g.get("error"):
            error = str(g["error"])
            cause, fix = _classify_gpu_error(ctx, error, name)
            results[index] = Matmul("fail", reason=error)
            failures.append((index, f"the matmul failed on {gpu_label(index)}: {error}", cause, fix))
            continue
        seconds, tflops = _f(g.get("seconds")), _f(g.get("tflops"))
        rel, max_abs = _f(g.get("rel_error")), _f(g.get("max_abs_error"))
        if g.get("finite") is False or rel is None:
            results[index] = Matmul("fail", seconds, tflops, None, max_abs, "the result has NaN or Inf")
            failures.append((index, f"{gpu_label(index)} returned NaN/Inf from a matmul of finite numbers",
                             "a GPU that computes NaN from finite inputs has faulty hardware or a broken library",
                             "check `nvidia-smi -q -d ECC,PAGE_RETIREMENT` and `dmesg | grep -i xid`; run "
                             "`dcgmi diag -r 3` if DCGM is installed"))
            continue
        if rel > REL_TOLERANCE:
            results[index] = Matmul("fail", seconds, tflops, rel, max_abs,
                                    f"relative error {rel:.2e} > {REL_TOLERANCE:g}")
            failures.append((index, f"{gpu_label(index)} computed a wrong matmul: relative error {rel:.2e} (tolerance "
                             f"{REL_TOLERANCE:g})",
                             "wrong results from a GPU point to faulty memory or hardware, or a broken math library "
                             "(NVIDIA_TF32_OVERRIDE=1 also lowers precision)",
                             "check `nvidia-smi -q -d ECC,PAGE_RETIREMENT` and `dmesg | grep -i xid`; run `dcgmi diag "
                             "-r 3` if DCGM is installed; reinstall the framework if every GPU is wrong"))
            continue
        results[index] = Matmul("pass", seconds, tflops, rel, max_abs)
    gpus = _gpu_reports(ctx, results)
    reported = {i for i in results}
    missing = [d for d in devices if _i(d.get("index")) not in reported]
    if missing and not mm.get("error"):
        failure = _child_failure(ctx, fw, "matmul")
        first = _i(missing[0].get("index"))
        if failure is not None:
            summary, cause, fix = failure
        else:
            summary, cause, fix = (f"no matmul result from {gpu_label(first or 0)}", "the check ended early",
                                   "see report.framework.stderr_tail")
        failures.insert(0, (first or 0, summary, cause, fix))
    if mm.get("error"):
        error = str(mm["error"])
        return Rung(4, "matmul", "fail", error, "the float64 reference needs NumPy in the check's interpreter",
                    f"install numpy into {ctx.python} (`{ctx.python} -m pip install numpy`)",
                    tuple(evidence)), gpus
    if len(devices) < cuda_n:
        return Rung(4, "matmul", "fail", f"{label} sees {len(devices)} of the {cuda_n} GPUs CUDA sees",
                    f"{label} skips some GPUs (too old a compute capability for this build, or a device it "
                    "could not initialise)",
                    f"see `{ctx.python} -c 'import {label}'` output on the host; {ctx.plan_hint()}",
                    tuple(evidence)), gpus
    if failures:
        failures.sort(key=lambda f: f[0])
        _, summary, cause, fix = failures[0]
        if len(failures) > 1:
            summary += f" (and {len(failures) - 1} more GPU(s))"
        return Rung(4, "matmul", "fail", summary, cause, fix, tuple(evidence)), gpus
    passed = sorted(i for i, m in results.items() if m.status == "pass")
    skipped = sorted(i for i, m in results.items() if m.status == "skip")
    notes = tuple(f"{gpu_label(i)} skipped: busy with other processes (run with --force to check it anyway)"
                  for i in skipped)
    ctx.notes.extend(notes)
    if not passed:
        return Rung(4, "matmul", "skip", "every GPU is busy with other processes: matmul not run (--force runs it)",
                    evidence=tuple(evidence), notes=notes), gpus
    speeds = ", ".join(f"{gpu_label(i)} {tflops:.1f} TFLOP/s" for i in passed
                       if (tflops := results[i].tflops) is not None)
    worst = max(results[i].rel_error or 0.0 for i in passed)
    summary = (f"{len(passed)} of {len(devices)} GPU(s) ran a {n}x{n} float32 matmul correctly (worst relative "
               f"error {worst:.1e}): {speeds}")
    return Rung(4, "matmul", "pass", summary, evidence=tuple(evidence), notes=notes), gpus



def cpu_rung(ctx: Context, runtime: Rung) -> Rung:
    """Rung 4 on a host without a GPU: the matmul on the framework's CPU device, never a GPU pass."""
    fw = _d(ctx.doc.get("framework"))
    mm = ctx.doc.get("matmul")
    label = ctx.fw_label
    if runtime.status == "fail":
        return _skip(4, "matmul", "runtime rung failed: no matmul ran")
    if not isinstance(mm, dict):
        failure = _child_failure(ctx, fw, "matmul")
        if failure is not None:
            return Rung(4, "matmul", "fail", *failure)
        return _skip(4, "matmul", NO_DEVICE)
    n = _i(mm.get("size")) or 0
    evidence: list[tuple[str, str]] = [
        ("matmul", f"{n}x{n} float32 on {_s(mm.get('device')) or 'CPU:0'} (not a GPU), {_i(mm.get('repeats'))} "
                   "timed runs after a warm-up"),
        ("reference", f"first {_i(mm.get('reference_rows'))} rows in float64 NumPy"),
        ("tolerance", f"relative error (Frobenius) <= {REL_TOLERANCE:g}"),
    ]

    def fail(summary: str, cause: str, fix: str) -> Rung:
        return Rung(4, "matmul", "fail", summary, cause, fix, tuple(evidence))

    if mm.get("error"):
        return fail(str(mm["error"]), "the float64 reference needs NumPy in the check's interpreter",
                    f"install numpy into {ctx.python} (`{ctx.python} -m pip install numpy`)")
    cpu = mm.get("cpu")
    if not isinstance(cpu, dict):
        failure = _child_failure(ctx, fw, "matmul") or (
            "no matmul result from the CPU", "the check ended early", "see report.framework.stderr_tail")
        return fail(*failure)
    if cpu.get("error"):
        return fail(f"{label} failed to multiply on the CPU: {cpu['error']}",
                    f"{label} imports but cannot compute: a broken install",
                    f"reinstall {ctx.req.install_spec if ctx.req else label} in {ctx.python}")
    rel, tflops = _f(cpu.get("rel_error")), _f(cpu.get("tflops"))
    if cpu.get("finite") is False or rel is None:
        return fail(f"{label} returned NaN/Inf from a CPU matmul of finite numbers",
                    f"{label}'s CPU kernels are broken", f"reinstall {label}")
    if rel > REL_TOLERANCE:
        return fail(f"{label} computed a wrong matmul on the CPU: relative error {rel:.2e} (tolerance "
                    f"{REL_TOLERANCE:g})", f"{label}'s CPU kernels give wrong results: a broken install",
                    f"reinstall {label}")
    speed = f", {tflops * 1000:.0f} GFLOP/s" if tflops is not None else ""
    return Rung(4, "matmul", "skip",
                f"{NO_DEVICE_CPU}: {label} computes on CPU (not a GPU result): a {n}x{n} float32 matmul on "
                f"{_s(cpu.get('device')) or 'CPU:0'} is correct (relative error {rel:.1e}){speed}",
                evidence=tuple(evidence))


