"""Target inference: what a host without a target is judged against (keep what is installed working).

With no `--target` and no `remediate_target`, every env that has a framework is judged against the
framework version it already has, normalised to what the matrix knows; a host with no framework is judged
on its driver and GPUs alone. Pure functions of facts and the matrix, used by plan, drift and verify.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from packaging.version import InvalidVersion, Version

from remediator.diagnosis import Finding, diagnose
from remediator.errors import UnknownVersionError
from remediator.facts import HostFacts
from remediator.frameworks import framework_of
from remediator.matrix import Matrix, Target

UNKNOWN_CODE = "INFERRED_TARGET_UNKNOWN"
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class InferredTarget:
    """One framework version installed on a host, and the envs it was found in (in the probe's order).

    `framework` is the matrix's name (`tensorflow`, `pytorch`), or the distribution's own name when the
    matrix has no such framework (`jax`); `version` is the matrix's release (`2.12.0`), or the installed
    version without its local part when the matrix does not know it, and then `unknown` says why.
    """

    framework: str
    version: str
    envs: tuple[str, ...]
    installed: tuple[str, ...]  # "tensorflow-gpu 2.4.1" as the host reported it, one per distinct install
    unknown: str | None = None

    @property
    def target(self) -> Target | None:
        """The target to judge the host against; None when the matrix cannot judge this one."""
        return None if self.unknown else Target(self.framework, self.version)

    @property
    def label(self) -> str:
        return f"{self.framework}=={self.version}"

    def describe(self) -> str:
        """`tensorflow==2.12.0 inferred from /opt/tf`."""
        return f"{self.label} inferred from {', '.join(self.envs)}"

    def finding(self) -> Finding:
        """The warning a host gets for an installed framework the matrix cannot judge."""
        return Finding(
            UNKNOWN_CODE, "warning",
            f"{', '.join(self.installed)} in {', '.join(self.envs)} is unknown to the matrix ({self.unknown}); "
            "the host is judged without it",
            (("envs", ", ".join(self.envs)), ("installed", ", ".join(self.installed)),
             ("why", self.unknown or "")),
            "give --target FRAMEWORK==VERSION (or set remediate_target) with a version `remediate matrix list` "
            "knows",
        )

    def to_dict(self) -> dict[str, Any]:
        return {"framework": self.framework, "version": self.version, "envs": list(self.envs),
                "installed": list(self.installed), "unknown": self.unknown}


def infer_targets(facts: HostFacts, matrix: Matrix) -> tuple[InferredTarget, ...]:
    """Every framework version installed in an env of `facts`, deduplicated by (framework, version)."""
    found: dict[tuple[str, str], tuple[list[str], list[str], str | None]] = {}
    for env in facts.envs:
        for fw in env.frameworks:
            framework, version, unknown = _normalise(fw.name, fw.version, matrix)
            envs, installed, _ = found.setdefault((framework, version), ([], [], unknown))
            if env.path not in envs:
                envs.append(env.path)
            label = f"{fw.name} {fw.version}"
            if label not in installed:
                installed.append(label)
    return tuple(InferredTarget(fw, v, tuple(envs), tuple(inst), unknown)
                 for (fw, v), (envs, inst, unknown) in found.items())


def _normalise(name: str, version: str, matrix: Matrix) -> tuple[str, str, str | None]:
    """(matrix framework, matrix version, None), or the closest text and why the matrix cannot judge it."""
    local_free = version.strip().split("+", 1)[0]  # torch's 2.1.0+cu121, jaxlib's +cuda11.cudnn86
    framework = framework_of(name.strip())
    if framework is None or framework not in matrix.frameworks:
        return name, local_free, f"the matrix has no framework {name!r}"
    try:
        parsed = Version(local_free)
    except InvalidVersion:
        return framework, local_free, f"{version!r} is not a version"
    if parsed.is_prerelease or parsed.is_devrelease:
        return framework, local_free, "a pre-release or nightly; the matrix knows releases only"
    try:
        req = matrix.requirements(framework, local_free)
    except UnknownVersionError as exc:
        near = ", ".join(exc.nearest) or "none"
        return framework, local_free, f"no {framework} {local_free} in the matrix; nearest: {near}"
    return framework, req.version, None


def known(inferred: Iterable[InferredTarget]) -> list[tuple[InferredTarget, Target]]:
    """The inferred targets the matrix can judge, each with its Target."""
    return [(t, target) for t in inferred if (target := t.target) is not None]


def diagnose_inferred(facts: HostFacts, inferred: Sequence[InferredTarget], matrix: Matrix) -> list[Finding]:
    """The findings of every inferred target the matrix knows (driver and GPUs alone when none), and a
    warning for each it does not; deduplicated and ordered as `diagnose` orders them."""
    targets: list[Target | None] = [target for _, target in known(inferred)]
    findings: list[Finding] = []
    for target in targets or [None]:
        findings += diagnose(facts, target, matrix)
    findings += [t.finding() for t in inferred if t.unknown is not None]
    unique = {(f.code, f.message): f for f in reversed(findings)}  # the first of each (code, message) wins
    return sorted(unique.values(), key=lambda f: (_SEVERITY_ORDER[f.severity], f.code, f.message))
