# -*- coding: utf-8 -*-
"""Host-side helpers shared by the remediator_* modules: the allowlist, the run manifest, hashing, moves.

Modules run on the managed host without the remediator package, so the allowlist of
remediator/safety.py is repeated here (a unit test asserts the two are equal) and every path is checked
again on the host, against where it really is after symlinks are resolved. Stdlib only; Python >= 3.6.
"""

from __future__ import absolute_import, division, print_function

import datetime
import errno
import grp
import hashlib
import json
import os
import posixpath
import pwd
import re
import shutil
import stat

__metaclass__ = type

# --- the allowlist (same patterns as remediator.safety.ALLOWLIST; tests/unit/test_modules.py checks) ----------

_VER = r"\d{1,2}\.\d{1,2}(?:\.\d{1,3})?"
ALLOWLIST_PATTERNS = (
    ("toolkit dir", r"/(?:usr/local|opt)/cuda-" + _VER),
    ("CUDA link", r"/usr/local/cuda(?:-\d{1,2})?"),
    ("cuDNN file in a toolkit",
     r"/(?:usr/local|opt)/cuda(?:-" + _VER + r")?/(?:lib64|lib|include|targets/x86_64-linux/(?:lib|include))"
     r"/(?:libcudnn[A-Za-z_]*\.so(?:\.\d{1,3}){0,3}|libcudnn[A-Za-z_]*_static\.a|cudnn[A-Za-z_]*\.h)"),
    ("loader config", r"/etc/ld\.so\.conf\.d/[A-Za-z0-9_.+-]{1,100}\.conf"),
    ("login environment script", r"/etc/profile\.d/[A-Za-z0-9_.+-]{1,100}\.sh"),
)
ALLOWLIST = tuple((name, re.compile(pattern)) for name, pattern in ALLOWLIST_PATTERNS)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,100}")
RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}(?:-rollback)?")
MANIFEST = "manifest.json"


def check_path(path, managed_roots=()):
    """(allowed, reason) for one path, exactly as remediator.safety.check_path decides."""
    if not isinstance(path, str) or not path:
        return False, "not a path"
    if _CONTROL.search(path):
        return False, "contains control characters"
    if not path.startswith("/"):
        return False, "not absolute"
    if ".." in path.split("/"):
        return False, "contains '..'"
    norm = posixpath.normpath(path)
    if norm != (path.rstrip("/") or "/") or norm.startswith("//"):
        return False, "not normalised (would be %s)" % norm
    for name, pattern in ALLOWLIST:
        if pattern.fullmatch(norm):
            return True, name
    for root in managed_roots:
        parent, leaf = posixpath.split(norm)
        if parent == posixpath.normpath(root) and _NAME.fullmatch(leaf) and root.count("/") >= 2:
            return True, "venv made by remediate"
    return False, "outside the quarantine allowlist"


def check_real_path(path, managed_roots=()):
    """Check `path` as named, where its entry really lives, and (for a symlink) where it leads.

    The entry that moves is `realpath(dirname) + basename`: a symlinked parent directory must not carry
    a move outside the allowlist. A symlink itself moves as a link, but it must not lead outside either.
    """
    ok, why = check_path(path, managed_roots)
    if not ok:
        return False, why
    real_roots = tuple(os.path.realpath(r) for r in managed_roots) + tuple(managed_roots)
    parent, leaf = os.path.split(path)
    located = os.path.join(os.path.realpath(parent), leaf)
    ok, why = check_path(located, real_roots)
    if not ok:
        return False, "really at %s, which is %s" % (located, why)
    if os.path.islink(path):
        target = os.path.realpath(path)
        ok, why = check_path(target, real_roots)
        if not ok:
            return False, "a symlink to %s, which is %s" % (target, why)
    return True, why


# --- run directories and the manifest -------------------------------------------------------------------------


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_dir(root, run_id):
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ValueError("run id %r is not YYYYmmddTHHMMSSZ-<6 hex>" % (run_id,))
    if not root.startswith("/") or posixpath.normpath(root) != root.rstrip("/"):
        raise ValueError("quarantine root %r must be an absolute, normalised path" % (root,))
    return os.path.join(root, run_id)


def module_run_dir(module):
    """The run's quarantine directory from the module's `root` and `run_id`, or the module fails with why."""
    try:
        return run_dir(module.params["root"], module.params["run_id"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(path, mode=0o700):
    """mkdir -p with `mode` on what it creates; fsyncs each new directory's parent."""
    missing = []
    p = path
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        fsync_dir(os.path.dirname(d))


def empty_manifest(run_id, host):
    return {"run_id": run_id, "host": host, "created_at": now(), "items": [], "packages": [], "changes": []}


def load_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            doc = json.load(f)
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise
    for key in ("items", "packages", "changes"):
        doc.setdefault(key, [])
    return doc


def write_manifest(directory, doc):
    """Write atomically and durably: a temp file, fsync, rename over, fsync the directory."""
    makedirs(directory)
    path = os.path.join(directory, MANIFEST)
    tmp = path + ".tmp"
    data = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    fsync_dir(directory)


# --- what a path is, byte for byte ----------------------------------------------------------------------------


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _names(st):
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return owner, group


def kind_of(st):
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    return "other"


def entry(path, rel=None):
    """One manifest record for `path` (not followed): type, mode, owner, link target, sha256."""
    st = os.lstat(path)
    kind = kind_of(st)
    owner, group = _names(st)
    rec = {"type": kind, "mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": owner, "group": group,
           "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size if kind == "file" else 0,
           "mtime_ns": getattr(st, "st_mtime_ns", int(st.st_mtime * 1e9)),
           "link_target": os.readlink(path) if kind == "symlink" else None,
           "sha256": sha256_file(path) if kind == "file" else None}
    if rel is not None:
        rec["path"] = rel
    return rec


def tree(path):
    """Records for everything under directory `path`, sorted, paths relative to it."""
    out = []
    for top, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = os.path.join(top, name)
            out.append(entry(full, os.path.relpath(full, path)))
    return out


def describe(path):
    """The manifest fields of an item about to be quarantined."""
    rec = entry(path)
    if rec["type"] == "dir":
        rec["tree"] = tree(path)
    return rec


def total_size(rec):
    if rec["type"] == "dir":
        return sum(e.get("size", 0) for e in rec.get("tree", [])) + 4096 * (1 + len(rec.get("tree", [])))
    return rec.get("size", 0) + 4096


def digest(path):
    """What `path` is now, in the fields that must survive a move (for comparing before and after)."""
    if not os.path.lexists(path):
        return None
    rec = describe(path)
    keep = ("type", "mode", "uid", "gid", "link_target", "sha256", "path", "size")
    out = {k: rec.get(k) for k in keep if k != "path"}
    if rec["type"] == "dir":
        out["tree"] = [{k: e.get(k) for k in keep} for e in rec["tree"]]
    return out


def same_content(recorded, path):
    """Whether `path` matches what the manifest recorded for it (type, mode, owner, links, file hashes)."""
    now_ = digest(path)
    if now_ is None:
        return False
    want = {k: recorded.get(k) for k in ("type", "mode", "uid", "gid", "link_target", "sha256", "size")}
    have = {k: now_.get(k) for k in want}
    if want != have:
        return False
    if recorded["type"] == "dir":
        keep = ("type", "mode", "uid", "gid", "link_target", "sha256", "path", "size")
        return [{k: e.get(k) for k in keep} for e in recorded.get("tree", [])] == now_["tree"]
    return True


def free_bytes(path):
    p = path
    while not os.path.exists(p):
        p = os.path.dirname(p)
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize


def device_of(path):
    p = path
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return os.lstat(p).st_dev


# --- moving, with a copy that is verified before the source goes when a rename cannot cross filesystems -------


def _copy_meta(src_st, dst):
    os.lchown(dst, src_st.st_uid, src_st.st_gid)
    if not stat.S_ISLNK(src_st.st_mode):
        os.chmod(dst, stat.S_IMODE(src_st.st_mode))
        os.utime(dst, ns=(src_st.st_atime_ns, src_st.st_mtime_ns))


def _copy_one(src, dst):
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
    elif stat.S_ISREG(st.st_mode):
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
    else:
        raise OSError(errno.EINVAL, "cannot move %s: not a file, directory or symlink" % src)
    return st


def copy_exact(src, dst):
    """Copy `src` to `dst` keeping types, modes, owners, times and link targets (directories last)."""
    st = _copy_one(src, dst)
    dirs = [(src, dst, st)] if stat.S_ISDIR(st.st_mode) else []
    if stat.S_ISDIR(st.st_mode):
        for top, subdirs, files in os.walk(src):
            subdirs.sort()
            rel = os.path.relpath(top, src)
            for name in sorted(subdirs + files):
                s = os.path.join(top, name)
                d = os.path.normpath(os.path.join(dst, rel, name))
                sst = _copy_one(s, d)
                if stat.S_ISDIR(sst.st_mode):
                    dirs.append((s, d, sst))
                else:
                    _copy_meta(sst, d)
        for _s, d, dst_st in reversed(dirs):
            fsync_dir(d)
            _copy_meta(dst_st, d)
    else:
        _copy_meta(st, dst)


def remove_tree(path):
    """Remove what was just copied elsewhere and verified (the only removal these modules make)."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def move(src, dst, recorded):
    """Move `src` to `dst`: rename, or copy + verify against `recorded` + remove the source.

    Returns "rename" or "copy". The copy lands in `dst + '.partial'` and is renamed to `dst` only when it
    matches the record, so a `dst` that exists is always complete.
    """
    try:
        os.rename(src, dst)
        fsync_dir(os.path.dirname(dst))
        fsync_dir(os.path.dirname(src))
        return "rename"
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = dst + ".partial"
    if os.path.lexists(partial):
        remove_tree(partial)  # our own unfinished copy; the source is still whole
    copy_exact(src, partial)
    if not same_content(recorded, partial):
        raise OSError(errno.EIO, "the copy of %s does not match its manifest record" % src)
    os.rename(partial, dst)
    fsync_dir(os.path.dirname(dst))
    remove_tree(src)
    fsync_dir(os.path.dirname(src))
    return "copy"
