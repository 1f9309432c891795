"""What became of each planned action on a host an apply run failed on: done, failed (and why), not reached.

Ansible stops a host at its first failed task, and remediate.yml runs the roles in one fixed order, so the
failed task says it all: the action it belongs to failed, with the task's message; every action the play
runs before it was done; every action after it was never attempted. Which action a task belongs to comes
from where the task is written in the collection (roles/<role>/tasks/<file>.yml, each file one action kind),
matched on its rendered name, and then from the action's own values in that name or message.

Pure: the plan's actions, the failed task's name and message in; one entry per action out, in plan order.
The collection's task files are read once (package data, no host).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml

Outcome = Literal["done", "failed", "not_reached", "unknown"]

# The order remediate.yml runs the roles in, and the action kinds of each role's task files.
PLAY_ORDER = ("reboot", "upgrade_driver", "quarantine_path", "remove_package", "install_package", "set_cuda_link",
              "install_python", "create_venv", "pip_install", "pin_loader_path")
_FILE_KINDS: dict[tuple[str, str], str] = {
    ("driver", "main"): "upgrade_driver", ("quarantine", "main"): "quarantine_path",
    ("packages", "remove"): "remove_package", ("packages", "install"): "install_package",
    ("cuda_link", "main"): "set_cuda_link", ("python_venv", "python"): "install_python",
    ("python_venv", "venv"): "create_venv", ("framework", "install"): "pip_install",
    ("loader_pin", "pin"): "pin_loader_path",
}
_TEMPLATE = re.compile(r"\{\{.*?\}\}")


@functools.cache
def _task_patterns() -> tuple[tuple[re.Pattern[str], str, bool], ...]:
    """(rendered-name pattern, action kind, whether the name has no template) for every named task of the
    roles that carry out actions."""
    from remediator.hostscript import collection_dir

    out: list[tuple[re.Pattern[str], str, bool]] = []
    for (role, stem), kind in _FILE_KINDS.items():
        path = collection_dir() / "roles" / role / "tasks" / f"{stem}.yml"
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        for name in _names(doc):
            parts = [re.escape(p) for p in _TEMPLATE.split(name)]
            out.append((re.compile("^" + ".+".join(parts) + "$", re.DOTALL), kind, len(parts) == 1))
    return tuple(out)


def _names(node: Any) -> list[str]:
    if isinstance(node, list):
        return [n for item in node for n in _names(item)]
    if isinstance(node, dict):
        own = [node["name"]] if isinstance(node.get("name"), str) else []
        return own + [n for key in ("block", "rescue", "always") for n in _names(node.get(key))]
    return []


def failed_kind(task: str | None) -> str | None:
    """The action kind whose role file holds the task of that (rendered) name, or None."""
    if not task:
        return None
    # A literal name ("Install with uv") wins over a templated one that also matches ("Install {{ name }}").
    for literal in (True, False):
        kinds = {kind for pattern, kind, lit in _task_patterns() if lit == literal and pattern.match(task)}
        if len(kinds) == 1:
            return kinds.pop()
    return None


def action_outcomes(actions: Sequence[Mapping[str, Any]], status: str, task: str | None,
                    error: str | None) -> list[dict[str, Any]]:
    """One {kind, what, outcome, why} per action, in plan order, for a host apply `status` left it in."""
    if status in ("applied", "rolled_back"):
        return [_entry(a, "done", None) for a in actions]
    kind = failed_kind(task)
    failed = _failed_index(actions, kind, task, error) if kind else None
    if failed is None:
        why = (f"the run failed at a task that is not one action's ({task or 'unknown task'}): {error or '?'}"
               if status == "failed" else f"the host is {status}: {error or '?'}")
        return [_entry(a, "unknown", why) for a in actions]
    stop = _rank(actions[failed], failed)
    out = []
    for i, a in enumerate(actions):
        if i == failed:
            out.append(_entry(a, "failed", error or "failed"))
        elif _rank(a, i) < stop:
            out.append(_entry(a, "done", None))
        else:
            out.append(_entry(a, "not_reached", f"not attempted: the run stopped on this host when "
                                                f"{_what(actions[failed])} failed"))
    return out


def _failed_index(actions: Sequence[Mapping[str, Any]], kind: str, task: str | None,
                  error: str | None) -> int | None:
    candidates = [i for i, a in enumerate(actions) if a.get("kind") == kind]
    if not candidates:
        return None
    said = f"{task or ''}\n{error or ''}"
    named = [i for i in candidates if any(isinstance(v, str) and v and v in said
                                          for v in dict(actions[i].get("params") or {}).values())]
    return (named or candidates)[0]


def _rank(action: Mapping[str, Any], index: int) -> tuple[int, int]:
    kind = str(action.get("kind"))
    return (PLAY_ORDER.index(kind) if kind in PLAY_ORDER else len(PLAY_ORDER), index)


def _entry(action: Mapping[str, Any], outcome: Outcome, why: str | None) -> dict[str, Any]:
    return {"kind": action.get("kind"), "what": _what(action), "outcome": outcome, "why": why}


def _what(action: Mapping[str, Any]) -> str:
    p = dict(action.get("params") or {})
    kind = action.get("kind")
    if kind in ("install_package", "remove_package"):
        return f"{kind} {p.get('name')}" + (f"={p['version']}" if p.get("version") else "")
    if kind == "pip_install":
        return f"pip_install {' '.join(map(str, p.get('requirements') or []))}"
    if kind == "install_python":
        return f"install_python CPython {p.get('version')} from {p.get('mirror')}"
    if kind == "pin_loader_path":
        return f"pin_loader_path {':'.join(map(str, p.get('ld_library_path') or []))}"
    value = p.get("path") or p.get("target") or p.get("venv") or p.get("min_version") or ""
    return f"{kind} {value}".strip()


__all__ = ["PLAY_ORDER", "action_outcomes", "failed_kind"]
