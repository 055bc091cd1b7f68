"""Counters of a collector or a file decode: what came in, what became flows, what not.

Units: ``datagrams``/``bytes`` received; ``flows`` decoded; ``dropped`` by reason,
each reason naming its unit (a malformed *datagram*, a data *set* without template,
*records* that are not flows); ``lost`` as told by the exporters' sequence numbers
(NetFlow v5 and IPFIX count records, NetFlow v9 and sFlow count datagrams). Gaps are
counted only between two datagrams whose sequence numbers are both known: a restart
or reordering is counted as ``sequence resets``, never as loss.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ExporterStats:
    datagrams: int = 0
    bytes: int = 0
    flows: int = 0
    lost_datagrams: int = 0
    lost_records: int = 0
    sequence_resets: int = 0
    counter_samples: int = 0
    templates: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    last_problem: str = ""


@dataclass
class Stats:
    exporters: dict[str, ExporterStats] = field(default_factory=dict)
    held_sets: int = 0
    held_bytes: int = 0
    rotations: int = 0
    stored_flows: int = 0

    def of(self, exporter: str) -> ExporterStats:
        st = self.exporters.get(exporter)
        if st is None:
            st = self.exporters[exporter] = ExporterStats()
        return st

    def drop(self, exporter: str, reason: str, n: int = 1) -> None:
        st = self.of(exporter)
        st.dropped[reason] += n
        st.last_problem = reason

    def total(self, name: str) -> int:
        return sum(int(getattr(e, name)) for e in self.exporters.values())

    def dropped(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for e in self.exporters.values():
            out.update(e.dropped)
        return out

    def malformed(self) -> int:
        """Datagrams refused as a whole (malformed, unknown version, too short)."""
        return sum(n for reason, n in self.dropped().items() if reason.startswith("malformed"))

    def health_line(self, uptime: float) -> str:
        drops = sum(self.dropped().values())
        return (
            f"collect: up {uptime:.0f}s, {self.total('datagrams'):,} datagrams from "
            f"{len(self.exporters)} exporter(s), {self.total('flows'):,} flows, "
            f"{drops:,} dropped, lost {self.total('lost_datagrams'):,} datagrams + "
            f"{self.total('lost_records'):,} records, held {self.held_sets} set(s), "
            f"{self.rotations} rotation(s), {self.stored_flows:,} flows stored"
        )

    def report(self) -> str:
        """Every counter, per exporter, for SIGUSR1 and the end of a run."""
        lines = [
            f"received {self.total('datagrams'):,} datagrams ({self.total('bytes'):,} bytes), "
            f"decoded {self.total('flows'):,} flows, stored {self.stored_flows:,} "
            f"in {self.rotations} rotation(s)"
        ]
        dropped = self.dropped()
        if dropped:
            lines.append("dropped: " + ", ".join(f"{r} {n:,}" for r, n in sorted(dropped.items())))
        for name in sorted(self.exporters):
            e = self.exporters[name]
            parts = [
                f"exporter {name}: {e.datagrams:,} datagrams, {e.flows:,} flows",
                f"lost {e.lost_datagrams:,} datagrams + {e.lost_records:,} records",
            ]
            if e.sequence_resets:
                parts.append(f"{e.sequence_resets:,} sequence resets")
            if e.counter_samples:
                parts.append(f"{e.counter_samples:,} sFlow counter samples ignored")
            if e.dropped:
                parts.append(
                    "dropped " + ", ".join(f"{r} {n:,}" for r, n in sorted(e.dropped.items()))
                )
            lines.append("  " + "; ".join(parts))
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "datagrams": self.total("datagrams"),
            "bytes": self.total("bytes"),
            "flows": self.total("flows"),
            "lost_datagrams": self.total("lost_datagrams"),
            "lost_records": self.total("lost_records"),
            "dropped": dict(self.dropped()),
            "stored_flows": self.stored_flows,
            "rotations": self.rotations,
            "exporters": {
                name: {
                    "datagrams": e.datagrams,
                    "flows": e.flows,
                    "lost_datagrams": e.lost_datagrams,
                    "lost_records": e.lost_records,
                    "sequence_resets": e.sequence_resets,
                    "counter_samples": e.counter_samples,
                    "dropped": dict(e.dropped),
                }
                for name, e in sorted(self.exporters.items())
            },
        }


class SequenceTracker:
    """Expected next sequence number per stream (exporter + domain/engine/agent)."""

    def __init__(self) -> None:
        self.expected: dict[tuple[object, ...], int] = {}

    def check(self, key: tuple[object, ...], seq: int, advance: int) -> tuple[int, bool]:
        """(missing units before ``seq``, reset?) and remember ``seq + advance`` as next.

        Sequence numbers are 32-bit and wrap; a jump backwards (or forwards by more
        than half the space) is a restart or reordering, not a loss.
        """
        want = self.expected.get(key)
        self.expected[key] = (seq + advance) & 0xFFFFFFFF
        if want is None:
            return 0, False
        gap = (seq - want) & 0xFFFFFFFF
        if gap == 0:
            return 0, False
        if gap < 0x80000000:
            return gap, False
        return 0, True

    def forget(self, key: tuple[object, ...]) -> None:
        """The count of a datagram is unknown (data held without template): resync."""
        self.expected.pop(key, None)
