"""The compatibility matrix: which driver, CUDA, cuDNN and Python each framework release needs.

Diagnosis and planning ask it questions; it answers from data shipped in `data/*.yaml`, every row
with its source. `load_matrix()` loads and validates the data once.
"""

from remediator.matrix.load import load_matrix
from remediator.matrix.model import (
    CompatFloor,
    CondaPackage,
    CudaRelease,
    CudnnRelease,
    Defect,
    Matrix,
    Requirements,
    Target,
    Variant,
    VersionRange,
    normalize_framework,
    parse_compute_capability,
    parse_target,
)

__all__ = [
    "CompatFloor",
    "CondaPackage",
    "CudaRelease",
    "CudnnRelease",
    "Defect",
    "Matrix",
    "Requirements",
    "Target",
    "Variant",
    "VersionRange",
    "load_matrix",
    "normalize_framework",
    "parse_compute_capability",
    "parse_target",
]
