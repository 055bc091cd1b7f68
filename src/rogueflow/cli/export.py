"""``rogueflow export``: a findings.json as STIX 2.1, a MISP event or a Zeek intel file.

Registered in :mod:`rogueflow.cli.main` with ``cli.add_command(export)``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rogueflow.cli.common import Ctx, handle_errors, pass_ctx
from rogueflow.export import FORMATS


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.name for f in FORMATS]),
    required=True,
    help="Export format.",
)
@click.option(
    "--findings",
    "findings",
    type=click.Path(dir_okay=False),
    required=True,
    metavar="PATH",
    help="The findings.json written by `rogueflow report`.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False),
    default=None,
    metavar="FILE",
    help="Output file; '-' for standard output (default: the format's file beside findings.json).",
)
@pass_ctx
@handle_errors
def export(c: Ctx, fmt: str, findings: str, out: str | None) -> None:
    """Export the findings as a STIX 2.1 bundle, a MISP event or a Zeek intel file."""
    from rogueflow import export as exp

    path = Path(findings)
    doc = exp.load_findings(path)
    if out == "-":
        sys.stdout.write(exp.render(doc, fmt, str(path)))
        return
    target = Path(out) if out else path.parent / exp.by_name(fmt).filename
    exp.write_export(doc, fmt, target, str(path))
    c.say(f"{fmt}: {len(doc['findings'])} findings from {path}")
    click.echo(str(target))
