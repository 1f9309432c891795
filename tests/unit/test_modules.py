"""The custom modules of the remediator.gpu collection (plugins/modules), run as Ansible runs them (a JSON args
file, a fresh interpreter).

Paths the allowlist names (/usr/local/cuda-*, /etc/profile.d) are bind mounts of temp dirs inside a private
mount namespace per call, so the tests move real allowlisted paths without touching this machine's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from remediator import safety

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "remediator" / "ansible_collections"
LIBRARY = COLLECTIONS / "remediator" / "gpu" / "plugins" / "modules"
UTILS = COLLECTIONS / "remediator" / "gpu" / "plugins" / "module_utils"
RUN = "20261126T101010Z-abc123"


def _common():
    spec = importlib.util.spec_from_file_location("remediator_common", UTILS / "remediator_common.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


common = _common()


# --- the allowlist on the host is the allowlist of the control node ------------------------------------------


def test_allowlist_patterns_equal_safety() -> None:
    assert [(n, p.pattern) for n, p in common.ALLOWLIST] == [(n, p.pattern) for n, p in safety.ALLOWLIST]


@pytest.mark.parametrize("path", [
    "/usr/local/cuda-11.2", "/usr/local/cuda", "/usr/local/cuda-12", "/opt/cuda-10.1.243",
    "/usr/local/cuda-11.8/targets/x86_64-linux/lib/libcudnn.so.8.2.4", "/usr/local/cuda/include/cudnn_version.h",
    "/etc/ld.so.conf.d/cuda.conf", "/etc/profile.d/cuda.sh", "/opt/remediator/venvs/pytorch-2.1.0",
    "/etc/passwd", "/usr/local", "/usr/local/cuda-11.2/../../etc", "relative", "", "/usr/local/cuda-11.2/",
    "/usr//local/cuda-11.2", "/etc/profile.d/a\nb.sh", "/opt/remediator/venvs", "/usr/lib/x86_64-linux-gnu",
])
def test_check_path_agrees_with_safety(path: str) -> None:
    roots = ("/opt/remediator/venvs",)
    verdict = safety.check_path(path, roots)
    assert common.check_path(path, roots) == (verdict.allowed, verdict.reason)


@pytest.mark.parametrize("root", [
    "/opt/remediator/venvs", "/srv/envs", "/usr/local/remediator", "/usr/bin", "/etc/", "/etc", "/", "/opt",
    "/usr/local/bin", "/usr/local/cuda-11.2", "/tmp/venvs", "/opt/../usr/bin", "/opt/ven vs", "//opt/venvs",
    "/home/alice", "/var/lib/dpkg/info",
])
def test_managed_roots_agree_with_safety(root: str) -> None:
    """A hand-edited plan aimed the quarantine at /usr/bin: both sides refuse such a root, for the same reason."""
    assert (common.venv_root_problem(root) is None) == (safety.check_venv_root(root) is None)
    child = root.rstrip("/") + "/sudo"
    verdict = safety.check_path(child, (root,))
    assert common.check_path(child, (root,)) == (verdict.allowed, verdict.reason)


# --- running a module ----------------------------------------------------------------------------------------

needs_ns = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                              reason="needs root and unshare for a private mount namespace")


class Host:
    """Temp dirs that a module call sees at /usr/local and /etc/profile.d (bind mounts, private namespace)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.usr_local = tmp / "usr_local"
        self.profile_d = tmp / "profile_d"
        self.qroot = tmp / "quarantine"
        for d in (self.usr_local, self.profile_d):
            d.mkdir()
            d.chmod(0o755)  # whatever the umask: the modules refuse directories others may write to
        shim = tmp / "shim"
        shim.mkdir()
        # Ansible ships the collection's module_utils inside its payload; here the collection is on the path.
        (shim / "ansible_collections").symlink_to(COLLECTIONS)
        (shim / "sitecustomize.py").write_text("")
        self.shim = shim
        self.mounts: list[str] = []

    def attack(self, code: str) -> None:
        """Run `code` in the module's interpreter at startup: an attacker's move, hooked in where it hurts most."""
        with (self.shim / "sitecustomize.py").open("a") as f:
            f.write(code)

    def real(self, path: str) -> Path:
        """Where a host path lives on this machine."""
        for prefix, local in (("/usr/local", self.usr_local), ("/etc/profile.d", self.profile_d)):
            if path == prefix or path.startswith(prefix + "/"):
                return local / path[len(prefix):].lstrip("/")
        raise ValueError(path)

    def run(self, module: str, args: dict, *, check: bool = False, diff: bool = False, timeout: float = 120,
            killed: bool = False) -> dict:
        full = {**args, "_ansible_check_mode": check, "_ansible_diff": diff}
        argfile = self.tmp / "args.json"
        argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": full}))
        script = "set -e\n" + "".join(f"{m}\n" for m in self.mounts) + (
            f"mount --bind {self.usr_local} /usr/local\n"
            f"mount --bind {self.profile_d} /etc/profile.d\n"
            f'exec "$0" {LIBRARY / (module + ".py")} {argfile}\n')
        env = {**os.environ, "PYTHONPATH": str(self.shim)}
        try:
            proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                   sys.executable], capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{module} hung for {timeout} s (killed)") from None
        if killed:
            assert proc.returncode != 0 and not proc.stdout.strip(), (proc.returncode, proc.stdout, proc.stderr)
            return {}
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"module printed no JSON: {proc.stdout!r} {proc.stderr!r}") from None


def digest(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, mode, owner, size, sha256 or link target (what a restore must keep)."""
    out: dict[str, tuple] = {}
    paths = [root]
    if root.is_dir() and not root.is_symlink():
        for top, dirs, files in os.walk(root):  # does not follow symlinks
            paths += [Path(top) / n for n in sorted(dirs + files)]
    for p in paths:
        st = p.lstat()
        rel = str(p.relative_to(root)) if p != root else "."
        if p.is_symlink():
            out[rel] = ("l", os.readlink(p), st.st_uid)
        elif p.is_dir():
            out[rel] = ("d", st.st_mode, st.st_uid, st.st_gid)
        else:
            out[rel] = ("f", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                        hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def make_toolkit(host: Host, version: str = "10.1") -> Path:
    tk = host.usr_local / f"cuda-{version}"
    (tk / "lib64").mkdir(parents=True)
    (tk / "bin").mkdir()
    for d in (tk, tk / "lib64", tk / "bin"):
        d.chmod(0o755)
    (tk / "lib64" / "libcudart.so.10.1.243").write_bytes(os.urandom(70000))
    (tk / "lib64" / "libcudart.so.10.1").symlink_to("libcudart.so.10.1.243")
    (tk / "bin" / "nvcc").write_text("#!/bin/sh\necho nvcc\n")
    (tk / "bin" / "nvcc").chmod(0o755)
    (tk / "lib64" / "private").write_text("secret")
    (tk / "lib64" / "private").chmod(0o600)
    os.chown(tk / "lib64" / "private", 1234, 2345)
    return tk


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


# --- quarantine and restore ----------------------------------------------------------------------------------


@needs_ns
def test_quarantine_then_restore_is_byte_for_byte(host: Host) -> None:
    tk = make_toolkit(host)
    (host.profile_d / "cuda.sh").write_text("export LD_LIBRARY_PATH=/usr/local/cuda/lib64\n")
    (host.usr_local / "cuda").symlink_to("cuda-10.1")
    before = {p: digest(host.real(p)) for p in ("/usr/local/cuda-10.1", "/etc/profile.d/cuda.sh", "/usr/local/cuda")}
    paths = [{"path": "/usr/local/cuda-10.1", "what": "CUDA toolkit"},
             {"path": "/etc/profile.d/cuda.sh", "what": "loader config"},
             {"path": "/usr/local/cuda", "what": "CUDA link"}]
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "paths": paths, "host": "h1"})
    assert out["changed"] is True, out
    assert out["moved"] == [p["path"] for p in paths]
    assert not tk.exists() and not (host.profile_d / "cuda.sh").exists()
    manifest = json.loads((host.qroot / RUN / "manifest.json").read_text())
    assert [i["state"] for i in manifest["items"]] == ["moved"] * 3
    first = manifest["items"][0]
    assert first["type"] == "dir" and first["stored_as"] == "items/0001"
    by_path = {e["path"]: e for e in first["tree"]}
    assert by_path["lib64/libcudart.so.10.1"]["link_target"] == "libcudart.so.10.1.243"
    assert by_path["lib64/private"]["mode"] == "0600"
    assert manifest["items"][2]["type"] == "symlink" and manifest["items"][2]["link_target"] == "cuda-10.1"
    assert digest(host.qroot / RUN / "items" / "0001") == before["/usr/local/cuda-10.1"]

    again = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "paths": paths})
    assert again["changed"] is False and again["moved"] == []

    restored = host.run("remediator_restore", {"run_id": RUN, "root": str(host.qroot)})
    assert restored["changed"] is True and not restored["conflicts"], restored
    assert {p: digest(host.real(p)) for p in before} == before
    manifest = json.loads((host.qroot / RUN / "manifest.json").read_text())
    assert [i["state"] for i in manifest["items"]] == ["restored"] * 3
    assert host.run("remediator_restore", {"run_id": RUN, "root": str(host.qroot)})["changed"] is False


@needs_ns
def test_same_filesystem_moves_by_rename(host: Host) -> None:
    make_toolkit(host)
    root = "/usr/local/remediator-q"  # inside the same mount as the toolkit: a rename
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": root, "paths": [{"path": "/usr/local/cuda-10.1"}]})
    assert out["changed"] is True, out
    manifest = json.loads((host.real(root) / RUN / "manifest.json").read_text())
    assert manifest["items"][0]["moved_by"] == "rename"


@needs_ns
def test_check_mode_moves_nothing_and_shows_a_diff(host: Host) -> None:
    tk = make_toolkit(host)
    before = digest(tk)
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]}, check=True, diff=True)
    assert out["changed"] is True and "/usr/local/cuda-10.1" in out["diff"]["before"]
    assert digest(tk) == before and not host.qroot.exists()


@needs_ns
@pytest.mark.parametrize(("setup", "path"), [
    (lambda h: None, "/etc/passwd"),
    (lambda h: (h.usr_local / "cuda-11.8").symlink_to("/etc"), "/usr/local/cuda-11.8"),
    (lambda h: ((h.usr_local / "cuda-11.8").mkdir(), (h.usr_local / "cuda-11.8" / "lib64").symlink_to("/etc")),
     "/usr/local/cuda-11.8/lib64/libcudnn.so.8"),
    (lambda h: None, "/usr/local/cuda-11.8/../../../etc"),
    (lambda h: (h.profile_d / "evil.sh").symlink_to("/etc/shadow"), "/etc/profile.d/evil.sh"),
])
def test_hostile_paths_are_refused_on_the_host(host: Host, setup, path: str) -> None:
    make_toolkit(host)
    setup(host)
    before = (digest(host.usr_local), digest(host.profile_d))
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1"}, {"path": path}]})
    assert out.get("failed") and "refused" in out["msg"], out
    # Nothing moved, not even the allowed toolkit, and no manifest was written.
    assert (digest(host.usr_local), digest(host.profile_d)) == before
    assert not host.qroot.exists()


@needs_ns
def test_too_little_space_aborts_before_anything_moves(host: Host) -> None:
    tk = make_toolkit(host)
    host.qroot.mkdir()
    host.mounts.append(f"mount -t tmpfs -o size=64k tmpfs {host.qroot}")  # far smaller than the toolkit
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "min_free_bytes": 0,
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]})
    assert out.get("failed") and "not enough free space" in out["msg"], out
    assert tk.exists() and (tk / "lib64" / "libcudart.so.10.1.243").stat().st_size == 70000


@needs_ns
def test_min_free_bytes_is_honoured(host: Host) -> None:
    make_toolkit(host)
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "min_free_bytes": 1 << 62,
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]})
    assert out.get("failed") and "nothing was moved" in out["msg"]
    assert (host.usr_local / "cuda-10.1").is_dir() and not (host.qroot / RUN / "manifest.json").exists()


@needs_ns
def test_resume_marks_a_finished_move_and_redoes_an_unfinished_copy(host: Host) -> None:
    make_toolkit(host, "10.1")
    make_toolkit(host, "10.2")
    paths = [{"path": "/usr/local/cuda-10.1"}, {"path": "/usr/local/cuda-10.2"}]
    # What a run killed mid-way leaves: the manifest with both pending, the first moved, the second half-copied.
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "paths": paths}, check=True)
    assert out["changed"]
    run_dir = host.qroot / RUN
    (run_dir / "items").mkdir(parents=True)
    items = []
    for n, p in enumerate(paths, 1):
        items.append({"id": f"{n:04d}", "original_path": p["path"], "what": "", "type": "dir", "mode": "0755",
                      "uid": 0, "gid": 0, "size": 0, "link_target": None, "sha256": None, "tree": [],
                      "stored_as": f"items/{n:04d}", "state": "pending"})
    (run_dir / "manifest.json").write_text(json.dumps({"run_id": RUN, "host": "", "created_at": "", "items": items,
                                                       "packages": [], "changes": []}))
    before_10_2 = digest(host.usr_local / "cuda-10.2")
    shutil.move(str(host.usr_local / "cuda-10.1"), str(run_dir / "items" / "0001"))
    shutil.copytree(host.usr_local / "cuda-10.2" / "bin", run_dir / "items" / "0002.partial")

    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "paths": paths})
    assert out["changed"] and out["moved"] == ["/usr/local/cuda-10.1", "/usr/local/cuda-10.2"], out
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [i["state"] for i in manifest["items"]] == ["moved", "moved"]
    assert not (run_dir / "items" / "0002.partial").exists()
    assert digest(run_dir / "items" / "0002") == before_10_2
    again = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot), "paths": paths})
    assert again["changed"] is False


@needs_ns
def test_restore_refuses_to_overwrite(host: Host) -> None:
    (host.profile_d / "cuda.sh").write_text("old\n")
    host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                       "paths": [{"path": "/etc/profile.d/cuda.sh"}]})
    (host.profile_d / "cuda.sh").write_text("someone else's\n")
    out = host.run("remediator_restore", {"run_id": RUN, "root": str(host.qroot)})
    assert out.get("failed") and out["conflicts"][0]["path"] == "/etc/profile.d/cuda.sh"
    assert (host.profile_d / "cuda.sh").read_text() == "someone else's\n"
    assert (host.qroot / RUN / "items" / "0001").read_text() == "old\n"


# --- a user who can write somewhere on the way must not turn the modules against the host --------------------
#
# The attacks are hooked into the module's interpreter (Host.attack) so that they land at the worst moment
# deterministically: right after the module looked at an entry, or after the manifest and before the move.


def after_lstat(name: str, action: str) -> str:
    """Code that runs `action` once, right after the module's first lstat of an entry called `name`."""
    return (
        "import os as _os\n"
        "_real_lstat, _fired = _os.lstat, []\n"
        "def _lstat(path, *args, **kwargs):\n"
        "    st = _real_lstat(path, *args, **kwargs)\n"
        f"    if not _fired and _os.path.basename(_os.fsdecode(path)) == {name!r}:\n"
        "        _fired.append(1)\n"
        f"        {action}\n"
        "    return st\n"
        "_os.lstat = _lstat\n")


def after_first_manifest(action: str) -> str:
    """Code that runs `action` once, after the manifest is first written (records made, nothing moved yet)."""
    return (
        "import os as _os\n"
        "import ansible.module_utils.remediator_common as _common\n"
        "_real_write, _written = _common.write_manifest, []\n"
        "def _write(*args, **kwargs):\n"
        "    _real_write(*args, **kwargs)\n"
        "    if not _written:\n"
        "        _written.append(1)\n"
        f"        {action}\n"
        "_common.write_manifest = _write\n")


def writable_toolkit(host: Host) -> Path:
    """A toolkit whose lib64 a user may write to (the module must read it without following or blocking)."""
    tk = make_toolkit(host)
    (tk / "lib64" / "libfoo.so").write_bytes(b"foo" * 1000)
    (tk / "lib64").chmod(0o777)
    return tk


@needs_ns
def test_a_fifo_swapped_in_for_a_file_is_refused_not_waited_on(host: Host) -> None:
    tk = writable_toolkit(host)
    victim = "/usr/local/cuda-10.1/lib64/libfoo.so"
    host.attack(after_lstat("libfoo.so", f"_os.unlink({victim!r}); _os.mkfifo({victim!r})"))
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]}, timeout=30)
    assert out.get("failed") and "libfoo.so" in out["msg"] and "not a regular file" in out["msg"], out
    assert stat.S_ISFIFO((tk / "lib64" / "libfoo.so").lstat().st_mode)
    assert (tk / "bin" / "nvcc").is_file() and not (host.qroot / RUN / "manifest.json").exists()


@needs_ns
def test_a_symlink_swapped_in_for_a_file_is_not_followed(host: Host) -> None:
    tk = writable_toolkit(host)
    secret = host.tmp / "secret"
    secret.write_bytes(b"not for the manifest\n")
    victim = "/usr/local/cuda-10.1/lib64/libfoo.so"
    host.attack(after_lstat("libfoo.so", f"_os.unlink({victim!r}); _os.symlink({str(secret)!r}, {victim!r})"))
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]}, timeout=30)
    manifest = host.qroot / RUN / "manifest.json"
    # Nothing was read through the link: the secret's hash is nowhere, and nothing moved.
    assert not manifest.exists() or hashlib.sha256(secret.read_bytes()).hexdigest() not in manifest.read_text()
    assert out.get("failed") and "libfoo.so" in out["msg"], out
    assert os.readlink(tk / "lib64" / "libfoo.so") == str(secret) and (tk / "bin" / "nvcc").is_file()


@needs_ns
def test_a_symlink_swapped_in_for_a_parent_directory_is_not_followed(host: Host) -> None:
    tk = make_toolkit(host)
    (tk / "lib64" / "libcudnn.so.8").write_bytes(b"the recorded cudnn\n")
    elsewhere = host.tmp / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "libcudnn.so.8").write_bytes(b"someone else's file\n")
    lib64 = "/usr/local/cuda-10.1/lib64"
    # After the records are written and before the move, lib64 becomes a link to a directory outside.
    host.attack(after_first_manifest(f"_os.rename({lib64!r}, {lib64 + '.old'!r}); "
                                     f"_os.symlink({str(elsewhere)!r}, {lib64!r})"))
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": lib64 + "/libcudnn.so.8"}]})
    assert (elsewhere / "libcudnn.so.8").read_bytes() == b"someone else's file\n", out
    stored = host.qroot / RUN / "items" / "0001"
    if out.get("failed"):
        assert (tk.parent / "cuda-10.1" / "lib64.old" / "libcudnn.so.8").exists() and not stored.exists()
    else:  # what moved is the file that was recorded, through the directory that was opened
        assert stored.read_bytes() == b"the recorded cudnn\n", out


@needs_ns
@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777])
def test_a_parent_others_can_write_to_is_refused(host: Host, mode: int) -> None:
    tk = make_toolkit(host)
    (tk / "lib64" / "libcudnn.so.8").write_bytes(b"cudnn\n")
    (tk / "lib64").chmod(mode)
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1/lib64/libcudnn.so.8"}]})
    assert out.get("failed") and "refused" in out["msg"], out
    assert "/usr/local/cuda-10.1/lib64" in out["msg"] and "writable by group or others" in out["msg"]
    assert (tk / "lib64" / "libcudnn.so.8").read_bytes() == b"cudnn\n" and not host.qroot.exists()


@needs_ns
def test_a_parent_owned_by_another_user_is_refused(host: Host) -> None:
    tk = make_toolkit(host)
    (tk / "lib64" / "libcudnn.so.8").write_bytes(b"cudnn\n")
    os.chown(tk / "lib64", 1000, 1000)
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1/lib64/libcudnn.so.8"}]})
    assert out.get("failed") and "/usr/local/cuda-10.1/lib64" in out["msg"] and "uid 1000" in out["msg"], out
    assert (tk / "lib64" / "libcudnn.so.8").read_bytes() == b"cudnn\n" and not host.qroot.exists()


@needs_ns
def test_restore_refuses_a_parent_others_can_write_to(host: Host) -> None:
    (host.profile_d / "cuda.sh").write_text("old\n")
    assert host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                              "paths": [{"path": "/etc/profile.d/cuda.sh"}]})["changed"]
    host.profile_d.chmod(0o777)
    out = host.run("remediator_restore", {"run_id": RUN, "root": str(host.qroot)})
    assert out.get("failed") and "writable by group or others" in out["conflicts"][0]["why"], out
    assert not (host.profile_d / "cuda.sh").exists()
    assert (host.qroot / RUN / "items" / "0001").read_text() == "old\n"


def killed_while_removing_the_original(host: Host) -> tuple[Path, dict]:
    """A cross-filesystem quarantine of a toolkit killed after its first unlink of the original."""
    tk = make_toolkit(host)
    before = digest(tk)
    host.attack("import os as _os\n"
                "_real_unlink = _os.unlink\n"
                "def _unlink(*args, **kwargs):\n"
                "    _real_unlink(*args, **kwargs)\n"
                "    _os._exit(137)\n"
                "_os.unlink = _unlink\n")
    host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                       "paths": [{"path": "/usr/local/cuda-10.1"}]}, killed=True)
    (host.shim / "sitecustomize.py").write_text("")  # the attack is over
    manifest = json.loads((host.qroot / RUN / "manifest.json").read_text())
    assert manifest["items"][0]["state"] == "pending"
    assert digest(host.qroot / RUN / "items" / "0001") == before  # complete: renamed into place only then
    assert tk.is_dir() and digest(tk) != before  # what is left of the original
    return tk, before


@needs_ns
def test_resume_removes_a_leftover_original_that_matches_the_record(host: Host) -> None:
    tk, before = killed_while_removing_the_original(host)
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]})
    assert out["changed"] and out["moved"] == ["/usr/local/cuda-10.1"], out
    assert not tk.exists() and digest(host.qroot / RUN / "items" / "0001") == before
    assert json.loads((host.qroot / RUN / "manifest.json").read_text())["items"][0]["state"] == "moved"


@needs_ns
@pytest.mark.parametrize("change", ["a new file", "a changed file", "a changed mode"])
def test_resume_keeps_a_leftover_original_that_differs_from_the_record(host: Host, change: str) -> None:
    tk, before = killed_while_removing_the_original(host)
    left = sorted(p for p in tk.rglob("*") if p.is_file() and not p.is_symlink())
    if change == "a new file":
        (tk / "bin" / "planted").write_text("not in the record\n")
    elif change == "a changed file":
        left[0].write_bytes(b"x" * left[0].stat().st_size)
    else:
        left[0].chmod(0o4755)
    leftover = digest(tk)
    out = host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                             "paths": [{"path": "/usr/local/cuda-10.1"}]})
    assert out.get("failed") and "differs from the manifest record" in out["msg"], out
    assert digest(tk) == leftover and digest(host.qroot / RUN / "items" / "0001") == before
    assert json.loads((host.qroot / RUN / "manifest.json").read_text())["items"][0]["state"] == "pending"


def test_bad_run_id_is_refused(host: Host) -> None:
    with pytest.raises(ValueError):
        common.run_dir("/var/lib/remediator/quarantine", "../../etc")


# --- lock, manifest, CUDA link, wheels -----------------------------------------------------------------------


@needs_ns
def test_lock_reentrant_refuses_live_and_takes_over_dead(host: Host) -> None:
    lock = str(host.tmp / "lock")
    other = "20261126T000000Z-000000"
    take = {"path": lock, "run_id": other, "control_host": "ctl", "control_pid": 11}
    assert host.run("remediator_lock", take)["acquired"] is True
    assert host.run("remediator_lock", take)["acquired"] is True  # the same run again
    mine = {"path": lock, "run_id": RUN, "control_host": "ctl", "control_pid": 22}
    out = host.run("remediator_lock", mine)
    assert out.get("failed") and other in out["msg"]
    assert host.run("remediator_lock", {**mine, "holder_alive": True}).get("failed")
    out = host.run("remediator_lock", {**mine, "holder_alive": False})
    assert out["acquired"] and out["took_over"]["run_id"] == other
    assert json.loads((Path(lock) / "owner.json").read_text())["run_id"] == RUN
    assert host.run("remediator_lock", {"path": lock, "run_id": other, "state": "absent"})["acquired"] is False
    assert Path(lock).is_dir()  # not ours to release
    host.run("remediator_lock", {"path": lock, "run_id": RUN, "state": "absent"})
    assert not Path(lock).exists()


@needs_ns
def test_lock_of_unknown_liveness_is_stale_after_its_age(host: Host) -> None:
    lock = str(host.tmp / "lock")
    host.run("remediator_lock", {"path": lock, "run_id": "20261126T000000Z-000000"})
    assert host.run("remediator_lock", {"path": lock, "run_id": RUN}).get("failed")
    assert host.run("remediator_lock", {"path": lock, "run_id": RUN, "stale_after": -1})["acquired"]


@needs_ns
def test_manifest_records_are_idempotent_and_keep_versions(host: Host) -> None:
    args = {"run_id": RUN, "root": str(host.qroot)}
    pkg = {"manager": "apt", "name": "cuda-toolkit-10-1", "version": "10.1.243-1", "action": "remove"}
    assert host.run("remediator_manifest", {**args, "package": {**pkg, "state": "pending"}})["changed"]
    assert not host.run("remediator_manifest", {**args, "package": {**pkg, "state": "pending"}})["changed"]
    assert host.run("remediator_manifest", {**args, "package": {**{k: v for k, v in pkg.items() if k != "version"},
                                                                 "state": "removed"}})["changed"]
    doc = json.loads((host.qroot / RUN / "manifest.json").read_text())
    assert doc["packages"] == [{**pkg, "state": "removed", "recorded_at": doc["packages"][0]["recorded_at"],
                                "updated_at": doc["packages"][0]["updated_at"]}]


@needs_ns
def test_cuda_link_records_before_and_rolls_back(host: Host) -> None:
    make_toolkit(host, "10.1")
    make_toolkit(host, "11.2")
    (host.usr_local / "cuda").symlink_to("/usr/local/cuda-10.1")
    args = {"target": "/usr/local/cuda-11.2", "run_id": RUN, "root": str(host.qroot)}
    out = host.run("remediator_cuda_link", args, check=True, diff=True)
    assert out["changed"] and os.readlink(host.usr_local / "cuda") == "/usr/local/cuda-10.1"
    out = host.run("remediator_cuda_link", args)
    assert out["changed"] and out["before"] == "/usr/local/cuda-10.1"
    assert os.readlink(host.usr_local / "cuda") == "/usr/local/cuda-11.2"
    assert not host.run("remediator_cuda_link", args)["changed"]
    change = json.loads((host.qroot / RUN / "manifest.json").read_text())["changes"][0]
    assert (change["kind"], change["before"], change["after"]) == ("cuda_link", "/usr/local/cuda-10.1",
                                                                   "/usr/local/cuda-11.2")
    host.run("remediator_cuda_link", {"target": change["before"]})
    assert os.readlink(host.usr_local / "cuda") == "/usr/local/cuda-10.1"
    refused = host.run("remediator_cuda_link", {"target": "/etc", "link": "/usr/local/cuda"})
    assert refused.get("failed") and "refused" in refused["msg"]


@needs_ns
def test_wheels_check(host: Host) -> None:
    site = host.tmp / "venv" / "lib" / "python3.11" / "site-packages"
    for name, version in (("torch", "2.14.1+cu130"), ("nvidia_cudnn_cu13", "9.24.0.43"), ("cuda-toolkit", "13.0.3.0")):
        d = site / f"{name}-{version}.dist-info"
        d.mkdir(parents=True)
        (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody\n")
    venv = str(host.tmp / "venv")
    ok = host.run("remediator_wheels", {"venv": venv, "expected": ["torch==2.14.1", "nvidia-cudnn-cu13==9.24.0.43",
                                                                    "cuda-toolkit==13.0.3"]})
    assert ok.get("failed") is None and ok["installed"]["nvidia-cudnn-cu13"] == "9.24.0.43"
    bad = host.run("remediator_wheels", {"venv": venv, "expected": ["torch==2.13.0", "nvidia-nccl-cu13==2.30.7"]})
    assert bad["failed"] and len(bad["missing"]) == 2


@needs_ns
def test_rollback_removes_only_empty_directories_the_run_made(host: Host) -> None:
    (host.profile_d / "cuda.sh").write_text("x\n")
    host.run("remediator_quarantine", {"run_id": RUN, "root": str(host.qroot),
                                       "paths": [{"path": "/etc/profile.d/cuda.sh"}]})
    made = host.tmp / "made"
    (made / "venvs").mkdir(parents=True)
    kept = host.tmp / "kept"
    kept.mkdir()
    (kept / "file").write_text("keep")
    args = {"run_id": RUN, "root": str(host.qroot), "restore_items": False,
            "remove_empty_dirs": [str(made), str(made / "venvs"), str(kept)]}
    out = host.run("remediator_restore", args)
    assert out["changed"] and out["removed_dirs"] == [str(made / "venvs"), str(made)]
    assert not made.exists() and (kept / "file").read_text() == "keep"
    assert not (host.profile_d / "cuda.sh").exists()  # items were not restored
    assert host.run("remediator_restore", args)["changed"] is False
