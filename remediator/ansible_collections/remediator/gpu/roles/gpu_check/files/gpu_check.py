"""The verify script that runs on a host: climbs the GPU ladder and prints one JSON document of evidence.

Rungs: (1) driver: kernel module, NVML, device nodes, PCI count; (2) CUDA driver API through ctypes on
libcuda; (3) the framework's CUDA runtime and cuDNN, read from /proc/self/maps after a small GPU op;
(4) a float32 matmul on every GPU, checked against a float64 NumPy reference. On a host with no NVIDIA GPU
on its PCI bus, TensorFlow still runs rungs 3 and 4 in CPU mode: what it sees (no GPU), which CUDA
libraries it would load (resolved and dlopened as its loader would), and the same matmul on its CPU
device, marked as not a GPU result. Rungs 3 and 4 run in a
child process of the same interpreter with a timeout, so a wedged GPU or a crashing cuDNN cannot hang
or kill the check; the child reports each step as it finishes, so a timeout still says how far it got.

It is sent over stdin to the chosen interpreter (`python -`) in a single round trip, so the top level
uses the standard library only and stays Python 3.6 compatible (as the probe's remote script);
numpy, torch and tensorflow are imported inside the rungs that need them. It collects evidence, not
verdicts: `remediator.verify` judges each rung on the control node, against the matrix. It only reads
and computes: nothing is installed, configured or written. Run on its own for a quick look:

    python3 remote.py --target pytorch==2.11.0 [--force] [--size 4096]
"""

# ruff: noqa: RUF005, S102
# (this file must run on python3.6: %-formatting, no f-string `=`, no newer syntax)

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
import zlib

SCHEMA_VERSION = 1
SCRIPT_NAME = "remediator-verify"

DEFAULT_OPTIONS = {
    "mode": "ladder",  # "framework": the child that runs rungs 3 and 4
    "framework": None,  # "pytorch" or "tensorflow"; None: rungs 3 and 4 are skipped
    "framework_version": None,
    "force": False,  # run the matmul on GPUs that other processes are using
    "size": 4096,  # n of the n x n float32 matmul
    "reference_rows": 256,  # rows of the product checked against float64 NumPy
    "repeats": 10,  # timed matmuls per GPU (after one warm-up)
    "seed": 20240601,
    "nvml_timeout": 20.0,
    "cuda_timeout": 30.0,
    "framework_timeout": 240.0,
    "devices": [],  # filled in by the parent for the child: CUDA ordinal, uuid, busy pids
    "cpu_only": False,  # set by the parent on a host with no NVIDIA GPU (TensorFlow only)
}

#: Frameworks whose rungs 3 and 4 also run on a host with no NVIDIA GPU, on the CPU device.
CPU_FRAMEWORKS = ("tensorflow",)
#: The nvidia wheel directory (site-packages/nvidia/<dir>/lib) TensorFlow's RUNPATH names for each library.
WHEEL_DIRS = {"libcudart": "cuda_runtime", "libcublas": "cublas", "libcudnn": "cudnn"}

TEXT_CAP = 64 * 1024
STDERR_TAIL = 6000
LOADED_RE = re.compile(r"/(libcudart|libcudnn\w*|libcublas\w*|libcuda)\.so(\.[0-9.]+)?$")
WHEEL_LIB_RE = re.compile(r"^(libcudart|libcudnn\w*|libcublas\w*)\.so(\.[0-9.]+)?$")
DIST_RE = re.compile(
    r"^(nvidia[-_]\w[\w.-]*?|torch|tensorflow[\w-]*|tf[-_]nightly[\w-]*|numpy)-([^-]+?)\.(dist|egg)-info$"
)
CVD_VARS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "LD_LIBRARY_PATH", "LD_PRELOAD")

# Filled in by the control node (remediator.verify.build_payload); None when run on its own.
PYNVML_SOURCE_Z = None
SCRIPT_SOURCE_Z = None
PAYLOAD_OPTIONS = None


def read_text(path, cap=TEXT_CAP):
    try:
        with open(path, "rb") as handle:
            return handle.read(cap).decode("utf-8", "replace")
    except OSError:
        return None


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def describe(exc):
    text = str(exc).strip() or repr(exc)
    return "%s: %s" % (type(exc).__name__, text.splitlines()[-1][:500] if text else "")


def with_timeout(fn, timeout, name):
    """Run fn() in a daemon thread; (result, timed_out). A call stuck in the driver is left behind."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except Exception as exc:
            box["error"] = describe(exc)

    thread = threading.Thread(target=target, name=name)
    thread.daemon = True
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return None, True
    if "error" in box:
        return {"error": box["error"]}, False
    return box.get("value"), False


def loaded_libraries():
    """Mapped CUDA libraries of this process, as /proc/self/maps names them (symlinks resolved)."""
    seen = []
    text = read_text("/proc/self/maps", 16 * 1024 * 1024) or ""
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6:
            continue
        path = parts[5].strip()
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
        if LOADED_RE.search(path) and path not in seen:
            seen.append(path)
    return seen


def in_container():
    if os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv"):
        return True
    cgroup = read_text("/proc/1/cgroup", 16384) or ""
    return any(word in cgroup for word in ("docker", "kubepods", "containerd", "libpod", "lxc"))


# --- rung 1: the driver -------------------------------------------------------------------------


def pci_gpus():
    """NVIDIA display/3D controllers on the PCI bus, with the kernel driver each is bound to."""
    base = "/sys/bus/pci/devices"
    if not os.path.isdir(base):
        return None
    out = []
    for name in listdir(base):
        path = os.path.join(base, name)
        vendor = (read_text(os.path.join(path, "vendor"), 64) or "").strip().lower()
        klass = (read_text(os.path.join(path, "class"), 64) or "").strip().lower()
        if vendor != "0x10de" or not (klass.startswith("0x0300") or klass.startswith("0x0302")):
            continue
        driver = None
        with contextlib.suppress(OSError):
            driver = os.path.basename(os.readlink(os.path.join(path, "driver")))
        device = (read_text(os.path.join(path, "device"), 64) or "").strip().lower()
        out.append({"address": name, "device": device, "class": klass, "driver": driver})
    return out


def load_pynvml():
    if PYNVML_SOURCE_Z:
        source = zlib.decompress(base64.b64decode(PYNVML_SOURCE_Z)).decode("utf-8")
        module = types.ModuleType("pynvml")
        module.__file__ = "<remediator pynvml>"
        sys.modules["pynvml"] = module
        exec(compile(source, "<remediator pynvml>", "exec"), module.__dict__)
        return module
    import pynvml  # run on its own: the interpreter's nvidia-ml-py

    return pynvml


def nvml_facts():
    try:
        nv = load_pynvml()
    except Exception as exc:  # e.g. a pynvml too new for this python, or none installed
        return {"ok": False, "loaded": False, "error": "cannot load pynvml: %s" % describe(exc)}
    out = {"ok": False, "loaded": True, "error": None, "error_code": None, "errors": {}, "gpus": []}
    try:
        nv.nvmlInit()
    except nv.NVMLError as exc:
        out["error"] = str(exc)
        out["error_code"] = getattr(exc, "value", None)
        return out

    def call(key, fn, *args):
        try:
            value = fn(*args)
        except Exception as exc:
            out["errors"][key] = str(exc) if isinstance(exc, nv.NVMLError) else describe(exc)
            return None
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    def processes(index, handle):
        for name in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetComputeRunningProcesses_v2"):
            fn = getattr(nv, name, None)
            if fn is None:
                continue
            try:
                found = fn(handle)
            except nv.NVMLError as exc:
                out["errors"]["gpu%d.processes" % index] = str(exc)
                continue
            procs = []
            for p in found:
                pid = int(getattr(p, "pid", 0))
                if pid in (os.getpid(), os.getppid()):
                    continue
                used = getattr(p, "usedGpuMemory", None)
                comm = read_text("/proc/%d/comm" % pid, 256)
                procs.append({
                    "pid": pid,
                    "used_memory": int(used) if isinstance(used, int) else None,
                    "name": comm.strip() if comm else None,
                })
            out["errors"].pop("gpu%d.processes" % index, None)
            return procs
        return None

    try:
        out["driver_version"] = call("driver_version", nv.nvmlSystemGetDriverVersion)
        out["cuda_driver_version"] = call("cuda_driver_version", nv.nvmlSystemGetCudaDriverVersion)
        count = call("device_count", nv.nvmlDeviceGetCount)
        out["device_count"] = count
        for index in range(min(int(count or 0), 64)):
            gpu = {"index": index}
            handle = call("gpu%d.handle" % index, nv.nvmlDeviceGetHandleByIndex, index)
            if handle is not None:
                gpu["name"] = call("gpu%d.name" % index, nv.nvmlDeviceGetName, handle)
                gpu["uuid"] = call("gpu%d.uuid" % index, nv.nvmlDeviceGetUUID, handle)
                gpu["minor_number"] = call("gpu%d.minor" % index, nv.nvmlDeviceGetMinorNumber, handle)
                memory = call("gpu%d.memory" % index, nv.nvmlDeviceGetMemoryInfo, handle)
                gpu["memory_total"] = int(memory.total) if memory is not None else None
                gpu["memory_used"] = int(memory.used) if memory is not None else None
                pci = call("gpu%d.pci" % index, nv.nvmlDeviceGetPciInfo, handle)
                bus_id = getattr(pci, "busId", None) if pci is not None else None
                gpu["pci_bus_id"] = bus_id.decode("ascii", "replace") if isinstance(bus_id, bytes) else bus_id
                cc = call("gpu%d.cc" % index, nv.nvmlDeviceGetCudaComputeCapability, handle)
                gpu["compute_capability"] = list(cc) if cc is not None else None
                gpu["compute_mode"] = call("gpu%d.compute_mode" % index, nv.nvmlDeviceGetComputeMode, handle)
                gpu["processes"] = processes(index, handle)
            out["gpus"].append(gpu)
        out["ok"] = out.get("driver_version") is not None
    finally:
        with contextlib.suppress(Exception):  # shutting down is best effort
            nv.nvmlShutdown()
    return out


def driver_rung(options):
    doc = {
        "proc_version": read_text("/proc/driver/nvidia/version", 4096),
        "modules": [],
        "pci": pci_gpus(),
        "container": in_container(),
    }
    modules = read_text("/proc/modules", 1024 * 1024)
    doc["proc_modules_readable"] = modules is not None
    for line in (modules or "").splitlines():
        name = line.split(" ", 1)[0]
        if name.startswith("nvidia"):
            doc["modules"].append(name)
    nvml, timed_out = with_timeout(nvml_facts, float(options["nvml_timeout"]), "nvml")
    if timed_out:
        nvml = {"ok": False, "loaded": True, "timed_out": True, "error": "NVML did not answer in time"}
    elif nvml is None or "ok" not in nvml:
        nvml = {"ok": False, "loaded": False, "error": (nvml or {}).get("error") or "NVML check failed"}
    doc["nvml"] = nvml
    nodes = {}
    for name in ("nvidiactl", "nvidia-uvm"):
        nodes["/dev/" + name] = os.path.exists("/dev/" + name)
    for gpu in nvml.get("gpus") or []:
        minor = gpu.get("minor_number")
        if isinstance(minor, int):
            nodes["/dev/nvidia%d" % minor] = os.path.exists("/dev/nvidia%d" % minor)
    doc["device_nodes"] = nodes
    doc["dev_listing"] = [n for n in listdir("/dev") if n.startswith("nvidia")][:100]
    return doc


# --- rung 2: the CUDA driver API, through ctypes -------------------------------------------------


def cuda_facts():
    out = {"library": "libcuda.so.1", "path": None, "error": None, "init_rc": None, "init_error": None,
           "driver_version": None, "device_count": None, "devices": []}
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        out["error"] = "cannot load libcuda.so.1: %s" % exc
        return out
    for path in loaded_libraries():
        if "/libcuda.so" in path:
            out["path"] = path
            break

    def error_name(rc):
        text = ctypes.c_char_p()
        try:
            if lib.cuGetErrorName(ctypes.c_int(rc), ctypes.byref(text)) == 0 and text.value:
                return text.value.decode("ascii", "replace")
        except AttributeError:
            pass
        return None

    rc = lib.cuInit(ctypes.c_uint(0))
    out["init_rc"] = rc
    if rc != 0:
        out["init_error"] = error_name(rc)
        return out
    version = ctypes.c_int(0)
    if lib.cuDriverGetVersion(ctypes.byref(version)) == 0:
        out["driver_version"] = version.value
    count = ctypes.c_int(0)
    rc = lib.cuDeviceGetCount(ctypes.byref(count))
    if rc != 0:
        out["error"] = "cuDeviceGetCount failed: %s (%d)" % (error_name(rc), rc)
        return out
    out["device_count"] = count.value
    total_mem = getattr(lib, "cuDeviceTotalMem_v2", None) or lib.cuDeviceTotalMem
    get_uuid = getattr(lib, "cuDeviceGetUuid_v2", None) or getattr(lib, "cuDeviceGetUuid", None)
    for ordinal in range(min(count.value, 64)):
        dev = ctypes.c_int(0)
        entry = {"ordinal": ordinal}
        rc = lib.cuDeviceGet(ctypes.byref(dev), ordinal)
        if rc != 0:
            entry["error"] = "cuDeviceGet failed: %s (%d)" % (error_name(rc), rc)
            out["devices"].append(entry)
            continue
        name = ctypes.create_string_buffer(256)
        if lib.cuDeviceGetName(name, 256, dev) == 0:
            entry["name"] = name.value.decode("utf-8", "replace")
        mem = ctypes.c_size_t(0)
        if total_mem(ctypes.byref(mem), dev) == 0:
            entry["memory_total"] = mem.value
        major, minor, mode = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
        if lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev) == 0 and \
                lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev) == 0:
            entry["compute_capability"] = [major.value, minor.value]
        if lib.cuDeviceGetAttribute(ctypes.byref(mode), 20, dev) == 0:
            entry["compute_mode"] = mode.value
        bus = ctypes.create_string_buffer(64)
        if lib.cuDeviceGetPCIBusId(bus, 64, dev) == 0:
            entry["pci_bus_id"] = bus.value.decode("ascii", "replace")
        if get_uuid is not None:
            raw = ctypes.create_string_buffer(16)
            if get_uuid(raw, dev) == 0:
                h = "".join("%02x" % b for b in bytearray(raw.raw[:16]))
                entry["uuid"] = "GPU-%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        out["devices"].append(entry)
    return out


def cuda_rung(options):
    result, timed_out = with_timeout(cuda_facts, float(options["cuda_timeout"]), "cuda")
    if timed_out:
        return {"timed_out": True, "error": "the CUDA driver API did not answer in %gs" % options["cuda_timeout"]}
    result = result or {}
    result["timed_out"] = False
    return result


# --- rungs 3 and 4: the framework, in a child process --------------------------------------------


def own_source():
    if SCRIPT_SOURCE_Z:
        return zlib.decompress(base64.b64decode(SCRIPT_SOURCE_Z)).decode("utf-8")
    with open(os.path.abspath(__file__), "rb") as handle:  # run on its own, as a file
        return handle.read().decode("utf-8")


def child_payload(options):
    source = own_source()
    marker = "PAYLOAD_OPTIONS = None\n"
    if source.count(marker) != 1:
        raise RuntimeError("cannot find the options marker in the script")
    return source.replace(marker, "PAYLOAD_OPTIONS = json.loads(%r)\n" % json.dumps(options), 1).encode("utf-8")


def framework_rungs(options, devices):
    """Run rungs 3 and 4 in a child; its JSON lines, with how it ended."""
    child_options = dict(options)
    child_options["mode"] = "framework"
    child_options["devices"] = devices
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TF's "Could not load dynamic library" warnings
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # Keras writes its keras.json into the user's home on first import: the check writes nothing there
    # (an apply's rollback restores the host byte for byte, and a home is not ours to touch).
    scratch = tempfile.mkdtemp(prefix="remediator-verify-")
    env["KERAS_HOME"] = scratch
    try:
        return run_framework_child(options, child_options, env)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_framework_child(options, child_options, env):
    info = {"ran": True, "rc": None, "signal": None, "timed_out": False, "stuck": False, "last_step": None,
            "stderr_tail": "", "duration_s": None, "error": None}
    started = time.monotonic()
    timeout = float(options["framework_timeout"])
    try:
        payload = child_payload(child_options)
        proc = subprocess.Popen([sys.executable, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, close_fds=True)
    except (OSError, RuntimeError) as exc:
        info["error"] = "cannot start the framework check: %s" % describe(exc)
        return info, []
    try:
        out, err = proc.communicate(payload, timeout=timeout)
    except subprocess.TimeoutExpired:
        info["timed_out"] = True
        proc.kill()
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            # Stuck in the kernel (a wedged GPU): keep what it printed and leave it behind.
            info["stuck"] = True
            partial = getattr(proc, "_fileobj2output", None) or {}
            out = b"".join(b"".join(v) for k, v in partial.items() if k is proc.stdout)
            err = b"".join(b"".join(v) for k, v in partial.items() if k is proc.stderr)
    info["duration_s"] = round(time.monotonic() - started, 3)
    rc = proc.returncode
    if rc is not None and rc < 0:
        info["signal"] = -rc
    info["rc"] = rc
    info["stderr_tail"] = (err or b"")[-STDERR_TAIL:].decode("utf-8", "replace")
    events = []
    for line in (out or b"").decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
            if event.get("event") == "start":
                info["last_step"] = event.get("step")
    return info, events


class Emitter:
    """The child's results go to the real stdout; anything the frameworks print goes to stderr."""

    def __init__(self):
        fd = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self.out = os.fdopen(fd, "w")

    def __call__(self, event):
        self.out.write(json.dumps(event, sort_keys=True) + "\n")
        self.out.flush()

    def start(self, step):
        self({"event": "start", "step": step})


def site_dirs():
    dirs = []
    try:
        import site

        dirs += list(site.getsitepackages())
        dirs.append(site.getusersitepackages())
    except Exception:  # noqa: S110 - virtualenv's old site.py lacks these
        pass
    for entry in sys.path:
        if entry.endswith("-packages") and entry not in dirs:
            dirs.append(entry)
    return [d for d in dirs if os.path.isdir(d)]


def env_packages(sites):
    """Framework and NVIDIA wheels installed for this interpreter, and the CUDA libraries they ship."""
    dists, lib_dirs = [], []
    for site_dir in sites:
        for name in listdir(site_dir):
            match = DIST_RE.match(name)
            if match:
                dists.append({"name": match.group(1).replace("_", "-").lower(), "version": match.group(2),
                              "site": site_dir})
        candidates = [os.path.join(site_dir, "nvidia", n, "lib") for n in listdir(os.path.join(site_dir, "nvidia"))]
        candidates += [os.path.join(site_dir, "torch", "lib"), os.path.join(site_dir, "tensorflow")]
        for directory in candidates:
            files = [n for n in listdir(directory) if WHEEL_LIB_RE.match(n)]
            if files:
                lib_dirs.append({"dir": directory, "files": files[:50]})
    return dists, lib_dirs


def library_versions(path):
    """Versions the loaded library itself reports, through ctypes (RTLD_NOLOAD: never a new load)."""
    base = os.path.basename(path)
    facts = {"path": path}
    try:
        lib = ctypes.CDLL(path, mode=getattr(os, "RTLD_NOLOAD", 4))
    except OSError as exc:
        facts["error"] = str(exc)[:300]
        return facts
    try:
        if base.startswith("libcudnn.so"):
            lib.cudnnGetVersion.restype = ctypes.c_size_t
            facts["api_version"] = int(lib.cudnnGetVersion())
            if hasattr(lib, "cudnnGetCudartVersion"):
                lib.cudnnGetCudartVersion.restype = ctypes.c_size_t
                facts["cudart_version"] = int(lib.cudnnGetCudartVersion())
        elif base.startswith("libcudart.so"):
            value = ctypes.c_int(0)
            if lib.cudaRuntimeGetVersion(ctypes.byref(value)) == 0:
                facts["api_version"] = value.value
        elif base.startswith("libcublas.so"):
            parts = []
            for kind in (0, 1, 2):  # MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL
                value = ctypes.c_int(0)
                if lib.cublasGetProperty(kind, ctypes.byref(value)) != 0:
                    break
                parts.append(value.value)
            if len(parts) == 3:
                facts["api_version_text"] = "%d.%d.%d" % tuple(parts)
        elif base.startswith("libcuda.so"):
            value = ctypes.c_int(0)
            if lib.cuDriverGetVersion(ctypes.byref(value)) == 0:
                facts["api_version"] = value.value
    except Exception as exc:  # a symbol this version lacks
        facts["error"] = describe(exc)
    return facts


class Torch:
    name = "torch"

    def __init__(self):
        import torch

        self.torch = torch

    def build(self):
        t = self.torch
        out = {"version": str(t.__version__), "file": getattr(t, "__file__", None),
               "cuda": getattr(t.version, "cuda", None), "cudnn": None, "cudnn_runtime": None}
        try:
            compile_version = t._C._cudnn.getCompileVersion()
            out["cudnn"] = "%d.%d.%d" % tuple(compile_version)
        except Exception as exc:
            out["cudnn_error"] = describe(exc)
        out["is_cuda_build"] = out["cuda"] is not None
        return out

    def physical_devices(self):
        t = self.torch
        count = t.cuda.device_count()
        return [{"index": i, "name": t.cuda.get_device_name(i)} for i in range(count)]

    def prepare(self, use):
        self.torch.backends.cuda.matmul.allow_tf32 = False
        self.torch.backends.cudnn.allow_tf32 = False

    def small_op(self, index):
        t = self.torch
        dev = t.device("cuda", index)
        x = t.ones((64, 64), device=dev)
        y = t.mm(x, x)
        conv = t.nn.functional.conv2d(t.ones((1, 1, 8, 8), device=dev), t.ones((1, 1, 3, 3), device=dev),
                                      padding=1)
        t.cuda.synchronize(dev)
        out = {"matmul_value": float(y[0, 0].item()), "conv_value": float(conv[0, 0, 4, 4].item()),
               "expected": [64.0, 9.0]}
        out["cudnn_available"] = bool(t.backends.cudnn.is_available())
        try:
            version = t.backends.cudnn.version()
            out["cudnn_runtime"] = int(version) if version is not None else None
        except Exception as exc:  # torch raises here when the loaded cuDNN does not fit its build
            out["cudnn_runtime_error"] = describe(exc)
        return out

    def matmul(self, index, a, b, rows, repeats):
        t = self.torch
        dev = t.device("cuda", index)
        with t.cuda.device(dev):
            ta = t.from_numpy(a).to(dev)
            tb = t.from_numpy(b).to(dev)
            c = t.mm(ta, tb)
            t.cuda.synchronize(dev)
            started = time.perf_counter()
            for _ in range(repeats):
                c = t.mm(ta, tb)
            t.cuda.synchronize(dev)
            seconds = (time.perf_counter() - started) / repeats
            got = c[:rows].cpu().numpy()
            peak = int(t.cuda.max_memory_allocated(dev))
            del ta, tb, c
            t.cuda.empty_cache()
        return seconds, got, {"peak_memory": peak, "device": str(dev)}


class TensorFlow:
    name = "tensorflow"

    def __init__(self):
        import tensorflow as tf

        self.tf = tf
        self.gpus = []
        self.visible = None

    def build(self):
        tf = self.tf
        out = {"version": str(tf.__version__), "file": getattr(tf, "__file__", None), "cuda": None, "cudnn": None}
        info = {}
        try:
            info = dict(tf.sysconfig.get_build_info())
        except Exception:
            try:
                from tensorflow.python.platform import build_info

                info = {"cuda_version": getattr(build_info, "cuda_version_number", None),
                        "cudnn_version": getattr(build_info, "cudnn_version_number", None),
                        "is_cuda_build": getattr(build_info, "is_cuda_build", None)}
            except Exception as exc:
                out["build_error"] = describe(exc)
        out["cuda"] = info.get("cuda_version")
        out["cudnn"] = info.get("cudnn_version")
        try:
            out["is_cuda_build"] = bool(tf.test.is_built_with_cuda())
        except Exception:
            out["is_cuda_build"] = info.get("is_cuda_build")
        return out

    def physical_devices(self):
        config = self.tf.config
        listing = getattr(config, "list_physical_devices", None) or config.experimental.list_physical_devices
        self.gpus = list(listing("GPU"))
        return [{"index": i, "name": g.name} for i, g in enumerate(self.gpus)]

    def prepare(self, use):
        tf = self.tf
        for gpu in self.gpus:  # allocate as needed, never the whole card (TF's default)
            tf.config.experimental.set_memory_growth(gpu, True)
        chosen = [g for i, g in enumerate(self.gpus) if i in use]
        if chosen and len(chosen) < len(self.gpus):  # GPUs busy with other jobs get no context of ours
            setter = getattr(tf.config, "set_visible_devices", None) or tf.config.experimental.set_visible_devices
            setter(chosen, "GPU")
        if chosen and len(chosen) < len(self.gpus):
            self.visible = {i: n for n, i in enumerate(sorted(use))}
        with contextlib.suppress(AttributeError):  # TF before 2.4 has no TF32
            tf.config.experimental.enable_tensor_float_32_execution(False)

    def logical(self, index):
        return index if self.visible is None else self.visible[index]

    def small_op(self, index):
        tf = self.tf
        with tf.device("/GPU:%d" % self.logical(index)):
            x = tf.ones((64, 64))
            y = tf.matmul(x, x)
            conv = tf.nn.conv2d(tf.ones((1, 8, 8, 1)), tf.ones((3, 3, 1, 1)), strides=1, padding="SAME")
            out = {"matmul_value": float(y[0, 0].numpy()), "conv_value": float(conv[0, 4, 4, 0].numpy()),
                   "expected": [64.0, 9.0], "device": y.device}
        return out

    def cuda_libraries(self, build, sites):
        """The CUDA runtime, cuBLAS and cuDNN this build dlopens (sonames from its build info)."""
        names = []
        cuda_major = str(build.get("cuda") or "").split(".")[0]
        cudnn_major = str(build.get("cudnn") or "").split(".")[0]
        if cuda_major.isdigit():
            names += ["libcudart.so.%s" % cuda_major, "libcublas.so.%s" % cuda_major]
        if cudnn_major.isdigit():
            names.append("libcudnn.so.%s" % cudnn_major)
        return [resolve_library(name, sites) for name in names]

    def cpu_matmul(self, a, b, rows, repeats):
        seconds, got, device = self.timed_matmul("/CPU:0", a, b, rows, repeats)
        return seconds, got, {"device": "CPU:0", "tf_device": device}

    def matmul(self, index, a, b, rows, repeats):
        seconds, got, device = self.timed_matmul("/GPU:%d" % self.logical(index), a, b, rows, repeats)
        return seconds, got, {"device": device}

    def timed_matmul(self, where, a, b, rows, repeats):
        """One warm-up, then `repeats` matmuls on `where`: (seconds per matmul, the first rows, the device)."""
        tf = self.tf
        with tf.device(where):
            ta = tf.identity(tf.constant(a))
            tb = tf.identity(tf.constant(b))
            c = tf.matmul(ta, tb)
            c[0, 0].numpy()
            started = time.perf_counter()
            for _ in range(repeats):
                c = tf.matmul(ta, tb)
            c[0, 0].numpy()  # waits for the stream: ops on it run in order
            seconds = (time.perf_counter() - started) / repeats
            return seconds, c[:rows].numpy(), c.device


def framework_main(options):
    emit = Emitter()
    started = time.monotonic()
    framework = options.get("framework")
    runtime = {"framework": framework, "import_ok": False, "import_error": None}
    emit.start("import")
    try:
        fw = Torch() if framework == "pytorch" else TensorFlow()
        runtime["import_ok"] = True
    except BaseException as exc:  # ImportError, OSError from a missing .so, SystemExit from a broken build
        runtime["import_error"] = describe(exc)
        runtime["python"] = python_facts()
        emit({"event": "runtime", "data": runtime})
        return 0
    runtime["python"] = python_facts()
    emit.start("build_info")
    try:
        runtime["build"] = fw.build()
    except Exception as exc:
        runtime["build"] = {"error": describe(exc)}
    sites = site_dirs()
    runtime["site_dirs"] = sites
    runtime["dists"], runtime["wheel_lib_dirs"] = env_packages(sites)
    emit.start("devices")
    devices = options.get("devices") or []
    busy = set(d["ordinal"] for d in devices if d.get("busy_pids"))
    try:
        physical = fw.physical_devices()
    except Exception as exc:
        physical = []
        runtime["devices_error"] = describe(exc)
    runtime["devices"] = physical
    if options.get("cpu_only"):
        return cpu_main(options, fw, runtime, sites, started, emit)
    indices = [d["index"] for d in physical]
    use = [i for i in indices if options.get("force") or i not in busy]
    op_index = use[0] if use else (indices[0] if indices else None)
    try:
        fw.prepare(set(use) | ({op_index} if op_index is not None else set()))
    except Exception as exc:
        runtime["prepare_error"] = describe(exc)
    if op_index is not None:
        emit.start("op")
        try:
            runtime["op"] = {"ok": True, "index": op_index}
            runtime["op"].update(fw.small_op(op_index))
        except Exception as exc:
            runtime["op"] = {"ok": False, "index": op_index, "error": describe(exc)}
    emit.start("maps")
    runtime["libraries"] = [library_versions(p) for p in loaded_libraries()]
    runtime["duration_s"] = round(time.monotonic() - started, 3)
    emit({"event": "runtime", "data": runtime})
    if not runtime.get("op", {}).get("ok"):
        return 0
    matmul_rung(options, fw, physical, busy, emit)
    return 0


def cpu_main(options, fw, runtime, sites, started, emit):
    """No NVIDIA GPU on this host: report the CUDA libraries the framework would load, then compute on the CPU."""
    runtime["cpu_only"] = True
    emit.start("cuda_libraries")
    try:
        runtime["cuda_libraries"] = fw.cuda_libraries(runtime.get("build") or {}, sites)
    except Exception as exc:
        runtime["cuda_libraries_error"] = describe(exc)
    emit.start("maps")
    runtime["libraries"] = [library_versions(p) for p in loaded_libraries()]
    runtime["duration_s"] = round(time.monotonic() - started, 3)
    emit({"event": "runtime", "data": runtime})
    matmul_rung(options, fw, [], set(), emit, cpu=True)
    return 0


def soname_candidates(soname, sites):
    """Where the loader would look for `soname` when TensorFlow dlopens it: LD_LIBRARY_PATH, then the
    nvidia wheel directories its RUNPATH names (site-packages/nvidia/<dir>/lib), then ld.so.cache."""
    out = []
    for directory in (os.environ.get("LD_LIBRARY_PATH") or "").split(":"):
        if directory:
            out.append(("LD_LIBRARY_PATH", os.path.join(directory, soname)))
    wheel_dir = WHEEL_DIRS.get(soname.split(".so", 1)[0])
    if wheel_dir:
        for site_dir in sites:
            out.append(("wheel", os.path.join(site_dir, "nvidia", wheel_dir, "lib", soname)))
    return out


def resolve_library(soname, sites):
    """dlopen `soname` as the framework would; where it loads, the real path (from /proc/self/maps) and the
    version the loaded file reports."""
    entry = {"soname": soname, "found": False, "via": None, "path": None, "searched": [], "error": None}
    candidates = soname_candidates(soname, sites)
    for via, path in candidates:
        entry["searched"].append(path)
        if not os.path.exists(path):
            continue
        try:
            ctypes.CDLL(path)
        except OSError as exc:
            entry["error"] = str(exc)[:300]
            continue
        entry["found"], entry["via"] = True, via
        break
    if not entry["found"]:
        entry["searched"].append("ld.so.cache and the system directories")
        try:
            ctypes.CDLL(soname)
            entry["found"], entry["via"], entry["error"] = True, "loader", None
        except OSError as exc:
            entry["error"] = str(exc)[:300]
    if entry["found"]:
        stem = "/" + soname.split(".so", 1)[0] + ".so"
        for path in loaded_libraries():
            if stem in path:
                entry["path"] = path
                entry.update(library_versions(path))
                break
    return entry


def matmul_rung(options, fw, physical, busy, emit, cpu=False):
    n = int(options["size"])
    rows = max(1, min(int(options["reference_rows"]), n))
    repeats = max(1, int(options["repeats"]))
    setup = {"size": n, "reference_rows": rows, "repeats": repeats, "dtype": "float32", "tf32": False,
             "reference": "numpy float64"}
    if cpu:
        setup.update({"device": "CPU:0", "gpu": False})
    emit({"event": "matmul_setup", "data": setup})
    emit.start("numpy")
    try:
        import numpy as np
    except BaseException as exc:
        emit({"event": "matmul_error", "data": {"error": "cannot import numpy: %s" % describe(exc)}})
        return
    emit.start("reference")
    started = time.monotonic()
    try:
        rng = np.random.RandomState(int(options["seed"]))
        a = rng.uniform(-1.0, 1.0, size=(n, n)).astype(np.float32)
        b = rng.uniform(-1.0, 1.0, size=(n, n)).astype(np.float32)
        reference = a[:rows].astype(np.float64).dot(b.astype(np.float64))
        ref_norm = float(np.sqrt((reference * reference).sum()))
    except Exception as exc:  # MemoryError for a large n on a small host, a broken NumPy
        emit({"event": "matmul_error", "data": {"error": "cannot compute the reference: %s" % describe(exc)}})
        return
    emit({"event": "reference", "data": {"seconds": round(time.monotonic() - started, 3)}})

    def measure(result, run):
        try:
            seconds, got, extra = run()
            got = np.asarray(got, dtype=np.float64)
            diff = got - reference
            result.update(extra)
            result["seconds"] = seconds
            result["tflops"] = 2.0 * n * n * n / seconds / 1e12 if seconds > 0 else None
            result["finite"] = bool(np.isfinite(got).all())
            result["rel_error"] = float(np.sqrt((diff * diff).sum())) / ref_norm if ref_norm else None
            result["max_abs_error"] = float(np.abs(diff).max())
            if not result["finite"]:
                result["rel_error"] = None
        except Exception as exc:
            result["error"] = describe(exc)
        return result

    if cpu:
        emit.start("matmul:cpu")
        result = measure({"device": "CPU:0", "gpu": False}, lambda: fw.cpu_matmul(a, b, rows, repeats))
        result["gpu"] = False  # whatever the framework reported, this is not a GPU result
        emit({"event": "matmul_cpu", "data": result})
        return
    for device in physical:
        index = device["index"]
        result = {"index": index, "name": device.get("name")}
        if index in busy and not options.get("force"):
            result["skipped"] = "busy"
            emit({"event": "matmul_gpu", "data": result})
            continue
        emit.start("matmul:%d" % index)
        measure(result, lambda index=index: fw.matmul(index, a, b, rows, repeats))
        emit({"event": "matmul_gpu", "data": result})


# --- the ladder ----------------------------------------------------------------------------------


def python_facts():
    return {
        "executable": sys.executable,
        "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "prefix": sys.prefix,
        "base_prefix": getattr(sys, "base_prefix", sys.prefix),
        # Who ran the check: with become, the owner of the env (what that user sees is what is proven).
        "uid": os.geteuid() if hasattr(os, "geteuid") else None,
        "user": user_name(),
    }


def user_name():
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        return None


def busy_devices(nvml, cuda):
    """CUDA ordinals with the NVML processes on the same GPU (matched by UUID, else PCI bus id)."""
    by_uuid, by_bus = {}, {}
    for gpu in nvml.get("gpus") or []:
        procs = gpu.get("processes") or []
        if gpu.get("uuid"):
            by_uuid[gpu["uuid"]] = procs
        if gpu.get("pci_bus_id"):
            by_bus[bus_key(gpu["pci_bus_id"])] = procs
    out = []
    for dev in cuda.get("devices") or []:
        procs = by_uuid.get(dev.get("uuid"))
        if procs is None and dev.get("pci_bus_id"):
            procs = by_bus.get(bus_key(dev["pci_bus_id"]))
        out.append({"ordinal": dev["ordinal"], "uuid": dev.get("uuid"),
                    "busy_pids": [p["pid"] for p in procs or []]})
    return out


def bus_key(text):
    """NVML writes 00000000:3B:00.0, CUDA and sysfs 0000:3b:00.0."""
    parts = text.strip().lower().split(":")
    if len(parts) == 3:
        parts[0] = parts[0][-4:].rjust(4, "0")
    return ":".join(parts)


def ladder(options):
    started = time.monotonic()
    doc = {"schema_version": SCHEMA_VERSION, "script": SCRIPT_NAME, "python": python_facts(),
           "hostname": os.uname()[1], "options": {k: options.get(k) for k in (
               "framework", "framework_version", "force", "size", "reference_rows", "repeats",
               "nvml_timeout", "cuda_timeout", "framework_timeout")},
           "env": {k: os.environ.get(k) for k in CVD_VARS},
           "collected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    doc["driver"] = driver_rung(options)
    doc["cuda"] = None
    doc["framework"] = {"ran": False}
    doc["runtime"] = None
    doc["matmul"] = None
    no_device = doc["driver"].get("pci") == [] and not doc["driver"]["nvml"].get("ok")
    if no_device and options.get("framework") in CPU_FRAMEWORKS:
        # No NVIDIA GPU at all: the framework still shows what it sees and that it computes, on the CPU.
        doc["skipped"] = {"cuda": "no_device"}
        info, events = framework_rungs(dict(options, cpu_only=True), [])
        info["cpu_only"] = True
        doc["framework"] = info
        doc["devices"] = []
        collect_events(doc, events)
    elif not doc["driver"]["nvml"].get("ok"):
        doc["skipped"] = {"cuda": "driver", "framework": "driver"}
    else:
        doc["cuda"] = cuda_rung(options)
        cuda = doc["cuda"]
        if cuda.get("timed_out") or cuda.get("init_rc") != 0 or not cuda.get("device_count"):
            doc["skipped"] = {"framework": "cuda"}
        elif not options.get("framework"):
            doc["skipped"] = {"framework": "no_target"}
        else:
            devices = busy_devices(doc["driver"]["nvml"], cuda)
            info, events = framework_rungs(options, devices)
            doc["framework"] = info
            doc["devices"] = devices
            collect_events(doc, events)
    doc["duration_s"] = round(time.monotonic() - started, 3)
    return doc


def collect_events(doc, events):
    for event in events:
        kind, data = event.get("event"), event.get("data")
        if kind == "runtime":
            doc["runtime"] = data
        elif kind == "matmul_setup":
            doc["matmul"] = dict(data or {}, gpus=[], error=None)
        elif doc["matmul"] is None:
            continue
        elif kind == "matmul_error":
            doc["matmul"]["error"] = (data or {}).get("error")
        elif kind == "reference":
            doc["matmul"]["reference_seconds"] = (data or {}).get("seconds")
        elif kind == "matmul_gpu":
            doc["matmul"]["gpus"].append(data)
        elif kind == "matmul_cpu":
            doc["matmul"]["cpu"] = data


def parse_args(argv, options):
    names = {"pytorch": "pytorch", "torch": "pytorch", "tensorflow": "tensorflow", "tensorflow-gpu": "tensorflow"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        value = argv[i + 1] if i + 1 < len(argv) else None
        if arg == "--target" and value and "==" in value:
            name, _, version = value.partition("==")
            options["framework"] = names.get(name.strip().lower(), name.strip().lower())
            options["framework_version"] = version.strip()
            i += 2
        elif arg in ("--size", "--repeats", "--reference-rows") and value:
            options[arg[2:].replace("-", "_")] = int(value)
            i += 2
        elif arg == "--framework-timeout" and value:
            options["framework_timeout"] = float(value)
            i += 2
        elif arg == "--force":
            options["force"] = True
            i += 1
        else:
            sys.stderr.write("remediator verify: unknown argument %r\n" % arg)
            i += 1
    return options


def main(argv=None, payload_options=None):
    if sys.version_info < (3, 6):
        sys.stderr.write(
            "remediator: python3 too old: %s is %d.%d; the check needs 3.6 or newer\n"
            % ((sys.executable,) + tuple(sys.version_info[:2]))
        )
        return 3
    options = dict(DEFAULT_OPTIONS)
    if payload_options:
        options.update(payload_options)
    parse_args(sys.argv[1:] if argv is None else argv, options)
    if options.get("mode") == "framework":
        code = framework_main(options)
        sys.stderr.flush()
        os._exit(code)  # a framework's exit handlers (TF's, on a wedged GPU) must not hang the check
    doc = ladder(options)
    sys.stdout.write(json.dumps(doc, ensure_ascii=True, sort_keys=True) + "\n")
    sys.stdout.flush()
    # Threads may be stuck inside the driver; interpreter shutdown would wait for nothing better.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(payload_options=PAYLOAD_OPTIONS))
