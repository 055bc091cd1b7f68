"""``rogueflow intel``: the reference-data snapshots of a workspace.

Registered in :mod:`rogueflow.cli.main` with ``cli.add_command(intel)``; each
command builds an :class:`~rogueflow.intel.snapshots.IntelStore` and calls one method.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from rogueflow.cli.common import Ctx, handle_errors, pass_ctx

_DATES = click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"])


@click.group()
def intel() -> None:
    """Reference data: list, add, update, show and remove snapshots."""


@intel.command(name="list")
@click.option("--kind", default=None, metavar="KIND", help="Only snapshots of this kind.")
@click.option("--feeds", "show_feeds", is_flag=True, help="List the configured feeds instead.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def list_cmd(c: Ctx, kind: str | None, show_feeds: bool, as_json: bool) -> None:
    """List the snapshots (built-in defaults included), or the feeds."""
    from rogueflow.intel.kinds import kind as get_kind
    from rogueflow.intel.snapshots import IntelStore

    if kind is not None:
        get_kind(kind)
    if show_feeds:
        _list_feeds(c, kind, as_json)
        return
    snaps = IntelStore(c.ws).list(kind)
    if as_json:
        click.echo(json.dumps([s.to_json() for s in snaps], indent=2))
        return
    for s in snaps:
        click.echo(
            f"{s.id:48s} {s.format:13s} {_interval(s.valid_from, s.valid_to):25s} "
            f"{s.rows:>10,}  {s.source}"
        )
    c.say(f"{len(snaps)} snapshot(s)")


def _list_feeds(c: Ctx, kind: str | None, as_json: bool) -> None:
    from rogueflow.intel.feeds import load_feeds
    from rogueflow.intel.snapshots import IntelStore

    store = IntelStore(c.ws)
    rows = []
    for f in load_feeds(c.ws):
        if kind is not None and f.kind != kind:
            continue
        mine = [s for s in store.list(f.kind) if s.name == f.name]
        last = max((s.retrieved_at for s in mine), default=None)
        rows.append((f, last))
    if as_json:
        out = [
            {
                "name": f.name,
                "kind": f.kind,
                "format": f.format,
                "url": f.url,
                "enabled": f.enabled,
                "valid_for_days": f.valid_for_days,
                "last_retrieved": last.isoformat() if last else None,
                "description": f.description,
            }
            for f, last in rows
        ]
        click.echo(json.dumps(out, indent=2))
        return
    now = datetime.now(UTC)
    for f, last in rows:
        if last is None:
            state = "never fetched"
        else:
            age = (now - last).total_seconds() / 86400
            state = f"{age:.1f} d old" + (" (stale)" if age > f.valid_for_days else "")
        flag = "" if f.enabled else " [disabled]"
        click.echo(f"{f.name:24s} {f.kind:15s} {f.format:13s} {state:20s} {f.url}{flag}")


@intel.command()
@click.argument("kind_name", metavar="KIND")
@click.argument("file", type=click.Path(exists=True))
@click.option("--format", "fmt", default=None, help="File format (default: the kind's first).")
@click.option("--name", default=None, help="Snapshot name (default: from the file name).")
@click.option("--valid-from", type=_DATES, default=None, help="Start of validity (UTC).")
@click.option("--valid-to", type=_DATES, default=None, help="End of validity, exclusive (UTC).")
@click.option("--source", default=None, help="Where the data came from (default: the path).")
@pass_ctx
@handle_errors
def add(
    c: Ctx,
    kind_name: str,
    file: str,
    fmt: str | None,
    name: str | None,
    valid_from: datetime | None,
    valid_to: datetime | None,
    source: str | None,
) -> None:
    """Validate FILE as reference data of KIND and store it as a snapshot."""
    from rogueflow.intel.snapshots import IntelStore

    store = IntelStore(c.ws)
    before = {s.id for s in store.list(kind_name)}
    snap = store.add(
        kind_name,
        file,
        name=name,
        fmt=fmt,
        valid_from=_utc(valid_from),
        valid_to=_utc(valid_to),
        source=source,
    )
    state = "already stored" if snap.id in before else "added"
    click.echo(
        f"{state}: {snap.id} [{snap.format}] {snap.rows:,} rows, valid "
        f"{_interval(snap.valid_from, snap.valid_to)}"
    )


@intel.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@pass_ctx
@handle_errors
def update(c: Ctx, names: tuple[str, ...]) -> None:
    """Fetch feeds (default: every enabled one), validate and store new snapshots."""
    from rogueflow.intel.feeds import update as run_update

    results = run_update(
        c.ws, list(names) or None, on_start=lambda f: c.say(f"fetching {f.name} <{f.url}>")
    )
    for r in results:
        click.echo(r.line())
    failed = sum(not r.ok for r in results)
    new = sum(r.ok and not r.unchanged for r in results)
    c.say(f"{len(results)} feed(s): {new} new, {len(results) - new - failed} unchanged, "
          f"{failed} failed")  # fmt: skip
    if failed:
        sys.exit(1)


@intel.command()
@click.argument("ident", metavar="ID|NAME")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def show(c: Ctx, ident: str, as_json: bool) -> None:
    """Show a snapshot's metadata and a summary of its content."""
    from rogueflow.intel.snapshots import IntelStore

    store = IntelStore(c.ws)
    snap = store.get(ident)
    obj = store.load(snap)
    info: dict[str, Any] = snap.to_json()
    info["content"] = _summary(obj)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        click.echo(f"{key:13s} {value if value is not None else '-'}")


@intel.command()
@click.argument("ident", metavar="ID")
@pass_ctx
@handle_errors
def remove(c: Ctx, ident: str) -> None:
    """Remove a snapshot from the workspace (its file too, when unshared)."""
    from rogueflow.intel.snapshots import IntelStore

    snap = IntelStore(c.ws).remove(ident)
    click.echo(f"removed: {snap.id}")


def _summary(obj: object) -> str:
    """What the loader built: its own summary() when it has one, else type and size."""
    describe = getattr(obj, "summary", None)
    if callable(describe):
        return str(describe())
    try:
        size = f", {len(obj):,} entries"  # type: ignore[arg-type]
    except TypeError:
        size = ""
    return f"{type(obj).__name__}{size}"


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None else None


def _interval(start: datetime | None, end: datetime | None) -> str:
    def fmt(d: datetime | None) -> str:
        if d is None:
            return "…"
        return d.strftime("%Y-%m-%d" if d.time() == d.time().min else "%Y-%m-%dT%H:%M")

    if start is None and end is None:
        return "always"
    return f"{fmt(start)}..{fmt(end)}"
