"""``rogueflow sanctions`` and ``rogueflow screen``: sanctions lists and address screening.

Registered in :mod:`rogueflow.cli.main` with ``cli.add_command(sanctions)`` and
``cli.add_command(screen)``; each command builds a
:class:`~rogueflow.sanctions.snapshots.SanctionsStore` (or reads one list file) and
calls one function.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from rogueflow.cli.common import Ctx, handle_errors, pass_ctx
from rogueflow.errors import ConfigError, InputError

if TYPE_CHECKING:
    from rogueflow.sanctions.model import SanctionsList

_DATE = click.DateTime(["%Y-%m-%d"])


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _resolve(
    c: Ctx, source: str | None, snapshot: str | None, list_date: date | None = None
) -> tuple[SanctionsList, str | None]:
    """(list, snapshot id or None) from --source FILE, --snapshot ID, or the newest snapshot."""
    from rogueflow.sanctions.model import read_list
    from rogueflow.sanctions.snapshots import SanctionsStore

    if source and snapshot:
        raise ConfigError("give --source FILE or --snapshot ID, not both")
    if source:
        if not Path(source).is_file():
            raise InputError(source, None, "no such file")
        return read_list(source, list_date), None
    store = SanctionsStore(c.ws)
    try:
        snap = store.get(snapshot) if snapshot else store.newest()
        if snap is None:
            raise ConfigError(
                "no sanctions list in this workspace; run `rogueflow sanctions import FILE` "
                "or pass --source FILE"
            )
        return store.load(snap), snap.id
    finally:
        store.close()


@click.group()
def sanctions() -> None:
    """Sanctions lists (OFAC SDN): import issues, list addresses, diff issues, TagPacks."""


@sanctions.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", default=None, help="Snapshot name (default: ofac-sdn / ofac-sdn-legacy).")
@click.option("--list-date", type=_DATE, default=None, help="Issue date, when the file has none.")
@click.option("--source", default=None, help="Where the list came from (default: the path).")
@pass_ctx
@handle_errors
def import_cmd(
    c: Ctx, file: str, name: str | None, list_date: datetime | None, source: str | None
) -> None:
    """Parse FILE (advanced XML or legacy sdn.csv; .bz2/.gz too) and store it as a snapshot."""
    from rogueflow.sanctions.snapshots import SanctionsStore

    c.say(f"reading {file} …")
    store = SanctionsStore(c.ws)
    try:
        snap, added = store.import_file(file, name=name, list_date=_day(list_date), source=source)
    finally:
        store.close()
    state = "imported" if added else "already stored"
    listed = snap.list_date.isoformat() if snap.list_date else "undated"
    click.echo(
        f"{state}: {snap.id} [{snap.format}] list of {listed}: {snap.parties:,} parties, "
        f"{snap.addresses:,} addresses" + (f", {snap.problems} problem(s)" if snap.problems else "")
    )


@sanctions.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def list_cmd(c: Ctx, as_json: bool) -> None:
    """List the imported list issues, oldest first."""
    from rogueflow.sanctions.snapshots import SanctionsStore

    store = SanctionsStore(c.ws)
    try:
        snaps = store.list()
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps([s.to_json() for s in snaps], indent=2))
        return
    for s in snaps:
        listed = s.list_date.isoformat() if s.list_date else "undated"
        until = s.valid_to.isoformat() if s.valid_to else "…"
        click.echo(
            f"{s.id:44s} {s.format:18s} {listed}..{until:10s} {s.parties:>7,} parties "
            f"{s.addresses:>6,} addresses"
        )
    c.say(f"{len(snaps)} snapshot(s)")


@sanctions.command()
@click.argument("ident", metavar="ID")
@pass_ctx
@handle_errors
def remove(c: Ctx, ident: str) -> None:
    """Remove a list snapshot from the workspace."""
    from rogueflow.sanctions.snapshots import SanctionsStore

    store = SanctionsStore(c.ws)
    try:
        snap = store.remove(ident)
    finally:
        store.close()
    click.echo(f"removed: {snap.id}")


@sanctions.command()
@click.option("--source", type=click.Path(dir_okay=False), default=None, help="A list file.")
@click.option("--snapshot", default=None, metavar="ID", help="An imported snapshot (id or name).")
@click.option("--asset", default=None, metavar="CODE", help="Only this asset (XBT, ETH, XMR …).")
@click.option("--list-date", type=_DATE, default=None, help="Issue date of a --source CSV.")
@click.option("--counts", is_flag=True, help="Print addresses per asset instead.")
@pass_ctx
@handle_errors
def addresses(
    c: Ctx,
    source: str | None,
    snapshot: str | None,
    asset: str | None,
    list_date: datetime | None,
    counts: bool,
) -> None:
    """Print the listed addresses, one per line, sorted and deduplicated."""
    lst, _ = _resolve(c, source, snapshot, _day(list_date))
    if counts:
        for code, n in lst.assets().items():
            if asset is None or code == asset.upper():
                click.echo(f"{code}\t{n}")
        return
    out = lst.addresses(asset)
    if out:
        click.echo("\n".join(out))
    for p in lst.problems[:3]:
        c.say(f"warning: {p}")
    if len(lst.problems) > 3:
        c.say(f"warning: … and {len(lst.problems) - 3} more problem(s) in the list")


@sanctions.command(name="diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def diff_cmd(c: Ctx, a: str, b: str, as_json: bool) -> None:
    """What changed from list A to list B (snapshot ids/names, or list files)."""
    from rogueflow.sanctions.snapshots import diff

    la, ida = _either(c, a)
    lb, idb = _either(c, b)
    d = diff(la, lb, ida, idb)
    click.echo(json.dumps(d.to_json(), indent=2) if as_json else "\n".join(d.lines()))


def _either(c: Ctx, ident: str) -> tuple[SanctionsList, str]:
    if Path(ident).is_file():
        lst, _ = _resolve(c, ident, None)
        return lst, ident
    lst, sid = _resolve(c, None, ident)
    return lst, sid or ident


@sanctions.command()
@click.option(
    "--out", "out", type=click.Path(dir_okay=False), default=None, help="File (default: stdout)."
)
@click.option("--title", default="rogueflow: wallets seen in traffic", help="TagPack title.")
@click.option("--creator", default="rogueflow", help="TagPack creator.")
@pass_ctx
@handle_errors
def tagpack(c: Ctx, out: str | None, title: str, creator: str) -> None:
    """Write the wallets seen in the store's traffic as a GraphSense TagPack (YAML)."""
    from rogueflow.sanctions.tagpack import dump_tagpack, wallet_sightings, wallet_tagpack

    sightings = wallet_sightings(c.ws)
    text = dump_tagpack(
        wallet_tagpack(sightings, title=title, creator=creator, source=f"rogueflow {c.ws.root}")
    )
    if out:
        Path(out).write_text(text)
        c.say(f"wrote {len(sightings)} wallet tag(s) to {out}")
    else:
        click.echo(text, nl=False)


def _addresses(args: tuple[str, ...], file: str | None) -> list[str]:
    items = list(args)
    if file:
        try:
            text = sys.stdin.read() if file == "-" else Path(file).read_text(errors="replace")
        except OSError as exc:
            raise InputError(file, None, f"cannot read: {exc.strerror or exc}") from None
        items += [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    return [i for i in items if i]


@click.command()
@click.argument("address_args", metavar="[ADDRESS]...", nargs=-1)
@click.option("--file", "file", default=None, metavar="F", help="Addresses, one a line (- stdin).")
@click.option("--snapshot", default=None, metavar="ID", help="Screen against this snapshot.")
@click.option("--source", default=None, metavar="FILE", help="Screen against a list file.")
@click.option("--asset", default=None, metavar="CODE", help="Validate as this asset.")
@click.option(
    "--tagpack",
    "tagpacks",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="GraphSense TagPack to attribute addresses from (repeatable).",
)
@pass_ctx
@handle_errors
def screen(
    c: Ctx,
    address_args: tuple[str, ...],
    file: str | None,
    snapshot: str | None,
    source: str | None,
    asset: str | None,
    tagpacks: tuple[str, ...],
) -> None:
    """Screen addresses against a sanctions list: one JSON line per address."""
    from rogueflow.sanctions.addresses import check
    from rogueflow.sanctions.tagpack import read_tagpack

    items = _addresses(address_args, file)
    if not items:
        raise click.UsageError("give one or more ADDRESS arguments or --file F")
    lst, snap_id = _resolve(c, source, snapshot)
    packs = [read_tagpack(t) for t in tagpacks]
    for text in items:
        result = lst.screen(text, asset, snapshot=snap_id or lst.source)
        doc = result.to_json()
        if packs:
            key = result.checked.key if result.checked.valid else check(text).text
            doc["tags"] = [
                {
                    "label": t.label,
                    "source": t.source,
                    "category": t.category,
                    "abuse": t.abuse,
                    "currency": t.currency,
                    "tagpack": p.source,
                }
                for p in packs
                for t in p.lookup(key)
            ]
        click.echo(json.dumps(doc, ensure_ascii=False))
