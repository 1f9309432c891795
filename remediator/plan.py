"""Planning: a pure function from facts, target, matrix and policy to the ordered actions for one host.

Like `terraform plan`, the plan is exact about what would change (every path, package and version an
action touches) and records a fingerprint of the facts it was made from, so apply can refuse a host
that changed since. Nothing here touches a host: apply carries the actions out.

The remedy follows one idea: never repair a user's environment in place. The target framework gets an
isolated venv with exactly the right Python and pins; what would make that venv load the wrong
libraries (a wrong /usr/local/cuda, a stray cuDNN copy, a global LD_LIBRARY_PATH entry) is moved aside
into quarantine, never deleted. Whatever another env still needs is kept, and the plan says so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from remediator import __version__
from remediator.action_rules import check_actions
from remediator.diagnosis import Finding, canonical_lib_dir, diagnose
from remediator.facts import CudaToolkit, CudnnInstall, HostFacts, PythonEnv
from remediator.frameworks import TF_RELEASE_NAMES
from remediator.hostpaths import for_facts, package_lib_dir
from remediator.matrix import Matrix, Requirements, Target, Variant
from remediator.matrix.gpus import first_cuda_for, gpu_compute_capability
from remediator.pythons import choose_python
from remediator.resolve import norm as _norm
from remediator.safety import check_path
from remediator.targets import InferredTarget, diagnose_inferred, infer_targets, known
from remediator.versions import try_version

PLAN_SCHEMA_VERSION = 1

PlanStatus = Literal["compliant", "changes", "blocked", "unreachable"]
# Where a host's target came from: the command line, its remediate_target, or what is installed on it.
TargetSource = Literal["--target", "inventory", "inferred"]
ActionKind = Literal[
    "quarantine_path",  # move a path into /var/lib/remediator/quarantine/<run>/ with a manifest
    "remove_package",  # remove a deb/rpm package, recording its exact version for rollback
    "set_cuda_link",  # point /usr/local/cuda (or its alternatives entry) at a toolkit
    "install_package",  # a system package: toolkit, cuDNN, Python
    "install_python",  # a uv-managed CPython from the host's Python mirror, beside the venv
    "create_venv",  # an isolated venv for the target
    "pip_install",  # the framework, pinned exactly, into that venv
    "pin_loader_path",  # the venv's activation sets LD_LIBRARY_PATH to exactly these dirs
    "upgrade_driver",  # needs approval and a reboot; only planned with --allow-driver-changes
    "reboot",  # needs approval: a driver/library mismatch only a reboot clears
]
_SYMBOL: dict[str, str] = {
    "quarantine_path": "-", "remove_package": "-", "set_cuda_link": "~", "install_package": "+",
    "install_python": "+", "create_venv": "+", "pip_install": "+", "pin_loader_path": "~", "upgrade_driver": "~",
    "reboot": "~",
}
_DRIVER_BLOCKERS = ("DRIVER_MISSING", "DRIVER_LIBRARY_MISMATCH", "DRIVER_TOO_OLD", "DRIVER_USERSPACE_MISSING")


DEFAULT_VENV_ROOT = "/opt/remediator/venvs"


@dataclass(frozen=True)
class Policy:
    venv_root: str = DEFAULT_VENV_ROOT
    allow_driver_changes: bool = False
    # Where a Python the distro lacks comes from (remediator_python_mirror, --python-mirror); per host, so
    # it is written into the host's install_python action, not into the plan's policy.
    python_mirror: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"venv_root": self.venv_root, "allow_driver_changes": self.allow_driver_changes}


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    params: Mapping[str, Any]
    finding: str | None  # the finding code it answers
    reason: str
    requires_approval: bool = False

    @property
    def symbol(self) -> str:
        return _SYMBOL[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params), "finding": self.finding, "reason": self.reason,
                "requires_approval": self.requires_approval}


@dataclass(frozen=True)
class HostPlan:
    host: str
    status: PlanStatus
    target: Mapping[str, Any] | None = None
    findings: tuple[Finding, ...] = ()
    actions: tuple[Action, ...] = ()
    kept: tuple[str, ...] = ()  # what was left alone on purpose, and why
    manual: tuple[str, ...] = ()  # what remediate will not do by itself
    fingerprint: str | None = None
    error: str | None = None  # why the host is unreachable or blocked
    target_source: TargetSource | None = None  # None: unreachable, or a target that could not be read
    inferred_targets: tuple[InferredTarget, ...] = ()  # with target_source "inferred": every one found

    def to_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "status": self.status, "target": dict(self.target) if self.target else None,
            "target_source": self.target_source,
            "inferred_targets": [t.to_dict() for t in self.inferred_targets],
            "findings": [f.to_dict() for f in self.findings], "actions": [a.to_dict() for a in self.actions],
            "kept": list(self.kept), "manual": list(self.manual), "fingerprint": self.fingerprint,
            "error": self.error,
        }


@dataclass(frozen=True)
class Plan:
    hosts: tuple[HostPlan, ...]
    matrix_version: str
    policy: Policy = field(default_factory=Policy)
    created_at: str = ""
    tool_version: str = __version__
    schema_version: int = PLAN_SCHEMA_VERSION

    def counts(self) -> dict[str, int]:
        out = {"compliant": 0, "changes": 0, "blocked": 0, "unreachable": 0}
        for h in self.hosts:
            out[h.status] += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version, "tool_version": self.tool_version,
            "matrix_version": self.matrix_version, "created_at": self.created_at, "policy": self.policy.to_dict(),
            "summary": self.counts(), "hosts": [h.to_dict() for h in self.hosts],
        }


def fingerprint(facts: HostFacts) -> str:
    """sha256 of the facts the actions depend on (everything but when and where it was read)."""
    data = facts.to_dict()
    for volatile in ("collected_at", "notes", "host"):
        data.pop(volatile, None)
    for gpu in data.get("gpus", []):
        gpu.pop("memory_mib", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def unreachable(host: str, error: str) -> HostPlan:
    return HostPlan(host=host, status="unreachable", error=error)


def plan_inferred(facts: HostFacts, matrix: Matrix, policy: Policy = Policy()) -> HostPlan:
    """The plan of a host without a target: keep what is installed working (docs/diagnosis.md).

    One framework version installed (in one env or several): planned exactly as if it were the target.
    Several: each is judged, but only a host where all of them are compliant is planned (compliant); a fix
    chosen for one (a /usr/local/cuda link, a loader entry quarantined) can break another that works, so
    that host is blocked until someone picks its target, with every finding and each target's plan in
    `manual`. No framework the matrix knows: the driver and GPUs alone.
    """
    inferred = infer_targets(facts, matrix)
    judged = known(inferred)
    if not judged:
        result = _plan_driver_only(facts, diagnose_inferred(facts, inferred, matrix))
    elif len(judged) == 1:
        result = plan_host(facts, judged[0][1], matrix, policy)
        result = replace(result, findings=result.findings + tuple(t.finding() for t in inferred if t.unknown))
    else:
        plans = [(t, plan_host(facts, target, matrix, policy)) for t, target in judged]
        findings = tuple(diagnose_inferred(facts, inferred, matrix))
        result = replace(plans[0][1], findings=findings)
        if any(p.status != "compliant" for _, p in plans):
            result = replace(
                result, status="blocked", actions=(), kept=(),
                manual=tuple(f"{t.describe()}: {_summary(p)}; plan it alone with --target {t.label}"
                             for t, p in plans),
                error=f"{len(plans)} frameworks are installed ({', '.join(t.label for t, _ in plans)}) and "
                      "not all of them are compliant; a fix for one can break another: choose the target "
                      "with --target or remediate_target",
            )
    return replace(result, target_source="inferred", inferred_targets=inferred)


def _summary(p: HostPlan) -> str:
    if p.status == "compliant":
        return "compliant"
    if p.status == "changes":
        return f"{len(p.actions)} change(s)"
    return f"blocked: {p.error}"


def _plan_driver_only(facts: HostFacts, findings: list[Finding]) -> HostPlan:
    """No framework to judge: the driver and GPUs alone. Only a reboot is ever planned (a driver upgrade
    needs a target's minimum); any other error is for a person, or for a plan with a target."""
    errors = {f.code for f in findings if f.severity == "error"}
    actions: tuple[Action, ...] = ()
    blockers = []
    d = facts.driver
    if "DRIVER_LIBRARY_MISMATCH" in errors:
        actions = (Action("reboot", {}, "DRIVER_LIBRARY_MISMATCH",
                          f"kernel module {d.kernel_module_version or '?'} differs from the userspace driver "
                          f"{d.userspace_version or d.version or '?'}", True),)
        blockers.append("reboot pending after a driver change")
    elif "DRIVER_MISSING" in errors:
        blockers.append(f"no NVIDIA driver answers, but {len(facts.gpus)} NVIDIA GPU(s) are present: install "
                        "the driver" if facts.gpus else "no NVIDIA driver answers and no NVIDIA GPU was seen")
    others = sorted(errors - set(_DRIVER_BLOCKERS))
    if others:
        blockers.append(f"{', '.join(others)} without a framework to plan the fix for: give --target")
    return HostPlan(host=facts.host, status="blocked" if blockers else "compliant", target=None,
                    findings=tuple(findings), actions=actions, fingerprint=fingerprint(facts),
                    error="; ".join(blockers) or None)


def plan_host(facts: HostFacts, target: Target, matrix: Matrix, policy: Policy = Policy()) -> HostPlan:
    req = matrix.requirements_for(target)
    findings = diagnose(facts, target, matrix)
    builder = _Builder(facts, req, policy)
    errors = {f.code for f in findings if f.severity == "error"}
    if errors:
        builder.driver(errors)
        # A driver too old for PyPI's torch build may run another build of the same release: remedied too.
        if errors - set(_DRIVER_BLOCKERS) or ("DRIVER_TOO_OLD" in errors and not builder.blockers):
            builder.remedy(errors)
    return builder.result(findings)


class _Builder:
    """Collects actions for one host; every path it names goes through the allowlist first."""

    def __init__(self, facts: HostFacts, req: Requirements, policy: Policy) -> None:
        self.facts = facts
        self.req = req
        self.policy = policy
        self.actions: list[Action] = []
        self.kept: list[str] = []
        self.manual: list[str] = []
        self.refused: list[Finding] = []
        self.blockers: list[str] = []
        self.venv = posixpath.join(policy.venv_root, f"{req.framework}-{req.version}")

    # --- output ---------------------------------------------------------------------------------

    def result(self, findings: list[Finding]) -> HostPlan:
        if self.refused:
            self.blockers.append("a path the fix needs is outside the quarantine allowlist")
        # Every field checked against its rule now, and again by apply: values from a host (package names,
        # versions, paths, its Python) that do not fit block the host with the field named.
        violations = check_actions(self.actions, self.policy.venv_root)
        for v in violations:
            self.refused.append(Finding(
                "VALUE_REFUSED", "error", f"refusing to plan with {v}",
                (("action", v.kind), ("field", v.field), ("value", v.value), ("why", v.why)),
                "inspect the host by hand: a value it reported does not fit the field's rule (docs/security.md)",
            ))
        if violations:
            self.blockers.append(f"a value from the host does not fit its rule ({violations[0].field} of "
                                 f"{violations[0].kind}: {violations[0].why})")
            self.actions = [a for i, a in enumerate(self.actions) if i not in {v.index for v in violations}]
        all_findings = tuple(findings) + tuple(self.refused)
        status: PlanStatus = "blocked" if self.blockers else "changes" if self.actions else "compliant"
        return HostPlan(
            host=self.facts.host, status=status, target=_target_dict(self.req), findings=all_findings,
            actions=tuple(_ordered(self.actions)), kept=tuple(dict.fromkeys(self.kept)),
            manual=tuple(dict.fromkeys(self.manual)), fingerprint=fingerprint(self.facts),
            error="; ".join(self.blockers) or None,
        )

    def add(self, kind: ActionKind, finding: str | None, reason: str, *, approval: bool = False,
            **params: Any) -> None:
        action = Action(kind, params, finding, reason, approval)
        if action not in self.actions:
            self.actions.append(action)

    def quarantine(self, path: str, what: str, finding: str, reason: str) -> bool:
        verdict = check_path(path, managed_roots=(self.policy.venv_root,))
        if not verdict.allowed:
            self.refused.append(Finding(
                "PATH_REFUSED", "error",
                f"refusing to quarantine {path!r} ({what}): {verdict.reason}",
                (("path", repr(path)), ("why", verdict.reason)),
                "inspect the host by hand; remediate only moves paths on its allowlist (docs/plan.md)",
            ))
            return False
        if any(a.kind == "quarantine_path" and a.params.get("path") == path for a in self.actions):
            return True
        self.add("quarantine_path", finding, reason, path=path, what=what)
        return True

    # --- driver ---------------------------------------------------------------------------------

    def driver(self, errors: set[str]) -> None:
        d = self.facts.driver
        if "DRIVER_LIBRARY_MISMATCH" in errors:
            self.add("reboot", "DRIVER_LIBRARY_MISMATCH",
                     f"kernel module {d.kernel_module_version or '?'} differs from the userspace driver "
                     f"{d.userspace_version or d.version or '?'}", approval=True)
            self.blockers.append("reboot pending after a driver change")
        elif "DRIVER_MISSING" in errors:
            self.add("upgrade_driver", "DRIVER_MISSING", "no NVIDIA driver is installed", approval=True,
                     current=None, min_version=self.req.min_driver.raw, reboot=True)
            if not self.policy.allow_driver_changes:
                self.blockers.append(f"no NVIDIA driver; needs >= {self.req.min_driver.raw}")
        elif "DRIVER_TOO_OLD" in errors and (variant := self.torch_variant) is not None:
            self.kept.append(f"driver {d.version}: it runs the {variant.tag} build of {self.req.framework} "
                             f"{self.req.version} (>= {variant.min_driver.raw}), which the venv gets instead of PyPI's")
        elif "DRIVER_TOO_OLD" in errors:
            self.add("upgrade_driver", "DRIVER_TOO_OLD",
                     f"driver {d.version} is older than the {self.req.min_driver.raw} that CUDA "
                     f"{self.req.cuda} needs", approval=True,
                     current=d.version, min_version=self.req.min_driver.raw, reboot=True)
            if not self.policy.allow_driver_changes:
                self.blockers.append(f"driver {d.version} too old; needs >= {self.req.min_driver.raw}")
        elif "DRIVER_USERSPACE_MISSING" in errors:
            major = (d.kernel_module_version or d.version or "NNN").split(".")[0]
            self.manual.append(f"install the driver's userspace libraries at the loaded module's version "
                               f"{d.kernel_module_version or '?'} (libnvidia-compute-{major} on Debian/Ubuntu)")
            self.blockers.append("the NVIDIA kernel module is loaded but its userspace libcuda.so.1 is missing")
        if "LIBCUDA_STUB" in errors:
            # The toolkit's link-time stub registered for everyone (ld.so.conf.d) or on LD_LIBRARY_PATH.
            for entry in (*self.facts.loader.ld_so_conf, *self.facts.loader.ld_library_path):
                if "/stubs" in _norm(entry.path):
                    self.drop_loader_entry(entry.path, entry.source, "LIBCUDA_STUB",
                                           "puts the toolkit's stub libcuda.so.1 in front of the driver's")

    # --- the isolated venv and what would shadow it ---------------------------------------------

    def remedy(self, errors: set[str]) -> None:
        self.python_and_venv(errors)
        if self.req.bundles_cuda:
            self.clear_shadowing_loader_entries()
        else:
            self.system_stack(errors)

    def python_and_venv(self, errors: set[str]) -> None:
        req = self.req
        answers = next((c for c in ("FRAMEWORK_MISSING", "FRAMEWORK_VERSION_MISMATCH", "FRAMEWORK_CPU_ONLY",
                                    "FRAMEWORK_CONFLICT", "PYTHON_UNSUPPORTED") if c in errors), None)
        managed = next((e for e in self.facts.envs if _norm(e.path) == _norm(self.venv)), None)
        if managed is not None and _env_is_right(managed, req):
            self.kept.append(f"{self.venv}: already has {req.packages[0]}=={req.version} on Python "
                             f"{managed.python_version}")
            return
        if managed is not None:
            # Our own venv from an earlier run, now wrong: moved aside whole, then built again.
            self.quarantine(managed.path, "managed venv", answers or "FRAMEWORK_VERSION_MISMATCH",
                            f"{managed.path} is not right for {req.framework} {req.version}")
        choice = choose_python(self.facts, req.python, self.venv, self.policy.python_mirror)
        finding = "PYTHON_UNSUPPORTED" if "PYTHON_UNSUPPORTED" in errors else answers
        if choice.source == "none" or choice.interpreter is None:
            self.blockers.append(choice.why)
            return
        if choice.source == "distro" and choice.package is not None:
            self.add("install_package", finding, f"no Python on the host is in {req.python.raw}; {choice.why}",
                     manager="system", name=choice.package.package, extra=list(choice.package.extra), version=None)
        if choice.source == "uv":
            self.add("install_python", finding, choice.why, version=choice.request, home=choice.home,
                     mirror=choice.mirror)
            self.add("create_venv", answers, f"an isolated venv for {req.framework} {req.version}, made by uv "
                     "with its CPython", path=self.venv, python=choice.interpreter,
                     uv=posixpath.join(choice.home or "", "uv"))
        else:
            self.add("create_venv", answers, f"an isolated venv for {req.framework} {req.version}",
                     path=self.venv, python=choice.interpreter)
        pkg = req.packages[0]
        # A release whose own packaging is broken and fixed by a post release of the same build (rules.yaml
        # defects: tensorflow[and-cuda]==2.15.0 does not resolve, 2.15.0.post1 does): pin the post release.
        version = next((d.fixed_in for d in req.defects if d.fixed_in
                        and d.fixed_in.startswith(req.version + ".post")), req.version)
        spec = f"{pkg}[and-cuda]=={version}" if req.bundles_cuda and req.framework == "tensorflow" \
            else f"{pkg}=={version}"
        wheels = [f"{n}=={v}" if v[:1].isdigit() else f"{n}{v}" for n, v in req.wheels]
        variant = self.torch_variant
        if variant is not None:
            # The plain PyPI wheel has no kernels for this host's GPUs: the build of the PyTorch index that has.
            self.add("pip_install", answers, f"{req.framework} {req.version} ({variant.tag}: the PyPI build cannot "
                     "run here, this one can), pinned exactly", venv=self.venv,
                     requirements=[f"{pkg}=={req.version}+{variant.tag}"], expected_wheels=[],
                     package_index=variant.index_url)
        else:
            post = f" ({version}: the same build, packaged so that it installs)" if version != req.version else ""
            self.add("pip_install", answers, f"{req.framework} {req.version}{post}, pinned exactly",
                     venv=self.venv, requirements=[spec], expected_wheels=wheels)
        for env in self.facts.envs:
            if env.kind != "system" and _norm(env.path) != _norm(self.venv):
                self.kept.append(f"{env.path}: existing env left as it is")

    @functools.cached_property
    def torch_variant(self) -> Variant | None:
        """A PyTorch build of the target to install instead of PyPI's when PyPI's cannot run here (no kernels
        for the GPUs, or a driver older than its CUDA needs): one torch itself accepts on each GPU, whose
        driver floor the driver meets (the newest such)."""
        default = self.req.default_variant
        ccs = [cc for cc in (gpu_compute_capability(g.compute_capability, g.name) for g in self.facts.gpus) if cc]
        if self.req.framework != "pytorch" or default is None:
            return None
        driver = try_version(self.facts.driver.version or "")

        def driver_runs(v: Variant) -> bool:
            return driver is None or driver >= v.min_driver or (
                v.min_driver_compat is not None and driver >= v.min_driver_compat)

        if all(default.runs_on(cc) is not False for cc in ccs) and driver_runs(default):
            return None

        def runs(v: Variant, cc: str) -> int:
            """2: its arch list says so; 1: not recorded, but made with a CUDA that compiles for the GPU."""
            known = v.runs_on(cc)
            if known is not None:
                return 2 if known else 0
            first = try_version(first_cuda_for(cc) or "")
            return 1 if first is not None and v.cuda >= first else 0

        fits = [(min((runs(v, cc) for cc in ccs), default=2), v.cuda.release, v) for v in self.req.variants
                if v.index_url.startswith("https://download.pytorch.org/whl/") and driver_runs(v)]
        fits = [f for f in fits if f[0] > 0]
        return max(fits, key=lambda f: (f[0], f[1]))[2] if fits else None

    def clear_shadowing_loader_entries(self) -> None:
        """Wheels bring CUDA and cuDNN; system dirs on LD_LIBRARY_PATH would win over them."""
        sys_cudnn_dirs = {_norm(c.path) for c in self.facts.cudnn if c.install_method not in ("pip", "conda")}
        sys_toolkits = [t for t in self.facts.toolkits if t.install_method not in ("pip", "conda")]
        for entry in self.facts.loader.ld_library_path:
            if not entry.exists:
                continue
            p = self.resolve_link(entry.path)
            if p in sys_cudnn_dirs or _owner(p, [t.path for t in sys_toolkits]):
                self.drop_loader_entry(entry.path, entry.source, "LIB_SHADOWED",
                                       f"puts system CUDA/cuDNN ({p}) in front of the venv's wheels")

    def drop_loader_entry(self, path: str, source: str, finding: str, why: str) -> None:
        if source.startswith("/etc/profile.d/") or source.startswith("/etc/ld.so.conf.d/"):
            self.quarantine(source, "loader config", finding, f"{source} {why}")
        else:
            self.manual.append(f"remove {path} from LD_LIBRARY_PATH in {source} ({why}); remediate does not "
                               "edit that file")

    def resolve_link(self, path: str) -> str:
        p = _norm(path)
        default = self.facts.default_toolkit()
        if default is not None and (p == "/usr/local/cuda" or p.startswith("/usr/local/cuda/")):
            p = _norm(default.path) + p[len("/usr/local/cuda"):]
        return canonical_lib_dir(p, self.facts)

    # --- frameworks that use the system toolkit and cuDNN (TF <= 2.13) ---------------------------

    def system_stack(self, errors: set[str]) -> None:
        req = self.req
        toolkits = [t for t in self.facts.toolkits if t.install_method not in ("pip", "conda")]
        fitting = [t for t in toolkits if req.cuda_ok(t.version)]
        chosen = _choose_toolkit(fitting, req, self.facts.default_toolkit())
        if chosen is None:
            mm = str(req.cuda)
            self.add("install_package", "CUDA_MISSING", f"no toolkit on the host fits CUDA "
                     f"{req.cuda_range.raw if req.cuda_range is not None else req.cuda}",
                     manager="system", name="cuda-toolkit-" + mm.replace(".", "-"), version=None, extra=[])
            toolkit_dir = f"/usr/local/cuda-{mm}"
        else:
            toolkit_dir = chosen.path
            self.kept.append(f"{chosen.path}: CUDA {chosen.version} fits {req.framework} {req.version}")
        default = self.facts.default_toolkit()
        if default is None or _norm(default.path) != _norm(toolkit_dir):
            self.add("set_cuda_link", "CUDA_WRONG_DEFAULT" if "CUDA_WRONG_DEFAULT" in errors else "CUDA_MISSING",
                     f"/usr/local/cuda should reach {toolkit_dir}", link="/usr/local/cuda", target=toolkit_dir,
                     previous=default.path if default else None,
                     via_alternatives=bool(default and default.via_alternatives))
        self.conflicting_toolkits(toolkits, toolkit_dir)
        cudnn_dir = self.cudnn(toolkit_dir, errors)
        self.global_entries_for_system_stack(toolkit_dir)
        dirs = [f"{toolkit_dir}/lib64"]
        # lib64 is a link to targets/<arch>/lib in every toolkit layout: a cuDNN there is already pinned.
        in_toolkit_libs = cudnn_dir is not None and _owner(cudnn_dir, [f"{toolkit_dir}/targets"]) is not None
        default_dirs = for_facts(self.facts).default_dirs
        if cudnn_dir and cudnn_dir not in default_dirs and cudnn_dir not in dirs and not in_toolkit_libs:
            dirs.append(cudnn_dir)
        self.add("pin_loader_path", "CUDA_WRONG_DEFAULT" if "CUDA_WRONG_DEFAULT" in errors else None,
                 "the venv loads exactly this toolkit and cuDNN, whatever the global loader path says",
                 venv=self.venv, ld_library_path=dirs)

    def conflicting_toolkits(self, toolkits: list[CudaToolkit], keep_dir: str) -> None:
        reached = {_norm(t.path) for t in toolkits if t.is_default}
        for entry in (*self.facts.loader.ld_library_path, *self.facts.loader.ld_so_conf):
            owner = _owner(self.resolve_link(entry.path), [t.path for t in toolkits])
            if owner:
                reached.add(_norm(owner))
        for tk in toolkits:
            if _norm(tk.path) == _norm(keep_dir) or self.req.cuda_ok(tk.version):
                continue
            users = self.envs_needing(tk)
            if users:
                self.kept.append(f"{tk.path}: CUDA {tk.version} is still needed by {', '.join(users)}")
                continue
            if _norm(tk.path) not in reached:
                self.kept.append(f"{tk.path}: CUDA {tk.version} is not reached by the loader; left alone")
                continue
            if tk.install_method in ("deb", "rpm") and tk.packages:
                for pkg in tk.packages:
                    name, _, version = pkg.partition("=")
                    self.add("remove_package", "CUDA_WRONG_DEFAULT", f"CUDA {tk.version} conflicts with "
                             f"{self.req.framework} {self.req.version}", manager=tk.install_method, name=name,
                             version=version or None)
            else:
                self.quarantine(tk.path, "CUDA toolkit", "CUDA_WRONG_DEFAULT",
                                f"CUDA {tk.version} is reached in place of {keep_dir}")

    def envs_needing(self, tk: CudaToolkit) -> list[str]:
        out = []
        tkv = try_version(tk.version)
        for env in self.facts.envs:
            if _norm(env.path) == _norm(self.venv):
                continue
            for fw in env.frameworks:
                built = try_version(fw.cuda_build)
                if tkv is not None and built is not None and built.major_minor() == tkv.major_minor():
                    out.append(f"{env.path} ({fw.name} {fw.version})")
        return out

    def cudnn(self, toolkit_dir: str, errors: set[str]) -> str | None:
        req = self.req
        system = [c for c in self.facts.cudnn if c.install_method not in ("pip", "conda")]
        fitting = [c for c in system if req.cudnn_ok(c.version)]
        # Stray copies inside toolkit dirs that would be loaded from the pinned dir, or that shadow a package.
        packaged = [c for c in system if c.install_method in ("deb", "rpm")]
        for copy in (c for c in system if c.in_toolkit):
            inside_pinned = _norm(self.resolve_link(copy.path)).startswith(_norm(toolkit_dir) + "/")
            wrong_here = inside_pinned and not req.cudnn_ok(copy.version)
            shadows = "CUDNN_SHADOWED" in errors and any(
                try_version(p.version) != try_version(copy.version) for p in packaged)
            if wrong_here or shadows:
                self.quarantine_cudnn_copy(copy, "CUDNN_SHADOWED" if shadows else "CUDNN_MISMATCH")
                fitting = [c for c in fitting if c is not copy]
        # A copy inside a toolkit this plan moves aside (or removes) goes with it: it cannot be pinned.
        fitting = [c for c in fitting if not self.moved_aside(self.resolve_link(c.path))]
        if fitting:
            best = max(fitting, key=lambda c: (c.install_method in ("deb", "rpm"), _release(c.version)))
            self.kept.append(f"{best.path}: cuDNN {best.version} fits {req.framework} {req.version}")
            return _norm(self.resolve_link(best.path))
        major = str(req.cudnn).split(".")[0] if req.cudnn else "8"
        name = f"libcudnn{major}" if major in ("7", "8") else f"libcudnn{major}-cuda-{str(req.cuda).split('.')[0]}"
        self.add("install_package", "CUDNN_MISMATCH" if "CUDNN_MISMATCH" in errors else "CUDNN_MISSING",
                 f"cuDNN {req.cudnn} for CUDA {req.cuda}", manager="system", name=name,
                 version=f"{req.cudnn}.*+cuda{req.cuda}" if major in ("7", "8") else f"{req.cudnn}.*", extra=[])
        return package_lib_dir(self.facts)

    def moved_aside(self, path: str) -> bool:
        """Whether a quarantine or a package removal of this plan takes `path` away."""
        gone = [a.params["path"] for a in self.actions if a.kind == "quarantine_path"]
        removed = {a.params.get("name") for a in self.actions if a.kind == "remove_package"}
        gone += [t.path for t in self.facts.toolkits if any(p.partition("=")[0] in removed for p in t.packages)]
        return _owner(path, gone) is not None

    def quarantine_cudnn_copy(self, copy: CudnnInstall, finding: str) -> None:
        files = [posixpath.join(copy.path, lib) for lib in copy.libraries]
        files += list(copy.headers) or ([copy.header] if copy.header else [])
        for path in files:
            self.quarantine(path, "cuDNN file", finding,
                            f"cuDNN {copy.version} copied into {copy.in_toolkit} by hand")

    def global_entries_for_system_stack(self, toolkit_dir: str) -> None:
        """Global loader entries that reach another toolkit, or an env's own libraries, for everyone."""
        toolkits = [t.path for t in self.facts.toolkits if t.install_method not in ("pip", "conda")]
        env_roots = [e.path for e in self.facts.envs if e.kind in ("venv", "conda")]
        for entry in (*self.facts.loader.ld_library_path, *self.facts.loader.ld_so_conf):
            if _owner(entry.path, ["/usr/local/cuda"]):
                continue  # through the link, which set_cuda_link points at the right toolkit
            p = self.resolve_link(entry.path)
            owner = _owner(p, toolkits)
            if owner and _norm(owner) != _norm(toolkit_dir) and not any(
                    self.req.cuda_ok(t.version) for t in self.facts.toolkits if _norm(t.path) == _norm(owner)):
                self.drop_loader_entry(entry.path, entry.source, "CUDA_WRONG_DEFAULT",
                                       f"reaches the toolkit {owner}")
            elif entry.exists and _owner(p, env_roots):
                self.drop_loader_entry(entry.path, entry.source, "LIB_SHADOWED",
                                       f"puts the env libraries {p} in front of the system stack")


# --- helpers --------------------------------------------------------------------------------------


def _target_dict(req: Requirements) -> dict[str, Any]:
    return {
        "framework": req.framework, "version": req.version,
        "cuda": str(req.cuda) if req.cuda is not None else None,
        "cudnn": str(req.cudnn) if req.cudnn is not None else None,
        "python": req.python.raw, "min_driver": req.min_driver.raw, "bundles_cuda": req.bundles_cuda,
    }


def _env_is_right(env: PythonEnv, req: Requirements) -> bool:
    names = {fw.name.lower() for fw in env.frameworks}
    right = [fw for fw in env.frameworks if fw.name.lower() == req.packages[0]
             and try_version(fw.version) == try_version(req.version) and fw.is_cuda_build is not False]
    return bool(right) and req.python_ok(env.python_version) and len(names & TF_RELEASE_NAMES) <= 1


def _choose_toolkit(fitting: list[CudaToolkit], req: Requirements, default: CudaToolkit | None) -> CudaToolkit | None:
    if not fitting:
        return None
    if default is not None and default in fitting:
        return default
    tested = try_version(str(req.cuda)) if req.cuda is not None else None
    same = [t for t in fitting if tested is not None and try_version(t.version) is not None
            and try_version(t.version).major_minor() == tested.major_minor()]  # type: ignore[union-attr]
    pool = same or fitting
    return max(pool, key=lambda t: _release(t.version))


def _release(raw: str) -> tuple[int, ...]:
    v = try_version(raw)
    return v.release if v is not None else ()


def _owner(path: str, roots: Iterable[str]) -> str | None:
    p = _norm(path)
    for root in roots:
        r = _norm(root)
        if p == r or p.startswith(r + "/"):
            return root
    return None


_ORDER = ["reboot", "upgrade_driver", "quarantine_path", "remove_package", "set_cuda_link", "install_package",
          "install_python", "create_venv", "pip_install", "pin_loader_path"]


def _ordered(actions: list[Action]) -> list[Action]:
    """Remove what conflicts first, then install, then build the venv, then pin its loader path."""
    return sorted(actions, key=lambda a: _ORDER.index(a.kind))
