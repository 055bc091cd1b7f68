"""MRT parse benchmark: rogueflow's ``read_mrt`` next to ``bgpdump -m`` on a full-size RIB.

    .venv/bin/python benchmarks/bgp.py [--quick | --prefixes N] [--repeat N] [--out DIR]

The table is real routes first: the ``bgpdump -m`` text of a full 2010-07-01 07:59 RIB
(shared data ``bgp-mrt/bgpdump``: 641,957 routes, 323,487 IPv4 prefixes, 5 peers) is
written back to TABLE_DUMP_V2 with rogueflow's MRT writer, every attribute bgpdump
printed kept (AS paths with their AS_SETs, next hops, origins, communities, atomic
aggregate, aggregator). Past the real prefix count the table grows with the same peers:
each added prefix copies all routes of a real prefix of the same length (every peer's
AS path, next hop and attributes), drawn with a fixed seed among real prefixes of length
/19 to /32 (shorter ones would need more address space than the table leaves free), and
sits in IPv4 global unicast space that no real prefix and no special-purpose block
covers. Prefix lengths, routes per prefix and attribute variety are thus the real
table's; only the addresses of the added prefixes are invented. Smaller sizes
(``--quick``) keep the first N real prefixes.

The gzipped table is built once and cached under ``bench-out/bgp/``, keyed by
BUILD_VERSION and size. Both parsers read the same file in this run, each as a child
process measured with ``os.wait4``: wall time, CPU and peak RSS of the process tree
(rogueflow's bgpdump workers included).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import Row, render

from rogueflow.bgp.mrtwrite import MrtWriter, Peer, RibEntry, open_mrt_output

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ROGUEFLOW_SHARED_DATA", ROOT.parent / "shared" / "data"))
SOURCE = SHARED / "bgp-mrt/bgpdump/bview.20100701.0759.bgpdump-m-output-only.txt.gz"
BUILD_VERSION = "1"  # bump when the table construction changes: the cache key
SEED = 20100701
DEFAULT_PREFIXES = 800_000
QUICK_PREFIXES = 100_000
RATE_TARGET = 500_000  # routes/s
RSS_TARGET_MB = 1024  # a ceiling: streaming keeps the peak flat as tables grow
MIN_CLONE_LEN = 19
ORIGINS = {"IGP": 0, "EGP": 1, "INCOMPLETE": 2}
# RFC 1997 well-known communities, spelled as bgpdump prints them
NAMED_COMMUNITIES = {
    "no-export": (65535, 65281),
    "no-advertise": (65535, 65282),
    "local-AS": (65535, 65283),
}
# IANA special-purpose IPv4 blocks (RFC 6890) inside 1.0.0.0-223.255.255.255
SPECIAL = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
)
UNICAST = (1 << 24, (224 << 24) - 1)


@dataclass
class Rib:
    """A RIB in memory: peers, and records (address, length, timestamp, entries)."""

    peers: list[Peer]
    records: list[tuple[int, int, int, tuple[RibEntry, ...]]]

    @property
    def routes(self) -> int:
        return sum(len(r[3]) for r in self.records)


def _as_path(text: str) -> tuple[int | tuple[int, ...], ...]:
    return tuple(
        tuple(int(a) for a in tok[1:-1].split(",")) if tok[0] == "{" else int(tok)
        for tok in text.split()
    )


def _community(tok: str) -> tuple[int, int]:
    if tok in NAMED_COMMUNITIES:
        return NAMED_COMMUNITIES[tok]
    a, _, b = tok.partition(":")
    return int(a), int(b)


def parse_text(lines: Iterable[str]) -> Rib:
    """``bgpdump -m`` TABLE_DUMP2 lines → a Rib; consecutive lines of one prefix and
    timestamp form one record. Identical routes share one RibEntry object."""
    peers: dict[tuple[str, str], int] = {}
    entries: dict[tuple[str, ...], RibEntry] = {}
    records: list[tuple[int, int, int, tuple[RibEntry, ...]]] = []
    current: tuple[str, str] | None = None
    group: list[RibEntry] = []
    for line in lines:
        f = line.rstrip("\n").split("|")
        if len(f) < 14 or f[0] != "TABLE_DUMP2" or f[2] != "B":
            raise ValueError(f"not a bgpdump -m TABLE_DUMP2 line: {line[:120]!r}")
        key = tuple(f[3:5]) + tuple(f[6:14])
        entry = entries.get(key)
        if entry is None:
            idx = peers.setdefault((f[3], f[4]), len(peers))
            aggr = f[13].split()
            entry = RibEntry(
                idx,
                _as_path(f[6]),
                f[8],
                ORIGINS[f[7]],
                local_pref=int(f[9]) or None,
                med=int(f[10]) or None,
                communities=tuple(_community(c) for c in f[11].split()),
                atomic_aggregate=f[12] == "AG",
                aggregator=(int(aggr[0]), aggr[1]) if aggr else None,
            )
            entries[key] = entry
        if (f[1], f[5]) != current:
            _close(records, current, group)
            current, group = (f[1], f[5]), []
        group.append(entry)
    _close(records, current, group)
    return Rib([Peer(ip, int(asn)) for ip, asn in peers], records)


def _close(
    records: list[tuple[int, int, int, tuple[RibEntry, ...]]],
    current: tuple[str, str] | None,
    group: list[RibEntry],
) -> None:
    if current is None:
        return
    ts, prefix = current
    net, _, plen = prefix.partition("/")
    address = int.from_bytes(socket.inet_aton(net), "big")
    records.append((address, int(plen), int(ts), tuple(group)))


def _free_blocks(rib: Rib) -> list[tuple[int, int]]:
    """CIDR-aligned (start, size) blocks of unicast IPv4 space that nothing covers."""
    spans = [(a, a + (1 << (32 - n)) - 1) for a, n, _, _ in rib.records]
    for cidr in SPECIAL:
        net, _, n = cidr.partition("/")
        a = int.from_bytes(socket.inet_aton(net), "big")
        spans.append((a, a + (1 << (32 - int(n))) - 1))
    spans.sort()
    blocks: list[tuple[int, int]] = []
    cursor = UNICAST[0]
    for lo, hi in [*spans, (UNICAST[1] + 1, UNICAST[1] + 1)]:
        while cursor < min(lo, UNICAST[1] + 1):  # the gap [cursor, lo) in aligned blocks
            size = cursor & -cursor
            while cursor + size > lo:
                size >>= 1
            blocks.append((cursor, size))
            cursor += size
        cursor = max(cursor, hi + 1)
    blocks.sort(key=lambda b: -b[1])  # big first: sizes then fall, so bumps stay aligned
    return blocks


def extend(rib: Rib, prefixes: int, seed: int = SEED) -> Rib:
    """``rib`` grown to ``prefixes`` records by copying real records (see the module doc)."""
    extra = prefixes - len(rib.records)
    if extra <= 0:
        return Rib(rib.peers, rib.records[:prefixes])
    eligible = np.flatnonzero(np.array([r[1] for r in rib.records]) >= MIN_CLONE_LEN)
    picks = np.random.default_rng(seed).choice(eligible, extra)
    lengths = np.array([rib.records[i][1] for i in picks])
    order = np.argsort(lengths, kind="stable")  # shortest (largest) first: aligned bumps
    blocks, b, used = _free_blocks(rib), 0, 0
    added: list[tuple[int, int, int, tuple[RibEntry, ...]]] = []
    for i in picks[order].tolist():
        _, plen, ts, group = rib.records[i]
        size = 1 << (32 - plen)
        while b < len(blocks) and used + size > blocks[b][1]:
            b, used = b + 1, 0
        if b == len(blocks):
            raise RuntimeError(f"no free IPv4 space left after {len(added)} added prefixes")
        added.append((blocks[b][0] + used, plen, ts, group))
        used += size
    return Rib(rib.peers, sorted(rib.records + added, key=lambda r: (r[0], r[1])))


def write(rib: Rib, path: Path) -> None:
    # the text does not name the collector; 0.0.0.0 says "unknown"
    with open_mrt_output(path) as fh:
        w = MrtWriter(fh)
        w.peer_index(min(r[2] for r in rib.records), "0.0.0.0", rib.peers)
        for address, plen, ts, group in rib.records:
            w.rib(ts, f"{socket.inet_ntoa(address.to_bytes(4, 'big'))}/{plen}", group)


def read_source(source: Path) -> Iterator[str]:
    import gzip

    with gzip.open(source, "rt") as fh:
        yield from fh


def table(
    prefixes: int, cache: Path, source: Path = SOURCE, log: Any = print
) -> tuple[Path, dict[str, Any]]:
    """The benchmark RIB (built on first use) and its facts: routes, prefixes, peers."""
    path = cache / f"rib-v{BUILD_VERSION}-{prefixes}.mrt.gz"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    if not source.exists():
        raise SystemExit(f"{source} is missing: set ROGUEFLOW_SHARED_DATA or pass --source")
    log(f"building {path.name} from {source.name} (once; cached)")
    t = time.perf_counter()
    real = parse_text(read_source(source))
    rib = extend(real, prefixes)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    write(rib, tmp)
    tmp.replace(path)
    meta = {
        "build_version": BUILD_VERSION,
        "source": source.name,
        "source_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "prefixes": len(rib.records),
        "routes": rib.routes,
        "peers": len(rib.peers),
        "real_prefixes": min(len(real.records), prefixes),
        "bytes": path.stat().st_size,
        "build_s": time.perf_counter() - t,
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    return path, meta


_CHILD = """
import json, sys, time
t0 = time.perf_counter()
from rogueflow.bgp.mrt import read_mrt
t1 = time.perf_counter()
n = 0
for batch in read_mrt(sys.argv[1]):
    n += batch.num_rows
t2 = time.perf_counter()
with open(sys.argv[2], "w") as fh:
    json.dump({"routes": n, "import_s": t1 - t0, "read_s": t2 - t1}, fh)
"""


# The measuring parent is a fresh small interpreter: a child's ru_maxrss starts from
# the memory of the process that forked it, and this one may hold a whole RIB.
_LAUNCH = """
import json, os, subprocess, sys, time
t = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()  # drained while it runs; wait4 then reaps it
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({
    "wall_s": time.perf_counter() - t,
    "cpu_s": usage.ru_utime + usage.ru_stime,
    "peak_rss_mb": usage.ru_maxrss / 1024,
    "exit": os.waitstatus_to_exitcode(status),
    "stderr": err.decode(errors="replace")[-500:],
}))
"""


def _measure(argv: list[str]) -> dict[str, Any]:
    """Run a command to completion: wall, CPU (its process tree) and peak RSS (its
    largest process, children included once they are waited for)."""
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCH, *argv], capture_output=True, text=True, check=True
    )
    res: dict[str, Any] = json.loads(done.stdout)
    if res.pop("exit") != 0:
        raise RuntimeError(f"{argv[0]} failed: {res['stderr']}")
    del res["stderr"]
    return res


def measure(path: Path, work: Path, repeat: int = 1) -> dict[str, Any]:
    """Both parsers on the same file, best of ``repeat`` runs each."""
    bgpdump = shutil.which("bgpdump")
    if bgpdump is None:
        raise SystemExit("bgpdump not installed (apt-get install bgpdump)")
    answer = work / "bgp-child.json"
    refs, ours = [], []
    for _ in range(repeat):  # interleaved, so both see the same machine load
        refs.append(_measure([bgpdump, "-m", str(path)]))
        ours.append(_measure([sys.executable, "-c", _CHILD, str(path), str(answer)]))
        ours[-1].update(json.loads(answer.read_text()))
        answer.unlink()
    return {
        "bgpdump": min(refs, key=lambda r: r["wall_s"]),
        "rogueflow": min(ours, key=lambda r: r["read_s"]),
    }


def table_rows(res: dict[str, Any]) -> list[Row]:
    meta, rf, ref = res["table"], res["rogueflow"], res["bgpdump"]
    routes = meta["routes"]
    rate, ref_rate = rf["routes"] / rf["read_s"], routes / ref["wall_s"]
    agree = "PASS" if rf["routes"] == routes else "FAIL"
    return [
        Row("routes", f"{rf['routes']:,}", f"{routes:,} (written)", "", "all read", agree),
        Row("prefixes / peers", f"{meta['prefixes']:,} / {meta['peers']}", "same file"),
        Row("parse wall (s)", f"{rf['read_s']:.2f}", f"{ref['wall_s']:.2f} (bgpdump -m)"),
        Row(
            "parse routes/s",
            f"{rate:,.0f}",
            f"{ref_rate:,.0f} (bgpdump -m)",
            f"{rate / ref_rate:.2f}",
            f"≥{RATE_TARGET:,}",
            "PASS" if rate >= RATE_TARGET else "FAIL",
        ),
        Row("CPU, process tree (s)", f"{rf['cpu_s']:.2f}", f"{ref['cpu_s']:.2f} (bgpdump -m)"),
        Row(
            "peak RSS (MB)",
            f"{rf['peak_rss_mb']:.0f}",
            f"{ref['peak_rss_mb']:.0f} (bgpdump -m)",
            "",
            f"≤{RSS_TARGET_MB:,}",
            "PASS" if rf["peak_rss_mb"] <= RSS_TARGET_MB else "FAIL",
        ),
    ]


def run(
    prefixes: int, out: Path, source: Path = SOURCE, repeat: int = 1, log: Any = print
) -> dict[str, Any]:
    """Build (or reuse) the table, measure both parsers, write ``bgp-results.json``."""
    path, meta = table(prefixes, out / "bgp", source, log)
    log(f"parsing {path.name} ({meta['bytes'] / 1e6:.0f} MB gzip) with bgpdump and rogueflow")
    res: dict[str, Any] = {"table": meta, "file": str(path), "cpus": os.cpu_count()}
    res.update(measure(path, out, repeat))
    res["rows"] = [r.__dict__ for r in table_rows(res)]
    (out / "bgp-results.json").write_text(json.dumps(res, indent=2))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--prefixes", type=int, default=DEFAULT_PREFIXES)
    size.add_argument("--quick", action="store_true", help=f"{QUICK_PREFIXES:,} prefixes")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out")
    ap.add_argument("--source", type=Path, default=SOURCE, help="bgpdump -m text of a RIB")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs of each parser")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    n = QUICK_PREFIXES if args.quick else args.prefixes
    res = run(n, args.out, args.source, args.repeat)
    print()
    print(render(table_rows(res)))
    print(
        "\nratio = rogueflow routes/s / bgpdump -m routes/s (bgpdump: whole process to "
        "/dev/null; rogueflow: the read loop, import excluded). "
        f"Results: {args.out / 'bgp-results.json'}"
    )
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
