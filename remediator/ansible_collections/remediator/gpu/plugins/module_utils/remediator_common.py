# -*- coding: utf-8 -*-
"""Host-side helpers shared by the remediator_* modules: the allowlist, the run manifest, hashing, moves.

Modules run on the managed host without the remediator package, so the allowlist of
remediator/safety.py is repeated here (a unit test asserts the two are equal) and every path is checked
again on the host, against where it really is after symlinks are resolved. Items are then read, moved and
removed only through directory fds opened without following symlinks, under directories no other user can
write to. Stdlib only; Python >= 3.6.
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
import stat

__metaclass__ = type

# --- the allowlist (same patterns as remediator.safety.ALLOWLIST; tests/unit/test_modules.py checks) ----------

_VER = r"\d{1,2}\.\d{1,2}(?:\.\d{1,3})?"
ALLOWLIST_PATTERNS = (
    ("toolkit dir", r"/(?:usr/local|opt)/cuda-" + _VER),
    ("CUDA link", r"/usr/local/cuda(?:-\d{1,2})?"),
    ("cuDNN file in a toolkit",
     r"/(?:usr/local|opt)/cuda(?:-" + _VER + r")?/(?:lib64|lib|include|"
     r"targets/(?:x86_64|sbsa|aarch64|ppc64le)-linux/(?:lib|include))"
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
        if parent == posixpath.normpath(root) and _NAME.fullmatch(leaf) and venv_root_problem(root) is None:
            return True, "venv made by remediate"
    return False, "outside the quarantine allowlist"


# As remediator.safety.check_venv_root: a managed root is never a system dir (its children would become
# "venvs made by remediate"), and its depth is counted on the normalised path ("/etc/" is one level).
_SYSTEM_ROOTS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/boot", "/dev", "/proc",
                 "/sys", "/run", "/tmp", "/var/tmp", "/var/run", "/var/lock", "/var/lib/dpkg", "/var/lib/rpm",
                 "/var/lib/apt", "/var/cache", "/var/log", "/var/spool", "/snap", "/root", "/home", "/media", "/mnt",
                 "/lost+found")
_LOCAL_SYSTEM = ("/usr/local/bin", "/usr/local/sbin", "/usr/local/lib", "/usr/local/lib64", "/usr/local/include",
                 "/usr/local/share", "/usr/local/etc", "/usr/local/libexec", "/usr/local/man", "/usr/local/src",
                 "/usr/local/games")
_ROOT_CHARS = re.compile(r"[A-Za-z0-9_.+/-]{1,200}")


def venv_root_problem(root):
    """Why `root` may not hold remediate's venvs, or None."""
    if not isinstance(root, str) or not root or not _ROOT_CHARS.fullmatch(root):
        return "not a path of plain characters"
    if not root.startswith("/") or root.startswith("//") or set(root.split("/")) & {".", ".."}:
        return "not an absolute path without . or .."
    norm = posixpath.normpath(root)
    if norm != (root.rstrip("/") or "/"):
        return "not normalised (would be %s)" % norm
    if norm.count("/") < 2:
        return "less than two levels deep"

    def under(base):
        return norm == base or norm.startswith(base + "/")

    if any(under(r) for r in _LOCAL_SYSTEM) or re.match(r"/(?:usr/local|opt)/cuda(?:-[0-9.]+)?(?:/|$)", norm):
        return "inside a system directory or a CUDA toolkit"
    if under("/usr/local"):
        return None
    if any(under(r) for r in _SYSTEM_ROOTS):
        return "inside a system directory"
    return None


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


# --- directories on the way to an item, opened without following symlinks ------------------------------------
#
# A non-root user who can write in a directory on the way to an item could swap a symlink or a FIFO in between
# our check and our use. So the directories are opened as fds from / one component at a time with O_NOFOLLOW,
# each must be owned by the trusted uid and not writable by group or others, and everything below is done
# relative to those fds (lstat, open, rename, unlink), never by path again.

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | _CLOEXEC
# O_NONBLOCK: a FIFO swapped in after lstat must not block the open (it is refused by the fstat after it).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC


class Unsafe(Exception):
    """A path a module must not act on; the message names it and says why."""


def trusted_uid():
    # The owner every directory on the way to an item must have. The modules run as root (become), so this is
    # uid 0 on a host; taking the effective uid instead of a literal 0 makes tests (run as root in CI) judge
    # alike, and a module run as another user trusts only its own directories, never a third user's.
    return os.geteuid()


def _untrusted(st, allow_sticky):
    """Why a directory with stat `st` could be changed by someone else, or None."""
    if st.st_uid != trusted_uid():
        return "is owned by uid %d, not by uid %d" % (st.st_uid, trusted_uid())
    mode = stat.S_IMODE(st.st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not (allow_sticky and mode & stat.S_ISVTX):
        return "is writable by group or others (mode %04o)" % mode
    return None


def open_dir(path, allow_sticky=False, create=None, missing_ok=False):
    """An fd of directory `path` (absolute, normalised), walked from / with O_NOFOLLOW and checked on the way.

    Every directory from / to `path` must be owned by the trusted uid and not writable by group or others
    (`allow_sticky`: a sticky one may be, as /tmp above a quarantine root: nobody else can rename our entries
    in it). `create`: the mode for missing directories (made as we go); else a missing one raises ENOENT, or
    returns None with `missing_ok`. A symlink on the way raises Unsafe: resolve it first, then open the result.
    """
    if not path.startswith("/") or posixpath.normpath(path) != path or path.startswith("//"):
        raise Unsafe("%s is not an absolute, normalised path" % path)
    fd = os.open("/", _DIR_FLAGS)
    here = "/"
    try:
        for name in [""] + [c for c in path.split("/") if c]:
            if name:
                here = posixpath.join(here, name)
                nfd = _open_child_dir(fd, name, here, create)
                if nfd is None:
                    if missing_ok:
                        os.close(fd)
                        return None
                    raise OSError(errno.ENOENT, "no such directory", here)
                os.close(fd)
                fd = nfd
            why = _untrusted(os.fstat(fd), allow_sticky)
            if why:
                raise Unsafe("directory %s %s" % (here, why))
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_child_dir(fd, name, here, create):
    for attempt in (1, 2):
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise Unsafe("%s is not a directory (a symlink is not followed here)" % here) from None
            if exc.errno != errno.ENOENT:
                raise
            if create is None or attempt == 2:
                return None
        try:
            os.mkdir(name, create, dir_fd=fd)
        except FileExistsError:
            pass
        os.fsync(fd)
    return None


def locate(path, managed_roots=()):
    """(real parent, name) of `path`: the parent resolved once, and the entry there still on the allowlist.

    Open the parent with open_dir and use that fd from then on: a symlink swapped in later is not followed.
    """
    parent, leaf = os.path.split(path)
    real_parent = os.path.realpath(parent)
    real_roots = tuple(os.path.realpath(r) for r in managed_roots) + tuple(managed_roots)
    ok, why = check_path(os.path.join(real_parent, leaf), real_roots)
    if not ok:
        raise Unsafe("%s is really at %s, which is %s" % (path, os.path.join(real_parent, leaf), why))
    return real_parent, leaf


def check_parents(path, managed_roots=()):
    """Why the directories on the way to `path` make it unsafe to act on, or None (a missing one is no reason)."""
    try:
        real_parent, _leaf = locate(path, managed_roots)
        fd = open_dir(real_parent, missing_ok=True)
    except Unsafe as exc:
        return str(exc)
    if fd is not None:
        os.close(fd)
    return None


def lexists_at(dir_fd, name):
    try:
        os.lstat(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return True


# --- what a path is, byte for byte ----------------------------------------------------------------------------


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


def _open_at(dir_fd, name, st, label):
    """A read fd of what lstat saw as `st` at `name` (a regular file or a directory), refused if it changed since.

    O_NOFOLLOW and O_NONBLOCK: a symlink swapped in is not followed, a FIFO does not block; the fstat after the
    open must show the same regular file (or directory) lstat saw.
    """
    flags = _DIR_FLAGS if stat.S_ISDIR(st.st_mode) else _READ_FLAGS
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO):
            raise Unsafe("%s changed while it was read: it is no longer the %s it was"
                         % (label, kind_of(st))) from None
        raise
    fst = os.fstat(fd)
    if stat.S_IFMT(fst.st_mode) != stat.S_IFMT(st.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise Unsafe("%s changed while it was read: it is no longer the %s it was (now %s)"
                     % (label, kind_of(st), kind_of(fst) if kind_of(fst) != "other" else "not a regular file"))
    return fd


def _sha256_fd(fd):
    h = hashlib.sha256()
    for chunk in iter(lambda: os.read(fd, 1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def entry_at(dir_fd, name, label, rel=None):
    """One manifest record for `name` in `dir_fd` (not followed): type, mode, owner, link target, sha256."""
    st = os.lstat(name, dir_fd=dir_fd)
    kind = kind_of(st)
    owner, group = _names(st)
    sha = None
    if kind == "file":
        fd = _open_at(dir_fd, name, st, label)
        try:
            sha = _sha256_fd(fd)
        finally:
            os.close(fd)
    rec = {"type": kind, "mode": "%04o" % stat.S_IMODE(st.st_mode), "owner": owner, "group": group,
           "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size if kind == "file" else 0,
           "mtime_ns": getattr(st, "st_mtime_ns", int(st.st_mtime * 1e9)),
           "link_target": os.readlink(name, dir_fd=dir_fd) if kind == "symlink" else None,
           "sha256": sha}
    if rel is not None:
        rec["path"] = rel
    return rec, st


def _tree_at(fd, label, prefix, out):
    """Records for everything in directory `fd`: its entries (sorted), then each subdirectory's, as os.walk."""
    subdirs = []
    for name in sorted(os.listdir(fd)):
        rel = name if not prefix else prefix + "/" + name
        rec, st = entry_at(fd, name, label + "/" + name, rel)
        out.append(rec)
        if rec["type"] == "dir":
            subdirs.append((name, rel, st))
    for name, rel, st in subdirs:
        sub = _open_at(fd, name, st, label + "/" + name)
        try:
            _tree_at(sub, label + "/" + name, rel, out)
        finally:
            os.close(sub)
    return out


def describe_at(dir_fd, name, label):
    """The manifest fields of `name` in `dir_fd`: its record, and the tree below a directory."""
    rec, st = entry_at(dir_fd, name, label)
    if rec["type"] == "dir":
        fd = _open_at(dir_fd, name, st, label)
        try:
            rec["tree"] = _tree_at(fd, label, "", [])
        finally:
            os.close(fd)
    return rec


def total_size(rec):
    if rec["type"] == "dir":
        return sum(e.get("size", 0) for e in rec.get("tree", [])) + 4096 * (1 + len(rec.get("tree", [])))
    return rec.get("size", 0) + 4096


_KEEP = ("type", "mode", "uid", "gid", "link_target", "sha256", "size")


def _fields(rec):
    return {k: rec.get(k) for k in _KEEP}


def same_content_at(recorded, dir_fd, name, label, leftover=False):
    """Whether `name` in `dir_fd` matches what the manifest recorded (type, mode, owner, size, links, hashes).

    `leftover`: a directory may also be what is left of the recorded one after a removal was cut short: every
    entry still there must match its record, none may be new.
    """
    if not lexists_at(dir_fd, name):
        return False
    have = describe_at(dir_fd, name, label)
    if _fields(have) != _fields(recorded):
        return False
    if recorded["type"] != "dir":
        return True
    want = {e.get("path"): _fields(e) for e in recorded.get("tree", [])}
    now_ = {e["path"]: _fields(e) for e in have["tree"]}
    if leftover:
        return all(want.get(p) == f for p, f in now_.items())
    return want == now_


def unchanged_at(recorded, dir_fd, name, label):
    """Raise Unsafe unless `name` is still what the record says by lstat: type, mode, owner, size, link target."""
    st = os.lstat(name, dir_fd=dir_fd)
    kind = kind_of(st)
    have = {"type": kind, "mode": "%04o" % stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
            "size": st.st_size if kind == "file" else 0,
            "link_target": os.readlink(name, dir_fd=dir_fd) if kind == "symlink" else None}
    differs = [k for k in sorted(have) if have[k] != recorded.get(k)]
    if differs:
        raise Unsafe("%s is no longer what the manifest recorded (%s differ)" % (label, ", ".join(differs)))


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
#
# Everything here works on (directory fd, name) pairs from open_dir and never follows a symlink.


def _set_meta(fd, st):
    os.fchown(fd, st.st_uid, st.st_gid)  # before the mode: chown clears setuid bits
    os.fchmod(fd, stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_at(src_fd, src_name, dst_fd, dst_name, label):
    """Copy `src_name` to `dst_name` keeping types, modes, owners, times and link targets (directories last)."""
    st = os.lstat(src_name, dir_fd=src_fd)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src_name, dir_fd=src_fd), dst_name, dir_fd=dst_fd)
        os.chown(dst_name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
        return
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise Unsafe("cannot move %s: not a file, directory or symlink" % label)
    sfd = _open_at(src_fd, src_name, st, label)
    try:
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(dst_name, 0o700, dir_fd=dst_fd)
            dfd = os.open(dst_name, _DIR_FLAGS, dir_fd=dst_fd)
            try:
                for name in sorted(os.listdir(sfd)):
                    _copy_at(sfd, name, dfd, name, label + "/" + name)
                os.fsync(dfd)
                _set_meta(dfd, st)
            finally:
                os.close(dfd)
        else:
            dfd = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o600,
                          dir_fd=dst_fd)
            try:
                for chunk in iter(lambda: os.read(sfd, 1 << 20), b""):
                    while chunk:
                        chunk = chunk[os.write(dfd, chunk):]
                os.fsync(dfd)
                _set_meta(dfd, st)
            finally:
                os.close(dfd)
    finally:
        os.close(sfd)


def remove_at(dir_fd, name, label):
    """Remove `name` (a tree: deepest first) from `dir_fd`; only ever called on what is verified elsewhere."""
    st = os.lstat(name, dir_fd=dir_fd)
    if stat.S_ISDIR(st.st_mode):
        fd = _open_at(dir_fd, name, st, label)
        try:
            for child in sorted(os.listdir(fd)):
                remove_at(fd, child, label + "/" + child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def move_at(src_fd, src_name, dst_fd, dst_name, recorded, label):
    """Move `src_name` to `dst_name`: rename, or copy + verify against `recorded` + remove the source.

    Returns "rename" or "copy". The source must still be what `recorded` says (by lstat) and `dst_name` must
    not exist. The copy lands in `dst_name + '.partial'` and is renamed to `dst_name` only when it matches the
    record, so a `dst_name` that exists is always complete.
    """
    unchanged_at(recorded, src_fd, src_name, label)
    if lexists_at(dst_fd, dst_name):
        raise OSError(errno.EEXIST, "something is in the way", dst_name)
    try:
        os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        os.fsync(dst_fd)
        os.fsync(src_fd)
        return "rename"
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = dst_name + ".partial"
    if lexists_at(dst_fd, partial):
        remove_at(dst_fd, partial, partial)  # our own unfinished copy; the source is still whole
    _copy_at(src_fd, src_name, dst_fd, partial, label)
    if not same_content_at(recorded, dst_fd, partial, label + " (copy)"):
        raise OSError(errno.EIO, "the copy of %s does not match its manifest record" % label)
    os.rename(partial, dst_name, src_dir_fd=dst_fd, dst_dir_fd=dst_fd)
    os.fsync(dst_fd)
    remove_at(src_fd, src_name, label)
    os.fsync(src_fd)
    return "copy"
