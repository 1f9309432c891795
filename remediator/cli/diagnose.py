"""`remediate diagnose`: findings for saved facts against a target, without touching any host."""

from __future__ import annotations

import click

from remediator.cli.render import FORMAT_OPTION, echo_json, findings_text
from remediator.diagnosis import diagnose as run_diagnosis
from remediator.diagnosis import has_errors
from remediator.errors import ExitStatus
from remediator.facts import load_facts_file
from remediator.matrix import load_matrix, parse_target


@click.command("diagnose")
@click.option("--facts", "facts_path", required=True, metavar="FILE",
              help="facts of one host, a list of hosts, or the file `remediate probe --out` wrote.")
@click.option("--target", metavar="FRAMEWORK==VERSION",
              help="what the host should run, e.g. tensorflow==2.4.1 or pytorch==2.11.0. Without it, "
              "only checks that need no target run (driver state, loader path, shadowed cuDNN).")
@FORMAT_OPTION
def diagnose(facts_path: str, target: str | None, fmt: str) -> int:
    """Check saved facts against the compatibility matrix and explain what is wrong.

    \b
    Examples:
      remediate probe -i hosts.yml --out facts.json
      remediate diagnose --facts facts.json --target tensorflow==2.4.1
      remediate diagnose --facts facts.json --target pytorch==2.11.0 --format json

    Exit 0 when no host has a finding of severity error, 2 when one does, 1 on bad input.
    """
    parsed_target = parse_target(target) if target else None
    matrix = load_matrix()
    hosts = load_facts_file(facts_path)
    results = [(h, run_diagnosis(h, parsed_target, matrix)) for h in hosts]
    if fmt == "json":
        echo_json({
            "target": target,
            "matrix_version": matrix.version,
            "hosts": [
                {"host": h.host, "healthy": not has_errors(fs), "findings": [f.to_dict() for f in fs]}
                for h, fs in results
            ],
        })
    else:
        click.echo("\n\n".join(findings_text(h.host, fs) for h, fs in results))
    bad = any(has_errors(fs) for _, fs in results)
    return int(ExitStatus.CHANGES if bad else ExitStatus.OK)
