"""The run directory under the state dir: its result.json journal, found again to resume an interrupted run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from remediator import locks
from remediator.apply.options import RUN_ID_RE
from remediator.errors import UsageError
from remediator.files import write_private

# --- the run directory and its journal ----------------------------------------------------------------


def runs_dir(state_dir: Path) -> Path:
    return state_dir / "runs"


def run_dir(state_dir: Path, run_id: str) -> Path:
    if not RUN_ID_RE.fullmatch(run_id):
        raise UsageError(f"{run_id!r} is not a run id (like 20260510T120000Z-3f9a1c)")
    return runs_dir(state_dir) / run_id


def load_result(state_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The result.json of a run in the state dir, or None when there is none (or it is unreadable)."""
    try:
        doc = json.loads((run_dir(state_dir, run_id) / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def find_interrupted(state_dir: Path, plan_sha256: str) -> dict[str, Any] | None:
    """The newest apply of this plan (not in check mode) that never finished and whose process is gone."""
    base = runs_dir(state_dir)
    if not base.is_dir():
        return None
    for entry in sorted(base.iterdir(), reverse=True):
        if not RUN_ID_RE.fullmatch(entry.name):
            continue
        doc = load_result(state_dir, entry.name)
        if doc is None or doc.get("kind") != "apply" or doc.get("check") or doc.get("state") == "finished":
            continue
        if (doc.get("plan") or {}).get("sha256") != plan_sha256:
            continue
        if locks.is_locked(entry / ".lock"):
            continue  # still running
        return doc
    return None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """The run's result: 0600, through an unpredictable temp name, never through a planted symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, json.dumps(data, indent=2) + "\n")


