"""Judge a host's check document: parse what the script printed, then climb the rungs (pure)."""

from __future__ import annotations

from typing import Any

from remediator.errors import UnknownVersionError
from remediator.hostscript import OutputError, decode_document
from remediator.matrix import Matrix, Target
from remediator.verify.context import NO_DEVICE, Context, _d, _f, _s, _skip
from remediator.verify.evidence import ShapeError, check_shape
from remediator.verify.model import REMOTE_SCHEMA_VERSION, GpuReport, HostVerification, VerifyError
from remediator.verify.rungs import cuda, driver, matmul, runtime

# --- parsing -------------------------------------------------------------------------------------

MAX_OUTPUT_BYTES = 16 * 1024 * 1024


def parse_verify_output(output: bytes | str, *, host: str, target: Target | None, matrix: Matrix) -> HostVerification:
    """Parse what the remote script printed on stdout and judge it; VerifyError on anything but a document."""
    try:
        data = decode_document(output, what="check", max_bytes=MAX_OUTPUT_BYTES, last_line_fallback=True)
    except OutputError as exc:
        raise VerifyError(str(exc), host=host, hint=exc.hint) from None
    return judge(data, host=host, target=target, matrix=matrix)


def judge(doc: Any, *, host: str, target: Target | None, matrix: Matrix) -> HostVerification:
    """Judge every rung from the remote script's document; pure: the same document gives the same ladder."""
    if not isinstance(doc, dict):
        raise VerifyError(f"check output is a JSON {type(doc).__name__}, not an object", host=host)
    if doc.get("script") != "remediator-verify":
        raise VerifyError("check output is not a remediator verify document", host=host)
    if doc.get("schema_version") != REMOTE_SCHEMA_VERSION:
        raise VerifyError(
            f"check document has schema version {doc.get('schema_version')!r}; this remediate reads "
            f"{REMOTE_SCHEMA_VERSION}",
            host=host,
            hint="the remote script and remediate come from the same package; reinstall remediate",
        )
    try:
        check_shape(doc)
    except ShapeError as exc:  # a field of the wrong type would otherwise read as "not seen"
        raise VerifyError(f"check document is malformed: {exc}", host=host,
                          hint="the document was not written by remediate's check script, or was changed "
                          "on the way; run `remediate verify --local --format json` on the host") from None
    req = None
    if target is not None:
        try:
            req = matrix.requirements_for(target)
        except UnknownVersionError:
            req = None
    ctx = Context(doc, target, req, matrix)
    first = driver.rung(ctx)
    if first.status == "skip" and _d(doc.get("framework")).get("cpu_only") is True:
        # no device, but the framework ran on the CPU: what it saw and that it computes, never a GPU pass
        rungs = (first, _skip(2, "cuda", NO_DEVICE), runtime.rung(ctx))
        matmul_rung, gpus = matmul.cpu_rung(ctx, rungs[2]), tuple[GpuReport, ...]()
    elif first.status == "skip":  # no device: every rung that needs a GPU says so
        rungs = (first, _skip(2, "cuda", NO_DEVICE), _skip(3, "runtime", NO_DEVICE))
        matmul_rung, gpus = _skip(4, "matmul", NO_DEVICE), tuple[GpuReport, ...]()
    else:
        rungs = (first, cuda.rung(ctx), runtime.rung(ctx))
        matmul_rung, gpus = matmul.rung(ctx, rungs[2])
    libraries = runtime.libraries(ctx)
    python = _d(doc.get("python"))
    return HostVerification(
        host=host,
        target=str(target) if target else None,
        python=_s(python.get("executable")),
        python_version=_s(python.get("version")),
        rungs=(*rungs, matmul_rung),
        gpus=gpus,
        libraries=libraries,
        notes=tuple(ctx.notes),
        duration_s=_f(doc.get("duration_s")),
        report=doc,
        user=_s(python.get("user")),
    )


