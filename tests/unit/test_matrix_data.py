"""Spot checks of the shipped matrix against its primary sources; each case names its source.

If a row of data/*.yaml is wrong these fail: the expected values were read from the pages cited
in the parametrize ids and comments, not from the YAML.
"""

from __future__ import annotations

import pytest

from remediator.matrix import Matrix, load_matrix

TF = "https://www.tensorflow.org/install/source#gpu"
TF_PYPI = "https://pypi.org/project/tensorflow/<version>/ (Requires-Dist, extra and-cuda)"
CUDA_RN = "https://docs.nvidia.com/cuda/cuda-toolkit-release-notes/index.html (Table 3)"
COMPAT = "https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html"
CUDNN_SM = "https://docs.nvidia.com/deeplearning/cudnn/ (support matrix of the release)"
TORCH_RM = "https://github.com/pytorch/pytorch/blob/main/RELEASE.md#release-compatibility-matrix"
TORCH_PYPI = "https://pypi.org/project/torch/<version>/ (Requires-Dist)"


@pytest.fixture(scope="module")
def m() -> Matrix:
    return load_matrix()


# TensorFlow "Tested build configurations", Linux GPU: version -> (python, cuDNN, CUDA, compiler).
TF_TESTED = [
    ("2.21.0", "3.10-3.13", "9.3", "12.5", "Clang 18.1.8"),
    ("2.20.0", "3.9-3.13", "9.3", "12.5", "Clang 18.1.8"),
    ("2.18.0", "3.9-3.12", "9.3", "12.5", "Clang 17.0.6"),
    ("2.17.0", "3.9-3.12", "8.9", "12.3", "Clang 17.0.6"),
    ("2.16.1", "3.9-3.12", "8.9", "12.3", "Clang 17.0.6"),
    ("2.15.0", "3.9-3.11", "8.9", "12.2", "Clang 16.0.0"),
    ("2.14.0", "3.9-3.11", "8.7", "11.8", "Clang 16.0.0"),
    ("2.13.0", "3.8-3.11", "8.6", "11.8", "Clang 16.0.0"),
    ("2.12.0", "3.8-3.11", "8.6", "11.8", "GCC 9.3.1"),
    ("2.11.0", "3.7-3.10", "8.1", "11.2", "GCC 9.3.1"),
    ("2.5.0", "3.6-3.9", "8.1", "11.2", "GCC 7.3.1"),
    ("2.4.0", "3.6-3.8", "8.0", "11.0", "GCC 7.3.1"),
    ("2.3.0", "3.5-3.8", "7.6", "10.1", "GCC 7.3.1"),
    ("2.1.0", "2.7, 3.5-3.7", "7.6", "10.1", "GCC 7.3.1"),
    ("2.0.0", "2.7, 3.3-3.7", "7.4", "10.0", "GCC 7.3.1"),
    ("1.15.0", "2.7, 3.3-3.7", "7.4", "10.0", "GCC 7.3.1"),
    ("1.13.1", "2.7, 3.3-3.7", "7.4", "10.0", "GCC 4.8"),
    ("1.12.0", "2.7, 3.3-3.6", "7", "9", "GCC 4.8"),
    ("1.5.0", "2.7, 3.3-3.6", "7", "9", "GCC 4.8"),
    ("1.4.0", "2.7, 3.3-3.6", "6", "8", "GCC 4.8"),
    ("1.2.0", "2.7, 3.3-3.6", "5.1", "8", "GCC 4.8"),
    ("1.0.0", "2.7, 3.3-3.6", "5.1", "8", "GCC 4.8"),
]


@pytest.mark.parametrize(
    ("version", "python", "cudnn", "cuda", "compiler"), TF_TESTED, ids=[f"{r[0]}:{TF}" for r in TF_TESTED]
)
def test_tensorflow_tested_configuration(m, version, python, cudnn, cuda, compiler):
    req = m.requirements("tensorflow", version)
    assert req.python.raw == python
    assert req.cudnn is not None and req.cudnn.raw == cudnn
    assert req.cuda is not None and req.cuda.raw == cuda
    assert req.compiler == compiler


def test_tf_2_4_python_range_as_a_set(m):
    # https://www.tensorflow.org/install/source#gpu : tensorflow-2.4.0 | 3.6-3.8
    req = m.requirements("tensorflow", "2.4.1")
    assert req.python_ok("3.6.0") and req.python_ok("3.8.10")
    assert not req.python_ok("3.9.2") and not req.python_ok("3.5.9")


def test_tf_1_x_python_includes_2_7(m):
    # https://www.tensorflow.org/install/source#gpu : tensorflow_gpu-1.14.0 | 2.7, 3.3-3.7
    req = m.requirements("tensorflow", "1.14.0")
    assert req.python_ok("2.7.18") and req.python_ok("3.7.3")
    assert not req.python_ok("3.0") and not req.python_ok("3.8.0")


# [and-cuda] pins read from the wheel metadata on PyPI (pip install --dry-run --report).
AND_CUDA = [
    ("2.14.0", "nvidia-cudnn-cu11", "8.7.0.84"),
    ("2.14.1", "nvidia-cuda-runtime-cu11", "11.8.89"),
    ("2.15.0", "nvidia-cudnn-cu12", "8.9.4.25"),
    ("2.15.0", "nvidia-cuda-runtime-cu12", "12.2.140"),
    ("2.15.1", "nvidia-cublas-cu12", "12.2.5.6"),
    ("2.16.1", "nvidia-cudnn-cu12", "8.9.7.29"),
    ("2.17.1", "nvidia-cuda-runtime-cu12", "12.3.101"),
    ("2.18.0", "nvidia-cudnn-cu12", "9.3.0.75"),
    ("2.19.0", "nvidia-nccl-cu12", "2.23.4"),
    ("2.21.0", "nvidia-cudnn-cu12", ">=9.3.0.75,<10.0"),
]


@pytest.mark.parametrize(
    ("version", "wheel", "pin"), AND_CUDA, ids=[f"{r[0]}-{r[1]}:{TF_PYPI}" for r in AND_CUDA]
)
def test_tensorflow_and_cuda_pins(m, version, wheel, pin):
    req = m.requirements("tensorflow", version)
    assert (wheel, pin) in req.wheels
    assert req.bundles_cuda and req.pip_extra == "and-cuda"
    assert req.install_spec == f"tensorflow[and-cuda]=={version}"


def test_tensorflow_before_2_14_does_not_bundle_cuda(m):
    # tensorflow 2.13 has no [and-cuda] extra (https://pypi.org/project/tensorflow/2.13.0/)
    req = m.requirements("tensorflow", "2.13.1")
    assert not req.bundles_cuda and req.wheels == () and req.pip_extra is None


PACKAGES = [
    # https://github.com/tensorflow/docs/commit/7f17cfb143481579636f41c68e8ac610f7c38929 (install guide
    # for TF 2.0: CPU and GPU separate up to 1.14, one package for 1.15) and RELEASE.md 1.15.0 / 2.1.0.
    ("1.0.0", ("tensorflow-gpu",)),
    ("1.14.0", ("tensorflow-gpu",)),
    ("1.15.5", ("tensorflow", "tensorflow-gpu")),
    ("2.0.0", ("tensorflow-gpu",)),
    ("2.1.0", ("tensorflow", "tensorflow-gpu")),
    ("2.11.1", ("tensorflow", "tensorflow-gpu")),
    ("2.12.0", ("tensorflow",)),
    ("2.21.0", ("tensorflow",)),
]


@pytest.mark.parametrize(("version", "packages"), PACKAGES, ids=[r[0] for r in PACKAGES])
def test_tensorflow_gpu_package_names(m, version, packages):
    assert m.requirements("tensorflow", version).packages == packages


# Table 3 "CUDA Toolkit and Corresponding Driver Versions", Linux x86_64 column.
DRIVERS = [
    ("13.2.2", "595.71.05"),
    ("13.0", "580.65.06"),
    ("13.0.2", "580.95.05"),
    ("12.9.1", "575.57.08"),
    ("12.8", "570.26"),
    ("12.6.3", "560.35.05"),
    ("12.4.1", "550.54.15"),
    ("12.2", "535.54.03"),
    ("12.0", "525.60.13"),
    ("12.0.1", "525.85.12"),
    ("11.8", "520.61.05"),
    ("11.4.0", "470.42.01"),
    ("11.2.0", "460.27.03"),
    ("11.2", "460.27.03"),
    ("11.2.2", "460.32.03"),
    ("11.1", "455.23"),
    ("11.0.3", "450.51.06"),
    ("11.0", "450.51.05"),
    ("10.2", "440.33"),
    ("10.1", "418.39"),
    ("10.1.243", "418.39"),  # "CUDA 10.1 (10.1.105 general release, and updates)"
    ("10.0", "410.48"),
    ("9.2.148", "396.37"),
    ("9.0", "384.81"),
    ("8.0.61", "375.26"),
    ("8", "367.48"),
    ("7.5", "352.31"),
    ("7.0", "346.46"),
]


@pytest.mark.parametrize(("cuda", "driver"), DRIVERS, ids=[f"{r[0]}:{CUDA_RN}" for r in DRIVERS])
def test_min_driver_for_cuda(m, cuda, driver):
    found = m.min_driver_for_cuda(cuda)
    assert found.raw == driver  # displayed exactly as NVIDIA prints it


@pytest.mark.parametrize(
    ("major", "floor"),
    [(11, "450.80.02"), (12, "525.60.13"), (13, "580")],
    ids=[f"cuda{n}:{COMPAT}" for n in (11, 12, 13)],
)
def test_minor_version_compat_floors(m, major, floor):
    compat = m.cuda_compat_floor(major)
    assert compat is not None and compat.min_driver.raw == floor
    assert "PTX" in compat.caveats and compat.source.startswith("https://")


def test_no_minor_version_compat_before_cuda_11(m):
    # COMPAT: "before CUDA 11, applications built against newer CUDA Toolkit releases were not supported"
    assert m.cuda_compat_floor(10) is None


CUDNN = [
    # (cuDNN, CUDA it has a build for, CUDA it has none for, source)
    ("7.6.5", "10.2", "11.0", "cudnn-803 support matrix: 7.6.4-7.6.5 CUDA 10.2, 10.1.243, 10.0, 9.2, 9.0"),
    ("7.6.3", "10.1", "10.2", "cudnn-803 support matrix: 7.6.3 CUDA 10.1.243, 10.0, 9.2, 9.0"),
    ("7.5.1", "9.0", "9.1", "cudnn_760 support matrix: 7.5.1 CUDA 9.1.85 (Not Supported)"),
    ("8.0.2", "10.1", "11.1", "cudnn-803 support matrix: 8.0.2-8.0.3 CUDA 11.0, 10.2, 10.1 Update 2"),
    ("8.2.2", "11.4", "12.0", "cudnn-822 support matrix: 8.2.2 CUDA 11.4 ... 11.0, 10.2"),
    ("8.9.1", "12.1", "10.2", "cudnn-891 support matrix: 12.1, 12.0, 11.8 ... 11.0"),
    ("9.10.2", "11.8", "13.0", "nvidia-cudnn-cu11/cu12 9.10.2.21 on PyPI; no cu13 wheel"),
    ("9.11.0", "12.9", "11.8", "nvidia-cudnn-cu12 9.11.0.98 on PyPI; no cu11 wheel"),
    ("9.12.0", "13.0", "11.8", "nvidia-cudnn-cu13 9.12.0.46 on PyPI"),
]


@pytest.mark.parametrize(("cudnn", "has", "lacks", "source"), CUDNN, ids=[f"{r[0]}:{r[3]}" for r in CUDNN])
def test_cudnn_cuda_builds(m, cudnn, has, lacks, source):
    release = m.cudnn_release(cudnn)
    assert release.supports_cuda(has)
    assert not release.supports_cuda(lacks)


def test_cudnn_version_header_and_soname(m):
    # cuDNN 8 moved CUDNN_MAJOR to cudnn_version.h (cuDNN 8 install guide, "Verifying the install").
    assert m.cudnn_release("8.1.0").version_header == "cudnn_version.h"
    assert m.cudnn_release("7.6.5").version_header == "cudnn.h"
    assert m.cudnn_soname_major("8.1.0") == 8
    assert m.cudnn_soname_major("7.6.5") == 7
    assert m.cudnn_soname_major("9.10.2") == 9


def test_cudnn_9_package_names_per_cuda_major(m):
    # https://docs.nvidia.com/deeplearning/cudnn/installation/latest/linux.html and PyPI nvidia-cudnn-cu13
    release = m.cudnn_release("9.20.0")
    assert "libcudnn9-cuda-12" in release.packages and "libcudnn9-cuda-13" in release.packages
    assert ("nvidia-cudnn-cu13", "9.20.0.48") in release.wheels
    assert "libcudnn9-cuda-11" not in release.packages


TORCH = [
    # (version, default variant, its CUDA, cuDNN pinned by the PyPI wheel, every variant tag)
    ("1.13.1", "cu117", "11.7", "8.5.0.96", ("cu116", "cu117")),
    ("2.0.1", "cu117", "11.7", "8.5.0.96", ("cu117", "cu118")),
    ("2.1.2", "cu121", "12.1", "8.9.2.26", ("cu118", "cu121")),
    ("2.4.0", "cu121", "12.1", "9.1.0.70", ("cu118", "cu121", "cu124")),
    ("2.6.0", "cu124", "12.4", "9.1.0.70", ("cu118", "cu124", "cu126")),
    ("2.7.0", "cu126", "12.6", "9.5.1.17", ("cu118", "cu126", "cu128")),
    ("2.8.0", "cu128", "12.8", "9.10.2.21", ("cu126", "cu128", "cu129")),
    ("2.10.0", "cu128", "12.8", "9.10.2.21", ("cu126", "cu128", "cu130")),
    ("2.11.0", "cu130", "13.0", "9.19.0.56", ("cu126", "cu128", "cu130")),
    ("2.14.1", "cu130", "13.0", "9.24.0.43", ("cu126", "cu130", "cu132")),
]


@pytest.mark.parametrize(
    ("version", "default", "cuda", "cudnn", "tags"),
    TORCH,
    ids=[f"{r[0]}:{TORCH_RM}+{TORCH_PYPI}" for r in TORCH],
)
def test_pytorch_variants(m, version, default, cuda, cudnn, tags):
    req = m.requirements("pytorch", version)
    assert tuple(v.tag for v in req.variants) == tags
    assert [v.tag for v in req.variants if v.default] == [default]
    assert req.cuda is not None and req.cuda.raw == cuda
    assert req.cudnn is not None and req.cudnn.raw == cudnn
    assert any(name.startswith("nvidia-cudnn-cu") and pin == cudnn for name, pin in req.wheels)
    assert req.bundles_cuda and req.packages == ("torch",)


def test_pytorch_2_11_0(m):
    # RELEASE.md: 2.11 | >=3.10, <=(3.14, 3.14t experimental) | CUDA 12.6, 12.8, 13.0; PyPI torch 2.11.0
    # pins cuda-toolkit[...]==13.0.2 and nvidia-cudnn-cu13==9.19.0.56.
    req = m.requirements("torch", "2.11.0")
    assert ("cuda-toolkit", "13.0.2") in req.wheels
    cu128 = req.variant("cu128")
    assert cu128 is not None and cu128.cudnn is not None and cu128.cudnn.raw == "9.17.1.4"
    assert cu128.index_url == "https://download.pytorch.org/whl/cu128"
    assert req.python_ok("3.14.0") and not req.python_ok("3.9.18")
    assert req.min_driver.raw == "580.65.06"  # CUDA 13.0 GA (Table 3)
    assert req.min_driver_compat is not None and req.min_driver_compat.raw == "580"


def test_pytorch_1_13_python(m):
    # RELEASE.md: 1.13 | >=3.7, <=3.10
    req = m.requirements("pytorch", "1.13.0")
    assert req.python.raw == "3.7-3.10"
    assert req.python_ok("3.10.12") and not req.python_ok("3.11.0")


def test_pytorch_1_12_pypi_wheel_is_the_cuda_10_2_build(m: Matrix) -> None:
    # RELEASE.md 1.12 | >=3.7, <=3.10 | CUDA 11.3, CUDNN 8.3.2.44 | CUDA 11.6, CUDNN 8.3.2.44; the PyPI
    # wheel is CUDA 10.2 (RELEASE.md "Special support cases") and has no nvidia-* requirements.
    req = m.requirements("torch", "1.12.0+cu113")
    assert req.version == "1.12.0"
    assert [v.tag for v in req.variants] == ["cu102", "cu113", "cu116"]
    # cuDNN of the cu102 build: pytorch/builder release/1.12 common/install_cuda.sh (libcudnn7_7.6.5.32).
    assert req.cuda is not None and req.cuda.raw == "10.2" and req.cudnn is not None
    assert req.cudnn.raw == "7.6.5.32"
    assert req.min_driver.raw == "440.33" and req.min_driver_compat is None
    cu113 = req.variant("cu113")
    assert cu113 is not None and cu113.cudnn is not None and cu113.cudnn.raw == "8.3.2.44"
    assert req.wheels == ()
    assert req.cudnn_ok("8.3.2") and req.cuda_ok("11.3")


PREV = "https://pytorch.org/get-started/previous-versions/"
BUILDER = "https://github.com/pytorch/builder (common/install_cuda.sh, manywheel build script)"

# The plain PyPI wheel of each old release: torch/version.py inside the manylinux wheel on PyPI
# (cuda = '9.0.176', '10.0.130', '10.1.243', '10.1', '10.2'); Python from the wheels' cpXY tags.
TORCH_OLD = [
    ("1.0.0", "cu90", "9.0", "2.7, 3.5-3.7", ("cu90", "cu100", "cu80")),
    ("1.0.1", "cu90", "9.0", "2.7, 3.5-3.7", ("cu90", "cu100")),
    ("1.1.0", "cu90", "9.0", "2.7, 3.5-3.7", ("cu90", "cu100")),
    ("1.2.0", "cu100", "10.0", "2.7, 3.5-3.7", ("cu100", "cu92")),
    ("1.3.1", "cu101", "10.1", "2.7, 3.5-3.7", ("cu101",)),
    ("1.4.0", "cu101", "10.1", "2.7, 3.5-3.8", ("cu101", "cu92")),
    ("1.5.0", "cu102", "10.2", "3.5-3.8", ("cu102", "cu101", "cu92")),
    ("1.6.0", "cu102", "10.2", "3.6-3.8", ("cu102", "cu101", "cu92")),
    ("1.7.0", "cu102", "10.2", "3.6-3.8", ("cu102", "cu110", "cu101", "cu92")),
    ("1.7.1", "cu102", "10.2", "3.6-3.9", ("cu102", "cu110", "cu101", "cu92")),
    ("1.8.0", "cu102", "10.2", "3.6-3.9", ("cu102", "cu111")),
    ("1.8.1", "cu102", "10.2", "3.6-3.9", ("cu102", "cu111", "cu101")),
    ("1.9.1", "cu102", "10.2", "3.6-3.9", ("cu102", "cu111")),
    ("1.10.1", "cu102", "10.2", "3.6-3.9", ("cu102", "cu111")),
    ("1.10.2", "cu102", "10.2", "3.6-3.9", ("cu102",)),
    ("1.11.0", "cu102", "10.2", "3.7-3.10", ("cu102", "cu113")),
]


@pytest.mark.parametrize(
    ("version", "default", "cuda", "python", "tags"),
    TORCH_OLD,
    ids=[f"{r[0]}:{PREV}+https://pypi.org/project/torch/{r[0]}/" for r in TORCH_OLD],
)
def test_pytorch_before_1_12(m, version, default, cuda, python, tags):
    req = m.requirements("torch", version)
    assert tuple(v.tag for v in req.variants) == tags
    assert req.default_variant is not None and req.default_variant.tag == default
    assert req.cuda is not None and req.cuda.raw == cuda
    assert req.python.raw == python
    assert req.bundles_cuda and req.wheels == ()


def test_pytorch_1_10_2_default_is_cu102_with_cudnn_7_6_5(m):
    # PyPI torch 1.10.2 manylinux wheel: torch/version.py cuda = '10.2'; builder release/1.10
    # install_cuda.sh installs libcudnn7_7.6.5.32-1+cuda10.2 for it.
    req = m.requirements("torch", "1.10.2")
    assert req.default_variant is not None and req.default_variant.tag == "cu102"
    assert req.cudnn is not None and req.cudnn.raw == "7.6.5.32"
    assert req.min_driver.raw == "440.33"  # CUDA 10.2.89 (Table 3)
    assert req.python_ok("3.9.7") and not req.python_ok("3.10.0")
    assert req.torchvision == ("0.11.3",) and req.torchaudio == ("0.10.2",)


def test_pytorch_1_7_1_cu110_driver_floor(m):
    # builder (Dec 2020) builds cu110 with cuda_11.0.3_450.51.06; Table 3: 11.0.3 Update 1 >= 450.51.06.
    # (Not the 11.0.1 RC row, >= 450.36.06.) Minor-version compat floor of 11.x: 450.80.02.
    cu110 = m.requirements("torch", "1.7.1").variant("cu110")
    assert cu110 is not None and cu110.toolkit is not None and cu110.toolkit.raw == "11.0.3"
    assert cu110.min_driver.raw == "450.51.06"
    assert cu110.min_driver_compat is not None and cu110.min_driver_compat.raw == "450.80.02"
    assert cu110.cudnn is not None and cu110.cudnn.raw == "8.0.5.39"


def test_pytorch_1_0_0_cu80_needs_the_cuda_8_driver(m):
    # previous-versions: 1.0.0 has a CUDA 8.0 wheel; builder Dec 2018: cuda_8.0.61_375.26 (Table 3: >= 375.26).
    req = m.requirements("torch", "1.0.0")
    cu80 = req.variant("cu80")
    assert cu80 is not None and cu80.min_driver.raw == "375.26"
    assert req.min_driver.raw == "384.81"  # the PyPI cu90 wheel: CUDA 9.0
    assert req.driver_floor.raw == "375.26"


ARCHS = [
    # TORCH_CUDA_ARCH_LIST of pytorch/builder's release branch: CUDA 10.x "3.7;5.0;6.0;7.0", CUDA 11.1-11.7
    # add "7.5;8.0;8.6", CUDA 11.8 (2.0) adds 9.0, from 2.1 the list starts at 5.0 and 12.x adds 9.0.
    ("1.9.0", "cu102", ("sm_37", "sm_50", "sm_60", "sm_70")),
    ("1.10.2", "cu102", ("sm_37", "sm_50", "sm_60", "sm_70")),
    ("1.11.0", "cu113", ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86")),
    ("1.12.1", "cu102", ("sm_37", "sm_50", "sm_60", "sm_70")),
    ("1.13.1", "cu117", ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86")),
    ("2.0.1", "cu118", ("sm_37", "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")),
    ("2.3.1", "cu121", ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")),
]


@pytest.mark.parametrize(("version", "tag", "sm"), ARCHS, ids=[f"{r[0]}+{r[1]}:{BUILDER}" for r in ARCHS])
def test_pytorch_gpu_architectures(m, version, tag, sm):
    variant = m.requirements("torch", version).variant(tag)
    assert variant is not None and variant.sm_archs == sm


def test_cu102_builds_cannot_run_on_ampere(m):
    # No sm_8x SASS and no PTX in the CUDA 10.2 builds: an RTX 30xx (8.6) or A100 (8.0) has no kernel image.
    cu102 = m.requirements("torch", "1.10.2").variant("cu102")
    assert cu102 is not None
    assert cu102.has_kernels_for("8.6") is False and cu102.has_kernels_for("sm_80") is False
    assert cu102.has_kernels_for("7.5") is True  # sm_70 SASS runs on 7.5 (same major)
    cu111 = m.requirements("torch", "1.10.2").variant("cu111")
    assert cu111 is None  # 1.10.2's other variants are not confirmed
    cu113 = m.requirements("torch", "1.11.0").variant("cu113")
    assert cu113 is not None and cu113.has_kernels_for("8.6") and not cu113.has_kernels_for("9.0")
    # Old releases whose build arch list was not confirmed answer "unknown".
    old = m.requirements("torch", "1.7.1").variant("cu110")
    assert old is not None and old.has_kernels_for("8.0") is None


# torchvision/torchaudio whose PyPI wheel pins exactly this torch (Requires-Dist: torch==X);
# 1.0.x/1.1.0 torchvision from the previous-versions page (0.2.x wheels pin no torch).
PAIRS = [
    ("1.0.0", ("0.2.1",), ()),
    ("1.1.0", ("0.3.0",), ()),
    ("1.2.0", ("0.4.0",), ("0.3.0",)),
    ("1.3.1", ("0.4.2",), ("0.3.2",)),
    ("1.7.0", ("0.8.0", "0.8.1"), ("0.7.0",)),
    ("1.7.1", ("0.8.2",), ("0.7.2",)),
    ("1.10.0", ("0.11.0", "0.11.1"), ("0.10.0",)),
    ("2.0.0", ("0.15.0", "0.15.1"), ("2.0.0", "2.0.1")),
    ("2.5.1", ("0.20.1",), ("2.5.1",)),
    ("2.14.0", ("0.29.0",), ()),
]


@pytest.mark.parametrize(
    ("version", "vision", "audio"), PAIRS, ids=[f"{r[0]}:https://pypi.org/project/torchvision/" for r in PAIRS]
)
def test_torchvision_torchaudio_pairing(m, version, vision, audio):
    req = m.requirements("torch", version)
    assert req.torchvision == vision and req.torchaudio == audio


def test_every_torch_release_1_0_to_1_11_is_known(m):
    known = set(m.known_versions("torch"))
    wanted = "1.0.0 1.0.1 1.1.0 1.2.0 1.3.0 1.3.1 1.4.0 1.5.0 1.5.1 1.6.0 1.7.0 1.7.1 1.8.0 1.8.1 1.9.0 1.9.1"
    assert set((wanted + " 1.10.0 1.10.1 1.10.2 1.11.0").split()) <= known


def test_every_new_row_cites_sources(m):
    for version in m.known_versions("torch"):
        req = m.requirements("torch", version)
        assert req.sources and all(u.startswith("https://") for u in req.sources)
    for pkg in m.conda_packages:
        assert pkg.sources and all(u.startswith("https://") for u in pkg.sources)
    for defect in m.defects:
        assert defect.sources and all(u.startswith("https://github.com/") for u in defect.sources[:1])


CONDA = [
    # cudatoolkit ships the runtime only: the host needs the toolkit's driver (Table 3) or the 11.x compat floor.
    ("cudatoolkit", "10.2", "440.33", None),
    ("cudatoolkit", "9.2", "396.26", None),
    ("cudatoolkit", "11.3", "465.19.01", "450.80.02"),
    ("cudatoolkit", "11.8", "520.61.05", "450.80.02"),
    ("pytorch-cuda", "12.1", "530.30.02", "525.60.13"),
    ("pytorch-cuda", "11.6", "510.39.01", "450.80.02"),
]


@pytest.mark.parametrize(
    ("name", "version", "driver", "compat"), CONDA, ids=[f"{r[0]}={r[1]}:{CUDA_RN}" for r in CONDA]
)
def test_conda_packages_driver_floors(m, name, version, driver, compat):
    pkg = m.conda_package(name, version)
    assert pkg.min_driver.raw == driver
    assert (pkg.min_driver_compat.raw if pkg.min_driver_compat else None) == compat


def test_pytorch_cuda_metapackage_pulls_the_nvidia_runtime(m):
    # pytorch/builder conda/pytorch-cuda/meta.yaml: 12.1 requires cuda-cudart >=12.1,<12.2 and libnvjitlink.
    pkg = m.conda_package("pytorch-cuda", "12.1")
    deps = dict(pkg.depends)
    assert deps["cuda-cudart"] == ">=12.1,<12.2" and deps["libcublas"] == ">=12.1.0.26,<12.1.3.1"
    assert "libnvjitlink" in deps and "libnvjitlink" not in dict(m.conda_package("pytorch-cuda", "11.8").depends)
    assert pkg.channels == ("pytorch", "nvidia")


def test_known_defects(m):
    # tensorflow#66517: 2.15.0 [and-cuda] pins tensorrt-libs==8.6.1; 2.15.0.post1 drops the TensorRT pins.
    (tf,) = m.defects_for("tensorflow", "2.15.0")
    assert tf.fixed_in == "2.15.0.post1" and tf.sources[0] == "https://github.com/tensorflow/tensorflow/issues/66517"
    assert m.defects_for("tensorflow", "2.15.0.post1") == () and m.defects_for("tensorflow", "2.15.1") == ()
    assert m.requirements("tensorflow", "2.15.0").defects == (tf,)
    # pytorch#103832: 1.13 PyPI wheels and a foreign CUDA 11 cuBLAS.
    (torch,) = m.defects_for("torch", "1.13.1+cu117")
    assert torch.fixed_in is None and torch.id in {d.id for d in m.requirements("torch", "1.13.0").defects}
    assert m.defects_for("torch", "2.0.0") == ()
