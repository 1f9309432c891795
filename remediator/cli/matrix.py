"""`remediate matrix`: what a framework version needs, straight from the compatibility matrix."""

from __future__ import annotations

import click

from remediator.cli.render import FORMAT_OPTION, echo_json
from remediator.matrix import Variant, load_matrix, parse_target


@click.group("matrix")
def matrix() -> None:
    """Query the compatibility matrix shipped with remediate (every row cites its source)."""


@matrix.command("show")
@click.argument("target", metavar="FRAMEWORK==VERSION")
@FORMAT_OPTION
def show(target: str, fmt: str) -> int:
    """Show the CUDA, cuDNN, Python range and minimum driver a framework version needs.

    \b
    Examples:
      remediate matrix show tensorflow==2.4.1
      remediate matrix show pytorch==2.11.0 --format json

    An unknown version exits 1 and lists the nearest known versions.
    """
    m = load_matrix()
    req = m.requirements_for(parse_target(target))
    data = req.to_dict()
    if fmt == "json":
        echo_json(data)
        return 0
    rows = [
        ("framework", f"{req.framework} {req.version} (series {req.series})"),
        ("packages", ", ".join(req.packages)),
        ("python", req.python.raw),
        ("CUDA", _tested_and_range(req.cuda, req.cuda_range)),
        ("cuDNN", _tested_and_range(req.cudnn, req.cudnn_range)),
        ("min driver", req.min_driver.raw + (f" (minor-version compat: >= {req.min_driver_compat.raw})"
                                             if req.min_driver_compat is not None else "")),
        ("CUDA from", "pip wheels in the venv (only the driver matters)" if req.bundles_cuda
         else "the system toolkit"),
    ]
    if req.wheels:
        rows.append(("wheels", ", ".join(f"{n}=={v}" for n, v in req.wheels)))
    for v in req.variants:
        rows.append(("variant", _variant_text(v)))
    if req.cpu_index_url:
        rows.append(("variant", f"cpu: {req.cpu_index_url}"))
    if req.torchvision:
        rows.append(("torchvision", ", ".join(req.torchvision)))
    if req.torchaudio:
        rows.append(("torchaudio", ", ".join(req.torchaudio)))
    for d in req.defects:
        fixed = f"fixed in {d.fixed_in}" if d.fixed_in else "no fixed release"
        rows.append(("known defect", f"{d.id} ({fixed}): {d.symptom} [{d.source}]"))
    rows += [("note", n) for n in req.notes]
    rows += [("source", s) for s in req.sources]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")
    click.echo(f"\n(matrix {m.version})")
    return 0


@matrix.command("list")
@click.argument("framework", type=click.Choice(["tensorflow", "pytorch"]))
def list_versions(framework: str) -> int:
    """List every version of FRAMEWORK the matrix knows."""
    for v in load_matrix().known_versions(framework):
        click.echo(v)
    return 0


def _variant_text(v: Variant) -> str:
    toolkit = f" ({v.toolkit})" if v.toolkit is not None else ""
    text = f"{v.tag}{' [pip default]' if v.default else ''}: CUDA {v.cuda}{toolkit}, cuDNN {v.cudnn or 'n/a'}"
    text += f", driver >= {v.min_driver}"
    if v.min_driver_compat is not None:
        text += f" (compat >= {v.min_driver_compat})"
    if v.sm_archs:
        text += f", GPUs: {' '.join(v.sm_archs + v.ptx_archs)}"
    return text


def _tested_and_range(tested: object, rng: object) -> str:
    text = f"{tested}" if tested is not None else "n/a"
    if rng is not None:
        raw = getattr(rng, "raw", str(rng))
        rule = getattr(rng, "rule", None)
        text += f" (works: {raw}" + (f", rule {rule})" if rule else ")")
    return text
