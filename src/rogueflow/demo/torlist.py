"""The Tor relay list of the demo's world: a consensus naming the relays its users reach.

An analyst loads the relay lists of the period under study (``rogueflow intel add
tor-relays``); without one, Tor on port 443 looks like any TLS. The demo writes the
consensus its Tor users' relays (:data:`rogueflow.demo.scenario.TOR_RELAYS`, long-lived
directory authorities) appear in, and :func:`rogueflow.demo.run_demo` loads it before
ingesting, valid over the simulated years.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rogueflow.demo import scenario as sc

VALID = (datetime(2017, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC))
_IDS = ("AAoQ1DAR6kkoo19hBAX5K0QztNw", "AAwffNL+oHO5EdyUoWAOwvEX3ws")


def write_consensus(path: Path) -> Path:
    """A network-status consensus (dir-spec v3 layout) listing the demo's relays."""
    lines = [
        "@type network-status-consensus-3 1.0",
        "network-status-version 3",
        "valid-after 2017-01-01 00:00:00",
        "fresh-until 2017-01-01 01:00:00",
        "valid-until 2017-01-01 03:00:00",
    ]
    for i, (ip, port) in enumerate(sc.TOR_RELAYS):
        lines.append(
            f"r auth{i} {_IDS[i % 2]} evtkDQeqgaEIuj55lP3MXloQYcI 2016-12-31 13:28:36 {ip} {port} 0"
        )
        lines.append("s Authority Running Valid")
    lines += ["directory-footer", "directory-signature AAAA BBBB", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
