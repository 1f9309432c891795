"""The probe script that runs on a host: reads its GPU stack and prints one JSON document.

It is sent over stdin to `python3 -` in a single round trip, so it must run on the host's own
python3 (>= 3.6) with the standard library only: no f-string `=`, no walrus, no dataclasses, no
`subprocess.run(capture_output=...)`. It only reads: files, directory listings, symlinks, and a few
read-only commands (nvidia-smi, nvcc --version, dpkg-query, rpm, ldconfig -p), each under a timeout.
It collects evidence, not conclusions: versions are interpreted by `remediator.probe.parse` on the
control node, where the code is typed and tested. The control node fills in the options before
sending it; see `remediator.probe.build_payload`. NVML is asked through ctypes (`nvml_query`), a
dozen calls, so nothing is compiled on the host. The same file is the collection's module_utils:
`Probe(DEFAULT_OPTIONS).collect()` is what the gpu_facts module runs.

It runs on every host of a fleet, every probe: what it costs is paid per host. Modules only some
probes need are imported where they are used (ctypes, hashlib), and a command whose answer is
already known is not run (nvidia-smi when NVML answered).

The host is not trusted, and the script often runs as root. It executes a program (or loads NVML)
only when the file, every directory above it and every symlink on the way are owned by root or by
the user running the script, and none of those files or directories is writable by group or
others (a root-owned sticky directory like /tmp excepted): anything else another user could have
planted. A refusal is a note, and the command's record says why. Files are opened non-blocking
and read only when they are regular files (a FIFO where a file is expected never hangs the
probe), at most a fixed number of bytes; command output is bounded the same way.

`--root DIR` reads DIR/usr/local/... instead of /usr/local/... (and runs commands found under DIR),
so tests can lay out real installer trees without touching the machine; paths in the document are
always host paths, without DIR.
"""

# ruff: noqa: RUF005
# (this file must run on python3.6: %-formatting, no f-string `=`, no newer syntax)

import errno
import json
import os
import re
import stat
import struct
import subprocess
import sys
import threading
import time

SCHEMA_VERSION = 1
SCRIPT_NAME = "remediator-probe"

DEFAULT_OPTIONS = {
    "root": "/",
    "venv_roots": ["/opt", "/home/*", "/root"],
    "max_depth": 4,  # how deep below each venv root to look for envs
    "max_dirs": 20000,  # directories visited while looking for envs, over all roots
    "max_entries": 5000,  # entries read from any one directory
    "nvml": True,
    "command_timeout": 20.0,  # per command; a wedged driver hangs nvidia-smi
    "nvml_timeout": 20.0,
    "deadline_s": 90.0,  # after this the env walk stops (with a note); the rest is quick
    "systemd_units": [],  # units whose Environment=/EnvironmentFile= LD_LIBRARY_PATH to report
    # Run under sudo (become): the login shell read is that of the user who ran sudo (SUDO_UID).
    "session_user_from_sudo": False,
    # The ssh session's LD_LIBRARY_PATH when sudo cleared it from ours (--session-ld-library-path).
    "session_ld_library_path": None,
}

TEXT_CAP = 64 * 1024
HEADER_CAP = 1024 * 1024
RECORD_CAP = 16 * 1024 * 1024  # tensorflow's RECORD lists ~20k files
OUTPUT_CAP = 1024 * 1024
LOG_LINES_CAP = 200
NVCC_SCAN_CAP = 256 * 1024 * 1024  # nvcc is 20-60 MiB; read in chunks, never all at once
NVCC_VERSION_RE = re.compile(
    rb"Cuda compilation tools, release [0-9]{1,3}\.[0-9]{1,3}, V[0-9]{1,3}(?:\.[0-9]{1,6}){1,3}"
)
# Read from the probe's environment by the dynamic loader of every command it runs: never passed on.
LOADER_ENV = ("LD_PRELOAD", "LD_AUDIT", "LD_DEBUG_OUTPUT", "LD_PROFILE", "LD_PROFILE_OUTPUT", "LD_ORIGIN_PATH")

TRIPLETS = ("x86_64-linux-gnu", "aarch64-linux-gnu", "powerpc64le-linux-gnu", "sbsa-linux")
SYSTEM_LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib/powerpc64le-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
    "/usr/local/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib/wsl/lib",
)
SYSTEM_INCLUDE_DIRS = ("/usr/include",) + tuple("/usr/include/" + t for t in TRIPLETS) + ("/usr/local/include",)
EXEC_DIRS = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/nvidia/bin",
    "/usr/lib/wsl/lib",
)

LIB_RE = re.compile(r"^(libcuda|libnvidia-ml|libcudnn\w*|libcudart)\.so(\.[0-9.]+)?$")
HEADER_RE = re.compile(r"^cudnn[A-Za-z0-9_]*\.h$")
VERSION_HEADER_RE = re.compile(r"^cudnn(_version)?(_v\d+)?\.h$")
DEFINE_RE = re.compile(rb"^[ \t]*#[ \t]*define[ \t]+CUDNN_(MAJOR|MINOR|PATCHLEVEL|VERSION)\b[^\n]*", re.M)
LDCACHE_RE = re.compile(
    r"^\s*(libcuda|libnvidia-ml|libcudnn|libcudart|libcublas|libcufft|libcurand|libcusolver|libcusparse"
    r"|libnccl|libnvrtc|libnvJitLink|libnvjitlink|libnvinfer|libcupti)"
)
# The CUDA-family libraries listed in every directory the loader may search (facts.LibFile).
CUDA_LIB_RE = re.compile(
    r"^(?:libcuda\.so|libnvidia-ml\.so|(?:libcudart|libcublas|libcudnn|libcufft|libcurand|libcusolver|libcusparse"
    r"|libnvJitLink|libnvjitlink|libnvrtc|libnccl)[\w-]*\.so)(?:\.[0-9][0-9.]*)?$"
)
TORCH_OBJECTS = ("torch/lib/libtorch_cuda.so", "torch/lib/libtorch_global_deps.so", "torch/lib/libc10_cuda.so")
TF_OBJECTS = ("tensorflow/python/_pywrap_tensorflow_internal.so",)
TF_FRAMEWORK_RE = r"^libtensorflow_framework\.so(\.[0-9]+)*$"
DEFAULT_LIB_DIRS = {
    "x86_64": ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"),
    "aarch64": ("/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"),
}
MAX_LIBDIRS = 400
MAX_LIBS_PER_DIR = 200
MAX_KERNELS = 200
ASSIGN_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
LD_ASSIGN_RE = re.compile(r"(?:^|[\s;&|({])(?:export\s+)?LD_LIBRARY_PATH=")
UNIT_RE = re.compile(r"^[A-Za-z0-9_@.:-]{1,200}$")
UNKNOWN = "\x00"  # stands for what the probe cannot know (an unset variable, $(...)): its entry is dropped
PACKAGE_RE = re.compile(r"^(cuda|libcuda|libcudnn|cudnn|nvidia|libnvidia|kmod-nvidia|xorg-x11-drv-nvidia)", re.I)
CONDA_RE = re.compile(r"^(cuda|cudnn|cudatoolkit|libcudnn|pytorch|tensorflow|jaxlib|jax|python|nccl)", re.I)
LOG_LINE_RE = re.compile(r"(?i)(/cuda-\d|driver version|installing|uninstall)")
# The loaded module's version in /proc/driver/nvidia/version ("... x86_64 Kernel Module  470.223.02 ...",
# "... Open Kernel Module for x86_64  550.54.14 ...").
KERNEL_MODULE_RE = re.compile(r"Kernel Module(?: for \S+)?\s+([0-9]{2,4})\.[0-9]")
SKIP_DIRS = frozenset(
    [
        "node_modules",
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".cache",
        ".npm",
        ".cargo",
        ".rustup",
        ".vscode-server",
        ".Trash",
        "site-packages",
        "dist-packages",
        "proc",
        "sys",
        "dev",
    ]
)
FRAMEWORK_DISTS = frozenset(
    [
        "tensorflow",
        "tensorflow-gpu",
        "tensorflow-cpu",
        "tf-nightly",
        "tf-nightly-gpu",
        "tf-nightly-cpu",
        "torch",
        "jax",
        "jaxlib",
    ]
)
FRAMEWORK_FILES = (
    "tensorflow/python/platform/build_info.py",
    "tensorflow_core/python/platform/build_info.py",
    "torch/version.py",
)

# Filled in by the control node (remediator.probe.build_payload); None when run on its own.
PAYLOAD_OPTIONS = None


class Probe:
    def __init__(self, options):
        self.options = options
        self.root = os.path.abspath(options.get("root") or "/")
        self.started = time.monotonic()
        self.notes = []
        # Directories the probe was not allowed to list (EACCES/EPERM): what is there is unknown.
        self.unread = []
        # Whose files may be run: root's, and the probing user's own (running those gives that user
        # nothing new). A root probe runs root's files only.
        self.euid = os.geteuid()
        self.trusted_uids = (0, self.euid)
        self.refusals = {}
        self.env = self.command_env()
        self.toolkit_dirs = []
        self.env_dirs = []
        self.loader = {"ld_so_conf": [], "ld_library_path": []}
        self.ldcache_text = None
        self.nvml_hung = False
        self.elf_cache = {}
        self.links = {}  # host path -> its symlink target, or None when it is not a link (resolve)
        self.launch_envs = []

    # --- paths inside the (optional) root --------------------------------------------------------

    def R(self, path):
        """The local path of a host path, symlinks not resolved: under --root when one was given."""
        if self.root == "/":
            return path
        return os.path.join(self.root, path.lstrip("/"))

    def L(self, path):
        """The local path of a host path with its symlinks resolved inside the root (follows links)."""
        if self.root == "/":
            return path
        real = self.resolve(path)
        return self.R(real if real is not None else path)

    def N(self, path):
        """The local path of a host path whose last component is not followed (lstat, readlink)."""
        if self.root == "/":
            return path
        parent = self.resolve(os.path.dirname(path)) or os.path.dirname(path)
        return self.R(os.path.join(parent, os.path.basename(path)))

    def note(self, where, message):
        if len(self.notes) < 500:
            self.notes.append({"where": where, "message": message})

    def deadline_passed(self):
        return time.monotonic() - self.started > float(self.options["deadline_s"])

    def isdir(self, path):
        try:
            return stat.S_ISDIR(os.stat(self.L(path)).st_mode)
        except OSError:
            return False

    def isfile(self, path):
        try:
            return stat.S_ISREG(os.stat(self.L(path)).st_mode)
        except OSError:
            return False

    def islink(self, path):
        return os.path.islink(self.N(path))

    def exists(self, path):
        return os.path.exists(self.L(path))

    def lexists(self, path):
        return os.path.lexists(self.N(path))

    def readlink(self, path):
        try:
            return os.readlink(self.N(path))
        except OSError:
            return None

    def resolve(self, path):
        """Resolve every symlink of a host path without leaving the root; None on a loop."""
        parts = [p for p in path.split("/") if p]
        resolved = "/"
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                resolved = os.path.dirname(resolved)
                continue
            candidate = os.path.join(resolved, part)
            # `resolved` has no links left, so the raw local path is the right one here. Each
            # component's link (or none) is read once per probe: /usr, /usr/lib, ... are met on the
            # way to hundreds of paths. (Only for reading facts: walk_unsafe, which decides what may
            # run, reads the file system afresh every time.)
            if candidate in self.links:
                target = self.links[candidate]
            else:
                try:
                    target = os.readlink(self.R(candidate))
                except OSError:
                    target = None
                self.links[candidate] = target
            if target is None:
                resolved = candidate
                continue
            hops += 1
            if hops > 40:
                return None
            if target.startswith("/"):
                resolved = "/"
            parts = [p for p in target.split("/") if p] + parts
        return resolved

    def link_chain(self, path):
        """The successive targets of a symlink (/usr/local/cuda -> /etc/alternatives/cuda -> ...)."""
        chain = []
        current = path
        for _ in range(40):
            target = self.readlink(current)
            if target is None:
                return chain
            if not target.startswith("/"):
                target = os.path.normpath(os.path.join(os.path.dirname(current), target))
            chain.append(target)
            current = target
        self.note(path, "symlink chain longer than 40 hops (a loop?)")
        return chain

    def listdir(self, path):
        """Names in a directory (bounded); [] with a note when it cannot be read."""
        names = []
        try:
            with os.scandir(self.L(path)) as it:
                for entry in it:
                    names.append(entry.name)
                    if len(names) >= int(self.options["max_entries"]):
                        self.note(path, "more than %d entries; the rest were skipped" % len(names))
                        break
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            return []
        except OSError as exc:
            self.note(path, "cannot list: %s" % (exc.strerror or exc))
            if exc.errno in (errno.EACCES, errno.EPERM) and path not in self.unread and len(self.unread) < 500:
                self.unread.append(path)
            return []
        names.sort()
        return names

    def open_regular(self, path):
        """A host path opened for reading when it is a regular file; None otherwise (a note unless
        it is missing or a directory). Opened non-blocking: a FIFO planted where a file is expected
        would block a plain open() until some writer came."""
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.L(path), flags)
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            return None
        except OSError as exc:
            self.note(path, "cannot read: %s" % (exc.strerror or exc))
            return None
        try:
            mode = os.fstat(fd).st_mode
        except OSError as exc:
            os.close(fd)
            self.note(path, "cannot read: %s" % (exc.strerror or exc))
            return None
        if not stat.S_ISREG(mode):
            os.close(fd)
            if not stat.S_ISDIR(mode):
                self.note(path, "not read: not a regular file (%s)" % file_kind(mode))
            return None
        return os.fdopen(fd, "rb")

    def read_bytes(self, path, cap):
        handle = self.open_regular(path)
        if handle is None:
            return None
        try:
            with handle:
                return handle.read(cap)
        except OSError as exc:
            self.note(path, "cannot read: %s" % (exc.strerror or exc))
            return None

    def read_text(self, path, cap=TEXT_CAP):
        data = self.read_bytes(path, cap)
        if data is None:
            return None
        return data.decode("utf-8", "replace")

    def read_elf(self, path):
        """The dynamic section of the ELF object at a host path (links followed), read as data:
        {"soname", "needed", "rpath", "runpath"} or {"error": ...}; None when it is not a regular
        file. Cached by the real path: one library is reached under many names."""
        real = self.resolve(path) or path
        if real in self.elf_cache:
            return self.elf_cache[real]
        handle = self.open_regular(real)
        if handle is None:
            result = None
        else:
            try:
                with handle:
                    result = elf_dynamic(handle)
            except ElfError as exc:
                result = {"error": str(exc)}
            except (OSError, ValueError, struct.error, OverflowError) as exc:
                result = {"error": "cannot read: %s" % (getattr(exc, "strerror", None) or exc)}
        self.elf_cache[real] = result
        return result

    def glob_names(self, directory, pattern):
        regex = re.compile(pattern)
        return [n for n in self.listdir(directory) if regex.match(n)]

    # --- what may be executed ------------------------------------------------------------------

    def unsafe_component(self, st, path, last):
        """Why one file, directory or symlink met on the way to a program makes it unsafe, or None."""
        if st.st_uid not in self.trusted_uids:
            if self.euid == 0:
                return "%s is owned by uid %d, not root" % (path, st.st_uid)
            return "%s is owned by uid %d, neither root nor the probing user (uid %d)" % (path, st.st_uid, self.euid)
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            return None  # a link's own mode means nothing; its directory and its target are checked
        if last and not stat.S_ISREG(mode):
            return "%s is not a regular file (%s)" % (path, file_kind(mode))
        if not last and not stat.S_ISDIR(mode):
            return "%s is not a directory" % path
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            # In a sticky directory (/tmp) only an entry's owner may rename or remove it, and the
            # entries on the way are checked in their turn.
            if stat.S_ISDIR(mode) and mode & stat.S_ISVTX:
                return None
            who = "others" if mode & stat.S_IWOTH else "its group"
            return "%s is writable by %s (mode %04o)" % (path, who, stat.S_IMODE(mode))
        return None

    def walk_unsafe(self, path, to_local, want_dir=False):
        """Why a path (walked from /, every symlink followed by hand) is unsafe to run, or None.

        Each directory passed through, each symlink met and the final file are checked; a symlink's
        target is walked in its turn, so a root-owned link to a user's file is refused too."""
        try:
            st = os.lstat(to_local("/"))
        except OSError as exc:
            return "/: %s" % (exc.strerror or exc)
        reason = self.unsafe_component(st, "/", False)
        if reason is not None:
            return reason
        parts = [p for p in path.split("/") if p]
        resolved = "/"
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                resolved = os.path.dirname(resolved)  # already checked on the way down
                continue
            candidate = os.path.join(resolved, part)
            try:
                st = os.lstat(to_local(candidate))
            except OSError as exc:
                return "%s: %s" % (candidate, exc.strerror or exc)
            last = not parts and not want_dir
            reason = self.unsafe_component(st, candidate, last)
            if reason is not None:
                return reason
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > 40:
                    return "%s: too many symlinks (a loop?)" % path
                try:
                    target = os.readlink(to_local(candidate))
                except OSError as exc:
                    return "%s: %s" % (candidate, exc.strerror or exc)
                if target.startswith("/"):
                    resolved = "/"
                parts = [p for p in target.split("/") if p] + parts
                if not parts and not want_dir:
                    return "%s is a link to /" % candidate
                continue
            resolved = candidate
        return None

    def exec_refusal(self, path):
        """Why the program at a host path must not be executed (or loaded), or None when it may."""
        if path in self.refusals:
            return self.refusals[path]
        reason = None
        if self.root != "/":
            # The --root directory itself, on this machine: its own ancestors count too.
            if "<root>" not in self.refusals:
                self.refusals["<root>"] = self.walk_unsafe(self.root, lambda p: p, want_dir=True)
            reason = self.refusals["<root>"]
            if reason is not None:
                reason = "--root " + reason
        if reason is None:
            reason = self.walk_unsafe(path, self.R)
        self.refusals[path] = reason
        return reason

    def command_env(self):
        """The environment of every command: the probe's own, less what would make the loader run
        code a user could have planted (LD_PRELOAD, ...; LD_LIBRARY_PATH directories that are not
        safe by the same rule as programs)."""
        env = dict(os.environ)
        env["LC_ALL"] = "C"
        env["LANG"] = "C"
        for key in LOADER_ENV:
            if env.pop(key, None) is not None:
                self.note("environment", "%s is not passed to the commands the probe runs" % key)
        if "LD_LIBRARY_PATH" in env:
            kept = []
            for part in env.pop("LD_LIBRARY_PATH").split(":"):
                if not part.startswith("/") or not os.path.isdir(part):
                    continue  # the empty entry is the current directory; missing ones load nothing
                # The commands run on this machine, so its real directories are what count here.
                reason = self.walk_unsafe(part, lambda p: p, want_dir=True)
                if reason is None:
                    kept.append(part)
                else:
                    self.note(part, "left out of LD_LIBRARY_PATH for the commands the probe runs: %s" % reason)
            if kept:
                env["LD_LIBRARY_PATH"] = ":".join(kept)
        return env

    def refuse(self, path, reason):
        message = "not executed: %s" % reason
        if {"where": path, "message": message} not in self.notes:
            self.note(path, message)
        return message

    # --- commands ---------------------------------------------------------------------------------

    def which(self, name):
        """The first executable `name` on PATH and the usual directories that is safe to run."""
        dirs = []
        if self.root == "/":
            dirs.extend(p for p in self.env.get("PATH", "").split(":") if p.startswith("/"))
        dirs.extend(EXEC_DIRS)
        seen = set()
        for d in dirs:
            if d in seen:
                continue
            seen.add(d)
            candidate = os.path.join(d, name)
            local = self.L(candidate)
            if os.path.isfile(local) and os.access(local, os.X_OK):
                reason = self.exec_refusal(candidate)
                if reason is not None:
                    self.refuse(candidate, reason)  # a note; a later, safe one may still be found
                    continue
                return candidate
        return None

    def run(self, argv, timeout=None, stdout_filter=None):
        """Run a read-only command (argv[0] a host path); never raises, never waits forever."""
        if timeout is None:
            timeout = float(self.options["command_timeout"])
        record = {
            "argv": list(argv),
            "rc": None,
            "stdout": "",
            "stderr": "",
            "timed_out": False,
            "error": None,
        }
        reason = self.exec_refusal(argv[0])
        if reason is not None:
            record["error"] = self.refuse(argv[0], reason)
            return record
        local_argv = [self.L(argv[0])] + list(argv[1:])
        try:
            proc = subprocess.Popen(
                local_argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                close_fds=True,
                start_new_session=True,  # so a timeout kills what it started too
            )
        except OSError as exc:
            record["error"] = "%s: %s" % (type(exc).__name__, exc.strerror or exc)
            return record
        deadline = time.monotonic() + timeout
        # Each stream is read by a thread that keeps the first OUTPUT_CAP bytes and drains the rest,
        # so neither a full pipe nor a flood of output can stall or swell the probe.
        out, err = [], []
        readers = [start_reader(proc.stdout, out), start_reader(proc.stderr, err)]
        # The readers end when the pipes close, which is when the command (and anything it left
        # behind holding them) has gone: joining them wakes at once, where Popen.wait(timeout) polls
        # with growing sleeps. Then the exit status, within what is left of the same deadline.
        for reader in readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        try:
            if any(reader.is_alive() for reader in readers):
                raise subprocess.TimeoutExpired(local_argv, timeout)
            proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            record["timed_out"] = True
            kill_group(proc)
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                # Stuck in the kernel (a wedged driver): leave it rather than hang with it.
                self.note(argv[0], "did not exit after SIGKILL; left behind")
        for reader, stream in ((readers[0], proc.stdout), (readers[1], proc.stderr)):
            reader.join(0.5)
            if not reader.is_alive():
                stream.close()
        record["rc"] = proc.returncode
        text = b"".join(out)[:OUTPUT_CAP].decode("utf-8", "replace")
        if stdout_filter is not None:
            text = "".join(line for line in text.splitlines(True) if stdout_filter(line))
        record["stdout"] = text
        record["stderr"] = b"".join(err)[:OUTPUT_CAP].decode("utf-8", "replace")
        return record

    # --- sections ---------------------------------------------------------------------------------

    def collect(self):
        doc = {"schema_version": SCHEMA_VERSION}
        doc["probe"] = {
            "script": SCRIPT_NAME,
            "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
            "executable": sys.executable,
            "root": self.root,
            "uid": os.getuid() if hasattr(os, "getuid") else None,
            "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        sections = (
            ("os", self.collect_os),
            ("loader", self.collect_loader),
            ("toolkits", self.collect_toolkits),
            ("envs", self.collect_envs),
            ("driver", self.collect_driver),
            ("packages", self.collect_packages),
            ("libraries", self.collect_libraries),
            ("launch_envs", self.collect_launch_envs),
            ("libdirs", self.collect_libdirs),
        )
        for name, fn in sections:
            try:
                fn(doc)
            except Exception as exc:  # one broken section must not lose the others
                self.note(name, "probe section failed: %s: %s" % (type(exc).__name__, exc))
        doc["probe"]["duration_s"] = round(time.monotonic() - self.started, 3)
        doc["probe"]["cpu_s"] = cpu_times()
        doc["notes"] = self.notes
        doc["unread"] = sorted(self.unread)
        return doc

    def collect_os(self, doc):
        uname = os.uname()
        doc["os"] = {
            "os_release": self.read_text("/etc/os-release") or self.read_text("/usr/lib/os-release"),
            "kernel": uname.release,
            "arch": uname.machine,
        }

    # The driver: NVML first (the same library every framework loads), then nvidia-smi, then /proc.
    def collect_driver(self, doc):
        driver = {"nvml": None, "nvidia_smi": [], "proc_version": None}
        if self.options.get("nvml") and self.root == "/":
            driver["nvml"] = self.nvml_with_timeout()
        nvml = driver["nvml"]
        proc = self.read_text("/proc/driver/nvidia/version", 4096)
        if nvml is None or not nvml.get("ok"):
            smi = self.which("nvidia-smi")
            if smi is not None:
                fields = "name,driver_version,memory.total,uuid,pci.bus_id,compute_cap"
                old_fields = fields.rsplit(",", 1)[0]
                # Drivers before 510 do not know compute_cap. When the loaded module says the driver
                # is older, ask without it at once: each nvidia-smi run initialises the driver (tens
                # of ms), and the first would only fail.
                module = KERNEL_MODULE_RE.search(proc or "")
                known_old = module is not None and int(module.group(1)) < 510
                argv = [smi, "--query-gpu=" + (old_fields if known_old else fields), "--format=csv,noheader,nounits"]
                first = self.run(argv)
                driver["nvidia_smi"].append(first)
                text = first["stdout"] + first["stderr"]
                if (
                    not known_old
                    and first["rc"] not in (0, None)
                    and ("compute_cap" in text or "not a valid field" in text)
                ):
                    argv = [smi, "--query-gpu=" + old_fields, "--format=csv,noheader,nounits"]
                    driver["nvidia_smi"].append(self.run(argv))
        driver["proc_version"] = proc
        # Where GPUs show when neither NVML nor nvidia-smi answers: the kernel module's own list, and
        # NVIDIA's display and 3D controllers on the PCI bus (no driver needed at all).
        driver["proc_gpus"] = []
        for name in self.listdir("/proc/driver/nvidia/gpus")[:64]:
            text = self.read_text("/proc/driver/nvidia/gpus/%s/information" % name, 4096)
            if text is not None:
                driver["proc_gpus"].append({"bus": name, "text": text})
        driver["pci"] = []
        for name in self.listdir("/sys/bus/pci/devices"):
            base = "/sys/bus/pci/devices/" + name
            vendor = (self.read_text(base + "/vendor", 64) or "").strip()
            if vendor.lower() != "0x10de":
                continue
            device = {"address": name, "vendor": vendor}
            for key in ("device", "class"):
                device[key] = (self.read_text(base + "/" + key, 64) or "").strip()
            driver["pci"].append(device)
            if len(driver["pci"]) >= 64:
                break
        doc["driver"] = driver

    def nvml_with_timeout(self):
        result = {}

        def target():
            try:
                result.update(self.nvml())
            except Exception as exc:
                result.update({"ok": False, "loaded": False, "error": "%s: %s" % (type(exc).__name__, exc)})

        thread = threading.Thread(target=target, name="nvml")
        thread.daemon = True
        thread.start()
        thread.join(float(self.options["nvml_timeout"]))
        if thread.is_alive():
            self.nvml_hung = True
            return {"ok": False, "loaded": True, "timed_out": True, "error": "NVML did not answer in time"}
        return result

    def nvml(self):
        """What NVML says: driver, CUDA driver API and NVML versions, and per GPU its name, UUID, PCI bus
        id, memory and compute capability. The library is loaded only by a full path that passed the
        same checks as a program (exec_refusal), never by its bare soname."""
        import ctypes  # only a probe that asks NVML pays for it

        loaded = None
        library_handle = None
        refused = None
        for library in self.nvml_libraries():
            reason = self.exec_refusal(library)
            if reason is not None:
                refused = refused or "NVML not loaded: %s" % reason
                self.note(library, "not loaded: %s" % reason)
                continue
            try:
                library_handle = ctypes.CDLL(library)
            except OSError:
                continue  # another architecture's copy (i386 beside x86_64) or not a library
            loaded = library
            break
        if loaded is None and refused is not None:
            return {"ok": False, "loaded": False, "error": refused, "errors": {}, "gpus": []}
        if loaded is None:
            return {
                "ok": False,
                "loaded": True,
                "error": "NVML Shared Library Not Found",
                "error_code": 12,
                "errors": {},
                "gpus": [],
            }
        return nvml_query(ctypes, library_handle)

    def nvml_libraries(self):
        """Every libnvidia-ml.so.1, in the order the loader searches: the probe's LD_LIBRARY_PATH,
        the loader cache (`ldconfig -p`), ld.so.conf directories, the usual ones."""
        name = "libnvidia-ml.so.1"
        dirs = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p.startswith("/")]
        for line in (self.ldcache_text or "").splitlines():
            soname, sep, path = line.partition("=>")
            if sep and soname.strip().split(" ", 1)[0] == name and path.strip().startswith("/"):
                dirs.append(os.path.dirname(path.strip()))
        dirs.extend(entry["path"] for entry in self.loader["ld_so_conf"])
        dirs.extend(SYSTEM_LIB_DIRS)
        found = []
        for directory in dirs:
            candidate = directory.rstrip("/") + "/" + name
            if candidate not in found and os.path.exists(candidate):
                found.append(candidate)
        return found

    # Every CUDA toolkit: /usr/local/cuda*, /opt, alternatives; which one /usr/local/cuda is.
    def collect_toolkits(self, doc):
        candidates = []
        for name in self.listdir("/usr/local"):
            if name.startswith("cuda"):
                candidates.append("/usr/local/" + name)
        for name in self.listdir("/opt"):
            path = "/opt/" + name
            if name.lower().startswith("cuda"):
                candidates.append(path)
            elif name.lower() == "nvidia" and self.isdir(path):
                candidates.extend(path + "/" + n for n in self.listdir(path) if n.lower().startswith("cuda"))
        candidates.extend(("/usr/lib/cuda", "/usr/lib/nvidia-cuda-toolkit"))
        alternatives = []
        for name in self.listdir("/etc/alternatives"):
            if name.startswith("cuda") or "cudnn" in name:
                target = self.readlink("/etc/alternatives/" + name)
                alternatives.append({"name": name, "target": target})
                if name.startswith("cuda") and target and target.startswith("/"):
                    candidates.append(target)
        doc["alternatives"] = alternatives

        by_real = {}
        order = []
        for path in candidates:
            real = self.resolve(path)
            if real is None:
                self.note(path, "symlink loop")
                continue
            if not self.isdir(real) or not self.looks_like_toolkit(real):
                continue
            if real not in by_real:
                by_real[real] = []
                order.append(real)
            if path not in by_real[real]:
                by_real[real].append(path)

        toolkits = []
        for real in order:
            toolkits.append(self.toolkit(real, by_real[real]))
            self.toolkit_dirs.append(real)
        doc["toolkits"] = toolkits

        default = {"path": "/usr/local/cuda", "exists": self.exists("/usr/local/cuda"), "is_link": False}
        if self.islink("/usr/local/cuda"):
            default["is_link"] = True
            default["chain"] = self.link_chain("/usr/local/cuda")
        default["resolved"] = self.resolve("/usr/local/cuda") if default["exists"] else None
        doc["default_toolkit"] = default

        logs = []
        for path in ("/var/log/cuda-installer.log", "/var/log/nvidia-installer.log"):
            text = self.read_text(path, HEADER_CAP)
            if text is None:
                continue
            lines = [line for line in text.splitlines() if LOG_LINE_RE.search(line)]
            logs.append({"path": path, "lines": lines[-LOG_LINES_CAP:]})
        doc["installer_logs"] = logs

    def looks_like_toolkit(self, path):
        for marker in ("version.json", "version.txt", "bin/nvcc", "targets", "lib64"):
            if self.exists(path + "/" + marker):
                return True
        return False

    def toolkit(self, real, found_as):
        tk = {"path": real, "found_as": found_as}
        tk["version_json"] = self.read_text(real + "/version.json")
        tk["version_txt"] = self.read_text(real + "/version.txt", 4096)
        tk["nvcc"] = None
        nvcc = real + "/bin/nvcc"
        tk["has_nvcc"] = self.isfile(nvcc)
        if tk["has_nvcc"] and tk["version_json"] is None and tk["version_txt"] is None:
            tk["nvcc"] = self.run([nvcc, "--version"])
            if tk["nvcc"]["error"] is not None and self.exec_refusal(nvcc) is not None:
                # Not run: the version line nvcc prints is in its binary; read as data instead.
                tk["nvcc_version_line"] = self.nvcc_version_line(nvcc)
        tk["uninstallers"] = [
            "bin/" + n for n in self.glob_names(real + "/bin", r"^(cuda-uninstaller|uninstall_cuda.*\.pl)$")
        ]
        compat = []
        for name in self.listdir(real + "/compat"):
            if name.startswith("libcuda.so"):
                compat.append([name, self.readlink(real + "/compat/" + name)])
        tk["compat"] = compat
        tk["targets"] = self.listdir(real + "/targets")
        return tk

    def nvcc_version_line(self, path):
        """`Cuda compilation tools, release X.Y, VX.Y.Z` as found in the bytes of nvcc, or None."""
        handle = self.open_regular(path)
        if handle is None:
            return None
        overlap = b""
        read = 0
        try:
            with handle:
                while read < NVCC_SCAN_CAP:
                    chunk = handle.read(1024 * 1024)
                    if not chunk:
                        return None
                    read += len(chunk)
                    match = NVCC_VERSION_RE.search(overlap + chunk)
                    if match:
                        return match.group(0).decode("ascii")
                    overlap = chunk[-128:]
        except OSError as exc:
            self.note(path, "cannot read: %s" % (exc.strerror or exc))
        return None

    # Python interpreters, venvs and conda envs, and per env the frameworks' own build facts.
    def collect_envs(self, doc):
        envs = []
        pythons = []
        names = ["python3"] + ["python3.%d" % minor for minor in range(6, 20)]
        for directory in ("/usr/bin", "/usr/local/bin"):
            for name in names:  # asked by name: /usr/bin may hold more entries than we list
                path = directory + "/" + name
                if not self.lexists(path):
                    continue
                real = self.resolve(path)
                pythons.append({"path": path, "real": real})
        doc["pythons"] = pythons
        doc["running_python"] = {
            "executable": sys.executable,
            "real": os.path.realpath(sys.executable) if sys.executable else None,
            "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
        }

        # System interpreters: one env per python3.X binary (the unversioned names point at one).
        versioned = sorted(set(p["real"] for p in pythons if p["real"] and re.match(r".*/python3\.\d+$", p["real"])))
        for real in versioned:
            prefix = "/usr/local" if real.startswith("/usr/local/") else "/usr"
            minor = os.path.basename(real)[len("python") :]
            sites = [
                prefix + "/lib/python" + minor + "/site-packages",
                prefix + "/lib64/python" + minor + "/site-packages",
                prefix + "/lib/python" + minor + "/dist-packages",
            ]
            if prefix == "/usr":
                # Debian's own and pip-as-root's dist-packages; RHEL's pip-as-root site-packages.
                sites.append("/usr/lib/python3/dist-packages")
                for lib in ("lib", "lib64"):
                    for kind in ("dist-packages", "site-packages"):
                        sites.append("/usr/local/%s/python%s/%s" % (lib, minor, kind))
            envs.append(self.env_record(prefix, "system", real, [s for s in sites if self.isdir(s)]))
            for home in ["/root"] + ["/home/" + n for n in self.listdir("/home")]:
                user_site = home + "/.local/lib/python" + minor + "/site-packages"
                if self.isdir(user_site):
                    envs.append(self.env_record(home + "/.local", "user", real, [user_site]))

        for path, kind in self.find_envs():
            python = None
            for name in ("python3", "python"):
                candidate = path + "/bin/" + name
                if self.lexists(candidate):
                    python = candidate
                    break
            sites = []
            for libdir in ("lib", "lib64"):
                for name in self.listdir(path + "/" + libdir):
                    if name.startswith("python3") and self.isdir(path + "/" + libdir + "/" + name + "/site-packages"):
                        site = path + "/" + libdir + "/" + name + "/site-packages"
                        if self.resolve(site) not in [self.resolve(s) for s in sites]:
                            sites.append(site)
            record = self.env_record(path, kind, python, sites)
            if python is not None:
                record["python_real"] = self.resolve(python)
            if kind == "venv":
                record["pyvenv_cfg"] = self.read_text(path + "/pyvenv.cfg", 8192)
            envs.append(record)
        doc["envs"] = envs

    def find_envs(self):
        """Directories with pyvenv.cfg (venv) or conda-meta/ (conda) under the roots, bounded."""
        roots = []
        for pattern in self.options["venv_roots"]:
            if pattern.endswith("/*"):
                base = pattern[:-2] or "/"
                roots.extend(os.path.join(base, n) for n in self.listdir(base) if self.isdir(os.path.join(base, n)))
            else:
                roots.append(pattern)
        # Tools that keep their venvs inside a home's caches, which the walk skips: poetry
        # (~/.cache/pypoetry/virtualenvs) and pipenv (~/.local/share/virtualenvs).
        for root in list(roots):
            for sub in ("/.cache/pypoetry/virtualenvs", "/.local/share/virtualenvs"):
                if self.isdir(root.rstrip("/") + sub):
                    roots.append(root.rstrip("/") + sub)
        found = []
        seen = set()
        visited = 0
        max_depth = int(self.options["max_depth"])
        max_dirs = int(self.options["max_dirs"])
        for root in roots:
            queue = [(root, 0)]
            while queue:
                path, depth = queue.pop(0)
                if visited >= max_dirs:
                    self.note(root, "stopped looking for envs after %d directories" % max_dirs)
                    return found
                if self.deadline_passed():
                    self.note(root, "stopped looking for envs: probe deadline reached")
                    return found
                visited += 1
                try:
                    st = os.lstat(self.N(path))
                except OSError:
                    continue
                if not stat.S_ISDIR(st.st_mode):  # symlinks are never followed: no loops
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                names = self.listdir(path)
                if "pyvenv.cfg" in names:
                    found.append((path, "venv"))
                    continue
                if "conda-meta" in names:
                    found.append((path, "conda"))
                    if "envs" in names:
                        queue.extend((path + "/envs/" + n, depth + 1) for n in self.listdir(path + "/envs"))
                    continue
                if depth >= max_depth:
                    continue
                for name in names:
                    if name in SKIP_DIRS:
                        continue
                    queue.append((path.rstrip("/") + "/" + name, depth + 1))
        return found

    def owner(self, path):
        """The name of the user who owns a directory (the env's owner runs its Python); None if unknown."""
        try:
            uid = os.lstat(self.N(path)).st_uid
            import pwd

            return pwd.getpwuid(uid).pw_name
        except (OSError, ImportError, KeyError):
            return None

    def env_record(self, path, kind, python, sites):
        self.env_dirs.append((path, kind, sites))
        record = {
            "path": path,
            "kind": kind,
            # Under --root the files belong to whoever built the tree: no owner there.
            "owner": self.owner(path) if self.root == "/" else None,
            "python": python,
            "site_packages": sites,
            "dists": [],
            "files": [],
        }
        for site in sites:
            for name in self.listdir(site):
                if not (name.endswith(".dist-info") or name.endswith(".egg-info")):
                    continue
                dist = name.partition("-")[0]
                norm = re.sub(r"[-_.]+", "-", dist).lower()
                if not (norm in FRAMEWORK_DISTS or norm.startswith("nvidia-") or norm.startswith("jax-cuda")):
                    continue
                meta = site + "/" + name + ("/METADATA" if name.endswith(".dist-info") else "/PKG-INFO")
                text = (
                    self.read_text(meta, 8192)
                    if self.isdir(site + "/" + name)
                    else self.read_text(site + "/" + name, 8192)
                )
                fields = {}
                for line in (text or "").splitlines():
                    if not line.strip():
                        break  # the headers end at the first blank line
                    key, sep, value = line.partition(":")
                    if sep and key in ("Name", "Version"):
                        fields[key.lower()] = value.strip()
                entry = {"site": site, "dir": name, "name": fields.get("name"), "version": fields.get("version")}
                if norm in FRAMEWORK_DISTS and name.endswith(".dist-info"):
                    # Whose build_info.py / version.py is on disk, when two dists share a package dir.
                    entry["record"] = self.record_hashes(site + "/" + name + "/RECORD")
                record["dists"].append(entry)
            for rel in FRAMEWORK_FILES:
                data = self.read_bytes(site + "/" + rel, TEXT_CAP + 1)
                if data is not None:
                    digest = None
                    if len(data) <= TEXT_CAP:
                        import base64  # here, not at the top: only a host with a framework file needs them
                        import hashlib

                        raw = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                        digest = "sha256=" + raw.decode("ascii")
                    text = data[:TEXT_CAP].decode("utf-8", "replace")
                    record["files"].append({"site": site, "path": rel, "text": text, "sha256": digest})
        record["elf"] = []
        for site in sites:
            record["elf"].extend(self.framework_objects(site))
        if kind == "conda":
            packages = []
            for name in self.listdir(path + "/conda-meta"):
                if name.endswith(".json") and CONDA_RE.match(name):
                    packages.append(name)
            record["conda_meta"] = packages
        return record

    def framework_objects(self, site):
        """The dynamic sections of a site's framework objects (libtorch_cuda.so, TensorFlow's
        extension module and framework library), with RPATH/RUNPATH $ORIGIN expanded."""
        wanted = []
        if self.isdir(site + "/torch/lib"):
            wanted.extend(("torch", rel) for rel in TORCH_OBJECTS)
        if self.isdir(site + "/tensorflow"):
            wanted.extend(("tensorflow", rel) for rel in TF_OBJECTS)
            names = self.glob_names(site + "/tensorflow", TF_FRAMEWORK_RE)
            wanted.extend(("tensorflow", "tensorflow/" + n) for n in names[:2])
        objects = []
        for framework, rel in wanted:
            path = site + "/" + rel
            info = self.read_elf(path)
            if info is None:
                continue
            entry = {"site": site, "path": path, "framework": framework}
            if "error" in info:
                entry["error"] = info["error"]
                objects.append(entry)
                continue
            origin = os.path.dirname(self.resolve(path) or path)
            entry.update({"soname": info["soname"], "needed": info["needed"][:256], "origin": origin})
            for key in ("rpath", "runpath"):
                entries, dropped = expand_origin(info[key] or "", origin)
                entry[key] = entries
                for part in dropped:
                    self.note(path, "%s entry %r left out: it depends on the loader ($LIB, $PLATFORM)" % (key, part))
            objects.append(entry)
        return objects

    def record_hashes(self, path):
        """The RECORD hashes of the framework files (RECORD lines are `path,sha256=...,size`)."""
        data = self.read_bytes(path, RECORD_CAP)
        hashes = {}
        for line in (data or b"").decode("utf-8", "replace").splitlines():
            rel, _, rest = line.partition(",")
            if rel in FRAMEWORK_FILES:
                hashes[rel] = rest.partition(",")[0] or None
        return hashes

    # The loader: ld.so.conf and LD_LIBRARY_PATH from every place a login sets it.
    def collect_loader(self, doc):
        entries = []
        self.read_ld_so_conf("/etc/ld.so.conf", entries, 0)
        ld_paths = []
        sources = ["/etc/environment", "/etc/profile", "/etc/bash.bashrc"]
        sources.extend("/etc/profile.d/" + n for n in self.listdir("/etc/profile.d") if n.endswith(".sh"))
        for source in sources:
            text = self.read_text(source)
            if not text:
                continue
            for line in text.splitlines():
                match = re.match(r"^\s*(?:export\s+)?LD_LIBRARY_PATH=(.*)$", line)
                if not match:
                    continue
                value = match.group(1).strip().strip("'\"")
                for part in value.split(":"):
                    # `/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}`: keep what precedes `$`.
                    part = part.split("$", 1)[0].strip().strip("'\"")
                    if part.startswith("/"):
                        ld_paths.append({"path": part, "source": source, "exists": self.isdir(part), "line": line})
        for part in self.session_ld_library_path().split(":"):
            if part:
                ld_paths.append({"path": part, "source": "login", "exists": self.isdir(part)})
        doc["ld_so_conf"] = entries
        doc["ld_library_path"] = ld_paths
        self.loader = {"ld_so_conf": entries, "ld_library_path": ld_paths}
        ldconfig = None
        for candidate in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "/sbin/ldconfig.real"):
            if self.isfile(candidate):
                ldconfig = candidate
                break
        if ldconfig is None:
            ldconfig = self.which("ldconfig")
        if ldconfig is not None:
            doc["ldconfig"] = self.run([ldconfig, "-p"], stdout_filter=lambda line: bool(LDCACHE_RE.match(line)))
            self.ldcache_text = doc["ldconfig"]["stdout"]
        else:
            doc["ldconfig"] = None

    def read_ld_so_conf(self, path, entries, depth):
        if depth > 4:
            self.note(path, "ld.so.conf includes nested more than 4 deep")
            return
        text = self.read_text(path)
        if text is None:
            return
        for raw in text.splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("include"):
                for pattern in line.split()[1:]:
                    if not pattern.startswith("/"):
                        pattern = os.path.join(os.path.dirname(path), pattern)
                    directory, _, glob_part = pattern.rpartition("/")
                    regex = "^" + re.escape(glob_part).replace("\\*", ".*").replace("\\?", ".") + "$"
                    for name in self.glob_names(directory or "/", regex):
                        self.read_ld_so_conf(directory + "/" + name, entries, depth + 1)
                continue
            for part in re.split(r"[\s:,]+", line):
                if part.startswith("/"):
                    entries.append({"path": part, "source": path, "exists": self.isdir(part)})

    # LD_LIBRARY_PATH as each way of starting Python sees it, from the files that set it (read, never run).
    def collect_launch_envs(self, doc):
        launch = []
        own = self.session_ld_library_path()
        launch.append(
            {
                "name": "ssh command",
                "ld_library_path": path_entries(own or ""),
                "source": "the probe's own environment (a non-interactive ssh session: /etc/environment)",
                "env": None,
            }
        )
        home = self.home()
        files = ["/etc/environment", "/etc/profile", "/etc/bash.bashrc"]
        files.extend("/etc/profile.d/" + n for n in self.listdir("/etc/profile.d") if n.endswith(".sh"))
        for name in (".bash_profile", ".bash_login", ".profile"):  # bash reads the first it finds
            if home and self.isfile(home + "/" + name):
                files.append(home + "/" + name)
                break
        if home:
            files.append(home + "/.bashrc")
        login = {"LD_LIBRARY_PATH": "", "HOME": home or UNKNOWN}
        sources = self.apply_shell_files(files, login)
        launch.append(
            {
                "name": "login shell",
                "ld_library_path": path_entries(login["LD_LIBRARY_PATH"]),
                "source": ", ".join(sources),
                "env": None,
            }
        )
        envs = doc.get("envs") or []
        for env in envs:
            if env["kind"] == "venv":
                variables = dict(login, VIRTUAL_ENV=env["path"])
                changed = self.apply_shell_files([env["path"] + "/bin/activate"], variables)
                name = "venv activate"
            elif env["kind"] == "conda":
                variables = dict(login, CONDA_PREFIX=env["path"])
                changed = []
                state = self.read_text(env["path"] + "/conda-meta/state", 8192)
                if state:
                    try:
                        value = json.loads(state).get("env_vars", {}).get("LD_LIBRARY_PATH")
                    except (ValueError, AttributeError):
                        value = None
                    if isinstance(value, str):
                        variables["LD_LIBRARY_PATH"] = value
                        changed.append(env["path"] + "/conda-meta/state")
                activate_d = env["path"] + "/etc/conda/activate.d"
                scripts = [activate_d + "/" + n for n in self.listdir(activate_d) if n.endswith(".sh")]
                changed.extend(self.apply_shell_files(scripts, variables))
                name = "conda activate"
            else:
                continue
            launch.append(
                {
                    "name": name,
                    "ld_library_path": path_entries(variables["LD_LIBRARY_PATH"]),
                    "source": ", ".join(sources + changed),
                    "env": env["path"],
                }
            )
        launch.extend(self.kernel_envs(envs, login, sources))
        launch.extend(self.systemd_envs())
        doc["launch_envs"] = launch
        self.launch_envs = launch

    def home(self):
        uid = self.euid
        if self.options.get("session_user_from_sudo") and re.match(r"^[0-9]{1,10}$", os.environ.get("SUDO_UID", "")):
            uid = int(os.environ["SUDO_UID"])
        try:
            import pwd

            return pwd.getpwuid(uid).pw_dir
        except (ImportError, KeyError):
            return os.environ.get("HOME")

    def session_ld_library_path(self):
        """LD_LIBRARY_PATH of the ssh session: ours, or the one passed on when sudo cleared ours."""
        passed = self.options.get("session_ld_library_path")
        return passed if isinstance(passed, str) else os.environ.get("LD_LIBRARY_PATH", "")

    def apply_shell_files(self, files, variables):
        """Follow the assignments of shell files in order; the files that changed LD_LIBRARY_PATH."""
        changed = []
        for path in files:
            text = self.read_text(path)
            if not text:
                continue
            before = variables.get("LD_LIBRARY_PATH")
            for line in text.splitlines():
                if line.lstrip().startswith("#"):
                    continue
                match = ASSIGN_RE.match(line)
                if match and match.group(1) != "LD_LIBRARY_PATH":
                    variables[match.group(1)] = shell_word(line, match.end(), variables)
                for ld in LD_ASSIGN_RE.finditer(line):
                    variables["LD_LIBRARY_PATH"] = shell_word(line, ld.end(), variables)
            if variables.get("LD_LIBRARY_PATH") != before:
                changed.append(path)
        return changed

    def kernel_envs(self, envs, login, sources):
        """Jupyter kernel specs: their "env" LD_LIBRARY_PATH (else the server's, taken as the login one)."""
        dirs = []
        for env in envs:
            dirs.append((env["path"].rstrip("/") + "/share/jupyter/kernels", env["path"]))
        dirs.extend([("/usr/local/share/jupyter/kernels", None), ("/usr/share/jupyter/kernels", None)])
        for home in ["/root"] + ["/home/" + n for n in self.listdir("/home")]:
            dirs.append((home + "/.local/share/jupyter/kernels", None))
        out = []
        seen = set()
        for directory, owner in dirs:
            if directory in seen:
                continue
            seen.add(directory)
            for name in self.listdir(directory):
                if len(out) >= MAX_KERNELS:
                    self.note(directory, "more than %d Jupyter kernels; the rest were skipped" % MAX_KERNELS)
                    return out
                path = directory + "/" + name + "/kernel.json"
                text = self.read_text(path)
                if text is None:
                    continue
                try:
                    spec = json.loads(text)
                except ValueError:
                    self.note(path, "not JSON")
                    continue
                if not isinstance(spec, dict):
                    continue
                argv = spec.get("argv")
                python = argv[0] if isinstance(argv, list) and argv and isinstance(argv[0], str) else ""
                env = owner if not python.startswith("/") else None
                for candidate in envs:
                    prefix = candidate["path"].rstrip("/") + "/bin/"
                    if python.startswith("/") and (python.startswith(prefix) or python == candidate.get("python")):
                        env = candidate["path"]
                        break
                value = (spec.get("env") or {}).get("LD_LIBRARY_PATH") if isinstance(spec.get("env"), dict) else None
                if isinstance(value, str):
                    entries = path_entries(shell_word(value, 0, dict(login), quoted=True))
                    source = path
                else:
                    entries = path_entries(login["LD_LIBRARY_PATH"])
                    source = ", ".join(sources + [path + " (none of its own: the server's, taken as a login shell's)"])
                out.append({"name": "jupyter kernel " + name, "ld_library_path": entries, "source": source, "env": env})
        return out

    def systemd_envs(self):
        """Units named in the options: Environment= and EnvironmentFile= (no variable expansion there)."""
        out = []
        for unit in self.options.get("systemd_units") or []:
            if not isinstance(unit, str) or not UNIT_RE.match(unit):
                self.note("systemd_units", "not a unit name: %r" % (unit,))
                continue
            files = []
            for directory in ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"):
                if self.isfile(directory + "/" + unit):
                    files.append(directory + "/" + unit)
                    break
            dropins = "/etc/systemd/system/" + unit + ".d"
            files.extend(dropins + "/" + n for n in self.listdir(dropins) if n.endswith(".conf"))
            if not files:
                self.note("/etc/systemd/system/" + unit, "unit not found")
                continue
            value = None
            sources = []
            for path in files:
                for line in (self.read_text(path) or "").splitlines():
                    line = line.strip()
                    key, _, rest = line.partition("=")
                    key = key.strip()
                    if key == "Environment":
                        for word in split_words(rest):
                            name, sep, val = word.partition("=")
                            if sep and name == "LD_LIBRARY_PATH":
                                value = val
                                sources.append(path)
                    elif key == "EnvironmentFile":
                        env_file = rest.strip().lstrip("-")
                        for env_line in (self.read_text(env_file) or "").splitlines():
                            match = re.match(r"^\s*(?:export\s+)?LD_LIBRARY_PATH=(.*)$", env_line)
                            if match:
                                value = match.group(1).strip().strip("'\"")
                                sources.append(env_file)
            out.append(
                {
                    "name": "systemd " + unit,
                    "ld_library_path": path_entries(value or ""),
                    "source": ", ".join(sources or files),
                    "env": None,
                }
            )
        return out

    # Every directory the loader may search for any way of starting Python, with the CUDA-family
    # libraries in each: what diagnosis resolves each framework's libraries against.
    def collect_libdirs(self, doc):
        candidates = []
        for launch in getattr(self, "launch_envs", []):
            candidates.extend(launch["ld_library_path"])
        candidates.extend(entry["path"] for entry in self.loader["ld_so_conf"])
        arch = (doc.get("os") or {}).get("arch") or os.uname().machine
        candidates.extend(DEFAULT_LIB_DIRS.get(arch, DEFAULT_LIB_DIRS["x86_64"]))
        for env in doc.get("envs") or []:
            candidates.append(env["path"].rstrip("/") + "/lib")
            for site in env["site_packages"]:
                candidates.extend(site + "/nvidia/" + n + "/lib" for n in self.listdir(site + "/nvidia"))
                if self.isdir(site + "/torch/lib"):
                    candidates.append(site + "/torch/lib")
            for obj in env.get("elf") or []:
                candidates.extend(obj.get("rpath") or [])
                candidates.extend(obj.get("runpath") or [])
        for tk in self.toolkit_dirs:
            candidates.extend((tk + "/lib64", tk + "/lib64/stubs"))
            for target in self.listdir(tk + "/targets"):
                candidates.extend((tk + "/targets/" + target + "/lib", tk + "/targets/" + target + "/lib/stubs"))
        for line in (self.ldcache_text or "").splitlines():
            soname, sep, path = line.partition("=>")
            name = soname.strip().split(" ", 1)[0]
            if sep and CUDA_LIB_RE.match(name) and path.strip().startswith("/"):
                candidates.append(os.path.dirname(path.strip()))
        seen = set()
        libdirs = []
        listed = {}
        for path in candidates:
            if not path.startswith("/") or UNKNOWN in path:
                continue
            if len(path) > 1:
                path = path.rstrip("/") or "/"
            if path in seen:
                continue
            seen.add(path)
            if len(libdirs) >= MAX_LIBDIRS:
                self.note("libdirs", "more than %d library directories; the rest were skipped" % MAX_LIBDIRS)
                break
            exists = self.isdir(path)
            real = self.resolve(path) if exists else None
            record = {"path": path, "real": real or "", "exists": exists, "libs": []}
            if exists and real is not None:
                if real not in listed:
                    listed[real] = self.cuda_libs(real)
                stub_dir = "stubs" in path.split("/")
                record["libs"] = [dict(lib, stub=lib["stub"] or stub_dir) for lib in listed[real]]
            libdirs.append(record)
        doc["libdirs"] = libdirs

    def cuda_libs(self, directory):
        names = [n for n in self.listdir(directory) if CUDA_LIB_RE.match(n)]
        if len(names) > MAX_LIBS_PER_DIR:
            self.note(directory, "more than %d CUDA libraries; the rest were skipped" % MAX_LIBS_PER_DIR)
            names = names[:MAX_LIBS_PER_DIR]
        libs = []
        for name in names:
            path = directory + "/" + name
            real = self.resolve(path)
            info = self.read_elf(path) or {}
            libs.append(
                {
                    "name": name,
                    "soname": info.get("soname") or "",
                    "real": real or "",
                    "stub": "stubs" in directory.split("/") or "stubs" in (real or "").split("/"),
                }
            )
        return libs

    # Packages: dpkg and rpm, only the NVIDIA-related ones.
    def collect_packages(self, doc):
        packages = {"dpkg": None, "rpm": None}
        dpkg = self.which("dpkg-query")
        if dpkg is not None:
            packages["dpkg"] = self.run(
                [dpkg, "-W", "-f", "${Package}\\t${Version}\\t${Status}\\n"],
                stdout_filter=lambda line: bool(PACKAGE_RE.match(line)),
            )
        rpm = self.which("rpm")
        if rpm is not None and (self.isdir("/var/lib/rpm") or self.isdir("/usr/lib/sysimage/rpm")):
            packages["rpm"] = self.run(
                [rpm, "-qa", "--qf", "%{NAME}\\t%{VERSION}-%{RELEASE}\\n"],
                stdout_filter=lambda line: bool(PACKAGE_RE.match(line)),
            )
        doc["packages"] = packages

    # Libraries and cuDNN headers, in every directory a copy may live in.
    def collect_libraries(self, doc):
        lib_dirs = []  # (path, kind)
        include_dirs = []
        for path in SYSTEM_LIB_DIRS:
            lib_dirs.append((path, "system"))
        include_dirs.extend((p, "system") for p in SYSTEM_INCLUDE_DIRS)
        for entry in self.loader["ld_so_conf"]:
            lib_dirs.append((entry["path"], "ld.so.conf"))
            include_dirs.append((os.path.dirname(entry["path"].rstrip("/")) + "/include", "ld.so.conf"))
        for entry in self.loader["ld_library_path"]:
            lib_dirs.append((entry["path"], "LD_LIBRARY_PATH"))
        for tk in self.toolkit_dirs:
            lib_dirs.extend([(tk + "/lib64", "toolkit"), (tk + "/lib", "toolkit")])
            include_dirs.append((tk + "/include", "toolkit"))
            for target in self.listdir(tk + "/targets"):
                lib_dirs.append((tk + "/targets/" + target + "/lib", "toolkit"))
                include_dirs.append((tk + "/targets/" + target + "/include", "toolkit"))
        for path, kind, sites in self.env_dirs:
            if kind == "conda":
                lib_dirs.append((path + "/lib", "conda"))
                include_dirs.append((path + "/include", "conda"))
            for site in sites:
                for name in self.listdir(site + "/nvidia"):
                    lib_dirs.append((site + "/nvidia/" + name + "/lib", "pip"))
                    include_dirs.append((site + "/nvidia/" + name + "/include", "pip"))

        doc["lib_dirs"] = self.scan_dirs(lib_dirs, lambda n: LIB_RE.match(n) is not None, self.lib_files)
        doc["headers"] = []
        for record in self.scan_dirs(include_dirs, lambda n: HEADER_RE.match(n) is not None, self.header_files):
            doc["headers"].extend(record["files"])

    def scan_dirs(self, dirs, wanted, describe):
        by_real = {}
        records = []
        for path, kind in dirs:
            if not self.isdir(path):
                continue
            real = self.resolve(path)
            if real is None:
                self.note(path, "symlink loop")
                continue
            if real in by_real:
                record = by_real[real]
                if path not in record["found_as"]:
                    record["found_as"].append(path)
                if kind not in record["kinds"]:
                    record["kinds"].append(kind)
                continue
            names = [n for n in self.listdir(real) if wanted(n)]
            record = {
                "path": path,
                "real": real,
                "found_as": [path],
                "kinds": [kind],
                "files": describe(real, names),
            }
            by_real[real] = record
            records.append(record)
        return [r for r in records if r["files"]]

    def lib_files(self, directory, names):
        return [[name, self.readlink(directory + "/" + name)] for name in names]

    def header_files(self, directory, names):
        files = []
        for name in names:
            path = directory + "/" + name
            # Only cudnn.h and cudnn_version*.h carry the version; the others are only listed.
            data = self.read_bytes(path, HEADER_CAP) if VERSION_HEADER_RE.match(name) else None
            defines = []
            if data is not None:
                defines = [m.group(0).decode("utf-8", "replace").strip() for m in DEFINE_RE.finditer(data)]
            files.append({"path": path, "real": self.resolve(path), "defines": defines[:20]})
        return files


# --- NVML through ctypes: the dozen calls the probe makes, nothing compiled on the host ---------------

# The text of each NVML error as nvidia-ml-py (pynvml) words it, so documents read the same as when the
# probe shipped pynvml; other codes are worded by the library's own nvmlErrorString.
NVML_ERRORS = {
    1: "Uninitialized",
    2: "Invalid Argument",
    3: "Not Supported",
    4: "Insufficient Permissions",
    5: "Already Initialized",
    6: "Not Found",
    7: "Insufficient Size",
    8: "Insufficient External Power",
    9: "Driver Not Loaded",
    10: "Timeout",
    11: "Interrupt Request Issue",
    12: "NVML Shared Library Not Found",
    13: "Function Not Found",
    14: "Corrupted infoROM",
    15: "GPU is lost",
    16: "GPU requires restart",
    17: "The operating system has blocked the request.",
    18: "RM has detected an NVML/RM version mismatch.",
    20: "Insufficient Memory",
    999: "Unknown Error",
}
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_ERROR_FUNCTION_NOT_FOUND = 13
# String buffers: nvml.h's sizes (NVML_DEVICE_NAME_V2_BUFFER_SIZE, NVML_DEVICE_UUID_V2_BUFFER_SIZE,
# NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE), then once more with the largest when NVML says too small.
NVML_STRING_SIZES = (96, 256)
NVML_MAX_GPUS = 64
# nvmlPciInfo_t (v2/v3): char busIdLegacy[16]; unsigned domain, bus, device, pciDeviceId,
# pciSubSystemId; char busId[32]. The v1 struct (nvmlDeviceGetPciInfo) starts with char busId[16].
# The buffer is larger than either, so a driver with a longer struct writes into our own spare bytes.
NVML_PCI_INFO_SIZE = 256
NVML_PCI_BUS_ID = {"nvmlDeviceGetPciInfo_v3": (36, 32), "nvmlDeviceGetPciInfo_v2": (36, 32),
                   "nvmlDeviceGetPciInfo": (0, 16)}  # fmt: skip


class NvmlError(Exception):
    def __init__(self, code, text):
        Exception.__init__(self, text)
        self.code = code


def nvml_query(ctypes, lib):
    """Ask a loaded libnvidia-ml for what the document's `driver.nvml` carries; never raises."""

    def function(*names):
        # The _v2 entry points first; drivers from before them (R3xx) have only the plain names.
        for name in names:
            try:
                return name, getattr(lib, name)
            except AttributeError:
                continue
        raise NvmlError(NVML_ERROR_FUNCTION_NOT_FOUND, NVML_ERRORS[NVML_ERROR_FUNCTION_NOT_FOUND])

    def check(code):
        if code != 0:
            raise NvmlError(code, nvml_error_text(ctypes, lib, code))

    def string(names, *args):
        _, fn = function(*names)
        for size in NVML_STRING_SIZES:
            buf = ctypes.create_string_buffer(size)
            code = fn(*(args + (buf, ctypes.c_uint(size))))
            if code == NVML_ERROR_INSUFFICIENT_SIZE and size != NVML_STRING_SIZES[-1]:
                continue
            check(code)
            return buf.value.decode("utf-8", "replace")  # .value stops at the NUL, or at the buffer's end
        return None  # pragma: no cover - the loop returns or raises

    def integer(ctype, names, *args):
        _, fn = function(*names)
        value = ctype()
        check(fn(*(args + (ctypes.byref(value),))))
        return value.value

    out = {"ok": False, "loaded": True, "error": None, "error_code": None, "errors": {}, "gpus": []}
    try:
        _, init = function("nvmlInit_v2", "nvmlInit")
        check(init())
    except NvmlError as exc:
        out["error"] = str(exc)
        out["error_code"] = exc.code
        return out

    def call(key, fn, *args):
        try:
            return fn(*args)
        except NvmlError as exc:
            out["errors"][key] = str(exc)
        except Exception as exc:  # a ctypes surprise must cost one field, not the document
            out["errors"][key] = "%s: %s" % (type(exc).__name__, exc)
        return None

    def handle_of(index):
        handle = ctypes.c_void_p()
        _, fn = function("nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex")
        check(fn(ctypes.c_uint(index), ctypes.byref(handle)))
        return handle

    def memory_total(handle):
        memory = (ctypes.c_ulonglong * 3)()  # nvmlMemory_t: total, free, used
        _, fn = function("nvmlDeviceGetMemoryInfo")
        check(fn(handle, ctypes.byref(memory)))
        return int(memory[0])

    def pci_bus_id(handle):
        name, fn = function("nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2", "nvmlDeviceGetPciInfo")
        info = ctypes.create_string_buffer(NVML_PCI_INFO_SIZE)
        check(fn(handle, ctypes.byref(info)))
        offset, size = NVML_PCI_BUS_ID[name]
        raw = info.raw[offset : offset + size]
        return raw.split(b"\0", 1)[0].decode("ascii", "replace")

    def compute_capability(handle):
        major, minor = ctypes.c_int(), ctypes.c_int()
        _, fn = function("nvmlDeviceGetCudaComputeCapability")
        check(fn(handle, ctypes.byref(major), ctypes.byref(minor)))
        return [major.value, minor.value]

    try:
        out["driver_version"] = call("driver_version", string, ("nvmlSystemGetDriverVersion",))
        out["nvml_version"] = call("nvml_version", string, ("nvmlSystemGetNVMLVersion",))
        out["cuda_driver_version"] = call(
            "cuda_driver_version",
            integer,
            ctypes.c_int,
            ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"),
        )
        count = call("device_count", integer, ctypes.c_uint, ("nvmlDeviceGetCount_v2", "nvmlDeviceGetCount")) or 0
        for index in range(min(int(count), NVML_MAX_GPUS)):
            handle = call("gpu%d.handle" % index, handle_of, index)
            gpu = {"index": index}
            if handle is not None:
                gpu["name"] = call("gpu%d.name" % index, string, ("nvmlDeviceGetName",), handle)
                gpu["uuid"] = call("gpu%d.uuid" % index, string, ("nvmlDeviceGetUUID",), handle)
                gpu["memory_total"] = call("gpu%d.memory" % index, memory_total, handle)
                gpu["pci_bus_id"] = call("gpu%d.pci" % index, pci_bus_id, handle)
                gpu["compute_capability"] = call("gpu%d.compute_capability" % index, compute_capability, handle)
            out["gpus"].append(gpu)
        out["ok"] = out.get("driver_version") is not None
    finally:
        try:
            lib.nvmlShutdown()
        except Exception as exc:  # shutting down is best effort; say so rather than hide it
            out["errors"]["shutdown"] = "%s: %s" % (type(exc).__name__, exc)
    return out


def nvml_error_text(ctypes, lib, code):
    """An NVML error code in words: pynvml's wording, else the library's nvmlErrorString."""
    if code in NVML_ERRORS:
        return NVML_ERRORS[code]
    try:
        fn = lib.nvmlErrorString
        fn.restype = ctypes.c_char_p
        text = fn(ctypes.c_int(code))
    except Exception:
        text = None
    if not text:
        return "NVML Error with code %d" % code
    return text[:200].decode("utf-8", "replace")


# --- ELF: the dynamic section of a shared object, read with a few bounded seeks -------------------

ELF_HEADER_CAP = 64
ELF_PHNUM_CAP = 512  # program headers; real objects have about ten
ELF_SHNUM_CAP = 4096  # section headers, read only when there is no PT_DYNAMIC
ELF_DYNAMIC_CAP = 1024 * 1024  # the dynamic section: 16 bytes an entry; real ones hold fewer than 100
ELF_STRINGS_CAP = 512  # DT_NEEDED/RPATH/RUNPATH/SONAME strings kept from one object
ELF_STRING_CAP = 16 * 1024  # one string (an RPATH of many directories); longer is an error
DT_NULL, DT_NEEDED, DT_STRTAB, DT_STRSZ, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 10, 14, 15, 29


class ElfError(Exception):
    pass


def elf_read_at(handle, offset, size, what):
    if offset < 0 or size < 0:
        raise ElfError("%s: bad offset" % what)
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise ElfError("%s: past the end of the file" % what)
    return data


def elf_dynamic(handle):
    """The dynamic section of an ELF64 little-endian object: {"soname", "needed", "rpath", "runpath"}
    with strings as written (RPATH/RUNPATH as one `:`-joined string each, or None). Reads only the ELF
    header, the program headers (or the section headers, when there is no PT_DYNAMIC), the dynamic
    section and each wanted string, each bounded. Raises ElfError for anything else: 32-bit or
    big-endian objects, no dynamic section, offsets outside the file."""
    ident = handle.read(ELF_HEADER_CAP)
    if len(ident) < ELF_HEADER_CAP or ident[:4] != b"\x7fELF":
        raise ElfError("not an ELF object")
    if ident[4] != 2:
        raise ElfError("not read: a 32-bit ELF object (only ELF64 is read)")
    if ident[5] != 1:
        raise ElfError("not read: a big-endian ELF object (only little-endian is read)")
    e_phoff, e_shoff = struct.unpack_from("<QQ", ident, 32)
    e_phentsize, e_phnum, e_shentsize, e_shnum = struct.unpack_from("<HHHH", ident, 54)
    dyn_off = dyn_size = None
    loads = []
    if e_phnum and e_phentsize >= 56:
        if e_phnum > ELF_PHNUM_CAP or e_phentsize * e_phnum > ELF_DYNAMIC_CAP:
            raise ElfError("%d program headers, more than %d" % (e_phnum, ELF_PHNUM_CAP))
        table = elf_read_at(handle, e_phoff, e_phentsize * e_phnum, "program headers")
        for i in range(e_phnum):
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", table, i * e_phentsize)
            if p_type == 1:  # PT_LOAD: maps the addresses DT_STRTAB is given in
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2 and dyn_off is None:  # PT_DYNAMIC
                dyn_off, dyn_size = p_offset, p_filesz
    strtab_off = None
    if dyn_off is None and e_shnum and e_shentsize >= 64:
        if e_shnum > ELF_SHNUM_CAP or e_shentsize * e_shnum > ELF_DYNAMIC_CAP:
            raise ElfError("%d section headers, more than %d" % (e_shnum, ELF_SHNUM_CAP))
        table = elf_read_at(handle, e_shoff, e_shentsize * e_shnum, "section headers")
        for i in range(e_shnum):
            _, sh_type, _, _, sh_offset, sh_size, sh_link = struct.unpack_from("<IIQQQQI", table, i * e_shentsize)
            if sh_type == 6 and sh_link < e_shnum:  # SHT_DYNAMIC; sh_link: its string table
                dyn_off, dyn_size = sh_offset, sh_size
                strtab_off = struct.unpack_from("<Q", table, sh_link * e_shentsize + 24)[0]
                break
    if dyn_off is None:
        raise ElfError("no dynamic section (not a shared object?)")
    if dyn_size > ELF_DYNAMIC_CAP:
        raise ElfError("a dynamic section of %d bytes, more than %d" % (dyn_size, ELF_DYNAMIC_CAP))
    dynamic = elf_read_at(handle, dyn_off, dyn_size - dyn_size % 16, "dynamic section")
    entries = []
    strtab_addr = None
    for i in range(0, len(dynamic), 16):
        tag, value = struct.unpack_from("<qQ", dynamic, i)
        if tag == DT_NULL:
            break
        if tag == DT_STRTAB:
            strtab_addr = value
        elif tag in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH):
            entries.append((tag, value))
    if len(entries) > ELF_STRINGS_CAP:
        raise ElfError("%d dynamic strings, more than %d" % (len(entries), ELF_STRINGS_CAP))
    if strtab_off is None and entries:
        if strtab_addr is None:
            raise ElfError("no DT_STRTAB")
        for vaddr, offset, size in loads:
            if vaddr <= strtab_addr < vaddr + size:
                strtab_off = strtab_addr - vaddr + offset
                break
        else:
            raise ElfError("DT_STRTAB is outside every loaded segment")
    out = {"soname": None, "needed": [], "rpath": None, "runpath": None}
    for tag, value in entries:
        handle.seek(strtab_off + value)
        raw = handle.read(ELF_STRING_CAP + 1)
        end = raw.find(b"\0")
        if end < 0:
            raise ElfError("an unterminated or overlong string in the dynamic string table")
        text = raw[:end].decode("utf-8", "replace")
        if tag == DT_NEEDED:
            out["needed"].append(text)
        elif tag == DT_SONAME:
            out["soname"] = text
        elif tag == DT_RPATH:
            out["rpath"] = text
        else:
            out["runpath"] = text
    return out


def expand_origin(value, origin):
    """RPATH/RUNPATH entries with $ORIGIN expanded (to the object's real directory, then
    normalised: its `..` are taken lexically, which is right for a real directory); (entries,
    dropped) where dropped are the entries naming $LIB or $PLATFORM, which depend on the loader."""
    entries, dropped = [], []
    for part in value.split(":"):
        if not part:
            continue  # an empty entry means the current directory: nothing the probe can name
        expanded = part.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
        if re.search(r"\$(\{)?(LIB|PLATFORM)\b", expanded):
            dropped.append(part)
            continue
        if expanded != part:
            expanded = os.path.normpath(expanded)
        entries.append(expanded)
    return entries, dropped


def path_entries(value):
    """A search path's entries in order: empty ones (the current directory) and any naming what
    the probe could not expand are dropped."""
    return [p for p in value.split(":") if p and UNKNOWN not in p][:256]


def split_words(text):
    """Whitespace-separated words with "..." and '...' quoting (systemd's Environment= lines)."""
    words, word, quote, have = [], [], None, False
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
            else:
                word.append(ch)
        elif ch in "'\"":
            quote, have = ch, True
        elif ch.isspace():
            if word or have:
                words.append("".join(word))
            word, have = [], False
        else:
            word.append(ch)
    if word or have:
        words.append("".join(word))
    return words


def shell_word(text, i, variables, quoted=False):
    """The value of the shell word starting at text[i], with $NAME, ${NAME}, ${NAME:+word},
    ${NAME:-word} (and without the colon) expanded from `variables`; anything else the probe cannot
    know ($(...), backticks, an unknown variable) becomes UNKNOWN. Nothing is executed. quoted:
    the whole text is one double-quoted word (a kernel.json value)."""
    out = []
    quote = '"' if quoted else None
    n = len(text)
    while i < n:
        ch = text[i]
        if quote == "'":
            if ch == "'":
                quote = None
            else:
                out.append(ch)
            i += 1
            continue
        if ch == "\\" and i + 1 < n:
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"' and not quoted:
            quote = None if quote == '"' else '"'
            i += 1
            continue
        if ch == "'" and quote is None:
            quote = "'"
            i += 1
            continue
        if ch == "`":
            out.append(UNKNOWN)
            end = text.find("`", i + 1)
            i = n if end < 0 else end + 1
            continue
        if ch == "$":
            value, i = shell_expansion(text, i, variables)
            out.append(value)
            continue
        if quote is None and (ch.isspace() or ch in ";&|#)"):
            break
        out.append(ch)
        i += 1
    return "".join(out)


def closing(text, start, opening, close):
    """The index of the bracket that closes the one at text[start] (len(text) when none does)."""
    depth, j = 0, start
    while j < len(text):
        if text[j] == opening:
            depth += 1
        elif text[j] == close:
            depth -= 1
            if depth == 0:
                break
        j += 1
    return j


def shell_expansion(text, i, variables):
    """One expansion at text[i] == "$": (its value, the index after it)."""
    n = len(text)
    if i + 1 < n and text[i + 1] == "(":
        return UNKNOWN, closing(text, i + 1, "(", ")") + 1
    if i + 1 < n and text[i + 1] == "{":
        j = closing(text, i + 1, "{", "}")
        inner = text[i + 2 : j]
        match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+=?])(.*))?$", inner, re.S)
        if not match:
            return UNKNOWN, j + 1
        name, op, word = match.group(1), match.group(2), match.group(3)
        value = variables.get(name)
        if op is None:
            return (UNKNOWN if value is None else value), j + 1
        is_set = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("+"):
            return (shell_word(word, 0, variables, quoted=True) if is_set else ""), j + 1
        if is_set:
            return value, j + 1
        return shell_word(word, 0, variables, quoted=True), j + 1
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[i + 1 :])
    if not match:
        return "$", i + 1
    value = variables.get(match.group(0))
    return (UNKNOWN if value is None else value), i + 1 + match.end()


def file_kind(mode):
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "mode %o" % mode


def cpu_times():
    """CPU seconds used so far by this process (interpreter start-up included) and by the commands it
    ran and waited for: what one probe costs the host, reported so a fleet's cost can be measured
    from the documents alone. None where the resource module is missing."""
    try:
        import resource
    except ImportError:
        return None
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "self": round(own.ru_utime + own.ru_stime, 4),
        "children": round(children.ru_utime + children.ru_stime, 4),
    }


def start_reader(stream, chunks):
    """Read a pipe to its end in a thread, keeping at most OUTPUT_CAP bytes in `chunks`."""

    def target():
        kept = 0
        try:
            while True:
                data = os.read(stream.fileno(), 65536)
                if not data:
                    break
                if kept < OUTPUT_CAP:
                    chunks.append(data[: OUTPUT_CAP - kept])
                    kept += len(chunks[-1])
        except (OSError, ValueError):
            pass

    thread = threading.Thread(target=target, name="reader")
    thread.daemon = True
    thread.start()
    return thread


def kill_group(proc):
    try:
        os.killpg(proc.pid, 9)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass


def parse_args(argv, options):
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--root" and i + 1 < len(argv):
            options["root"] = argv[i + 1]
            i += 2
        elif arg == "--venv-root" and i + 1 < len(argv):
            if not options.get("_venv_roots_from_argv"):
                options["venv_roots"] = []
                options["_venv_roots_from_argv"] = True
            options["venv_roots"].append(argv[i + 1])
            i += 2
        elif arg == "--systemd-unit" and i + 1 < len(argv):
            options["systemd_units"] = list(options.get("systemd_units") or []) + [argv[i + 1]]
            i += 2
        elif arg == "--session-ld-library-path" and i + 1 < len(argv):
            options["session_ld_library_path"] = argv[i + 1]
            i += 2
        elif arg == "--no-nvml":
            options["nvml"] = False
            i += 1
        else:
            sys.stderr.write("remediator probe: unknown argument %r\n" % arg)
            i += 1
    options.pop("_venv_roots_from_argv", None)
    return options


def main(argv=None, payload_options=None):
    if sys.version_info < (3, 6):
        sys.stderr.write(
            "remediator: python3 too old: python3 on this host is %d.%d; the probe needs 3.6 or newer\n"
            % tuple(sys.version_info[:2])
        )
        return 3
    options = dict(DEFAULT_OPTIONS)
    if payload_options:
        options.update(payload_options)
    parse_args(sys.argv[1:] if argv is None else argv, options)
    probe = Probe(options)
    doc = probe.collect()
    out = json.dumps(doc, ensure_ascii=True, sort_keys=True)
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
    if probe.nvml_hung:
        # A thread is stuck inside the driver; interpreter shutdown would wait for nothing better.
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(payload_options=PAYLOAD_OPTIONS))
