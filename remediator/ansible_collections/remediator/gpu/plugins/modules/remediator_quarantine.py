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
    symlinks are resolved, and refuses it when a directory on the way (from /) is not owned by the
    module's uid or is writable by group or others. One refused path refuses the whole call before
    anything moves.
  - Opens each parent directory once, from / without following symlinks, and reads, renames, copies and
    removes only relative to directory fds; files are opened with O_NOFOLLOW|O_NONBLOCK and must fstat
    as the regular file lstat saw, so a symlink or FIFO swapped in is refused, never followed or waited on.
  - Refuses before anything moves when the quarantine filesystem has too little free space.
  - Resumes a run that was killed; an item whose original is gone and whose stored copy exists is
    marked moved. What is left of an original beside its stored copy is removed only when it matches
    the manifest's record; otherwise the module fails and leaves both. Nothing is ever deleted outright.
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
from ansible_collections.remediator.gpu.plugins.module_utils.remediator_common import (
    Unsafe,
    check_parents,
    check_real_path,
    describe_at,
    device_of,
    empty_manifest,
    free_bytes,
    lexists_at,
    load_manifest,
    locate,
    makedirs,
    module_run_dir,
    move_at,
    now,
    open_dir,
    remove_at,
    same_content_at,
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


def _settle_pending(items_fd, stored, parent_fd, leaf, item):
    """What a killed run left: returns 'moved' (done), 'redo' (original whole) or an error string."""
    original = item["original_path"]
    there = parent_fd is not None and lexists_at(parent_fd, leaf)
    if lexists_at(items_fd, stored):
        if there:
            # The copy was complete and verified (it is renamed to stored only then); the original was being
            # removed when the run died. Finish the removal, but only of what the record says was there: what
            # is left of it, unchanged. Anything else (changed or new since) is not ours to delete.
            if not same_content_at(item, parent_fd, leaf, original, leftover=True):
                return ("%s is still there beside its stored copy %s and differs from the manifest record; "
                        "both are left in place" % (original, item["stored_as"]))
            remove_at(parent_fd, leaf, original)
            os.fsync(parent_fd)
        return "moved"
    if there:
        if lexists_at(items_fd, stored + ".partial"):
            remove_at(items_fd, stored + ".partial", stored + ".partial")
        return "redo"
    return "neither %s nor its stored copy %s exists" % (original, item["stored_as"])


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

    # 1. Every path, on this host, where it really is, and the directories on the way to it (owned by us, not
    #    writable by anyone else): refuse the whole call on any one. The quarantine's own directories too.
    refused = []
    wanted = []
    for spec in p["paths"]:
        path = spec.get("path")
        ok, why = check_real_path(path, managed)
        if ok:
            why = check_parents(path, managed)
            ok = why is None
        if not ok:
            refused.append({"path": path, "why": why})
        else:
            wanted.append((path, spec.get("what") or ""))
        if path and (path == p["root"] or p["root"].startswith(path.rstrip("/") + "/")):
            refused.append({"path": path, "why": "holds the quarantine root"})
    try:
        fd = open_dir(os.path.realpath(directory), allow_sticky=True, missing_ok=True)
        if fd is not None:
            os.close(fd)
    except Unsafe as exc:
        refused.append({"path": directory, "why": "the quarantine: %s" % exc})
    if refused:
        module.fail_json(msg="refused: %s" % "; ".join("%s (%s)" % (r["path"], r["why"]) for r in refused),
                         refused=refused, changed=False)

    doc = load_manifest(directory) or empty_manifest(p["run_id"], p["host"])
    items_dir = os.path.join(directory, "items")

    # 2. What each path needs: new item, resume of a pending one, or nothing. Each parent directory is opened
    #    here, once, and the item is read and moved through that fd only.
    plan = []  # (item, is_new)
    absent = []
    where = {}  # original path -> (parent fd or None where the parent is gone, name in it)
    for path, what in wanted:
        item = _current(doc, path)
        if item is not None and item["state"] == "moved":
            continue
        try:
            real_parent, leaf = locate(path, managed)
            where[path] = (open_dir(real_parent, missing_ok=True), leaf)
        except Unsafe as exc:
            module.fail_json(msg="refused: %s; nothing was moved" % exc, changed=False)
        parent_fd = where[path][0]
        if item is not None and item["state"] == "pending":
            plan.append((item, False))
            continue
        if parent_fd is None or not lexists_at(parent_fd, leaf):
            absent.append(path)
            continue
        try:
            rec = describe_at(parent_fd, leaf, path)
        except (Unsafe, OSError) as exc:
            module.fail_json(msg="refused: %s; nothing was moved" % exc, changed=False)
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
        parent_fd, leaf = where[item["original_path"]]
        if new and os.lstat(leaf, dir_fd=parent_fd).st_dev != qdev:
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
    try:
        items_fd = open_dir(os.path.realpath(items_dir), allow_sticky=True)
    except Unsafe as exc:
        module.fail_json(msg="refused: the quarantine: %s; nothing was moved" % exc, changed=False)

    # 5. Move, recording each item as it lands.
    moved = []
    for item, new in plan:
        original = item["original_path"]
        parent_fd, leaf = where[original]
        stored = os.path.basename(item["stored_as"])
        try:
            if not new:
                state = _settle_pending(items_fd, stored, parent_fd, leaf, item)
                if state == "moved":
                    item["state"] = "moved"
                    write_manifest(directory, doc)
                    moved.append(original)
                    continue
                if state != "redo":
                    module.fail_json(msg="quarantine item %s: %s" % (item["id"], state), changed=bool(moved),
                                     moved=moved, items=doc["items"])
                item.update({k: v for k, v in describe_at(parent_fd, leaf, original).items() if k != "path"})
                write_manifest(directory, doc)
            how = move_at(parent_fd, leaf, items_fd, stored, item, original)
        except (Unsafe, OSError) as exc:
            module.fail_json(msg="moving %s failed: %s; it is still in place, the manifest says pending"
                             % (original, exc), changed=bool(moved), moved=moved, items=doc["items"])
        item["state"] = "moved"
        item["moved_by"] = how
        item["moved_at"] = now()
        write_manifest(directory, doc)
        moved.append(original)

    module.exit_json(changed=bool(moved), moved=moved, absent=absent,
                     manifest=os.path.join(directory, "manifest.json"), items=doc["items"], diff=diff)


if __name__ == "__main__":
    main()
