"""The collection's host scripts loaded as modules, as a host's python3 would run them (no package around)."""

from __future__ import annotations

import functools
import importlib.util
from types import ModuleType

from remediator.hostscript import collection_dir


@functools.cache
def gpu_probe() -> ModuleType:
    """plugins/module_utils/gpu_probe.py, loaded once per test process."""
    spec = importlib.util.spec_from_file_location(
        "gpu_probe", collection_dir() / "plugins" / "module_utils" / "gpu_probe.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
