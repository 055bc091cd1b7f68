"""``rogueflow bgp``: routing history from MRT archives.

Registered in :mod:`rogueflow.cli.main` with ``cli.add_command(bgp)``.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import click

from rogueflow.cli.common import Ctx, handle_errors, pass_ctx, territory_options, window_options
from rogueflow.errors import ConfigError, RogueflowError


@click.group()
def bgp() -> None:
    """BGP routing history: ingest MRT dumps, prefix timelines, upstream shares."""


@bgp.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Re-read files already in the store.")
@click.option("--workers", type=click.IntRange(1, 16), default=None, help="bgpdump processes.")
@click.option("--strict", is_flag=True, help="Fail (exit 1) when any record could not be read.")
@pass_ctx
@handle_errors
def ingest(c: Ctx, files: tuple[str, ...], force: bool, workers: int | None, strict: bool) -> None:
    """Read MRT files (TABLE_DUMP, TABLE_DUMP_V2, BGP4MP; gzip/bzip2/xz) into the store."""
    from rogueflow.bgp.store import BgpStore

    store = BgpStore(c.ws)
    problems = 0
    try:
        for f in files:
            r = store.ingest(f, force=force, workers=workers)
            if r.skipped:
                c.say(f"{f}: already in the store ({r.routes:,} routes); --force re-reads it")
                continue
            for p in r.problems[:20]:
                click.echo(f"warning: {p}", err=True)
            if len(r.problems) > 20:
                click.echo(f"warning: … and {len(r.problems) - 20} more problems", err=True)
            problems += len(r.problems)
            c.say(
                f"{f}: {r.routes:,} routes from {r.records:,} records "
                f"({r.first_ts} .. {r.last_ts})"
                + (f", {len(r.problems)} problem(s)" if r.problems else "")
            )
    finally:
        store.close()
    if strict and problems:
        raise SystemExit(1)


@bgp.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def sources(c: Ctx, as_json: bool) -> None:
    """List the MRT files in the store."""
    from rogueflow.bgp.store import BgpStore

    store = BgpStore(c.ws)
    rows = store.sources()
    store.close()
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in rows], indent=2))
        return
    for r in rows:
        click.echo(f"{r.source_id}  {r.rows:>10,}  {r.first_ts} .. {r.last_ts}  {r.path}")


@bgp.command()
@click.option("--prefix", "prefixes", multiple=True, metavar="CIDR", help="Prefix(es) to follow.")
@click.option("--asn", "asns", multiple=True, type=int, help="Also prefixes originated by this AS.")
@territory_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def timeline(
    c: Ctx,
    prefixes: tuple[str, ...],
    asns: tuple[int, ...],
    territory: str | None,
    territory_file: str | None,
    as_json: bool,
) -> None:
    """Intervals of (prefix, origin, upstream, peers) for prefixes or a territory."""
    from rogueflow import addr
    from rogueflow.bgp.store import BgpStore
    from rogueflow.bgp.timeline import build_timeline, load_routes

    ranges = [addr.prefix_range(p) for p in prefixes]
    asn_list = list(asns)
    if territory or territory_file:
        from rogueflow import territory as terr

        t = terr.resolve(territory, territory_file)
        ranges += [p.range for p in t.prefixes]
        asn_list += [a.asn for a in t.asns]
    if not ranges and not asn_list:
        raise ConfigError("give --prefix, --asn or --territory")
    store = BgpStore(c.ws)
    try:
        routes, peers = load_routes(store, ranges, asn_list)
    finally:
        store.close()
    intervals = build_timeline(routes, peers)
    if as_json:
        click.echo(json.dumps([iv.to_json() for iv in intervals], indent=2))
        return
    for iv in intervals:
        up = f"AS{iv.upstream_asn}" if iv.upstream_asn is not None else "-"
        org = f"AS{iv.origin_asn}" if iv.origin_asn is not None else "?"
        end = iv.valid_to.isoformat() if iv.valid_to else "(still)"
        click.echo(
            f"{iv.prefix:20s} {org:>9s} via {up:>9s}  {iv.peers:>3}/{iv.peers_total:<3} "
            f"{iv.valid_from.isoformat()} .. {end}"
        )


@bgp.command()
@territory_options
@window_options
@click.option(
    "--period",
    type=click.Choice(["month", "quarter", "year"]),
    default="quarter",
    show_default=True,
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def upstreams(
    c: Ctx,
    territory: str | None,
    territory_file: str | None,
    start: datetime | None,
    end: datetime | None,
    period: str,
    as_json: bool,
) -> None:
    """Route share and traffic-weighted share per upstream per period, and changes."""
    from rogueflow import settings
    from rogueflow.analyze.context import load_profile, open_scope
    from rogueflow.analyze.routing import traffic_by_address
    from rogueflow.bgp.shares import compute_shares, territory_routing

    code = settings.resolve("territory", territory, c.ws.config) if not territory_file else None
    profile = load_profile(code, territory_file)
    t = profile.territory
    traffic = None
    lo: date | None = start.date() if start else None
    hi: date | None = end.date() if end else None
    try:
        scope = open_scope(c.ws, profile, lo, hi)
    except RogueflowError as exc:  # no flows: routes alone still answer
        c.say(f"no traffic weighting: {exc}")
        scope = None
    if scope is not None:
        try:
            traffic = traffic_by_address(scope)
            lo, hi = scope.start, scope.end
        finally:
            scope.close()
    routing = territory_routing(c.ws, t, lo, hi)
    if routing.empty:
        raise ConfigError(f"the BGP store has no route for {t.name}; run `rogueflow bgp ingest`")
    shares = compute_shares(routing, traffic, period)
    changes = routing.changes
    if as_json:
        click.echo(
            json.dumps(
                {
                    "territory": t.code,
                    "period": period,
                    "shares": [
                        s.__dict__ | {"coverage": shares.coverage(s.period)} for s in shares.rows
                    ],
                    "changes": [ch.to_json() for ch in changes],
                },
                indent=2,
            )
        )
        return
    click.echo(f"{'period':10s} {'upstream':>10s} {'route':>7s} {'traffic':>8s} {'flows':>12s}")
    for s in shares.rows:
        up = f"AS{s.upstream_asn}" if s.upstream_asn is not None else "origin"
        rs = f"{100 * s.route_share:6.1f}%" if s.route_share is not None else "      -"
        ts = f"{100 * s.traffic_share:7.1f}%" if s.traffic_share is not None else "       -"
        click.echo(f"{s.period:10s} {up:>10s} {rs} {ts} {s.flows:12,.0f}")
    click.echo("")
    for ch in changes:
        click.echo(f"{ch.ts.isoformat()}  AS{ch.upstream_asn} {ch.change}: {' '.join(ch.prefixes)}")
