"""The ``rogueflow`` command: a thin adapter over the library.

Each command builds the library object, calls one function, and turns
:class:`rogueflow.errors.RogueflowError` into a one-line message and exit code 2.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from rogueflow import settings
from rogueflow.cli.bgp import bgp
from rogueflow.cli.collect import collect
from rogueflow.cli.common import (
    Ctx,
    engine_options,
    handle_errors,
    pass_ctx,
    territory_options,
    window_options,
)
from rogueflow.cli.export import export
from rogueflow.cli.intel import intel
from rogueflow.cli.sanctions import sanctions, screen


@click.group()
@click.option(
    "--workspace",
    "-w",
    default=None,
    metavar="DIR",
    help=f"{settings.BY_NAME['workspace'].help} [env ROGUEFLOW_WORKSPACE]",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress or chatter; results only.")
@click.version_option(package_name="rogueflow")
@click.pass_context
def cli(ctx: click.Context, workspace: str | None, quiet: bool) -> None:
    """rogueflow — network telemetry to sanctions-evasion intelligence."""
    ctx.obj = Ctx(workspace, quiet)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", default=None, help="Reader to use instead of detection.")
@click.option(
    "--force", is_flag=True, help="Re-ingest files already in the catalog, replacing them."
)
@click.option("--preset", default=None, help="Column-mapping preset for CSV/Parquet.")
@click.option(
    "--mapping",
    "mapping_file",
    default=None,
    type=click.Path(dir_okay=False),
    help="Column mapping file (TOML) for CSV/Parquet.",
)
@click.option(
    "--map",
    "pairs",
    multiple=True,
    metavar="COL=SRC",
    help="Map a canonical column to a source column (repeatable).",
)
@click.option(
    "--option",
    "extra",
    multiple=True,
    metavar="KEY=VALUE",
    help="Reader-specific option (repeatable).",
)
@click.option(
    "--sampling-rate",
    type=int,
    default=None,
    help="Sampling rate (1 in N) to record when the source carries none.",
)
@pass_ctx
@handle_errors
def ingest(
    c: Ctx,
    paths: tuple[str, ...],
    fmt: str | None,
    force: bool,
    preset: str | None,
    mapping_file: str | None,
    pairs: tuple[str, ...],
    extra: tuple[str, ...],
    sampling_rate: int | None,
) -> None:
    """Ingest flow files (CSV, Parquet, Zeek logs, nfcapd, pcap) into the store."""
    from rogueflow.ingest import mapping as colmap
    from rogueflow.ingest.base import ReadOptions
    from rogueflow.ops import ingest_paths

    mapping = (
        colmap.load_mapping(preset, mapping_file, _pairs(pairs, "--map"))
        if (preset or mapping_file or pairs)
        else {}
    )
    options = ReadOptions(
        batch_rows=int(c.ws.setting("batch_rows")),
        mapping=mapping,
        extra=_pairs(extra, "--option"),
        sampling_rate=sampling_rate,
    )
    results = ingest_paths(c.ws, paths, fmt=fmt, force=force, options=options, quiet=c.quiet)
    for r in results:
        state = (
            "skipped (already ingested; --force replaces)"
            if r.skipped
            else ("replaced" if r.replaced else "ingested")
        )
        click.echo(f"{state}: {r.path} [{r.format}] {r.rows:,} flows, source {r.source_id}")


def _pairs(items: tuple[str, ...], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


@cli.command()
@click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="ID",
    help="Only this ingested source (repeatable; default: all).",
)
@pass_ctx
@handle_errors
def enrich(c: Ctx, sources: tuple[str, ...]) -> None:
    """Re-enrich stored flows with the current reference data (after `intel add/update`)."""
    from rogueflow.ops import enrich_store

    done = enrich_store(c.ws, sources, quiet=c.quiet)
    click.echo(f"re-enriched {sum(r for _, r in done):,} flows in {len(done)} source(s)")


@cli.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--limit", type=int, default=None, help="Show at most N rows (table format).")
@engine_options
@pass_ctx
@handle_errors
def query(
    c: Ctx, sql: str, fmt: str, limit: int | None, engine: str | None, spark_master: str | None
) -> None:
    """Run SQL over the view `flows` (see docs/schema.md)."""
    from rogueflow.ops import run_query

    run_query(c.ws, sql, fmt, limit, sys.stdout, engine=engine, spark_master=spark_master)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@territory_options
@pass_ctx
@handle_errors
def territories(c: Ctx, as_json: bool, territory: str | None, territory_file: str | None) -> None:
    """List the territory profiles (built-in, or the one given)."""
    from rogueflow.ops import describe_territories

    click.echo(describe_territories(territory, territory_file, as_json))


@cli.command()
@pass_ctx
@handle_errors
def sources(c: Ctx) -> None:
    """List the ingested sources in the catalog."""
    from rogueflow.store.flowstore import FlowStore

    store = FlowStore(c.ws)
    for s in store.catalog.sources():
        click.echo(
            f"{s.source_id}  {s.format:10s} {s.rows:>12,}  {s.first_ts} .. {s.last_ts}  {s.path}"
        )
    n, rows, size = store.catalog.totals()
    click.echo(f"{n} sources, {rows:,} flows, {size / 1e6:.1f} MB", err=True)


@cli.command()
@click.option("--markdown", is_flag=True, help="Print the generated docs page.")
def schema(markdown: bool) -> None:
    """Show the canonical flow schema."""
    from rogueflow import schema as sch

    if markdown:
        click.echo(sch.markdown())
    else:
        click.echo(f"schema version {sch.SCHEMA_VERSION}")
        click.echo(str(sch.FLOW_SCHEMA))


@cli.command(name="settings")
@click.option("--markdown", is_flag=True, help="Print the generated docs page.")
@pass_ctx
def settings_cmd(c: Ctx, markdown: bool) -> None:
    """Show every setting and its resolved value."""
    if markdown:
        click.echo(settings.markdown())
        return
    for s in settings.SETTINGS:
        value = c.ws.root if s.name == "workspace" else c.ws.setting(s.name)
        click.echo(f"{s.name:16s} {value!s:24s} {s.help}")


@cli.command()
@territory_options
@window_options
@click.option(
    "--baseline",
    default=None,
    metavar="D:D",
    help="Baseline window YYYY-MM-DD:YYYY-MM-DD for period comparisons.",
)
@click.option(
    "--events",
    "events",
    type=click.Path(dir_okay=False),
    default=None,
    help="CSV of dated events (date,label) to test for pre-event changes.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output directory (default: <workspace>/reports/<territory>).",
)
@engine_options
@pass_ctx
@handle_errors
def report(
    c: Ctx,
    territory: str | None,
    territory_file: str | None,
    start: Any,
    end: Any,
    baseline: str | None,
    events: str | None,
    out: str | None,
    engine: str | None,
    spark_master: str | None,
) -> None:
    """Write report.html, report.md and findings.json for a territory."""
    from rogueflow.report import build_report

    code = territory or (None if territory_file else str(c.ws.setting("territory")))
    result = build_report(
        c.ws,
        code,
        territory_file=territory_file,
        start=_day(start),
        end=_day(end),
        baseline=baseline,
        events=Path(events) if events else None,
        out=Path(out) if out else None,
        quiet=c.quiet,
        engine=engine,
        spark_master=spark_master,
    )
    click.echo(result.summary())


@cli.command()
@click.option(
    "--scale",
    type=click.Choice(["small", "full"]),
    default="small",
    help="small: seconds (tests); full: tens of millions of flows.",
)
@click.option("--seed", type=int, default=20170517, help="Random seed of the simulation.")
@click.option(
    "--scenario",
    type=click.Choice(["reference", "control"]),
    default="reference",
    show_default=True,
    help="reference: the behaviours of the reference case; control: the same network "
    "with none of them (no finding should be asserted).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the simulated input files go (default: <workspace>/demo-input).",
)
@pass_ctx
@handle_errors
def demo(c: Ctx, scale: str, seed: int, scenario: str, out: str | None) -> None:
    """Simulate a watched network 2017-01..2019-11, ingest it and write the report."""
    from rogueflow.demo import run_demo

    result = run_demo(
        c.ws,
        scale=scale,
        seed=seed,
        out=Path(out) if out else None,
        quiet=c.quiet,
        scenario=scenario,
    )
    click.echo(result.summary())


@cli.command(name="eval")
@click.argument("corpus", type=click.Path(exists=True))
@click.option(
    "--root",
    type=click.Path(file_okay=False),
    default=None,
    help="Where the corpus paths resolve (default: the corpus's own `root`).",
)
@click.option("--no-intel", is_flag=True, help="Ignore the corpus's reference data.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable result.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Build the evaluation workspace here and keep it (default: a temporary one).",
)
@pass_ctx
@handle_errors
def eval_cmd(
    c: Ctx, corpus: str, root: str | None, no_intel: bool, as_json: bool, keep: str | None
) -> None:
    """Score the detectors on a labelled CORPUS: precision and recall per category.

    Exits 1 when a category is below the corpus's stated minimums.
    """
    import json

    from rogueflow.evaluation import evaluate, load_corpus, render

    ev = evaluate(
        load_corpus(corpus, root), use_intel=not no_intel, workspace=Path(keep) if keep else None
    )
    click.echo(json.dumps(ev.as_dict(), indent=2) if as_json else render(ev))
    if ev.failures:
        sys.exit(1)


def _day(value: Any) -> date | None:
    return value.date() if value is not None else None


cli.add_command(intel)
cli.add_command(bgp)
cli.add_command(export)
cli.add_command(sanctions)
cli.add_command(screen)
cli.add_command(collect)


def main() -> None:
    cli(prog_name="rogueflow")


if __name__ == "__main__":
    main()
