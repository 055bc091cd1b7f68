"""``rogueflow demo``: simulate a watched network 2017-01..2019-11, ingest it, report on it.

The simulator writes real Zeek logs (``zeek/conn.YYYY-MM.log.gz`` with their
``dns``/``ssl`` companions) and, beside them, ``ground_truth.json`` measured
from the generated rows, ``events.csv``, and ``bgp/`` with the MRT dumps a route
collector would have written (:mod:`rogueflow.demo.routing`). The report built
from the ingested logs and routes can then be checked against the truth.
"""

from __future__ import annotations

import csv
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from rogueflow.bgp.store import BgpStore
from rogueflow.demo import scenario as sc
from rogueflow.demo.routing import write_mrt
from rogueflow.demo.simulate import Plan, build_plan, generate_month
from rogueflow.demo.torlist import VALID, write_consensus
from rogueflow.demo.truth import KP_RANGES, MonthStats, finalise, summarise
from rogueflow.demo.zeekwriter import write_month
from rogueflow.intel.snapshots import IntelStore
from rogueflow.workspace import Workspace

__all__ = ["DemoResult", "generate", "run_demo"]


@dataclass
class DemoResult:
    input_dir: Path
    truth: dict[str, Any]
    flows_written: int
    seconds_generate: float
    report: Any = None  # rogueflow.report's result (has .summary(), .out_dir, .findings)
    measured: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        t = self.truth
        lines = [
            f"demo input: {self.input_dir} ({self.flows_written:,} flows, "
            f"generated in {self.seconds_generate:.1f} s)",
        ]
        if self.report is not None:
            lines.append(str(self.report.summary()))
        lines.append("headline numbers (measured by the report vs ground truth):")
        rows = [("growth ratio 2019/2017", "growth_ratio", t["growth_ratio"])]
        for y in ("2017", "2018", "2019"):
            rows.append(
                (f"weekday share {y}", f"weekday_share_{y}", t["years"][y]["weekday_share"])
            )
            rows.append(
                (
                    f"business-hours share {y}",
                    f"business_hours_share_{y}",
                    t["years"][y]["business_hours_share"],
                )
            )
        for label, key, truth in rows:
            got = self.measured.get(key)
            shown = f"{got:.3f}" if got is not None else "n/a"
            lines.append(f"  {label:<28} measured {shown:>7}   truth {truth:.3f}")
        if self.report is not None:
            lines.append(f"report: {self.report.out_dir}")
        return "\n".join(lines)


_WORKER_PLAN: Plan | None = None


def _init_worker(scale: str, seed: int, scenario: str) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = build_plan(scale, seed, scenario)


def _month(plan: Plan, year: int, month: int, zeek_dir: Path) -> MonthStats:
    flows = generate_month(plan, year, month)
    write_month(plan, flows, zeek_dir, year, month, KP_RANGES)
    return summarise(plan, flows)


def _month_in_worker(year: int, month: int, zeek_dir: Path) -> MonthStats:
    assert _WORKER_PLAN is not None
    return _month(_WORKER_PLAN, year, month, zeek_dir)


def generate(
    out: Path,
    *,
    scale: str,
    seed: int,
    workers: int | None = None,
    scenario: str = "reference",
) -> dict[str, Any]:
    """Simulate, write the Zeek logs under ``out/zeek`` and the truth files in ``out``."""
    plan = build_plan(scale, seed, scenario)
    zeek_dir = out / "zeek"
    zeek_dir.mkdir(parents=True, exist_ok=True)
    n_workers = (
        workers if workers is not None else (1 if scale == "small" else min(os.cpu_count() or 1, 8))
    )
    total = MonthStats(plan.grid.shape[1], len(plan.streams))
    if n_workers <= 1:
        for y, m in plan.months:
            total.merge(_month(plan, y, m, zeek_dir))
    else:
        with ProcessPoolExecutor(
            n_workers,
            mp_context=get_context("spawn"),
            initializer=_init_worker,
            initargs=(scale, seed, scenario),
        ) as pool:
            for st in pool.map(
                _month_in_worker, *zip(*plan.months, strict=True), [zeek_dir] * len(plan.months)
            ):
                total.merge(st)
    truth = finalise(plan, total)
    truth["scale"] = scale
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    with open(out / "events.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["date", "label"])
        w.writerows((d.isoformat(), label) for d, label in sc.EVENTS)
    write_mrt(out / "bgp", scenario=scenario)
    write_consensus(out / "tor" / "relays.consensus")
    return truth


def _metrics(findings: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for f in findings:
        if f.get("id") in ("volume.growth", "pattern.weekday_shift"):
            for name, m in (f.get("metrics") or {}).items():
                value = m.get("value") if isinstance(m, dict) else m
                if isinstance(value, int | float):
                    out[name] = float(value)
    return out


def run_demo(
    ws: Workspace,
    *,
    scale: str,
    seed: int,
    out: Path | None,
    quiet: bool,
    scenario: str = "reference",
) -> DemoResult:
    """Simulate → write Zeek logs and truth → ingest → build the report."""
    from rogueflow.ops import ingest_paths

    target = Path(out) if out is not None else ws.root / "demo-input"
    t0 = time.perf_counter()
    truth = generate(target, scale=scale, seed=seed, scenario=scenario)
    elapsed = time.perf_counter() - t0
    # the relay list of the period, as an analyst would load it before ingesting
    intel = IntelStore(ws)
    try:
        if not any(s.kind == "tor-relays" and not s.builtin for s in intel.list()):
            intel.add(
                "tor-relays",
                target / "tor" / "relays.consensus",
                fmt="consensus",
                valid_from=VALID[0],
                valid_to=VALID[1],
            )
    finally:
        intel.close()
    ingest_paths(ws, [target / "zeek"], fmt="zeek-conn", quiet=quiet)
    bgp = BgpStore(ws)
    try:
        for mrt in sorted((target / "bgp").iterdir()):
            bgp.ingest(mrt)
    finally:
        bgp.close()
    from rogueflow.report import build_report  # being written alongside; imported late

    report = build_report(
        ws,
        "kp",
        territory_file=None,
        start=None,
        end=None,
        baseline=None,
        events=target / "events.csv",
        out=None,
        quiet=quiet,
    )
    return DemoResult(
        target, truth, int(truth["flows_written"]), elapsed, report, _metrics(list(report.findings))
    )
