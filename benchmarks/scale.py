"""Scale benchmark: ingest and report of 100M flows, with time and peak memory.

    .venv/bin/python benchmarks/scale.py [--flows N] [--chunk N] [--watched-share F]
                                         [--out DIR] [--keep]

The flows (``datagen``, 30 days per chunk of ``--chunk`` flows, chunks one after the
other in time) are written as Parquet files, ingested by ``rogueflow ingest`` and
analysed by ``rogueflow report --territory kp`` — each command in a process of its
own, whose peak resident memory (``ru_maxrss`` from ``wait4``) and wall time are
printed. A quarter of the flows touch the watched /22 (kp's 175.45.176.0/22), so the
report's scope is tens of millions of flows, not a sliver: the target is the
report's peak RSS at or under 4 GiB (issue 9), with the engine's default settings.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datagen
from measure import measured, progress, usage

DEFAULT_FLOWS = 100_000_000
CHUNK = 20_000_000
WATCHED_SHARE = 0.25
RSS_TARGET = 4 << 30


def generate(flows: int, chunk: int, share: float, where: Path, log: Any) -> int:
    """Parquet files of ``flows`` flows; returns the flows touching the watched /22."""
    where.mkdir(parents=True, exist_ok=True)
    watched = 0
    for k, lo in enumerate(range(0, flows, chunk)):
        n = min(chunk, flows - lo)
        log(f"generating flows {lo:,}..{lo + n:,}")
        f = datagen.generate(n, seed=k + 1, watched_share=share)
        shift = k * datagen.SPAN_DAYS * 86_400_000
        f.ts_start_ms += shift
        f.ts_end_ms += shift
        watched += int(f.watched_mask().sum())
        datagen.write_parquet(f, where / f"flows-{k:03d}.parquet")
        del f
    return watched


def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    out: Path = args.out
    work = out / "scale"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    exe = str(Path(sys.executable).parent / "rogueflow")
    ws = work / "ws"
    res: dict[str, Any] = {"flows": args.flows, "watched_share": args.watched_share}
    try:
        res["watched_flows"] = generate(
            args.flows, args.chunk, args.watched_share, work / "input", log
        )
        os.sync()  # the inputs on disk before timing (the ingest syncs its own writes)
        log("ingesting")
        res["ingest"] = measured(
            [exe, "--workspace", str(ws), "-q", "ingest", "--format", "parquet",
             str(work / "input")],
            work / "ingest.log",
        )  # fmt: skip
        res["ingest"]["flows_per_s"] = args.flows / res["ingest"]["seconds"]
        if not args.keep:
            shutil.rmtree(work / "input")
        log("report --territory kp")
        res["report"] = measured(
            [exe, "--workspace", str(ws), "-q", "report", "--territory", "kp",
             "--out", str(work / "report")],
            work / "report.log",
        )  # fmt: skip
        doc = json.loads((work / "report" / "findings.json").read_text())
        res["report"]["scope_flows"] = doc["coverage"]["flows"]
        res["report"]["findings"] = len(doc["findings"])
    finally:
        if not args.keep:
            shutil.rmtree(work / "ws", ignore_errors=True)
            shutil.rmtree(work / "input", ignore_errors=True)
    (out / "scale.json").write_text(json.dumps(res, indent=2))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flows", type=int, default=DEFAULT_FLOWS)
    p.add_argument("--chunk", type=int, default=CHUNK, help="flows generated at a time")
    p.add_argument("--watched-share", type=float, default=WATCHED_SHARE)
    p.add_argument("--out", type=Path, default=Path("bench-out"))
    p.add_argument("--keep", action="store_true", help="keep the inputs and the workspace")
    args = p.parse_args()
    res = run(args, progress())
    ing, rep = res["ingest"], res["report"]
    print()
    print(f"{res['flows']:,} flows stored, {res['watched_flows']:,} touching kp's /22")
    print(f"ingest  {ing['seconds']:8.1f} s  {ing['flows_per_s']:>11,.0f} flows/s  {usage(ing)}")
    verdict = "PASS" if rep["peak_rss"] <= RSS_TARGET else "FAIL"
    print(
        f"report  {rep['seconds']:8.1f} s  {rep['scope_flows'] or 0:>11,} flows in scope  "
        f"{usage(rep)}  "
        f"(target ≤ 4 GiB: {verdict})"
    )
    print(f"results: {args.out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
