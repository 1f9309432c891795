#!/usr/bin/python
# -*- coding: utf-8 -*-
"""Move paths into <root>/<run-id>/items/ with a manifest written and fsynced before anything moves.

The apply side of quarantine: every path is checked against the allowlist again here, on the host,
where it really is; the host is refused whole (nothing moves) when a path is refused or space is short.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: remediator_quarantine
short_description: Move allowlisted paths into a run's quarantine, with a manifest, resumably
description:
  - Records every path (type, mode, owner, link target, sha256 of every file) in
    C(<root>/<run_id>/manifest.json), fsynced, before moving anything; then moves each path to
    C(items/<id>) by rename, or by copy, verify and remove across filesystems.
  - Re-checks each path against the quarantine allowlist on the host, where it really is after
    symlinks are resolved. One refused path refuses the whole call before anything moves.
  - Refuses before anything moves when the quarantine filesystem has too little free space.
  - Resumes a run that was killed; an item whose original is gone and whose stored copy exists is
    marked moved. Nothing is ever deleted outright.
options:
  run_id:
    description: The run, C(YYYYmmddTHHMMSSZ-<6 hex>).
    type: str
    required: true
  root:
    description: The quarantine root.
    type: path
    default: /var/lib/remediator/quarantine
  paths:
    description: What to move, in order; each C(path) (absolute) and C(what) (a label).
    type: list
    elements: dict
    required: true
  managed_roots:
    description: Directories remediate fills itself (the venv root); their direct children may move too.
    type: list
    elements: path
    default: []
  host:
    description: The host's name as the control node knows it, for the manifest.
    type: str
    default: ''
  min_free_bytes:
    description: Free space to leave on the quarantine filesystem beyond what the copies need.
    type: int
    default: 67108864
author: remediator
"""

EXAMPLES = r"""
- name: Quarantine a toolkit
  remediator_quarantine:
    run_id: 20260101T000000Z-abcdef
    paths:
      - {path: /usr/local/cuda-10.1, what: CUDA toolkit}
"""

RETURN = r"""
moved:
  description: Original paths moved by this call.
  type: list
  returned: always
absent:
  description: Requested paths that were already gone (nothing to do).
  type: list
  returned: always
manifest:
  description: Path of the run's manifest.
  type: str
  returned: always
items:
  description: The manifest's items after this call.
  type: list
  returned: always
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.remediator_common import (
    check_real_path,
    describe,
    device_of,
    empty_manifest,
    free_bytes,
    load_manifest,
    makedirs,
    module_run_dir,
    move,
    now,
    remove_tree,
    total_size,
    write_manifest,
)


def _next_id(doc):
    return "%04d" % (max([int(i["id"]) for i in doc["items"]] or [0]) + 1)


def _current(doc, path):
    """The latest item for `path` that is not restored (a restored one may be quarantined again)."""
    for item in reversed(doc["items"]):
        if item["original_path"] == path and item["state"] != "restored":
            return item
    return None


def _settle_pending(directory, item):
    """What a killed run left: returns 'moved' (done), 'redo' (original whole) or an error string."""
    stored = os.path.join(directory, item["stored_as"])
    original = item["original_path"]
    if os.path.lexists(stored):
        if os.path.lexists(original):
            # The copy was complete and verified (it is renamed to stored only then); the original was
            # being removed when the run died. Finish the removal: the same bytes are in stored.
            remove_tree(original)
        return "moved"
    if os.path.lexists(original):
        if os.path.lexists(stored + ".partial"):
            remove_tree(stored + ".partial")
        return "redo"
    return "neither %s nor its stored copy %s exists" % (original, stored)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            run_id=dict(type="str", required=True),
            root=dict(type="path", default="/var/lib/remediator/quarantine"),
            paths=dict(type="list", elements="dict", required=True),
            managed_roots=dict(type="list", elements="path", default=[]),
            host=dict(type="str", default=""),
            min_free_bytes=dict(type="int", default=64 * 1024 * 1024),
        ),
        supports_check_mode=True,
    )
    p = module.params
    directory = module_run_dir(module)
    managed = tuple(p["managed_roots"])

    # 1. Every path, on this host, where it really is: refuse the whole call on any one.
    refused = []
    wanted = []
    for spec in p["paths"]:
        path = spec.get("path")
        ok, why = check_real_path(path, managed)
        if not ok:
            refused.append({"path": path, "why": why})
        else:
            wanted.append((path, spec.get("what") or ""))
        if path and (path == p["root"] or p["root"].startswith(path.rstrip("/") + "/")):
            refused.append({"path": path, "why": "holds the quarantine root"})
    if refused:
        module.fail_json(msg="refused: %s" % "; ".join("%s (%s)" % (r["path"], r["why"]) for r in refused),
                         refused=refused, changed=False)

    doc = load_manifest(directory) or empty_manifest(p["run_id"], p["host"])
    items_dir = os.path.join(directory, "items")

    # 2. What each path needs: new item, resume of a pending one, or nothing.
    plan = []  # (item, is_new)
    absent = []
    for path, what in wanted:
        item = _current(doc, path)
        if item is not None and item["state"] == "moved":
            continue
        if item is not None and item["state"] == "pending":
            plan.append((item, False))
            continue
        if not os.path.lexists(path):
            absent.append(path)
            continue
        rec = describe(path)
        item = {"id": None, "original_path": path, "what": what, "type": rec["type"], "mode": rec["mode"],
                "owner": rec["owner"], "group": rec["group"], "uid": rec["uid"], "gid": rec["gid"],
                "size": rec["size"], "link_target": rec["link_target"], "sha256": rec["sha256"],
                "state": "pending"}
        if rec["type"] == "dir":
            item["tree"] = rec["tree"]
        if rec["type"] == "other":
            module.fail_json(msg="refused: %s is not a file, directory or symlink" % path, changed=False)
        plan.append((item, True))

    diff = {"before": "", "after": ""}
    for item, _new in plan:
        diff["before"] += "%s\n" % item["original_path"]
        diff["after"] += "%s -> %s/items/...\n" % (item["original_path"], directory)
    if module.check_mode or not plan:
        module.exit_json(changed=bool(plan), moved=[i["original_path"] for i, _ in plan], absent=absent,
                         manifest=os.path.join(directory, "manifest.json"), items=doc["items"], diff=diff)

    # 3. Space: copies are needed where a rename cannot reach the quarantine's filesystem.
    qdev = device_of(directory)
    need = p["min_free_bytes"] + 1024 * 1024
    for item, new in plan:
        if new and os.lstat(item["original_path"]).st_dev != qdev:
            need += total_size(item)
    have = free_bytes(directory)
    if have < need:
        module.fail_json(msg="not enough free space for the quarantine under %s: %d bytes free, %d needed; "
                             "nothing was moved" % (p["root"], have, need), free=have, needed=need, changed=False)

    # 4. The manifest, durable, before anything moves.
    for item, new in plan:
        if new:
            item["id"] = _next_id(doc)
            item["stored_as"] = "items/" + item["id"]
            item["recorded_at"] = now()
            doc["items"].append(item)
    makedirs(items_dir)
    write_manifest(directory, doc)

    # 5. Move, recording each item as it lands.
    moved = []
    for item, new in plan:
        stored = os.path.join(directory, item["stored_as"])
        if not new:
            state = _settle_pending(directory, item)
            if state == "moved":
                item["state"] = "moved"
                write_manifest(directory, doc)
                moved.append(item["original_path"])
                continue
            if state != "redo":
                module.fail_json(msg="quarantine item %s: %s" % (item["id"], state), changed=bool(moved),
                                 moved=moved, items=doc["items"])
            item.update({k: v for k, v in describe(item["original_path"]).items() if k != "path"})
            write_manifest(directory, doc)
        try:
            how = move(item["original_path"], stored, item)
        except OSError as exc:
            module.fail_json(msg="moving %s failed: %s; it is still in place, the manifest says pending"
                             % (item["original_path"], exc), changed=bool(moved), moved=moved, items=doc["items"])
        item["state"] = "moved"
        item["moved_by"] = how
        item["moved_at"] = now()
        write_manifest(directory, doc)
        moved.append(item["original_path"])

    module.exit_json(changed=bool(moved), moved=moved, absent=absent,
                     manifest=os.path.join(directory, "manifest.json"), items=doc["items"], diff=diff)


if __name__ == "__main__":
    main()
