#!/usr/bin/python
# -*- coding: utf-8 -*-
"""The host-side lock: one remediator run at a time per host, a dead run's lock taken over.

The lock is a directory (mkdir is atomic) holding owner.json: the run id and the control node's pid and
hostname. Whether a holder is still alive can only be told on its control node, so the role asks there
and passes the verdict in; a holder nobody can vouch for is stale once older than stale_after seconds.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediator_lock
short_description: Take, inspect or release the host-side remediator lock
description:
  - I(state=present) takes the lock for I(run_id) (again, if this run already holds it), takes over a
    stale lock of another run, and fails while another live run holds it.
  - I(state=query) only reports the holder; I(state=absent) releases a lock this run holds.
  - Reports no change: the lock is bookkeeping of the run, not state of the host.
options:
  path:
    description: The lock directory.
    type: path
    default: /var/lib/remediator/lock
  run_id:
    description: This run.
    type: str
    required: true
  state:
    description: What to do.
    type: str
    choices: [present, absent, query]
    default: present
  control_host:
    description: The control node's hostname.
    type: str
    default: ''
  control_pid:
    description: The pid of the control process (0 when unknown).
    type: int
    default: 0
  holder_alive:
    description: The control node's verdict on whether the current holder's process lives (omit if unknown).
    type: bool
  stale_after:
    description: Seconds after which a holder nobody vouches for counts as dead.
    type: int
    default: 21600
author: remediator
"""

EXAMPLES = r"""
- name: Take the lock
  remediator_lock:
    run_id: 20260101T000000Z-abcdef
    control_host: ctl01
    control_pid: 4242
"""

RETURN = r"""
holder:
  description: The lock's owner record before this call (null when free).
  type: dict
  returned: always
acquired:
  description: Whether this run holds the lock after the call.
  type: bool
  returned: always
took_over:
  description: The stale owner record this call replaced, if any.
  type: dict
  returned: when a stale lock was taken over
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.remediator.gpu.plugins.module_utils.remediator_common import RUN_ID, fsync_dir, makedirs, now

OWNER = "owner.json"


def _read(path):
    try:
        with open(os.path.join(path, OWNER)) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def _write(path, rec):
    tmp = os.path.join(path, OWNER + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(path, OWNER))
    fsync_dir(path)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", default="/var/lib/remediator/lock"),
            run_id=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent", "query"], default="present"),
            control_host=dict(type="str", default=""),
            control_pid=dict(type="int", default=0),
            holder_alive=dict(type="bool"),
            stale_after=dict(type="int", default=6 * 3600),
        ),
        supports_check_mode=True,
    )
    p = module.params
    path, run_id = p["path"], p["run_id"]
    if not RUN_ID.fullmatch(run_id):
        module.fail_json(msg="run id %r is not YYYYmmddTHHMMSSZ-<6 hex>" % run_id)
    held = os.path.isdir(path)
    holder = _read(path) if held else None
    if held and holder is None:
        # mkdir done, owner.json not yet written (or lost): count its age from the directory.
        holder = {"run_id": None, "taken_at_epoch": os.stat(path).st_mtime}

    if p["state"] == "query":
        module.exit_json(changed=False, holder=holder, acquired=bool(holder and holder.get("run_id") == run_id))

    if p["state"] == "absent":
        if holder is None or holder.get("run_id") != run_id:
            module.exit_json(changed=False, holder=holder, acquired=False)
        if not module.check_mode:
            os.unlink(os.path.join(path, OWNER))
            os.rmdir(path)
            fsync_dir(os.path.dirname(path))
        module.exit_json(changed=False, holder=holder, acquired=False, released=True)

    me = {"run_id": run_id, "control_host": p["control_host"], "control_pid": p["control_pid"],
          "host_pid": os.getpid(), "taken_at": now(), "taken_at_epoch": time.time()}
    if holder is not None and holder.get("run_id") == run_id:
        if not module.check_mode and holder.get("control_pid") != p["control_pid"]:
            me["resumed_from"] = holder  # the same run, started again after its control process died
            _write(path, me)
        module.exit_json(changed=False, holder=holder, acquired=True)
    took_over = None
    if holder is not None:
        age = time.time() - float(holder.get("taken_at_epoch") or 0)
        alive = p["holder_alive"]
        stale = alive is False or (alive is None and age > p["stale_after"])
        if not stale:
            module.fail_json(msg="host is locked by remediator run %s (control %s pid %s, %d s ago); "
                                 "wait for it, or remove %s if you know that run is dead"
                                 % (holder.get("run_id"), holder.get("control_host") or "?",
                                    holder.get("control_pid") or "?", age, path), holder=holder)
        took_over = holder
        me["took_over_from"] = holder
    if module.check_mode:
        module.exit_json(changed=False, holder=holder, acquired=False, took_over=took_over)
    makedirs(os.path.dirname(path), 0o755)
    if holder is not None:
        # Rename the stale lock away first: of two runs taking it over at once, only one rename succeeds.
        aside = "%s.stale-%s" % (path, run_id)
        try:
            os.rename(path, aside)
        except OSError:
            module.fail_json(msg="another run took over the lock %s just now" % path)
        for name in os.listdir(aside):
            os.unlink(os.path.join(aside, name))
        os.rmdir(aside)
    try:
        os.mkdir(path, 0o700)
    except OSError:
        module.fail_json(msg="another run took the lock %s just now" % path)
    fsync_dir(os.path.dirname(path))
    _write(path, me)
    module.exit_json(changed=False, holder=holder, acquired=True, took_over=took_over)


if __name__ == "__main__":
    main()
