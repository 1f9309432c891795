"""Lab scenarios: the YAML format that describes one broken (or healthy) GPU host, and its validation.

A scenario names what a real host has installed (driver, CUDA toolkits, cuDNN copies, Python environments,
loader and shell settings) and what a correct diagnosis of it finds. `build` turns it into files;
nothing here touches the disk except reading the YAML. The format is documented in docs/lab.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from remediator.errors import InputError
from remediator.lab import catalog

# The finding codes a diagnosis can produce (docs/diagnosis.md); `expect` lists may use only these.
FINDING_CODES: frozenset[str] = frozenset(
    {
        "DRIVER_MISSING",
        "DRIVER_LIBRARY_MISMATCH",
        "DRIVER_TOO_OLD",
        "DRIVER_TOO_OLD_FOR_TOOLKIT",
        "CUDA_WRONG_DEFAULT",
        "CUDA_MISSING",
        "CUDNN_MISMATCH",
        "CUDNN_SHADOWED",
        "CUDNN_MISSING",
        "PYTHON_UNSUPPORTED",
        "FRAMEWORK_CPU_ONLY",
        "FRAMEWORK_CONFLICT",
        "FRAMEWORK_MISSING",
        "FRAMEWORK_VERSION_MISMATCH",
        "LIB_SHADOWED",
        "LDPATH_MISSING_DIR",
        "DRIVER_MINOR_COMPAT",
        "UNPARSABLE_VERSION",
        "PLACE_UNREAD",
        "DRIVER_USERSPACE_MISSING",
        "LIBCUDA_STUB",
        "CUDA_LIB_UNRESOLVED",
        "GPU_ARCH_UNSUPPORTED",
        "ENV_MIXED_CUDA_MAJORS",
        "KNOWN_DEFECT",
    }
)

FRAMEWORKS = ("tensorflow", "pytorch")

# Driver libraries a scenario may leave out (driver.omit).
DRIVER_OMITTABLE = ("libcuda",)

# Absolute paths a scenario may put files under: each is a private copy inside the host's namespace.
PRIVATE_ROOTS = ("/etc", "/usr", "/var", "/opt", "/home", "/root")
# The private roots that are overlays over the outer machine's own directories (the others start empty).
OUTER_VISIBLE_ROOTS = ("/etc/", "/usr/", "/var/")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_NV_VERSION_RE = re.compile(r"^\d{3}\.\d{1,3}(\.\d{1,3})?$")  # 535.54.03, 460.32.03, 410.104
_DOTTED_RE = re.compile(r"^\d+(\.\d+){1,3}$")
_PY_RE = re.compile(r"^3\.\d{1,2}\.\d{1,2}$")
_REQ_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
_CONF_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Gpu:
    model: str
    count: int = 1


@dataclass(frozen=True)
class Driver:
    version: str  # the user-space driver: libraries and nvidia-smi
    kernel_module: str | None  # the loaded kernel module; None: installed but not loaded
    install: str  # "deb" or "runfile"
    gpus: tuple[Gpu, ...]
    # Driver user-space libraries left out although the module is loaded (e.g. libcuda: the package that
    # ships libcuda.so.1 was never installed, as with nvidia-384 without libcuda1-384).
    omit: tuple[str, ...] = ()

    @property
    def mismatch(self) -> bool:
        return self.kernel_module is not None and self.kernel_module != self.version


@dataclass(frozen=True)
class Toolkit:
    version: str  # full toolkit version, e.g. 11.2.2
    install: str  # "runfile" or "deb"

    @property
    def short(self) -> str:
        major, minor = self.version.split(".")[:2]
        return f"{major}.{minor}"

    @property
    def root(self) -> str:
        return f"/usr/local/cuda-{self.short}"


@dataclass(frozen=True)
class Cudnn:
    version: str  # 8.1.1.33
    cuda: str  # the CUDA major.minor it was built for
    install: str  # "tarball" or "deb"
    into: str | None  # tarball: the directory it was copied into (include/, lib64/ below it)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class Package:
    """One pip distribution inside an environment."""

    name: str
    version: str
    cuda: str | None = None  # tensorflow: build_info cuda_version; None for CPU builds
    cudnn: str | None = None  # tensorflow: build_info cudnn_version
    channel: str | None = None  # torch: "pypi" or "pytorch" (which index the wheel came from)


@dataclass(frozen=True)
class Env:
    path: str  # absolute, "~" already expanded to the login user's home
    kind: str  # "venv", "conda" or "system"
    python: str  # full version, e.g. 3.8.10
    packages: tuple[Package, ...]
    conda: tuple[tuple[str, str], ...] = ()  # (name, version) of conda packages
    activate: str | None = None  # conda: etc/conda/activate.d/env_vars.sh


@dataclass(frozen=True)
class ExtraFile:
    path: str
    content: str | None = None
    link: str | None = None
    library: str | None = None  # an ELF stub with this SONAME
    mode: int = 0o644
    absent: bool = False  # hide the outer machine's file at this path (an overlayfs whiteout)
    # library: exported functions, name -> ("return", n) for int f() { return n; } or ("store", n) for
    # int f(int *out) { *out = n; return 0; } (a toolkit's stub libcuda: cuInit returns 34)
    exports: tuple[tuple[str, str, int], ...] = ()


@dataclass(frozen=True)
class Scenario:
    id: str
    summary: str
    source: str
    target: str
    expect: tuple[str, ...]
    user: str
    sudo: bool
    driver: Driver | None
    cuda: tuple[Toolkit, ...]
    default_cuda: str | None  # major.minor that /usr/local/cuda reaches
    default_cuda_via: str  # "link" or "alternatives"
    cudnn: tuple[Cudnn, ...]
    ld_so_conf: tuple[tuple[str, tuple[str, ...]], ...]
    profile: tuple[tuple[str, str], ...]
    bashrc: str | None
    envs: tuple[Env, ...]
    files: tuple[ExtraFile, ...]
    path: str = ""  # the YAML file it came from
    notes: str | None = None
    # Inventory groups of the host besides `lab` (e.g. hostile: `--limit '!hostile'` leaves them out).
    groups: tuple[str, ...] = ()
    # The inventory gives no remediate_target: the host is judged against what it has (target inference);
    # `target` still says which framework that is, for the tests.
    no_target: bool = False
    # sudo wants a password (`login: {sudo: password}`): `sudo -n` fails there, as on a fleet without NOPASSWD.
    sudo_password: bool = False
    # More users besides the login user, each with a 0750 home of their own (Ubuntu 21.04 on, Debian 12).
    users: tuple[str, ...] = ()

    @property
    def home(self) -> str:
        return "/root" if self.user == "root" else f"/home/{self.user}"

    @property
    def framework(self) -> str:
        return self.target.split("==")[0]

    @property
    def target_version(self) -> str:
        return self.target.split("==")[1]


@dataclass
class _Reader:
    """Walks one YAML mapping, naming the file and the field in every error."""

    source: str
    data: Mapping[str, Any]
    prefix: str = ""
    seen: set[str] = field(default_factory=set)

    def where(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, message: str) -> InputError:
        return InputError(
            self.source, message, field=self.where(key), hint="docs/lab.md describes the format"
        )

    def get(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
        default: str | None = None,
    ) -> str | None:
        value = self.get(key)
        if value is None:
            if required:
                raise self.fail(key, "is required")
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise self.fail(key, f"must be a quoted string (YAML read {value!r} as a number)")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"must be a non-empty string, not {value!r}")
        if pattern and not pattern.match(value):
            raise self.fail(key, f"{value!r} is not valid (expected {pattern.pattern})")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.text(key, default=default)
        assert value is not None
        if value not in choices:
            raise self.fail(key, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, not {value!r}")
        return value

    def items(self, key: str) -> list[Any]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, not {type(value).__name__}")
        return value

    def table(self, key: str) -> Mapping[str, Any]:
        value = self.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, not {type(value).__name__}")
        return value

    def child(self, key: str, value: Any) -> _Reader:
        if not isinstance(value, Mapping):
            raise self.fail(key, f"must be a mapping, not {type(value).__name__}")
        return _Reader(self.source, value, prefix=f"{self.prefix}{key}.")

    def done(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown field")


def _abs_path(r: _Reader, key: str, value: str, home: str, *, under_private: bool = True) -> str:
    path = home + value[1:] if value.startswith("~") else value
    if not path.startswith("/") or "/../" in path or path.endswith("/..") or "//" in path:
        raise r.fail(key, f"{value!r} must be an absolute path (or start with ~/)")
    if under_private and not any(path == p or path.startswith(p + "/") for p in PRIVATE_ROOTS):
        raise r.fail(key, f"{value!r} must be under one of {', '.join(PRIVATE_ROOTS)}")
    return path.rstrip("/") or "/"


def _driver(r: _Reader) -> Driver | None:
    raw = r.get("driver")
    if raw is None:
        return None
    d = r.child("driver", raw)
    version = d.text("version", required=True, pattern=_NV_VERSION_RE)
    assert version is not None
    d.seen.add("kernel_module")
    if "kernel_module" in d.data and d.data["kernel_module"] is None:
        kernel: str | None = None
    else:
        kernel = d.text("kernel_module", pattern=_NV_VERSION_RE, default=version)
    install = d.choice("install", ("deb", "runfile"), "deb")
    gpus = []
    for i, g in enumerate(d.items("gpus")):
        gr = d.child(f"gpus[{i}]", g)
        model = gr.text("model", required=True)
        assert model is not None
        if model not in catalog.GPUS:
            raise gr.fail("model", f"unknown GPU model {model!r}; known: {', '.join(sorted(catalog.GPUS))}")
        count = gr.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 16:
            raise gr.fail("count", f"must be a whole number from 1 to 16, not {count!r}")
        gr.done()
        gpus.append(Gpu(model, count))
    if not gpus:
        raise d.fail("gpus", "a driver needs at least one GPU")
    omit = d.items("omit")
    for i, name in enumerate(omit):
        if name not in DRIVER_OMITTABLE:
            raise d.fail(f"omit[{i}]", f"{name!r} is not one of {', '.join(DRIVER_OMITTABLE)}")
    d.done()
    return Driver(version, kernel, install, tuple(gpus), tuple(omit))


def _toolkits(r: _Reader) -> tuple[Toolkit, ...]:
    out = []
    for i, t in enumerate(r.items("cuda")):
        tr = r.child(f"cuda[{i}]", t)
        version = tr.text("version", required=True, pattern=_DOTTED_RE)
        assert version is not None
        if len(version.split(".")) != 3:
            raise tr.fail("version", f"{version!r}: give the full toolkit version, e.g. 11.2.2")
        install = tr.choice("install", ("runfile", "deb"), "runfile")
        tr.done()
        out.append(Toolkit(version, install))
    shorts = [t.short for t in out]
    if len(set(shorts)) != len(shorts):
        raise r.fail("cuda", "two toolkits of the same major.minor version")
    return tuple(out)


def _cudnns(r: _Reader, toolkits: tuple[Toolkit, ...]) -> tuple[Cudnn, ...]:
    out = []
    for i, c in enumerate(r.items("cudnn")):
        cr = r.child(f"cudnn[{i}]", c)
        version = cr.text("version", required=True, pattern=_DOTTED_RE)
        assert version is not None
        if len(version.split(".")) < 3:
            raise cr.fail("version", f"{version!r}: give at least major.minor.patch, e.g. 8.1.1.33")
        if not 7 <= int(version.split(".")[0]) <= 9:
            raise cr.fail("version", f"{version!r}: the lab lays out cuDNN 7, 8 and 9")
        cuda = cr.text("cuda", required=True, pattern=re.compile(r"^\d+\.\d$"))
        assert cuda is not None
        install = cr.choice("install", ("tarball", "deb"), "tarball")
        into = cr.text("into")
        if install == "tarball":
            if into is None:
                into = f"/usr/local/cuda-{cuda}"
            into = _abs_path(cr, "into", into, "/root")
        elif into is not None:
            raise cr.fail("into", "only a tarball copy has a destination; a deb installs to /usr")
        cr.done()
        out.append(Cudnn(version, cuda, install, into))
    del toolkits
    return tuple(out)


def _package(r: _Reader, key: str, raw: Any) -> Package:
    if isinstance(raw, str):
        m = _REQ_RE.match(raw)
        if not m:
            raise r.fail(key, f"{raw!r} is not NAME==VERSION")
        name, version = m.group(1), m.group(2)
        if name in ("tensorflow", "tensorflow-gpu") and not version.startswith("1."):
            raise r.fail(key, f"{raw!r}: give tensorflow as a mapping with its build's cuda and cudnn")
        return Package(name.lower(), version)
    pr = r.child(key, raw)
    name = pr.text("name", required=True, pattern=re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))
    version = pr.text("version", required=True, pattern=re.compile(r"^[A-Za-z0-9.+!_-]+$"))
    assert name is not None and version is not None
    cuda = pr.text("cuda", pattern=re.compile(r"^\d+\.\d+$"))
    cudnn = pr.text("cudnn", pattern=re.compile(r"^\d+(\.\d+)?$"))
    channel = pr.text("channel")
    if channel is not None and channel not in ("pypi", "pytorch"):
        raise pr.fail("channel", f"{channel!r} is not one of pypi, pytorch")
    pr.done()
    return Package(name.lower(), version, cuda, cudnn, channel)


def _envs(r: _Reader, home: str, host_python: str) -> tuple[Env, ...]:
    out = []
    for i, e in enumerate(r.items("envs")):
        key = f"envs[{i}]"
        er = r.child(key, e)
        kind = er.choice("kind", ("venv", "conda", "system"), "venv")
        if kind == "system":
            if er.get("path") is not None:
                raise er.fail("path", "a system environment is the host's own python3; it has no path")
            python = er.text("python", pattern=_PY_RE, default=host_python)
            assert python is not None
            if python.rsplit(".", 1)[0] != host_python.rsplit(".", 1)[0]:
                raise er.fail("python", f"the host's python3 is {host_python}; a system env cannot differ")
            path = f"/usr/local/lib/python{python.rsplit('.', 1)[0]}/dist-packages"
        else:
            raw_path = er.text("path", required=True)
            assert raw_path is not None
            path = _abs_path(er, "path", raw_path, home)
            python = er.text("python", pattern=_PY_RE, default=host_python)
            assert python is not None
        packages = tuple(_package(er, f"packages[{j}]", p) for j, p in enumerate(er.items("packages")))
        conda: list[tuple[str, str]] = []
        for j, c in enumerate(er.items("conda")):
            if kind != "conda":
                raise er.fail("conda", "only a conda environment has conda packages")
            m = _REQ_RE.match(c) if isinstance(c, str) else None
            if not m:
                raise er.fail(f"conda[{j}]", f"{c!r} is not NAME==VERSION")
            conda.append((m.group(1), m.group(2)))
        activate = er.text("activate")
        if activate is not None and kind != "conda":
            raise er.fail("activate", "only a conda environment has activation scripts")
        er.done()
        out.append(Env(path, kind, python, packages, tuple(conda), activate))
    paths = [e.path for e in out]
    if len(set(paths)) != len(paths):
        raise r.fail("envs", "two environments at the same path")
    return tuple(out)


def _files(r: _Reader, home: str) -> tuple[ExtraFile, ...]:
    out = []
    for i, f in enumerate(r.items("files")):
        fr = r.child(f"files[{i}]", f)
        raw = fr.text("path", required=True)
        assert raw is not None
        path = _abs_path(fr, "path", raw, home)
        content = fr.get("content")
        if content is not None and not isinstance(content, str):
            raise fr.fail("content", "must be a string")
        link = fr.text("link")
        library = fr.text("library", pattern=re.compile(r"^lib[A-Za-z0-9_+-]*\.so(\.\d+)*$"))
        mode = fr.get("mode", 0o644)
        if isinstance(mode, str) and re.match(r"^0?[0-7]{3}$", mode):
            mode = int(mode, 8)
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise fr.fail("mode", f"{mode!r} is not a file mode such as '0755'")
        absent = fr.flag("absent", False)
        if sum(x is not None for x in (content, link, library)) + absent != 1:
            raise fr.fail("path", "give exactly one of content, link, library, absent")
        exports: list[tuple[str, str, int]] = []
        for name, value in fr.table("exports").items():
            if library is None:
                raise fr.fail("exports", "only a library has exported functions")
            if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", name):
                raise fr.fail(f"exports.{name}", "is not a C function name")
            if isinstance(value, Mapping) and list(value) == ["store"]:
                kind, number = "store", value["store"]
            else:
                kind, number = "return", value
            if not isinstance(number, int) or isinstance(number, bool) or not -(2**31) <= number < 2**31:
                raise fr.fail(f"exports.{name}", f"{value!r}: give an int (returned) or {{store: int}}")
            exports.append((name, kind, number))
        if absent and not path.startswith(OUTER_VISIBLE_ROOTS):
            # Only /etc, /usr and /var show the outer machine's files; elsewhere leaving it out is enough.
            raise fr.fail("absent", f"{raw!r}: only files under /etc, /usr or /var can be hidden")
        fr.done()
        out.append(ExtraFile(path, content, link, library, mode, absent, tuple(exports)))
    return tuple(out)


def parse(data: Any, source: str, *, host_python: str = "3.11.2") -> Scenario:
    """Validate one scenario document; raise InputError naming `source` and the field."""
    if not isinstance(data, Mapping):
        raise InputError(source, "a scenario must be a YAML mapping", hint="docs/lab.md describes the format")
    r = _Reader(source, data)
    sid = r.text("id", required=True, pattern=_ID_RE)
    summary = r.text("summary", required=True)
    src = r.text("source", required=True, pattern=re.compile(r"^https?://\S+$"))
    notes = r.text("notes")
    target = r.text("target", required=True)
    assert sid is not None and summary is not None and src is not None and target is not None
    m = _REQ_RE.match(target)
    if not m or m.group(1) not in FRAMEWORKS:
        raise r.fail(
            "target", f"{target!r} is not FRAMEWORK==VERSION with FRAMEWORK one of {', '.join(FRAMEWORKS)}"
        )
    expect_raw = r.get("expect")
    if not isinstance(expect_raw, list):
        raise r.fail("expect", "is required: a list of finding codes ([] for a healthy host)")
    for i, code in enumerate(expect_raw):
        if code not in FINDING_CODES:
            raise r.fail(
                f"expect[{i}]", f"unknown finding code {code!r}; known: {', '.join(sorted(FINDING_CODES))}"
            )
    login = r.child("login", r.get("login") or {})
    user = login.text("user", pattern=_USER_RE, default="ubuntu")
    assert user is not None
    sudo_password = login.get("sudo") == "password"
    sudo = True if sudo_password else login.flag("sudo", True)
    login.done()
    home = "/root" if user == "root" else f"/home/{user}"
    if sudo_password and user == "root":
        raise r.fail("login.sudo", "a root login needs no sudo")
    users = r.items("users")
    for i, u in enumerate(users):
        if not isinstance(u, str) or not _USER_RE.match(u) or u in (user, "root") or users.index(u) != i:
            raise r.fail(f"users[{i}]", f"{u!r} is not another user's name ([a-z_][a-z0-9_-]*, once)")

    driver = _driver(r)
    toolkits = _toolkits(r)
    default_cuda = r.text("default_cuda", pattern=re.compile(r"^\d+\.\d$"))
    if default_cuda is not None and default_cuda not in {t.short for t in toolkits}:
        raise r.fail("default_cuda", f"{default_cuda!r} is not one of the scenario's cuda toolkits")
    via = r.choice("default_cuda_via", ("link", "alternatives"), "link")
    cudnns = _cudnns(r, toolkits)

    ld: list[tuple[str, tuple[str, ...]]] = []
    for name, dirs in r.table("ld_so_conf").items():
        if not isinstance(name, str) or not _CONF_NAME_RE.match(name) or not name.endswith(".conf"):
            raise r.fail(f"ld_so_conf.{name}", "file names in /etc/ld.so.conf.d end in .conf")
        if not isinstance(dirs, list) or not all(isinstance(d, str) and d.startswith("/") for d in dirs):
            raise r.fail(f"ld_so_conf.{name}", "must be a list of absolute directories")
        ld.append((name, tuple(dirs)))
    profile: list[tuple[str, str]] = []
    for name, text in r.table("profile").items():
        if not isinstance(name, str) or not _CONF_NAME_RE.match(name) or not name.endswith(".sh"):
            raise r.fail(f"profile.{name}", "file names in /etc/profile.d end in .sh")
        if not isinstance(text, str):
            raise r.fail(f"profile.{name}", "must be the file's text")
        profile.append((name, text))
    bashrc = r.text("bashrc")
    envs = _envs(r, home, host_python)
    files = _files(r, home)
    no_target = r.flag("no_target", False)
    groups = r.items("groups")
    for i, g in enumerate(groups):
        if not isinstance(g, str) or not _ID_RE.match(g) or "-" in g or g == "lab":
            raise r.fail(f"groups[{i}]", f"{g!r} is not an inventory group name ([a-z0-9], not lab)")
    r.done()
    return Scenario(
        id=sid,
        summary=summary,
        source=src,
        target=target,
        expect=tuple(expect_raw),
        user=user,
        sudo=sudo,
        driver=driver,
        cuda=toolkits,
        default_cuda=default_cuda,
        default_cuda_via=via,
        cudnn=cudnns,
        ld_so_conf=tuple(ld),
        profile=tuple(profile),
        bashrc=bashrc,
        envs=envs,
        files=files,
        path=source,
        notes=notes,
        groups=tuple(groups),
        no_target=no_target,
        sudo_password=sudo_password,
        users=tuple(users),
    )


def load(path: Path, *, host_python: str = "3.11.2") -> Scenario:
    """Read and validate one scenario file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        raise InputError(str(path), f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from exc
    return parse(data, str(path), host_python=host_python)


def load_all(paths: Sequence[Path], *, host_python: str = "3.11.2") -> list[Scenario]:
    """Load scenario files and every *.yaml / *.yml in scenario directories, sorted, ids unique."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(str(p), "no such scenario file or directory")
    if not files:
        raise InputError(", ".join(str(p) for p in paths), "no scenario files (*.yaml) found")
    scenarios = [load(f, host_python=host_python) for f in files]
    seen: dict[str, str] = {}
    for s in scenarios:
        if s.id in seen:
            raise InputError(s.path, f"id {s.id!r} is already used by {seen[s.id]}", field="id")
        seen[s.id] = s.path
    return scenarios
