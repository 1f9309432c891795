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
    assert req.cuda is not None and req.cuda.raw == "10.2" and req.cudnn is None
    assert req.min_driver.raw == "440.33" and req.min_driver_compat is None
    cu113 = req.variant("cu113")
    assert cu113 is not None and cu113.cudnn is not None and cu113.cudnn.raw == "8.3.2.44"
    assert req.wheels == ()
    assert req.cudnn_ok("8.3.2") and req.cuda_ok("11.3")
