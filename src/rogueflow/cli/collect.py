"""``rogueflow collect``: receive NetFlow v5/v9, IPFIX and sFlow into the store.

Registered in :mod:`rogueflow.cli.main` with ``cli.add_command(collect)``.
"""

from __future__ import annotations

import click

from rogueflow.cli.common import Ctx, handle_errors, pass_ctx


@click.command()
@click.option(
    "--listen",
    "listen",
    multiple=True,
    required=True,
    metavar="HOST:PORT",
    help="UDP address to receive on, e.g. 0.0.0.0:2055 or [::]:4739 (repeatable).",
)
@click.option(
    "--stats-interval",
    type=float,
    default=0.0,
    metavar="N",
    help="Print a health line every N seconds (0: never).",
)
@click.option(
    "--rotate-seconds",
    type=float,
    default=60.0,
    show_default=True,
    metavar="S",
    help="Commit the flows received to the store at least every S seconds.",
)
@click.option(
    "--rotate-flows",
    type=int,
    default=1_000_000,
    show_default=True,
    metavar="N",
    help="Commit as soon as N flows are waiting.",
)
@click.option(
    "--rcvbuf",
    type=int,
    default=64 << 20,
    show_default=True,
    metavar="BYTES",
    help="Socket receive buffer per listening socket.",
)
@click.option(
    "--hold-seconds",
    type=float,
    default=30.0,
    show_default=True,
    help="How long data waits for its template before it is dropped.",
)
@click.option(
    "--template-timeout",
    type=float,
    default=1800.0,
    show_default=True,
    help="Seconds after which a template not re-announced expires.",
)
@click.option(
    "--sampling-rate",
    type=int,
    default=None,
    help="Sampling rate (1 in N) to record for exporters that announce none.",
)
@click.option(
    "--discard",
    is_flag=True,
    help="Decode and count only; store nothing (checking exporters, benchmarks).",
)
@pass_ctx
@handle_errors
def collect(
    c: Ctx,
    listen: tuple[str, ...],
    stats_interval: float,
    rotate_seconds: float,
    rotate_flows: int,
    rcvbuf: int,
    hold_seconds: float,
    template_timeout: float,
    sampling_rate: int | None,
    discard: bool,
) -> None:
    """Receive NetFlow v5/v9, IPFIX and sFlow v5 over UDP and store the flows."""
    from rogueflow.collect.collector import CollectOptions, Collector, parse_listen
    from rogueflow.errors import ConfigError

    if rotate_seconds <= 0 or rotate_flows <= 0:
        raise ConfigError("--rotate-seconds and --rotate-flows must be positive")
    options = CollectOptions(
        listen=tuple(parse_listen(x) for x in listen),
        stats_interval=stats_interval,
        rotate_seconds=rotate_seconds,
        rotate_flows=rotate_flows,
        rcvbuf=rcvbuf,
        hold_seconds=hold_seconds,
        template_timeout=template_timeout,
        sampling_rate=sampling_rate,
        discard=discard,
    )
    collector = Collector(c.ws, options)
    for host, port in collector.addresses:
        c.say(f"listening on {host}:{port} (udp)")
    collector.run()
    if collector.errors:
        raise ConfigError(f"{len(collector.errors)} rotation(s) not committed; see above")
