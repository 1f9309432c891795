"""The apply step: carry a saved plan out on the hosts, a canary first, then in batches; and undo a run.

apply re-probes every host it is about to change and refuses those whose facts no longer match the
plan's fingerprint (stale), locks each host on the control node, then hands the plan's actions to
the playbooks through `runner.run_playbook` (docs/apply.md is the contract). Outcomes come per host
from the runner's stats; a rollout stops when a batch fails beyond `max_fail_percent`, as ansible's
max_fail_percentage does. Every run has its own private data dir under the state dir, whose
`result.json` is written as the run goes, so an apply killed midway is resumed by the next apply of
the same plan (same run id, so one quarantine and one rollback cover both).
"""

from __future__ import annotations

from remediator.apply.hostvars import (
    connection_vars,
    extravars,
    manifest_path,
    plan_host_vars,
    ssh_common_args,
)
from remediator.apply.options import (
    ALL_STATUSES,
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_QUARANTINE_ROOT,
    DEFAULT_TASK_TIMEOUT_S,
    GOOD_STATUSES,
    RESULT_SCHEMA_VERSION,
    RUN_ID_RE,
    ApplyError,
    ApplyOptions,
    HostApplyStatus,
    RunKind,
    RunState,
    Serial,
    batches,
    default_playbooks_dir,
    default_state_dir,
    failed_beyond,
    new_run_id,
    now_iso,
)
from remediator.apply.planfile import (
    PlanFile,
    read_plan,
)
from remediator.apply.result import (
    ApplyEvent,
    ApplyResult,
    BatchResult,
    HostApply,
    ProbeFn,
    RunFn,
    StopSignal,
    VerifyFn,
)
from remediator.apply.rollback import (
    rollback_run,
)
from remediator.apply.rollout import (
    Rollout,
)
from remediator.apply.run import (
    StoreHook,
    apply_plan,
    verify_hosts,
)
from remediator.apply.rundir import (
    find_interrupted,
    load_result,
    run_dir,
    runs_dir,
    write_json_atomic,
)
from remediator.hostscript import collection_dir  # where apply's playbooks come from

__all__ = [
    "ALL_STATUSES",
    "DEFAULT_BATCH_TIMEOUT_S",
    "DEFAULT_QUARANTINE_ROOT",
    "DEFAULT_TASK_TIMEOUT_S",
    "GOOD_STATUSES",
    "RESULT_SCHEMA_VERSION",
    "RUN_ID_RE",
    "ApplyError",
    "ApplyEvent",
    "ApplyOptions",
    "ApplyResult",
    "BatchResult",
    "HostApply",
    "HostApplyStatus",
    "PlanFile",
    "ProbeFn",
    "Rollout",
    "RunFn",
    "RunKind",
    "RunState",
    "Serial",
    "StopSignal",
    "StoreHook",
    "VerifyFn",
    "apply_plan",
    "batches",
    "collection_dir",
    "connection_vars",
    "default_playbooks_dir",
    "default_state_dir",
    "extravars",
    "failed_beyond",
    "find_interrupted",
    "load_result",
    "manifest_path",
    "new_run_id",
    "now_iso",
    "plan_host_vars",
    "read_plan",
    "rollback_run",
    "run_dir",
    "runs_dir",
    "ssh_common_args",
    "verify_hosts",
    "write_json_atomic",
]
