"""The shape of the check script's evidence document, as data, and the check that a document has it.

The judges read the document with forgiving accessors (a field that is absent is "not seen"); without this
check a field of the wrong type (`"gpus": {}`, `"init_rc": "0"`, a list where an object belongs) would read as
absent too, and a malformed or tampered document would quietly become "missing" evidence. `check_shape`
walks the document against `SHAPE` first and names the first bad field (`driver.nvml.gpus[1].index: expected
an integer, got a string`). Absent fields and nulls are allowed everywhere (the script writes null for what it
could not learn); fields the shape does not name are left alone, so a newer script's additions pass.

The shape follows what roles/gpu_check/files/gpu_check.py of the remediator.gpu collection writes; the
recorded documents under tests/fixtures/verify (real H100/H200 hosts, a CPU-only TensorFlow) all pass it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# A shape is a type name ("str", "int", "float", "bool", "any"), a list of one shape (every item has it),
# a dict of field -> shape (an object with those fields), or ("map", shape): an object whose every value
# has the shape (device nodes, env vars, skip reasons).
Shape = Any

_PYTHON = {"executable": "str", "version": "str", "user": "str", "uid": "int", "prefix": "str",
           "base_prefix": "str"}
_CUDA_DEVICE = {"ordinal": "int", "name": "str", "uuid": "str", "pci_bus_id": "str", "compute_capability": ["int"],
                "compute_mode": "int", "memory_total": "int"}
_MATMUL_RUN = {"index": "int", "name": "str", "device": "str", "tf_device": "str", "gpu": "bool", "finite": "bool",
               "max_abs_error": "float", "rel_error": "float", "seconds": "float", "tflops": "float",
               "peak_memory": "int", "skipped": "str", "error": "str"}

SHAPE: dict[str, Shape] = {
    "script": "str",
    "schema_version": "int",
    "hostname": "str",
    "collected_at": "str",
    "duration_s": "float",
    "python": _PYTHON,
    "options": {"framework": "str", "framework_version": "str", "force": "bool", "size": "int",
                "reference_rows": "int", "repeats": "int", "nvml_timeout": "float", "cuda_timeout": "float",
                "framework_timeout": "float"},
    "env": ("map", "str"),
    "driver": {
        "proc_version": "str", "container": "bool", "modules": ["str"], "proc_modules_readable": "bool",
        "dev_listing": ["str"], "device_nodes": ("map", "bool"),
        "pci": [{"address": "str", "class": "str", "device": "str", "vendor": "str", "driver": "str"}],
        "nvml": {
            "ok": "bool", "loaded": "bool", "error": "str", "error_code": "int", "errors": ("map", "str"),
            "driver_version": "str", "cuda_driver_version": "int", "device_count": "int",
            "gpus": [{"index": "int", "name": "str", "uuid": "str", "pci_bus_id": "str",
                      "compute_capability": ["int"], "compute_mode": "int", "memory_total": "int",
                      "memory_used": "int", "minor_number": "int",
                      "processes": [{"pid": "int", "name": "str", "used_memory": "int"}]}],
        },
    },
    "cuda": {"library": "str", "path": "str", "init_rc": "int", "init_error": "str", "driver_version": "int",
             "device_count": "int", "timed_out": "bool", "error": "str", "devices": [_CUDA_DEVICE]},
    "devices": [{"ordinal": "int", "uuid": "str", "busy_pids": ["int"]}],
    "skipped": ("map", "str"),
    "framework": {"ran": "bool", "cpu_only": "bool", "rc": "int", "signal": "int", "timed_out": "bool",
                  "stuck": "bool", "last_step": "str", "stderr_tail": "str", "error": "str", "duration_s": "float"},
    "runtime": {
        "framework": "str", "import_ok": "bool", "import_error": "str", "cpu_only": "bool", "duration_s": "float",
        "python": _PYTHON,
        # cuda/cudnn: torch writes "12.8" and "9.10.2", TensorFlow's build info what it holds: the judges
        # read them as text or numbers.
        "build": {"version": "str", "file": "str", "cuda": "any", "cudnn": "any", "cudnn_runtime": "int",
                  "is_cuda_build": "bool"},
        "devices": [{"index": "int", "name": "str"}],
        "devices_error": "str",
        "dists": [{"name": "str", "version": "str", "site": "str"}],
        "site_dirs": ["str"],
        "wheel_lib_dirs": [{"dir": "str", "files": ["str"]}],
        "libraries": [{"path": "str", "api_version": "int", "api_version_text": "str", "cudart_version": "int"}],
        "cuda_libraries": [{"soname": "str", "found": "bool", "path": "str", "via": "str", "error": "str",
                            "searched": ["str"]}],
        "cuda_libraries_error": "str",
        "op": {"ok": "bool", "index": "int", "matmul_value": "float", "conv_value": "float", "expected": ["float"],
               "cudnn_available": "bool", "cudnn_runtime": "int", "cudnn_runtime_error": "str", "error": "str"},
    },
    "matmul": {"device": "str", "dtype": "str", "error": "str", "gpu": "bool", "size": "int", "repeats": "int",
               "tf32": "bool", "reference": "str", "reference_rows": "int", "reference_seconds": "float",
               "gpus": [_MATMUL_RUN], "cpu": _MATMUL_RUN},
}

_KIND = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


class ShapeError(ValueError):
    """A field of the document does not have its shape; `str(error)` names the field."""


def check_shape(doc: Mapping[str, Any], shape: Mapping[str, Shape] = SHAPE) -> None:
    """Raise ShapeError naming the first field whose value does not have its shape."""
    _check_object(doc, shape, "")


def _check_object(value: Mapping[str, Any], shape: Mapping[str, Shape], path: str) -> None:
    for name, inner in shape.items():
        if name in value:
            _check(value[name], inner, f"{path}.{name}" if path else name)


def _check(value: Any, shape: Shape, path: str) -> None:
    if value is None or shape == "any":
        return
    if isinstance(shape, str):
        if not _is(value, shape):
            raise ShapeError(f"{path}: expected {_KIND[shape]}, got {_kind(value)}")
    elif isinstance(shape, list):
        if not isinstance(value, list):
            raise ShapeError(f"{path}: expected a list, got {_kind(value)}")
        for i, item in enumerate(value):
            _check(item, shape[0], f"{path}[{i}]")
    elif isinstance(shape, tuple):  # ("map", shape of every value)
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected an object, got {_kind(value)}")
        for key, item in value.items():
            _check(item, shape[1], f"{path}.{key}")
    else:
        if not isinstance(value, dict):
            raise ShapeError(f"{path}: expected an object, got {_kind(value)}")
        _check_object(value, shape, path)


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    if kind == "int":
        return isinstance(value, int)
    if kind == "float":
        return isinstance(value, int | float)
    return isinstance(value, {"str": str, "bool": bool}[kind])


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__)


__all__ = ["SHAPE", "ShapeError", "check_shape"]
