"""Host paths by architecture: an Arm server (Grace Hopper, `targets/sbsa-linux`), a Jetson
(`targets/aarch64-linux`) and an x86_64 host get the same verdict for the same mistake, each in its own dirs.

The Arm case is the layout NVIDIA's arm64-sbsa installers make (lib64 -> targets/sbsa-linux/lib, debs in
/usr/lib/aarch64-linux-gnu); before hostpaths, diagnosis mapped lib64 to targets/x86_64-linux/lib on every host,
so on a GH200 a cuDNN copied into the toolkit looked off the loader path, and the plan's quarantine of it was
refused by the allowlist.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from factories import driver, gpus, host, ld_path, tf, toolkit, venv

from remediator import safety
from remediator.diagnosis import canonical_lib_dir, diagnose
from remediator.facts import CudnnInstall, LdPathEntry, LibDir, LibFile, LoaderConfig, OsRelease
from remediator.hostpaths import arch_paths, package_lib_dir, toolkit_target
from remediator.matrix import load_matrix, parse_target
from remediator.plan import Policy, plan_host
from remediator.resolve import Resolver

MATRIX = load_matrix()
TARGET = parse_target("tensorflow==2.12.0")


def _os(arch: str, distro: str = "ubuntu") -> OsRelease:
    return OsRelease(id=distro, version_id="22.04", pretty_name="Ubuntu 22.04.4 LTS", kernel="5.15.0-1053-nvidia",
                     arch=arch)


def _copied_cudnn_beside_deb(arch: str, target_dir: str, multiarch: str):  # type: ignore[no-untyped-def]
    """cuDNN 7.6.5 copied into CUDA 11.8's lib dir by hand, cuDNN 8.6 from NVIDIA's deb in the multiarch dir,
    /usr/local/cuda/lib64 on LD_LIBRARY_PATH: the copy wins and TensorFlow 2.12 cannot load cuDNN 8."""
    lib = f"/usr/local/cuda-11.8/targets/{target_dir}/lib"
    copy = CudnnInstall(version="7.6.5", path=lib, install_method="tarball",
                        header=f"/usr/local/cuda-11.8/targets/{target_dir}/include/cudnn.h",
                        libraries=("libcudnn.so.7.6.5", "libcudnn.so.7", "libcudnn.so"),
                        in_toolkit="/usr/local/cuda-11.8")
    deb = CudnnInstall(version="8.6.0", path=f"/usr/lib/{multiarch}", install_method="deb",
                       header=f"/usr/include/{multiarch}/cudnn_version_v8.h",
                       libraries=("libcudnn.so.8.6.0", "libcudnn.so.8"), package="libcudnn8")
    return host(os=_os(arch), driver=driver("535.161.08"), gpus=gpus(1, "NVIDIA GH200 480GB"),
                toolkits=(toolkit("11.8.89", default=True),), cudnn=(copy, deb),
                loader=ld_path("/usr/local/cuda/lib64"),
                envs=(venv("/opt/venvs/tf", "3.10.12", tf("2.12.0", "11.8", "8")),))


LAYOUTS = [("x86_64", "x86_64-linux", "x86_64-linux-gnu"), ("aarch64", "sbsa-linux", "aarch64-linux-gnu"),
           ("aarch64", "aarch64-linux", "aarch64-linux-gnu")]


@pytest.mark.parametrize(("arch", "target_dir", "multiarch"), LAYOUTS)
def test_a_copied_cudnn_in_front_is_found_on_every_arch(arch: str, target_dir: str, multiarch: str) -> None:
    facts = _copied_cudnn_beside_deb(arch, target_dir, multiarch)
    shadowed = [f for f in diagnose(facts, TARGET, MATRIX) if f.code == "CUDNN_SHADOWED"]
    assert len(shadowed) == 1
    assert "the loader reaches 7.6.5 first" in shadowed[0].message
    assert f"targets/{target_dir}/lib" in shadowed[0].message


@pytest.mark.parametrize(("arch", "target_dir", "multiarch"), LAYOUTS)
def test_the_plan_quarantines_the_copy_where_it_really_is(arch: str, target_dir: str, multiarch: str) -> None:
    plan = plan_host(_copied_cudnn_beside_deb(arch, target_dir, multiarch), TARGET, MATRIX, Policy())
    assert plan.status == "changes", plan.error
    quarantined = [a.params["path"] for a in plan.actions if a.kind == "quarantine_path"]
    lib = f"/usr/local/cuda-11.8/targets/{target_dir}"
    assert quarantined == [f"{lib}/lib/libcudnn.so.7.6.5", f"{lib}/lib/libcudnn.so.7", f"{lib}/lib/libcudnn.so",
                           f"{lib}/include/cudnn.h"]
    assert all(safety.check_path(p, ()).allowed for p in quarantined)
    pins = [a.params["ld_library_path"] for a in plan.actions if a.kind == "pin_loader_path"]
    assert pins == [["/usr/local/cuda-11.8/lib64"]]  # the deb's cuDNN is in a default dir of this arch


def test_lib64_maps_to_the_toolkit_target_of_the_host() -> None:
    gh200 = _copied_cudnn_beside_deb("aarch64", "sbsa-linux", "aarch64-linux-gnu")
    jetson = _copied_cudnn_beside_deb("aarch64", "aarch64-linux", "aarch64-linux-gnu")
    x86 = _copied_cudnn_beside_deb("x86_64", "x86_64-linux", "x86_64-linux-gnu")
    path = "/usr/local/cuda-11.8/lib64/libcudnn.so.8"
    assert canonical_lib_dir(path, gh200) == "/usr/local/cuda-11.8/targets/sbsa-linux/lib/libcudnn.so.8"
    assert canonical_lib_dir(path, jetson) == "/usr/local/cuda-11.8/targets/aarch64-linux/lib/libcudnn.so.8"
    assert canonical_lib_dir(path, x86) == "/usr/local/cuda-11.8/targets/x86_64-linux/lib/libcudnn.so.8"
    assert canonical_lib_dir("/opt/other/lib64", gh200) == "/opt/other/lib64"  # not a toolkit: as it is
    assert toolkit_target(gh200, "/usr/local/cuda-11.8") == "sbsa-linux"
    assert toolkit_target(jetson, "/usr/local/cuda-11.8/") == "aarch64-linux"


def test_the_loader_default_dirs_follow_the_arch() -> None:
    """A cuDNN deb on an Arm host is found where ld.so finds it without any configuration."""
    cudnn = LibFile(name="libcudnn.so.8", soname="libcudnn.so.8", real="/usr/lib/aarch64-linux-gnu/libcudnn.so.8.6.0",
                    version="8.6.0")
    dirs = (LibDir(path="/usr/lib/aarch64-linux-gnu", real="/usr/lib/aarch64-linux-gnu", libs=(cudnn,)),)
    arm = host(os=_os("aarch64"), libdirs=dirs, loader=LoaderConfig())
    hit = Resolver(arm).resolve("libcudnn.so.8")
    assert hit.dir == "/usr/lib/aarch64-linux-gnu" and hit.how == "a default loader directory"
    # The same dir on an x86_64 host is nowhere the loader looks.
    assert Resolver(host(os=_os("x86_64"), libdirs=dirs, loader=LoaderConfig())).resolve("libcudnn.so.8").file is None


@pytest.mark.parametrize(("arch", "expected"), [
    ("x86_64", "x86_64"), ("amd64", "x86_64"), ("aarch64", "aarch64"), ("ARM64", "aarch64"), ("ppc64le", "ppc64le"),
    ("", "x86_64"), ("riscv64", "x86_64"),
])
def test_arch_names_as_uname_and_distros_write_them(arch: str, expected: str) -> None:
    assert arch_paths(arch).arch == expected


def test_where_packages_put_libraries() -> None:
    assert package_lib_dir(host(os=_os("aarch64"))) == "/usr/lib/aarch64-linux-gnu"
    assert package_lib_dir(host(os=_os("x86_64"))) == "/usr/lib/x86_64-linux-gnu"
    assert package_lib_dir(host(os=_os("x86_64", "rocky"))) == "/usr/lib64"


def test_loader_entries_on_arm_name_lib64_and_still_match() -> None:
    """An ld.so.conf.d entry naming /usr/local/cuda/lib64 on a GH200 reaches the sbsa dir's libraries."""
    facts = _copied_cudnn_beside_deb("aarch64", "sbsa-linux", "aarch64-linux-gnu")
    conf = LoaderConfig(ld_so_conf=(LdPathEntry("/usr/local/cuda/lib64", "/etc/ld.so.conf.d/cuda.conf", True),))
    findings = diagnose(replace(facts, loader=conf), TARGET, MATRIX)
    assert any(f.code == "CUDNN_SHADOWED" and "the loader reaches 7.6.5 first" in f.message for f in findings)
