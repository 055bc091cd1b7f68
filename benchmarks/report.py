"""Report benchmark: ``rogueflow report`` on the full demo, with time and peak memory.

    .venv/bin/python benchmarks/report.py [--workspace DIR] [--out DIR]

The full-scale demo (``rogueflow demo --scale full``: the reference case's behaviours,
written as IPFIX, Zeek and nfcapd files and ingested, tens of millions of flows) is
the realistic input of a report: its scope is most of the store, and every analysis
has something to find. Without ``--workspace`` the demo is built first (its own time
is printed, not counted); with it, an existing full-demo workspace is reused. Each
report runs in a process of its own. The row cache is emptied first, so the first run
computes every view from the store and the scope files its ingest wrote (the number
the target is judged on) and the second reuses the materialised views (what an
analyst re-running a report sees). A third runs on a copy of the workspace
(store and row cache hard-linked) after an ingest of one more day of flows (100k,
a quarter of them the territory's): what an analyst reporting after each day's data
sees, the months the ingest did not touch reused from the row cache. The target
(issue 6) is the full report on 20M flows in at most 30 s on this 2-core machine; the
demo holds more than that, so the verdict is on a larger input than the target's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from datagen import generate, to_rogueflow_table
from measure import measured, progress, usage

TARGET_S = 30.0
TARGET_FLOWS = 20_000_000


def stored_flows(ws: Path) -> int:
    """Flows in the store's committed files (the catalog's count)."""
    from rogueflow.store.flowstore import FlowStore
    from rogueflow.workspace import Workspace

    store = FlowStore(Workspace(ws))
    try:
        return sum(f.rows for f in store.catalog.files())
    finally:
        store.close()


NEXT_DAY_FLOWS = 100_000


def next_day(ws: Path, dest: Path) -> Path:
    """A Parquet file of :data:`NEXT_DAY_FLOWS` flows on the day after the store's last
    (the benchmark's generator, its times folded into that one day)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from rogueflow.store.flowstore import FlowStore
    from rogueflow.workspace import Workspace

    store = FlowStore(Workspace(ws))
    try:
        last = max(f.day for f in store.catalog.files())
    finally:
        store.close()
    day = datetime.fromisoformat(str(last)).replace(tzinfo=UTC) + timedelta(days=1)
    t = to_rogueflow_table(generate(NEXT_DAY_FLOWS, seed=3, watched_share=0.25))
    us = pa.timestamp("us", tz="UTC")
    start = pc.cast(t["ts_start"], pa.int64()).to_numpy()
    dur = pc.cast(t["ts_end"], pa.int64()).to_numpy() - start
    base = int(day.timestamp() * 1_000_000)
    folded = base + start % 86_400_000_000
    t = t.set_column(0, "ts_start", pa.array(folded).cast(us))
    t = t.set_column(1, "ts_end", pa.array(folded + dur).cast(us))
    pq.write_table(t, dest)
    return dest


def clone(ws: Path, dest: Path) -> None:
    """A copy of workspace ``ws`` whose store and row cache are hard links (the store's
    files are never written in place, only added or replaced by rename)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for item in ws.iterdir():
        if item.name in ("demo-input", "reports"):
            continue
        if item.name in ("store", ".cache"):
            shutil.copytree(item, dest / item.name, copy_function=os.link)
        elif item.is_dir():
            shutil.copytree(item, dest / item.name)
        else:
            shutil.copy2(item, dest / item.name)


def run(args: argparse.Namespace, log: Any) -> dict[str, Any]:
    out: Path = args.out / "report"
    out.mkdir(parents=True, exist_ok=True)
    exe = str(Path(sys.executable).parent / "rogueflow")
    res: dict[str, Any] = {}
    ws: Path = args.workspace or out / "ws"
    if args.workspace is None:
        shutil.rmtree(ws, ignore_errors=True)
        log("building the full demo (rogueflow demo --scale full)")
        res["demo"] = measured(
            [exe, "--workspace", str(ws), "-q", "demo", "--scale", "full"], out / "demo.log"
        )
    res["stored_flows"] = stored_flows(ws)
    shutil.rmtree(ws / ".cache" / "rows", ignore_errors=True)
    runs = []
    for k in range(2):
        log(f"report --territory kp ({'first' if k == 0 else 'second'} run)")
        dest = out / f"report-{k}"
        shutil.rmtree(dest, ignore_errors=True)
        cmd = [exe, "--workspace", str(ws), "-q", "report", "--territory", "kp"]
        runs.append(measured([*cmd, "--out", str(dest)], out / f"report-{k}.log"))
        doc = json.loads((dest / "findings.json").read_text())
        runs[-1]["scope_flows"] = doc["coverage"]["flows"]
        runs[-1]["findings"] = len(doc["findings"])
    res["report"], res["again"] = runs
    plus = out / "ws-plus-one-day"
    log("copying the workspace (hard links) and ingesting one more day")
    clone(ws, plus)
    extra = next_day(ws, out / "next-day.parquet")
    res["ingest_day"] = measured(
        [exe, "--workspace", str(plus), "-q", "ingest", str(extra)], out / "ingest-day.log"
    )
    log("report --territory kp (after the ingest)")
    dest = out / "report-2"
    shutil.rmtree(dest, ignore_errors=True)
    cmd = [exe, "--workspace", str(plus), "-q", "report", "--territory", "kp"]
    res["after_ingest"] = measured([*cmd, "--out", str(dest)], out / "report-2.log")
    res["after_ingest"]["scope_flows"] = json.loads((dest / "findings.json").read_text())[
        "coverage"
    ]["flows"]
    shutil.rmtree(plus, ignore_errors=True)
    (args.out / "report.json").write_text(json.dumps(res, indent=2))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workspace", type=Path, help="an existing full-demo workspace")
    p.add_argument("--out", type=Path, default=Path("bench-out"))
    args = p.parse_args()
    res = run(args, progress())
    rep, again = res["report"], res["again"]
    print()
    if "demo" in res:
        print(f"demo built in {res['demo']['seconds']:.0f} s (not counted)")
    big_enough = res["stored_flows"] >= TARGET_FLOWS
    verdict = "PASS" if rep["seconds"] <= TARGET_S and big_enough else "FAIL"
    print(
        f"report  {rep['seconds']:6.1f} s  {res['stored_flows']:,} flows stored, "
        f"{rep['scope_flows']:,} in scope, {rep['findings']} findings  "
        f"{usage(rep)}  "
        f"(target ≤ {TARGET_S:g} s on ≥ {TARGET_FLOWS:,} flows: {verdict})"
    )
    print(
        f"again   {again['seconds']:6.1f} s  (the materialised views reused from the row cache)  "
        f"{usage(again)}"
    )
    plus = res["after_ingest"]
    print(
        f"after   {plus['seconds']:6.1f} s  (an ingest of {NEXT_DAY_FLOWS:,} flows of one more "
        f"day, {plus['scope_flows']:,} in scope: the other months' rows reused)  {usage(plus)}"
    )
    print(f"results: {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
