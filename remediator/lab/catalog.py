"""What real NVIDIA installs look like, as data: GPU models, the CUDA version each driver branch reports,
the component versions and `nvcc --version` lines of CUDA toolkits, and the files of each cuDNN major.

Only the lab uses this; it decides how lab hosts look, not what is compatible (that is `matrix`).
Sources: CUDA Toolkit release notes (table "CUDA Toolkit and Corresponding Driver Versions" and the
component version table), `nvcc --version` outputs quoted in public issue reports, NVIDIA's cuDNN
tarball and Debian package file lists, and the real H200 host survey in tests/fixtures/lab.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    name: str  # as nvidia-smi prints it
    memory_mib: int
    compute_cap: str
    architecture: str
    brand: str
    power_cap_w: int
    device_id: str  # PCI device id, as nvidia-smi -q prints it


GPUS: dict[str, GpuModel] = {
    g.name: g
    for g in (
        GpuModel("Tesla K80", 11441, "3.7", "Kepler", "Tesla", 149, "0x102D10DE"),
        GpuModel("Tesla M60", 8129, "5.2", "Maxwell", "Tesla", 150, "0x13F210DE"),
        GpuModel("Tesla P100-PCIE-16GB", 16280, "6.0", "Pascal", "Tesla", 250, "0x15F810DE"),
        GpuModel("Tesla V100-SXM2-16GB", 16160, "7.0", "Volta", "Tesla", 300, "0x1DB110DE"),
        GpuModel("Tesla T4", 15360, "7.5", "Turing", "Nvidia", 70, "0x1EB810DE"),
        GpuModel("NVIDIA GeForce RTX 3090", 24576, "8.6", "Ampere", "GeForce", 350, "0x220410DE"),
        GpuModel("NVIDIA A10G", 23028, "8.6", "Ampere", "NVIDIA", 300, "0x223710DE"),
        GpuModel("NVIDIA A100-SXM4-40GB", 40960, "8.0", "Ampere", "NVIDIA", 400, "0x20B010DE"),
        GpuModel("NVIDIA L4", 23034, "8.9", "Ada Lovelace", "NVIDIA", 72, "0x27B810DE"),
        GpuModel("NVIDIA H100 80GB HBM3", 81559, "9.0", "Hopper", "NVIDIA", 700, "0x233010DE"),
        GpuModel("NVIDIA H200", 143771, "9.0", "Hopper", "NVIDIA", 700, "0x233510DE"),
    )
}

# Driver branch -> the "CUDA Version" its nvidia-smi reports (the newest CUDA it supports).
_DRIVER_CUDA: tuple[tuple[int, str], ...] = (
    (384, "9.0"),
    (390, "9.1"),
    (396, "9.2"),
    (410, "10.0"),
    (418, "10.1"),
    (440, "10.2"),
    (450, "11.0"),
    (455, "11.1"),
    (460, "11.2"),
    (465, "11.3"),
    (470, "11.4"),
    (495, "11.5"),
    (510, "11.6"),
    (515, "11.7"),
    (520, "11.8"),
    (525, "12.0"),
    (530, "12.1"),
    (535, "12.2"),
    (545, "12.3"),
    (550, "12.4"),
    (555, "12.5"),
    (560, "12.6"),
    (565, "12.7"),
    (570, "12.8"),
    (575, "12.9"),
    (580, "13.0"),
    (590, "13.1"),
)


def driver_cuda(driver: str) -> str:
    """The CUDA version nvidia-smi shows for a driver version (e.g. 535.54.03 -> 12.2)."""
    branch = int(driver.split(".")[0])
    best = _DRIVER_CUDA[0][1]
    for first, cuda in _DRIVER_CUDA:
        if branch >= first:
            best = cuda
    return best


def cuda_int(version: str) -> int:
    """CUDA's integer form of major.minor, as cudaRuntimeGetVersion reports it (11.2 -> 11020)."""
    major, minor = (int(x) for x in version.split(".")[:2])
    return major * 1000 + minor * 10


@dataclass(frozen=True)
class ToolkitInfo:
    cudart: str  # libcudart.so.<this>
    nvcc: str  # "V<this>" in nvcc --version
    built_on: str
    build: str | None  # the "Build ..." line (absent before CUDA 10.2)
    year: int  # copyright end year
    cublas: str  # libcublas.so.<this>


# Toolkit version -> component versions, from the toolkit release notes and public nvcc outputs.
TOOLKITS: dict[str, ToolkitInfo] = {
    "10.0.130": ToolkitInfo("10.0.130", "10.0.130", "Sat_Aug_25_21:08:01_CDT_2018", None, 2018, "10.0.130"),
    "10.1.243": ToolkitInfo("10.1.243", "10.1.243", "Sun_Jul_28_19:07:16_PDT_2019", None, 2019, "10.2.1.243"),
    "10.2.89": ToolkitInfo("10.2.89", "10.2.89", "Wed_Oct_23_19:24:38_PDT_2019", None, 2019, "10.2.2.89"),
    "11.0.3": ToolkitInfo(
        "11.0.221",
        "11.0.221",
        "Wed_Jul_22_19:09:09_PDT_2020",
        "cuda_11.0_bu.TC445_37.28845127_0",
        2020,
        "11.2.0.252",
    ),
    "11.2.2": ToolkitInfo(
        "11.2.152",
        "11.2.152",
        "Sun_Feb_14_21:12:58_PST_2021",
        "cuda_11.2.r11.2/compiler.29618528_0",
        2021,
        "11.4.1.1043",
    ),
    "11.8.0": ToolkitInfo(
        "11.8.89",
        "11.8.89",
        "Wed_Sep_21_10:33:58_PDT_2022",
        "cuda_11.8.r11.8/compiler.31833905_0",
        2022,
        "11.11.3.6",
    ),
    "12.1.1": ToolkitInfo(
        "12.1.105",
        "12.1.105",
        "Mon_Apr__3_17:16:06_PDT_2023",
        "cuda_12.1.r12.1/compiler.32688072_0",
        2023,
        "12.1.3.1",
    ),
    "12.2.2": ToolkitInfo(
        "12.2.140",
        "12.2.140",
        "Tue_Aug_15_22:02:13_PDT_2023",
        "cuda_12.2.r12.2/compiler.33191640_0",
        2023,
        "12.2.5.6",
    ),
    "12.4.1": ToolkitInfo(
        "12.4.127",
        "12.4.131",
        "Thu_Mar_28_02:18:24_PDT_2024",
        "cuda_12.4.r12.4/compiler.34097967_0",
        2024,
        "12.4.5.8",
    ),
    "13.0.0": ToolkitInfo(
        "13.0.48",
        "13.0.48",
        "Fri_Aug_08_22:57:23_PDT_2025",
        "cuda_13.0.r13.0/compiler.36260728_0",
        2025,
        "13.0.0.19",
    ),
    "13.0.2": ToolkitInfo(
        "13.0.96",
        "13.0.88",
        "Wed_Aug_20_01:58:59_PM_PDT_2025",
        "cuda_13.0.r13.0/compiler.36424714_0",
        2025,
        "13.1.0.3",
    ),
}


def toolkit_info(version: str) -> ToolkitInfo:
    """Component versions of a toolkit; for one not in the table, plausible ones derived from it."""
    if version in TOOLKITS:
        return TOOLKITS[version]
    major, minor, _ = version.split(".")
    build = f"cuda_{major}.{minor}.r{major}.{minor}/compiler.00000000_0" if int(major) >= 11 else None
    return ToolkitInfo(version, version, "Mon_Jan_01_00:00:00_PST_2024", build, 2024, version)


def cudart_soname(toolkit: str) -> str:
    """libcudart's SONAME: per minor release up to 10.2, per major release from 11 on."""
    major, minor = toolkit.split(".")[:2]
    if int(major) <= 10:
        return f"libcudart.so.{major}.{minor}"
    if int(major) == 11:
        return "libcudart.so.11.0"
    return f"libcudart.so.{major}"


def cublas_soname(toolkit: str) -> str:
    # Before CUDA 10.1 the soname carried the minor too (libcublas.so.9.0: TensorFlow 1.5's famous
    # "ImportError: libcublas.so.9.0: cannot open shared object file").
    major, minor = toolkit.split(".")[:2]
    if (int(major), int(minor)) < (10, 1):
        return f"libcublas.so.{major}.{minor}"
    return f"libcublas.so.{major}"


def cudnn_libs(major: int) -> tuple[str, ...]:
    """Library base names a cuDNN release ships (libcudnn first)."""
    if major <= 7:
        return ("libcudnn",)
    if major == 8:
        return (
            "libcudnn",
            "libcudnn_ops_infer",
            "libcudnn_ops_train",
            "libcudnn_cnn_infer",
            "libcudnn_cnn_train",
            "libcudnn_adv_infer",
            "libcudnn_adv_train",
        )
    return (
        "libcudnn",
        "libcudnn_ops",
        "libcudnn_cnn",
        "libcudnn_adv",
        "libcudnn_graph",
        "libcudnn_engines_precompiled",
        "libcudnn_engines_runtime_compiled",
        "libcudnn_heuristic",
    )


def cudnn_headers(major: int) -> tuple[str, ...]:
    """Header names a cuDNN release ships; the version lives in cudnn.h up to 7, in cudnn_version.h after."""
    if major <= 7:
        return ("cudnn.h",)
    if major == 8:
        return (
            "cudnn.h",
            "cudnn_version.h",
            "cudnn_ops_infer.h",
            "cudnn_cnn_infer.h",
            "cudnn_adv_infer.h",
            "cudnn_backend.h",
        )
    return (
        "cudnn.h",
        "cudnn_version.h",
        "cudnn_graph.h",
        "cudnn_ops.h",
        "cudnn_cnn.h",
        "cudnn_adv.h",
        "cudnn_backend.h",
    )


def cudnn_version_int(version: str) -> int:
    """cudnnGetVersion()'s value: major*1000+minor*100+patch up to 8, major*10000+minor*100+patch from 9."""
    major, minor, patch = (int(x) for x in version.split(".")[:3])
    return major * (10000 if major >= 9 else 1000) + minor * 100 + patch
