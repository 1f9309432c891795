"""Drift: what changed on a host since its last known-good state, and whether it still meets its target.

`compare(baseline, current)` is a pure function of two facts: every toolkit, cuDNN copy, env, wheel and
loader entry is keyed by what identifies it (its path, its name, its (source, path)), so a change reads
as "appeared", "disappeared" or "changed" with the before and after values as the host reported them.
Volatile fields (when the probe ran, its notes, GPU memory) are ignored. `check_host` adds diagnosis
against the target (without one, against the frameworks already installed: remediator.targets); the CLI
probes, reads the known-good state from the store and records the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from remediator.diagnosis import Finding, diagnose
from remediator.errors import RemediatorError
from remediator.facts import HostFacts, LdPathEntry, PythonEnv
from remediator.matrix import Matrix, Target
from remediator.targets import InferredTarget, diagnose_inferred, infer_targets, known

if TYPE_CHECKING:
    from remediator.fleet import FleetResult
    from remediator.inventory import InventoryHost
    from remediator.state import Store

ChangeKind = Literal["appeared", "disappeared", "changed"]
Layer = Literal["os", "driver", "gpu", "cuda", "cudnn", "loader", "env", "framework"]
LAYERS: tuple[Layer, ...] = ("os", "driver", "gpu", "cuda", "cudnn", "loader", "env", "framework")
DriftStatus = Literal["ok", "drift", "unreachable", "failed"]

CUDA_LINK = "/usr/local/cuda"

T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One difference between the known-good facts and the current ones.

    `path` names the thing (a toolkit's directory, an env's prefix, `driver`, `<source>: <dir>` for a
    loader entry); `field` the attribute that changed ("" when the whole thing appeared or disappeared);
    `before`/`after` are the values as the host reported them (None when absent).
    """

    kind: ChangeKind
    layer: Layer
    path: str
    field: str = ""
    before: str | None = None
    after: str | None = None
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "layer": self.layer, "path": self.path, "field": self.field,
                "before": self.before, "after": self.after, "summary": self.summary}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        return cls(kind=data["kind"], layer=data["layer"], path=data["path"], field=data.get("field", ""),
                   before=data.get("before"), after=data.get("after"), summary=data.get("summary", ""))


# --- compare ------------------------------------------------------------------------------------------


def compare(baseline: HostFacts, current: HostFacts) -> list[Change]:
    """Every difference that matters between two probes of one host, in layer order (pure)."""
    changes: list[Change] = []
    changes += _os(baseline, current)
    changes += _driver(baseline, current)
    changes += _gpus(baseline, current)
    changes += _toolkits(baseline, current)
    changes += _cudnn(baseline, current)
    changes += _loader(baseline, current)
    changes += _envs(baseline, current)
    order = {layer: i for i, layer in enumerate(LAYERS)}
    return sorted(changes, key=lambda c: order[c.layer])  # stable: keeps the order within a layer


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def _fields(layer: Layer, path: str, what: str, pairs: Iterable[tuple[str, object, object]]) -> list[Change]:
    """A `changed` for every (field, before, after) that differs; `what` names the thing in summaries."""
    out = []
    for name, before, after in pairs:
        if before == after:
            continue
        b, a = _text(before), _text(after)
        if isinstance(before, tuple | list) and isinstance(after, tuple | list):
            gone = [str(v) for v in before if v not in after]
            new = [str(v) for v in after if v not in before]
            detail = "; ".join(p for p in (f"added {', '.join(new)}" if new else "",
                                          f"removed {', '.join(gone)}" if gone else "") if p)
            summary = f"{what}: {name} changed ({detail or 'order changed'})"
        else:
            summary = f"{what}: {name} {b} -> {a}"
        out.append(Change("changed", layer, path, name, b, a, summary))
    return out


def _keyed(items: Sequence[T], key: Callable[[T], str]) -> dict[str, T]:
    """Items by key; a repeated key gets `#2`, `#3`, ... so nothing is dropped."""
    out: dict[str, T] = {}
    for item in items:
        k = key(item)
        n = 2
        name = k
        while name in out:
            name = f"{k}#{n}"
            n += 1
        out[name] = item
    return out


def _matched(before: dict[str, T], after: dict[str, T]) -> tuple[list[str], list[str], list[str]]:
    """(only before, only after, in both), each in the order the facts listed them."""
    gone = [k for k in before if k not in after]
    new = [k for k in after if k not in before]
    both = [k for k in after if k in before]
    return gone, new, both


def _os(b: HostFacts, c: HostFacts) -> list[Change]:
    return _fields("os", "os", "OS", [
        ("kernel", b.os.kernel, c.os.kernel),
        ("release", b.os.pretty_name or b.os.version_id, c.os.pretty_name or c.os.version_id),
        ("arch", b.os.arch, c.os.arch),
    ])


def _driver(b: HostFacts, c: HostFacts) -> list[Change]:
    bd, cd = b.driver, c.driver
    out: list[Change] = []
    if bd.version != cd.version:
        kind: ChangeKind = "appeared" if bd.version is None else "disappeared" if cd.version is None else "changed"
        summary = {
            "appeared": f"NVIDIA driver {cd.version} answers now (none did)",
            "disappeared": f"NVIDIA driver no longer answers (was {bd.version})",
            "changed": f"NVIDIA driver changed: {bd.version} -> {cd.version}",
        }[kind]
        out.append(Change(kind, "driver", "driver", "version", bd.version, cd.version, summary))
    out += _fields("driver", "driver", "driver", [
        ("kernel module", bd.kernel_module_version, cd.kernel_module_version),
        ("userspace libraries", bd.userspace_version, cd.userspace_version),
        ("CUDA supported", bd.cuda_driver_version, cd.cuda_driver_version),
        ("error", bd.error, cd.error),
    ])
    return out


def _gpus(b: HostFacts, c: HostFacts) -> list[Change]:
    def key(g: Any) -> str:
        return g.uuid or g.pci_bus_id or f"index {g.index}"

    before, after = _keyed(b.gpus, key), _keyed(c.gpus, key)
    gone, new, both = _matched(before, after)
    out = [Change("disappeared", "gpu", k, "", before[k].name, None, f"GPU {before[k].name} ({k}) is gone")
           for k in gone]
    out += [Change("appeared", "gpu", k, "", None, after[k].name, f"GPU {after[k].name} ({k}) appeared")
            for k in new]
    for k in both:
        x, y = before[k], after[k]
        out += _fields("gpu", k, f"GPU {k}", [
            ("name", x.name, y.name), ("compute capability", x.compute_capability, y.compute_capability),
            ("PCI bus", x.pci_bus_id, y.pci_bus_id), ("index", x.index, y.index),
        ])
    return out


def _presence(layer: Layer, noun: str, before: dict[str, Any], after: dict[str, Any],
              how: bool = True) -> tuple[list[Change], list[str]]:
    """Appeared and disappeared installs of something with a version, keyed by path; and the paths in both."""
    gone, new, both = _matched(before, after)
    out = [Change("disappeared", layer, k, "", before[k].version, None, f"{noun} {before[k].version} at {k} is gone")
           for k in gone]
    out += [Change("appeared", layer, k, "", None, after[k].version,
                   f"new {noun} {after[k].version} at {k}{_how(after[k].install_method) if how else ''}")
            for k in new]
    return out, both


def _toolkits(b: HostFacts, c: HostFacts) -> list[Change]:
    before, after = _keyed(b.toolkits, lambda t: t.path), _keyed(c.toolkits, lambda t: t.path)
    out, both = _presence("cuda", "CUDA toolkit", before, after)
    for k in both:
        x, y = before[k], after[k]
        if x.version != y.version:
            out.append(Change("changed", "cuda", k, "version", x.version, y.version,
                              f"CUDA toolkit at {k} replaced: {x.version} -> {y.version}"))
        out += _fields("cuda", k, f"CUDA toolkit {k}", [
            ("install method", x.install_method, y.install_method),
            ("via alternatives", x.via_alternatives, y.via_alternatives),
            ("packages", x.packages, y.packages), ("env", x.env, y.env),
        ])
    bdef, cdef = b.default_toolkit(), c.default_toolkit()
    bpath, cpath = (bdef.path if bdef else None), (cdef.path if cdef else None)
    if bpath != cpath:
        kind: ChangeKind = "appeared" if bpath is None else "disappeared" if cpath is None else "changed"
        out.append(Change(kind, "cuda", CUDA_LINK, "target", bpath, cpath,
                          f"{CUDA_LINK} now points at {cpath or 'nothing'} (was {bpath or 'nothing'})"))
    bc, cc = _keyed(b.compat_libcuda, lambda x: x.path), _keyed(c.compat_libcuda, lambda x: x.path)
    compat, both = _presence("cuda", "compat libcuda", bc, cc, how=False)
    out += compat
    for k in both:
        out += _fields("cuda", k, f"compat libcuda {k}", [("version", bc[k].version, cc[k].version)])
    return out


def _cudnn(b: HostFacts, c: HostFacts) -> list[Change]:
    before, after = _keyed(b.cudnn, lambda x: x.path), _keyed(c.cudnn, lambda x: x.path)
    out, both = _presence("cudnn", "cuDNN", before, after)
    for k in both:
        x, y = before[k], after[k]
        if x.version != y.version:
            out.append(Change("changed", "cudnn", k, "version", x.version, y.version,
                              f"cuDNN replaced at {k}: {x.version} -> {y.version}"))
        out += _fields("cudnn", k, f"cuDNN {k}", [
            ("libraries", x.libraries, y.libraries), ("header", x.header, y.header),
            ("package", x.package, y.package), ("install method", x.install_method, y.install_method),
            ("copied into toolkit", x.in_toolkit, y.in_toolkit), ("env", x.env, y.env),
        ])
    return out


def _loader(b: HostFacts, c: HostFacts) -> list[Change]:
    out = _entries("ld.so.conf", b.loader.ld_so_conf, c.loader.ld_so_conf)
    out += _entries("LD_LIBRARY_PATH", b.loader.ld_library_path, c.loader.ld_library_path)
    bo = [(e.source, e.path) for e in b.loader.ld_library_path]
    co = [(e.source, e.path) for e in c.loader.ld_library_path]
    if bo != co and sorted(bo) == sorted(co):
        out.append(Change("changed", "loader", "LD_LIBRARY_PATH", "order", ":".join(p for _, p in bo),
                          ":".join(p for _, p in co), "LD_LIBRARY_PATH search order changed"))
    bcache, ccache = dict(_keyed_pairs(b.loader.cache)), dict(_keyed_pairs(c.loader.cache))
    gone, new, _ = _matched(bcache, ccache)
    out += [Change("disappeared", "loader", f"ld.so.cache: {k}", "", bcache[k], None,
                   f"loader cache no longer has {k} ({bcache[k]})") for k in gone]
    out += [Change("appeared", "loader", f"ld.so.cache: {k}", "", None, ccache[k],
                   f"loader cache has a new {k} ({ccache[k]})") for k in new]
    return out


def _keyed_pairs(cache: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    # A soname may map to several paths (one per library dir): key by both, value the path.
    return [(f"{soname} => {path}", path) for soname, path in cache]


def _entries(what: str, before: Sequence[LdPathEntry], after: Sequence[LdPathEntry]) -> list[Change]:
    """Loader entries keyed by (source, path). Per source, a removed and an added entry pair up as one
    `changed` (an edited export line), so an edit reads as an edit, not as two unrelated changes."""
    bk = _keyed(before, lambda e: f"{e.source}: {e.path}")
    ak = _keyed(after, lambda e: f"{e.source}: {e.path}")
    gone, new, both = _matched(bk, ak)
    out: list[Change] = []
    sources = list(dict.fromkeys([bk[k].source for k in gone] + [ak[k].source for k in new]))
    for source in sources:
        g = [bk[k] for k in gone if bk[k].source == source]
        n = [ak[k] for k in new if ak[k].source == source]
        for x, y in zip(g, n, strict=False):
            out.append(Change("changed", "loader", f"{what} from {source}", "path", x.path, y.path,
                              f"{what} entry in {source} edited: {x.path} -> {y.path}"))
        for x in g[len(n):]:
            out.append(Change("disappeared", "loader", f"{what} from {source}", "path", x.path, None,
                              f"{what} entry {x.path} removed from {source}"))
        for y in n[len(g):]:
            out.append(Change("appeared", "loader", f"{what} from {source}", "path", None, y.path,
                              f"{what} entry {y.path} added in {source}"))
    for k in both:
        x, y = bk[k], ak[k]
        if x.exists != y.exists:
            state = "exists now" if y.exists else "no longer exists"
            out.append(Change("changed", "loader", f"{what} from {x.source}", "exists", _text(x.exists),
                              _text(y.exists), f"{what} entry {x.path} (from {x.source}) {state}"))
    return out


def _envs(b: HostFacts, c: HostFacts) -> list[Change]:
    before, after = _keyed(b.envs, lambda e: e.path), _keyed(c.envs, lambda e: e.path)
    gone, new, both = _matched(before, after)
    out = [Change("disappeared", "env", k, "", _env_text(before[k]), None, f"{before[k].kind} env {k} is gone")
           for k in gone]
    out += [Change("appeared", "env", k, "", None, _env_text(after[k]),
                   f"new {after[k].kind} env {k} ({_env_text(after[k])})") for k in new]
    for k in both:
        x, y = before[k], after[k]
        out += _fields("env", k, f"env {k}", [
            ("kind", x.kind, y.kind), ("python", x.python, y.python), ("python version", x.python_version,
                                                                      y.python_version),
        ])
        out += _frameworks(k, x, y)
        out += _packages("env", k, "pip", x.nvidia_wheels, y.nvidia_wheels)
        out += _packages("env", k, "conda", x.conda_packages, y.conda_packages)
    return out


def _env_text(env: PythonEnv) -> str:
    fws = ", ".join(f"{f.name} {f.version}" for f in env.frameworks)
    return f"Python {env.python_version}" + (f"; {fws}" if fws else "")


def _frameworks(env_path: str, x: PythonEnv, y: PythonEnv) -> list[Change]:
    before, after = _keyed(x.frameworks, lambda f: f.name), _keyed(y.frameworks, lambda f: f.name)
    gone, new, both = _matched(before, after)
    out = [Change("disappeared", "framework", f"{env_path}: {k}", "", before[k].version, None,
                  f"{k} {before[k].version} removed from {env_path}") for k in gone]
    out += [Change("appeared", "framework", f"{env_path}: {k}", "", None, after[k].version,
                   f"{k} {after[k].version} installed in {env_path}") for k in new]
    for k in both:
        p, q = before[k], after[k]
        if p.version != q.version:
            out.append(Change("changed", "framework", f"{env_path}: {k}", "version", p.version, q.version,
                              f"{k} in {env_path}: {p.version} -> {q.version}"))
        out += _fields("framework", f"{env_path}: {k}", f"{k} in {env_path}", [
            ("built for CUDA", p.cuda_build, q.cuda_build), ("built for cuDNN", p.cudnn_build, q.cudnn_build),
            ("CUDA build", p.is_cuda_build, q.is_cuda_build),
        ])
    return out


def _packages(layer: Layer, env_path: str, manager: str, before_items: Sequence[tuple[str, str]],
              after_items: Sequence[tuple[str, str]]) -> list[Change]:
    before, after = dict(before_items), dict(after_items)
    out: list[Change] = []
    for name in before:
        if name not in after:
            out.append(Change("disappeared", layer, f"{env_path}: {name}", manager, before[name], None,
                              f"{manager} package {name} {before[name]} removed from {env_path}"))
    for name in after:
        if name not in before:
            out.append(Change("appeared", layer, f"{env_path}: {name}", manager, None, after[name],
                              f"{manager} package {name} {after[name]} added to {env_path}"))
        elif before[name] != after[name]:
            out.append(Change("changed", layer, f"{env_path}: {name}", manager, before[name], after[name],
                              f"{manager} package {name} in {env_path}: {before[name]} -> {after[name]}"))
    return out


# --- one host's check ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """The known-good facts a host is compared with, and where they came from."""

    facts: HostFacts
    source: str  # "verified-apply" or "baseline" (set by hand with `remediate drift --baseline`)
    at: float  # unix seconds it was recorded


@dataclass(frozen=True)
class HostDrift:
    """One host's drift check: diagnosis against its target, and changes since its known-good state."""

    host: str
    status: DriftStatus
    target: str | None = None
    findings: tuple[Finding, ...] = ()
    target_source: str | None = None  # "--target", "inventory" or "inferred"; None when not checked
    inferred_targets: tuple[InferredTarget, ...] = ()
    changes: tuple[Change, ...] = ()
    baseline_source: str | None = None  # None: no known-good state recorded yet
    baseline_at: float | None = None
    baseline_recorded: bool = False  # this run recorded the current facts as known-good
    error: str | None = None
    hint: str | None = None
    probe_duration_s: float = 0.0

    @property
    def compliant(self) -> bool | None:
        """No error findings against the target; None when the host could not be checked."""
        if self.status in ("unreachable", "failed"):
            return None
        return not any(f.severity == "error" for f in self.findings)

    @property
    def drifted(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "status": self.status, "target": self.target, "target_source": self.target_source,
            "inferred_targets": [t.to_dict() for t in self.inferred_targets], "compliant": self.compliant,
            "drifted": self.drifted, "findings": [f.to_dict() for f in self.findings],
            "changes": [c.to_dict() for c in self.changes],
            "baseline": None if self.baseline_source is None else {
                "source": self.baseline_source, "at": self.baseline_at, "recorded_now": self.baseline_recorded},
            "error": self.error, "hint": self.hint, "probe_duration_s": round(self.probe_duration_s, 3),
        }


def check_host(facts: HostFacts, target: Target | None, matrix: Matrix, baseline: Baseline | None,
               *, target_text: str | None = None, probe_duration_s: float = 0.0,
               target_source: str | None = None) -> HostDrift:
    """Diagnose `facts` against `target` and compare them with `baseline` (pure).

    Without a target, each framework installed in an env is the target of that env, and a host with no
    framework is judged on its driver and GPUs alone (remediator.targets); `target` then names those.
    """
    inferred: tuple[InferredTarget, ...] = ()
    if target is None:
        inferred = infer_targets(facts, matrix)
        findings = tuple(diagnose_inferred(facts, inferred, matrix))
        target_text = ", ".join(t.label for t, _ in known(inferred)) or None
        target_source = "inferred"
    else:
        findings = tuple(diagnose(facts, target, matrix))
    changes = tuple(compare(baseline.facts, facts)) if baseline is not None else ()
    drifted = bool(changes) or any(f.severity == "error" for f in findings)
    return HostDrift(
        host=facts.host, status="drift" if drifted else "ok", target=target_text, findings=findings,
        changes=changes, baseline_source=baseline.source if baseline else None,
        baseline_at=baseline.at if baseline else None, probe_duration_s=probe_duration_s,
        target_source=target_source, inferred_targets=inferred,
    )


@dataclass(frozen=True)
class DriftRun:
    """Every host's check of one `remediate drift` run."""

    run_id: str
    started_at: float
    hosts: tuple[HostDrift, ...] = field(default_factory=tuple)
    duration_s: float = 0.0

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "drift": 0, "unreachable": 0, "failed": 0}
        for h in self.hosts:
            out[h.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "started_at": self.started_at, "duration_s": round(self.duration_s, 3),
                "summary": self.counts(), "hosts": [h.to_dict() for h in self.hosts]}


def _how(install_method: str) -> str:
    return "" if install_method == "unknown" else f" ({install_method})"


# --- the drift check of a fleet, recorded in the state store ------------------------------------------

#: What gives each host's facts: `probe_fleet` (SSH), or facts Ansible gathered (remediator.ansible_facts).
ProbeFn = Callable[..., "FleetResult[HostFacts]"]


def run_drift(hosts: Sequence[InventoryHost], store: Store, matrix: Matrix, *, fixed_target: Target | None = None,
              baseline: bool = False, accept: bool = False, forks: int = 20, accept_new_host_keys: bool = False,
              probe: ProbeFn | None = None, timeout: float | None = None) -> DriftRun:
    """Probe `hosts`, check each, and record the probes and checks in `store` (one transaction)."""
    from remediator.probe import DEFAULT_TIMEOUT, probe_fleet

    started = time.time()
    t0 = time.monotonic()
    run_id = store.start_run("drift", at=started)
    fleet = (probe or probe_fleet)(hosts, forks=forks, accept_new_host_keys=accept_new_host_keys,
                                   timeout=DEFAULT_TIMEOUT if timeout is None else timeout)
    by_name = {h.name: h for h in hosts}
    checks: list[HostDrift] = []
    with store.batch():
        for r in fleet.results:
            if r.status != "ok" or r.value is None:
                store.record_probe(run_id, r.host, r.error or r.status, r.duration_s, status=r.status, at=started)
                checks.append(HostDrift(host=r.host, status="failed" if r.status == "ok" else r.status,
                                        target=by_name[r.host].target, error=r.error, hint=r.hint,
                                        probe_duration_s=r.duration_s))
            else:
                store.record_probe(run_id, r.host, r.value, r.duration_s, at=started)
                checks.append(check_one(store, r.value, by_name[r.host], matrix, fixed_target, baseline,
                                         r.duration_s, started, accept=accept))
            store.record_drift(run_id, checks[-1], at=started)
    return DriftRun(run_id, started, tuple(checks), time.monotonic() - t0)


def check_one(store: Store, facts: HostFacts, host: InventoryHost, matrix: Matrix, fixed: Target | None,
               baseline: bool, duration: float, now: float, *, accept: bool = False) -> HostDrift:
    from remediator.matrix import parse_target

    target_text = str(fixed) if fixed is not None else host.target
    try:
        chosen = fixed if fixed is not None else parse_target(host.target) if host.target else None
        known = store.known_good(facts.host)
        recorded = False
        if accept:
            # The operator says today's state is right: it becomes the known-good, nothing has drifted from it.
            store.mark_known_good(facts.host, facts, source="baseline", note="remediate drift --accept", at=now)
            known, recorded = None, True
        elif known is None and baseline:
            store.mark_known_good(facts.host, facts, source="baseline", note="remediate drift --baseline", at=now)
            recorded = True
        base = Baseline(known.facts, known.source, known.at) if known is not None else None
        result = check_host(facts, chosen, matrix, base, target_text=target_text, probe_duration_s=duration,
                            target_source="--target" if fixed is not None else "inventory")
    except RemediatorError as exc:  # e.g. a remediate_target the matrix does not know
        return HostDrift(host=facts.host, status="failed", target=host.target, error=exc.message, hint=exc.hint,
                         probe_duration_s=duration)
    if recorded:
        from dataclasses import replace

        result = replace(result, baseline_source="baseline", baseline_at=now, baseline_recorded=True)
    return result
