"""Where a host keeps its libraries, by its CPU architecture: one home for the paths that differ.

The facts carry `uname -m` (`facts.os.arch`). Three things follow from it:

- the Debian/Ubuntu multiarch directory (`/usr/lib/x86_64-linux-gnu`, `/usr/lib/aarch64-linux-gnu`), which
  is where distro packages put libraries (cuDNN's debs among them) and one of the dirs the loader searches;
- the dir of an NVIDIA toolkit that `lib64` links to: `targets/x86_64-linux/lib` on x86_64, but
  `targets/sbsa-linux/lib` on Arm servers (Grace Hopper, Ampere Altra: "arm64-sbsa" in NVIDIA's installers)
  and `targets/aarch64-linux/lib` on Jetson (L4T), as NVIDIA's installation guide lays them out
  (https://docs.nvidia.com/cuda/cuda-installation-guide-linux/, "arm64-sbsa" and the cross-target tables);
- the default directories of the dynamic loader.

An empty or unknown arch is read as x86_64: the probe always reports it, and older saved facts that lack it
came from x86_64 hosts.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from remediator.facts import HostFacts


@dataclass(frozen=True)
class ArchPaths:
    arch: str  # normalised `uname -m`
    multiarch: str  # Debian's multiarch tuple
    cuda_targets: tuple[str, ...]  # names under <toolkit>/targets/, the usual one first

    @property
    def multiarch_lib(self) -> str:
        return f"/usr/lib/{self.multiarch}"

    @property
    def default_dirs(self) -> tuple[str, ...]:
        """The loader's trusted dirs after LD_LIBRARY_PATH, RUNPATH and ld.so.cache, in search order
        (glibc's built-in list plus the multiarch dirs Debian's ld.so.conf.d names)."""
        return (f"/lib/{self.multiarch}", self.multiarch_lib, "/lib64", "/usr/lib64", "/lib", "/usr/lib")


_ARCHES = {
    "x86_64": ArchPaths("x86_64", "x86_64-linux-gnu", ("x86_64-linux",)),
    "aarch64": ArchPaths("aarch64", "aarch64-linux-gnu", ("sbsa-linux", "aarch64-linux")),
    "ppc64le": ArchPaths("ppc64le", "powerpc64le-linux-gnu", ("ppc64le-linux",)),
}
_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64", "ppc64el": "ppc64le"}

#: Every toolkit target dir name any supported arch uses (for allowlists that must accept all of them).
ALL_CUDA_TARGETS: tuple[str, ...] = tuple(t for a in _ARCHES.values() for t in a.cuda_targets)


@functools.cache
def arch_paths(arch: str | None) -> ArchPaths:
    name = (arch or "").strip().lower()
    return _ARCHES.get(_ALIASES.get(name, name), _ARCHES["x86_64"])


def for_facts(facts: HostFacts) -> ArchPaths:
    return arch_paths(facts.os.arch)


def toolkit_target(facts: HostFacts, toolkit_root: str) -> str:
    """The `targets/<name>` a toolkit's lib64 links to on this host: the arch's usual one, unless the facts
    show the toolkit laid out for another of the arch's targets (a Jetson's aarch64-linux on aarch64)."""
    paths = for_facts(facts)
    if len(paths.cuda_targets) > 1:
        root = toolkit_root.rstrip("/")
        seen = list(_recorded_dirs(facts))
        for name in paths.cuda_targets:
            prefix = f"{root}/targets/{name}/"
            if any(d.startswith(prefix) for d in seen):
                return name
    return paths.cuda_targets[0]


# os-release IDs of distros whose packages put 64-bit libraries in /usr/lib64 (rpm-based).
_LIB64_DISTROS = frozenset({"rhel", "centos", "rocky", "almalinux", "ol", "fedora", "amzn", "sles", "opensuse-leap",
                            "opensuse-tumbleweed", "azurelinux", "mariner"})


def package_lib_dir(facts: HostFacts) -> str:
    """Where the distro's packages (a cuDNN deb or rpm from NVIDIA's repo) put their libraries."""
    if facts.os.id.lower() in _LIB64_DISTROS:
        return "/usr/lib64"
    return for_facts(facts).multiarch_lib


def _recorded_dirs(facts: HostFacts) -> Iterable[str]:
    for d in facts.libdirs:
        yield (d.real or d.path).rstrip("/") + "/"
    for c in facts.cudnn:
        yield c.path.rstrip("/") + "/"


__all__ = ["ALL_CUDA_TARGETS", "ArchPaths", "arch_paths", "for_facts", "package_lib_dir", "toolkit_target"]
