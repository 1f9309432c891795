"""Which file each library a framework needs resolves to, the way the dynamic loader finds it.

Pure: it reads only the facts (the probe's `libdirs`, `launch_envs`, the loader config and each
framework's ELF dynamic sections). For one soname asked for by one of a framework's objects, under one way
of starting Python (a launch env), glibc's ld.so searches, in this order (ld.so(8)):

1. the requesting object's DT_RPATH, unless it also has a DT_RUNPATH;
2. LD_LIBRARY_PATH, as that launch env sets it;
3. the requesting object's DT_RUNPATH;
4. /etc/ld.so.cache (what `ldconfig` registered from ld.so.conf and the trusted dirs);
5. the trusted default directories.

The loader opens `<dir>/<soname>` literally, so a library is reached in a directory when a file of that
exact name is there (usually a link to the versioned file, whose name gives the version).
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass

from remediator.facts import ElfDeps, HostFacts, LaunchEnv, LibDir, LibFile
from remediator.hostpaths import for_facts

# Launch envs every Python on the host can be started from, when the probe did not record any.
SSH_COMMAND = "ssh command"
_VERSION_IN_NAME = re.compile(r"\.so\.(\d+(?:\.\d+)*)$")


@dataclass(frozen=True)
class Step:
    """One directory of a search order and why it is there."""

    dir: str
    how: str


@dataclass(frozen=True)
class Resolution:
    soname: str
    launch: str  # the launch env's name
    file: LibFile | None  # what the loader reaches; None: nothing
    dir: str | None
    how: str  # how it was reached ("DT_RUNPATH of libtorch_cuda.so", "ld.so.cache", ...)

    @property
    def version(self) -> str | None:
        if self.file is None:
            return None
        if self.file.version:
            return self.file.version
        return version_from_name(posixpath.basename(self.file.real or self.file.name))

    @property
    def path(self) -> str | None:
        return None if self.file is None or self.dir is None else posixpath.join(self.dir, self.file.name)

    def describe(self) -> str:
        if self.file is None:
            return f"{self.soname}: not found ({self.how})"
        real = f" -> {self.file.real}" if self.file.real and self.file.real != self.path else ""
        stub = " (a link-time stub)" if self.file.stub else ""
        return f"{self.soname}: {self.path}{real}{stub} via {self.how}"


def version_from_name(name: str) -> str | None:
    match = _VERSION_IN_NAME.search(name)
    return match.group(1) if match else None


@functools.lru_cache(maxsize=65536)
def norm(path: str) -> str:
    """posixpath.normpath, remembered: diagnosis and planning normalise the same host paths again and again."""
    return posixpath.normpath(path) if path else path


class Resolver:
    """The search orders of one host, built once; `resolve` is then a walk over them."""

    def __init__(self, facts: HostFacts) -> None:
        self.facts = facts
        self.dirs: dict[str, LibDir] = {}
        self._names: dict[str, dict[str, LibFile]] = {}  # dir -> file name -> file, for existing dirs
        for d in facts.libdirs:
            for key in (norm(d.path), norm(d.real) if d.real else None):
                if key and key not in self.dirs:
                    self.dirs[key] = d
                    self._names[key] = {f.name: f for f in reversed(d.libs)} if d.exists else {}
        self.cache: list[tuple[str, str]] = list(facts.loader.cache)
        self._resolved: dict[tuple[str, LaunchEnv | None, ElfDeps | None], Resolution] = {}

    def lib(self, directory: str, soname: str) -> LibFile | None:
        names = self._names.get(norm(directory))
        return names.get(soname) if names else None

    def order(self, launch: LaunchEnv | None, obj: ElfDeps | None) -> list[Step]:
        steps: list[Step] = []
        name = posixpath.basename(obj.path) if obj is not None else ""
        if obj is not None and obj.rpath and not obj.runpath:
            steps += [Step(d, f"DT_RPATH of {name}") for d in obj.rpath]
        if launch is not None:
            where = f" from {launch.source}" if launch.source else ""
            steps += [Step(d, f"LD_LIBRARY_PATH of the {launch.name}{where}") for d in launch.ld_library_path]
        if obj is not None:
            steps += [Step(d, f"DT_RUNPATH of {name}") for d in obj.runpath]
        return steps

    def resolve(self, soname: str, launch: LaunchEnv | None = None, obj: ElfDeps | None = None) -> Resolution:
        key = (soname, launch, obj)
        hit = self._resolved.get(key)
        if hit is None:
            hit = self._resolved[key] = self._resolve(soname, launch, obj)
        return hit

    def _resolve(self, soname: str, launch: LaunchEnv | None, obj: ElfDeps | None) -> Resolution:
        label = launch.name if launch is not None else SSH_COMMAND
        for step in self.order(launch, obj):
            hit = self.lib(step.dir, soname)
            if hit is not None:
                return Resolution(soname, label, hit, norm(step.dir), step.how)
        for cached, path in self.cache:
            if cached == soname:
                directory = posixpath.dirname(path)
                hit = self.lib(directory, soname)
                if hit is None and norm(directory) in self.dirs:
                    continue  # a stale cache entry: the file is gone, and ld.so goes on searching
                hit = hit or LibFile(name=soname, real=path)
                return Resolution(soname, label, hit, norm(directory), "ld.so.cache")
        if not self.cache:  # no ldconfig output: the cache holds what ld.so.conf names
            for entry in self.facts.loader.ld_so_conf:
                hit = self.lib(entry.path, soname)
                if hit is not None:
                    return Resolution(soname, label, hit, norm(entry.path), f"ld.so.conf ({entry.source})")
        for d in for_facts(self.facts).default_dirs:
            hit = self.lib(d, soname)
            if hit is not None:
                return Resolution(soname, label, hit, d, "a default loader directory")
        searched = [s.dir for s in self.order(launch, obj)]
        return Resolution(soname, label, None, None,
                          "searched " + (", ".join(searched) + ", " if searched else "") + "ld.so.cache and "
                          "the default directories")

    def launch_envs_for(self, env_path: str) -> list[LaunchEnv]:
        """The ways this env's Python is started, as far as the host tells: its own (its activate script,
        its Jupyter kernels, the systemd units that run it) when it has any, else a login shell, else a
        bare ssh command; and a bare session's environment wherever it sets LD_LIBRARY_PATH. A bare ssh
        command, cron and systemd without an Environment= see no profile.d: judging every env by them
        when they set nothing would flag the classic setups whose exports live in profile.d."""
        root = norm(env_path)
        own = [le for le in self.facts.launch_envs if le.env is not None and norm(le.env) == root]
        # What a session gets before any profile (an ssh command's environment: /etc/environment, sshd's
        # SetEnv, the caller's export) reaches every env's Python when it sets LD_LIBRARY_PATH at all.
        bare = [le for le in self.facts.launch_envs if le.env is None and le.name != "login shell"
                and le.ld_library_path]
        if own:
            return own + bare
        login = [le for le in self.facts.launch_envs if le.env is None and le.name == "login shell"]
        return login or [le for le in self.facts.launch_envs if le.env is None][:1] or [LaunchEnv(SSH_COMMAND)]


def cuda_family(soname: str) -> str | None:
    """The library family of a soname ("libcudnn.so.8" -> "cudnn", "libcublasLt.so.12" -> "cublas")."""
    match = re.match(r"lib(cudart|cublasLt|cublas|cudnn[a-z_]*|cufft|curand|cusolver|cusparse|nvJitLink|nvrtc|"
                     r"nccl|cuda)\.so", soname)
    if not match:
        return None
    name = match.group(1)
    if name.startswith("cudnn"):
        return "cudnn"
    return "cublas" if name == "cublasLt" else name


def cuda_sonames(sonames: Iterable[str]) -> list[str]:
    return [s for s in dict.fromkeys(sonames) if cuda_family(s) is not None]


__all__ = ["Resolution", "Resolver", "Step", "cuda_family", "cuda_sonames", "norm",
           "version_from_name"]
