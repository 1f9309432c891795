"""Builders for facts as the probe would report them, so tests read like the host they describe."""

from __future__ import annotations

from remediator.facts import (
    CompatLibcuda,
    CudaToolkit,
    CudnnInstall,
    Driver,
    Framework,
    Gpu,
    HostFacts,
    LdPathEntry,
    LoaderConfig,
    OsRelease,
    PythonEnv,
)

UBUNTU_2004 = OsRelease(id="ubuntu", version_id="20.04", pretty_name="Ubuntu 20.04.6 LTS",
                        kernel="5.4.0-150-generic", arch="x86_64")
LIBDIR = "/usr/lib/x86_64-linux-gnu"


def driver(version: str = "535.161.08", **kw: object) -> Driver:
    return Driver(version=version, source="nvml", kernel_module_version=version, userspace_version=version,
                  **kw)  # type: ignore[arg-type]


def gpus(n: int = 1, name: str = "NVIDIA A100-SXM4-80GB") -> tuple[Gpu, ...]:
    return tuple(Gpu(index=i, name=name, uuid=f"GPU-{i:08d}", memory_mib=81920, compute_capability="8.0")
                 for i in range(n))


def toolkit(version: str, *, default: bool = False, method: str = "runfile", path: str | None = None,
            alternatives: bool = False) -> CudaToolkit:
    mm = ".".join(version.split(".")[:2])
    return CudaToolkit(version=version, path=path or f"/usr/local/cuda-{mm}", install_method=method,  # type: ignore[arg-type]
                       version_source="version.json", is_default=default, via_alternatives=alternatives)


def cudnn_copy_in_toolkit(version: str, toolkit_path: str) -> CudnnInstall:
    """cuDNN unpacked from NVIDIA's tarball and copied into a toolkit dir, as many guides say to."""
    major = version.split(".")[0]
    return CudnnInstall(version=version, path=f"{toolkit_path}/lib64", install_method="tarball",
                        header=f"{toolkit_path}/include/{'cudnn.h' if major == '7' else 'cudnn_version.h'}",
                        libraries=(f"libcudnn.so.{version}", f"libcudnn.so.{major}", "libcudnn.so"),
                        in_toolkit=toolkit_path)


def cudnn_deb(version: str, package: str) -> CudnnInstall:
    major = version.split(".")[0]
    return CudnnInstall(version=version, path=LIBDIR, install_method="deb",
                        header=f"/usr/include/x86_64-linux-gnu/cudnn_version_v{major}.h",
                        libraries=(f"libcudnn.so.{version}", f"libcudnn.so.{major}"), package=package)


def cudnn_wheel(version: str, env: str, py: str = "3.11", dist: str = "nvidia-cudnn-cu12") -> CudnnInstall:
    path = f"{env}/lib/python{py}/site-packages/nvidia/cudnn/lib"
    return CudnnInstall(version=version, path=path, install_method="pip",
                        header=f"{env}/lib/python{py}/site-packages/nvidia/cudnn/include/cudnn_version.h",
                        libraries=(f"libcudnn.so.{version.split('.')[0]}",), package=f"{dist}=={version}", env=env)


def venv(path: str, python_version: str, *frameworks: Framework,
         wheels: tuple[tuple[str, str], ...] = (), kind: str = "venv",
         conda: tuple[tuple[str, str], ...] = ()) -> PythonEnv:
    return PythonEnv(path=path, kind=kind, python=f"{path}/bin/python",  # type: ignore[arg-type]
                     python_version=python_version, frameworks=frameworks, nvidia_wheels=wheels,
                     conda_packages=conda)


def tf(version: str, cuda: str | None, cudnn: str | None, name: str = "tensorflow",
       cuda_build: bool | None = True) -> Framework:
    return Framework(name=name, version=version, cuda_build=cuda, cudnn_build=cudnn, is_cuda_build=cuda_build,
                     build_info_source="tensorflow/python/platform/build_info.py")


def torch(version: str, cuda: str | None) -> Framework:
    return Framework(name="torch", version=version, cuda_build=cuda, cudnn_build=None,
                     is_cuda_build=cuda is not None, build_info_source="torch/version.py")


def ld_path(*paths: str, source: str = "/etc/profile.d/cuda.sh", missing: tuple[str, ...] = ()) -> LoaderConfig:
    return LoaderConfig(ld_library_path=tuple(LdPathEntry(p, source, p not in missing) for p in paths))


def host(name: str = "gpu01", **kw: object) -> HostFacts:
    base: dict[str, object] = {"os": UBUNTU_2004, "driver": driver(), "gpus": gpus()}
    base.update(kw)
    return HostFacts(host=name, **base)  # type: ignore[arg-type]


__all__ = ["CompatLibcuda", "LdPathEntry", "LoaderConfig", "cudnn_copy_in_toolkit", "cudnn_deb", "cudnn_wheel",
           "driver", "gpus", "host", "ld_path", "tf", "toolkit", "torch", "venv"]
