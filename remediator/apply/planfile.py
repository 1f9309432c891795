"""The saved plan an apply carries out, read and checked (never trusted: every action is checked again)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remediator.action_rules import check_target
from remediator.errors import InputError
from remediator.plan import DEFAULT_VENV_ROOT, PLAN_SCHEMA_VERSION, Action, HostPlan
from remediator.safety import check_venv_root

# --- the plan file ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanFile:
    path: str
    sha256: str
    hosts: tuple[HostPlan, ...]
    venv_root: str

    def host(self, name: str) -> HostPlan:
        for h in self.hosts:
            if h.host == name:
                return h
        raise KeyError(name)


def read_plan(path: str) -> PlanFile:
    """Read what `remediate plan --out` wrote: the hosts, their actions and fingerprints (InputError if bad)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, f"cannot read the plan: {exc.strerror or exc}",
                         hint="save one with `remediate plan -i INVENTORY --out plan.json`") from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise InputError(path, f"not JSON: {exc}") from None
    if not isinstance(doc, dict) or "hosts" not in doc:
        raise InputError(path, "not a plan file (no hosts)", hint="save one with `remediate plan --out`")
    if doc.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise InputError(path, f"plan schema_version {doc.get('schema_version')!r} is not "
                               f"{PLAN_SCHEMA_VERSION}", hint="make the plan again with this version of remediate")
    policy = doc.get("policy")
    root = policy.get("venv_root") if isinstance(policy, dict) else None
    venv_root = root if isinstance(root, str) else DEFAULT_VENV_ROOT
    why = check_venv_root(venv_root)
    if why is not None:
        raise InputError(path, f"venv root {venv_root!r}: {why}", field="policy.venv_root",
                         hint="a plan file is only JSON: make the plan again with `remediate plan --out`")
    hosts_doc = doc["hosts"]
    if not isinstance(hosts_doc, list):
        raise InputError(path, "hosts: not a list")
    hosts: list[HostPlan] = []
    seen: set[str] = set()
    for i, h in enumerate(hosts_doc):
        hp = _host_plan(path, i, h)
        if hp.host in seen:
            raise InputError(path, f"host {hp.host!r} appears twice", field=f"hosts[{i}]")
        seen.add(hp.host)
        hosts.append(hp)
    return PlanFile(path, hashlib.sha256(raw).hexdigest(), tuple(hosts), venv_root)


def _host_plan(path: str, i: int, h: Any) -> HostPlan:
    where = f"hosts[{i}]"
    if not isinstance(h, dict) or not isinstance(h.get("host"), str) or not h["host"]:
        raise InputError(path, "not a host entry with a name", field=where)
    status = h.get("status")
    if status not in ("compliant", "changes", "blocked", "unreachable"):
        raise InputError(path, f"status {status!r} is not compliant/changes/blocked/unreachable", field=where)
    actions: list[Action] = []
    raw_actions = h.get("actions") or []
    if not isinstance(raw_actions, list):
        raise InputError(path, "actions: not a list", field=where)
    for j, a in enumerate(raw_actions):
        if not (isinstance(a, dict) and isinstance(a.get("kind"), str) and isinstance(a.get("params"), dict)):
            raise InputError(path, "not an action with a kind and params", field=f"{where}.actions[{j}]")
        actions.append(Action(a["kind"], dict(a["params"]), a.get("finding"), str(a.get("reason") or ""),
                              bool(a.get("requires_approval"))))
    target = h.get("target")
    bad_target = check_target(target)
    if bad_target is not None:
        raise InputError(path, bad_target, field=where)
    fp = h.get("fingerprint")
    if fp is not None and not (isinstance(fp, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", fp)):
        raise InputError(path, f"fingerprint {fp!r} is not sha256:<64 hex>", field=where)
    return HostPlan(host=h["host"], status=status, target=dict(target) if isinstance(target, dict) else None,
                    actions=tuple(actions), fingerprint=fp, error=h.get("error") if isinstance(h.get("error"), str)
                    else None)


