"""rogueflow's foundation benchmark: ingest rate, store size, query time next to nfdump.

    .venv/bin/python benchmarks/run.py [--flows N | --quick] [--out DIR]

Every number is measured in this run, on this machine, next to the reference tool
(nfcapd/nfdump 1.7 over the same flows): the table prints ratios, never absolute
pass/fail on timings in the test suite. See ``datagen`` for what the flows look like
and ``nfdump_ref`` for how nfcapd is fed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datagen
import nfdump_ref
from measure import progress

from rogueflow import addr
from rogueflow.schema import FIELDS, MEASURED
from rogueflow.territory import load_builtin
from rogueflow.workspace import Workspace

INGEST_TARGET = 1_000_000  # flows/s, per format
SIZE_TARGET = 25.0  # bytes per flow, measured columns
DEFAULT_FLOWS = 20_000_000
QUICK_FLOWS = 1_000_000
TEXT_FLOWS = 5_000_000  # CSV/Zeek files hold the first N flows: a rate needs no more


@dataclass
class Row:
    metric: str
    rogueflow: str
    reference: str = ""
    ratio: str = ""
    target: str = ""
    verdict: str = ""


def _lo_hi(cidr: str) -> tuple[str, str]:
    lo, hi = addr.prefix_range(cidr)
    return lo.hex(), hi.hex()


def _between() -> str:
    lo, hi = _lo_hi(datagen.WATCHED)
    return f"BETWEEN unhex('{lo}') AND unhex('{hi}')"


def _watched_sql() -> str:
    between = _between()
    return (
        "SELECT count(*) AS flows, sum(bytes) AS bytes FROM flows "
        f"WHERE src_addr {between} OR dst_addr {between}"
    )


def _counterparts_sql() -> str:
    # ties broken by address, as nfdump's order among equal byte counts is its own
    return (
        "SELECT ip_text(dst_addr) AS counterpart, count(*) AS flows, sum(bytes) AS bytes "
        f"FROM flows WHERE src_addr {_between()} GROUP BY dst_addr "
        "ORDER BY bytes DESC, dst_addr LIMIT 10"
    )


#: kp's prefixes (its built-in profile; each valid over the whole generated month)
KP_NETS = tuple(p.cidr for p in load_builtin("kp").prefixes)
_KP_FILTER = " or ".join(f"net {n}" for n in KP_NETS)
_KP_SRC = " or ".join(f"src net {n}" for n in KP_NETS)

TERRITORY = "territory kp count+bytes"
TERRITORY_TOP = "top-10 counterparts of territory kp by bytes"
WATCHED_RANGE = "watched /22 count+bytes (address ranges)"
WATCHED_TOP = "top-10 counterparts of the /22 by bytes (address ranges)"

QUERIES: dict[str, str] = {
    # "filter to the territory": the store's territory index (src_territory/dst_territory)
    TERRITORY: (
        "SELECT count(*) AS flows, sum(bytes) AS bytes FROM flows "
        "WHERE src_territory = 'kp' OR dst_territory = 'kp'"
    ),
    TERRITORY_TOP: (
        "SELECT ip_text(dst_addr) AS counterpart, count(*) AS flows, sum(bytes) AS bytes "
        "FROM flows WHERE src_territory = 'kp' GROUP BY dst_addr "
        "ORDER BY bytes DESC, dst_addr LIMIT 10"
    ),
    # the same questions for an arbitrary prefix, which the index does not cover
    WATCHED_RANGE: _watched_sql(),
    WATCHED_TOP: _counterparts_sql(),
    "full scan: flows, packets, bytes": (
        "SELECT count(*) AS flows, sum(packets) AS packets, sum(bytes) AS bytes FROM flows"
    ),
    "top-10 dst ports by bytes": (
        "SELECT dst_port, count(*) AS flows, sum(bytes) AS bytes FROM flows "
        "GROUP BY dst_port ORDER BY bytes DESC LIMIT 10"
    ),
    # the flows view's `hour` column (UTC hour of ts_start, computed from the epoch)
    "hourly flow counts": (
        "SELECT strftime(h, '%Y-%m-%d %H') AS hour, flows FROM (SELECT hour AS h, "
        "count(*) AS flows FROM flows GROUP BY 1) ORDER BY 1"
    ),
}
#: issue 9's throughput targets (nfdump time / rogueflow time); None: shown, not judged
TARGETS: dict[str, float | None] = {
    TERRITORY: 6,
    TERRITORY_TOP: 6,
    WATCHED_RANGE: None,
    WATCHED_TOP: None,
    "full scan: flows, packets, bytes": 6,
    "top-10 dst ports by bytes": 6,
    "hourly flow counts": 20,
}
# what nfdump runs for each (the hourly one has no nfdump aggregation: see _nfdump_hourly)
NFDUMP_EQUIV = {
    TERRITORY: f"nfdump -R DIR -N -o null '{_KP_FILTER}' (summary line)",
    TERRITORY_TOP: f"nfdump -R DIR -q -N -s dstip/bytes -n 10 '{_KP_SRC}'",
    WATCHED_RANGE: f"nfdump -R DIR -N -o null 'net {datagen.WATCHED}' (summary line)",
    WATCHED_TOP: f"nfdump -R DIR -q -N -s dstip/bytes -n 10 'src net {datagen.WATCHED}'",
    "full scan: flows, packets, bytes": "nfdump -R DIR -N -o null (summary line)",
    "top-10 dst ports by bytes": "nfdump -R DIR -q -N -s dstport/bytes -n 10",
    "hourly flow counts": "nfdump -R DIR -q -o 'fmt:%ts' | count per hour (numpy)",
}

_COLD = """
import json, sys
from rogueflow.analyze.engine import DuckDBEngine
from rogueflow.workspace import Workspace
eng = DuckDBEngine(Workspace(sys.argv[1]))
rows = [list(r) for r in eng.sql(sys.argv[2]).fetchall()]
with open(sys.argv[3], "w") as fh:  # not stdout: DuckDB draws its progress bar there
    json.dump(rows, fh, default=str)
eng.close()
"""


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    runs = [_timed(fn) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[-1][1]


def _normalise(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[int(v) if isinstance(v, (int, np.integer)) else str(v) for v in r] for r in rows]


def _nfdump_count(flt: str) -> Callable[[Path], list[list[Any]]]:
    def run(d: Path) -> list[list[Any]]:
        flows, bytes_, _ = nfdump_ref.summary(d, flt)
        return [[flows, bytes_]]

    return run


def _nfdump_ports(d: Path) -> list[list[Any]]:
    out = nfdump_ref.nfdump("-R", str(d), "-q", "-N", "-s", "dstport/bytes", "-n", "10")
    rows = []
    for line in out.splitlines():
        # date time duration proto port flows(%) packets(%) bytes(%) pps bps bpp
        parts = re.sub(r"\([^)]*\)", " ", line).split()
        if len(parts) >= 8 and parts[3] == "any":
            rows.append([int(parts[4]), int(parts[5]), int(parts[7])])
    return rows


def _nfdump_hourly(d: Path) -> list[list[Any]]:
    exe = shutil.which("nfdump") or "nfdump"
    proc = subprocess.run(
        [exe, "-R", str(d), "-q", "-o", "fmt:%ts"],
        capture_output=True,
        check=True,
        env={**os.environ, "TZ": "UTC"},
        timeout=1800,
    )
    # fixed-width 'YYYY-MM-DD hh:mm:ss.mmm' lines: the hour is the first 13 bytes
    lines = np.frombuffer(proc.stdout, dtype="S24")
    hours, counts = np.unique(lines.astype("S13"), return_counts=True)
    return [[h.decode(), int(c)] for h, c in zip(hours, counts, strict=True)]


def _nfdump_counterparts(flt: str) -> Callable[[Path], list[list[Any]]]:
    def run(d: Path) -> list[list[Any]]:
        out = nfdump_ref.nfdump("-R", str(d), "-q", "-N", "-s", "dstip/bytes", "-n", "10", flt)
        rows = []
        for line in out.splitlines():
            # date time duration proto dst-ip flows(%) packets(%) bytes(%) pps bps bpp
            parts = re.sub(r"\([^)]*\)", " ", line).split()
            if len(parts) >= 8 and parts[3] == "any":
                rows.append([parts[4], int(parts[5]), int(parts[7])])
        return rows

    return run


def _nfdump_full(d: Path) -> list[list[Any]]:
    flows, bytes_, packets = nfdump_ref.summary(d)
    return [[flows, packets, bytes_]]


NFDUMP_RUN: dict[str, Callable[[Path], list[list[Any]]]] = {
    TERRITORY: _nfdump_count(_KP_FILTER),
    TERRITORY_TOP: _nfdump_counterparts(_KP_SRC),
    WATCHED_RANGE: _nfdump_count(f"net {datagen.WATCHED}"),
    WATCHED_TOP: _nfdump_counterparts(f"src net {datagen.WATCHED}"),
    "full scan: flows, packets, bytes": _nfdump_full,
    "top-10 dst ports by bytes": _nfdump_ports,
    "hourly flow counts": _nfdump_hourly,
}


def ingest(fmt: str, path: Path, ws_dir: Path, expected: int) -> dict[str, Any]:
    """Time one whole ingest (hashing, reading, conforming, writing the store)."""
    from rogueflow.ops import ingest_paths

    shutil.rmtree(ws_dir, ignore_errors=True)
    ws = Workspace(ws_dir)
    reader = {"parquet": "parquet", "csv": "csv", "zeek": "zeek-conn"}[fmt]
    try:
        secs, res = _timed(lambda: ingest_paths(ws, [path], fmt=reader, quiet=True))
    except NotImplementedError:
        return {"format": fmt, "available": False, "note": "zeek reader not available"}
    rows = sum(r.rows for r in res)
    if rows != expected:
        raise RuntimeError(f"{fmt}: ingested {rows} flows, expected {expected}")
    return {
        "format": fmt,
        "available": True,
        "flows": rows,
        "seconds": secs,
        "flows_per_s": rows / secs,
        "input_bytes": path.stat().st_size,
    }


def store_size(ws_dir: Path) -> dict[str, Any]:
    """Compressed bytes per column from the Parquet footers of the store files."""
    files = sorted((ws_dir / "store" / "flows").glob("day=*/*.parquet"))
    per_col: dict[str, int] = {f.name: 0 for f in FIELDS}
    rows = 0
    for f in files:
        meta = pq.ParquetFile(f).metadata
        rows += meta.num_rows
        for g in range(meta.num_row_groups):
            rg = meta.row_group(g)
            for c in range(rg.num_columns):
                col = rg.column(c)
                per_col[col.path_in_schema] += col.total_compressed_size
    measured = sum(per_col[c] for c in MEASURED)
    return {
        "files": len(files),
        "flows": rows,
        "disk_bytes": sum(f.stat().st_size for f in files),
        "column_bytes": per_col,
        "measured_bytes_per_flow": measured / max(rows, 1),
        "all_bytes_per_flow": sum(per_col.values()) / max(rows, 1),
        "per_column_bytes_per_flow": {k: v / max(rows, 1) for k, v in per_col.items()},
    }


def queries(ws_dir: Path, nfc_dir: Path, repeat: int) -> list[dict[str, Any]]:
    from rogueflow.analyze.engine import DuckDBEngine

    py = sys.executable
    out = []
    engine = DuckDBEngine(Workspace(ws_dir))
    try:
        for name, sql in QUERIES.items():

            def cold_run(sql: str = sql) -> Any:
                answer = ws_dir.parent / "cold-answer.json"
                subprocess.run(
                    [py, "-c", _COLD, str(ws_dir), sql, str(answer)],
                    capture_output=True,
                    check=True,
                    timeout=1800,
                )
                return json.loads(answer.read_text())

            def warm_run(sql: str = sql) -> Any:
                return engine.sql(sql).fetchall()

            def nfdump_run(name: str = name) -> Any:
                return NFDUMP_RUN[name](nfc_dir)

            cold, cold_rows = _best(cold_run, repeat)
            warm_run()  # warm-up: file metadata, page cache
            warm, warm_rows = _best(warm_run, max(repeat, 3))
            nf, nf_rows = _best(nfdump_run, repeat)
            ours = _normalise(warm_rows)
            out.append(
                {
                    "query": name,
                    "sql": sql,
                    "nfdump": NFDUMP_EQUIV[name],
                    "rogueflow_warm_s": warm,
                    "rogueflow_cold_s": cold,
                    "nfdump_s": nf,
                    "ratio_warm": nf / warm,
                    "ratio_cold": nf / cold,
                    "agree": ours == _normalise(nf_rows) and ours == _normalise(cold_rows),
                    "rows": len(ours),
                    "rogueflow_answer": ours[:12],
                    "nfdump_answer": nf_rows[:12],
                }
            )
    finally:
        engine.close()
    return out


def run(
    flows: int,
    out: Path,
    *,
    text_flows: int | None = None,
    repeat: int = 1,
    keep: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole benchmark; returns (and writes) the results document."""
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    n_text = min(flows, text_flows if text_flows is not None else TEXT_FLOWS)
    res: dict[str, Any] = {
        "flows": flows,
        "text_flows": n_text,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "nfdump": nfdump_ref.nfdump("-V").strip(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        log(f"generating {flows:,} flows")
        secs, f = _timed(lambda: datagen.generate(flows))
        res["generate_s"] = secs
        truth_flows, truth_bytes = int(f.watched_mask().sum()), int(f.bytes[f.watched_mask()].sum())
        res["truth"] = {"watched_flows": truth_flows, "watched_bytes": truth_bytes}

        inputs = {
            "parquet": work / "flows.parquet",
            "csv": work / "flows.nfdump.csv",
            "zeek": work / "conn.log",
        }
        text = datagen._slice(f, slice(0, n_text))
        log("writing Parquet, nfdump CSV and Zeek conn.log inputs")
        res["write_s"] = {
            "parquet": _timed(lambda: datagen.write_parquet(f, inputs["parquet"]))[0],
            "csv": _timed(lambda: datagen.write_nfdump_csv(text, inputs["csv"]))[0],
            "zeek": _timed(lambda: datagen.write_zeek_conn(text, inputs["zeek"]))[0],
        }
        # the inputs must be on disk before timing: an ingest's durability sync would
        # otherwise also flush these freshly written files (~0.2 s per 1M flows)
        os.sync()
        res["ingest"] = []
        for fmt, path in inputs.items():
            log(f"ingesting {path.name}")
            expected = flows if fmt == "parquet" else n_text
            res["ingest"].append(ingest(fmt, path, work / f"ws-{fmt}", expected))
            if fmt != "parquet":
                path.unlink()  # the text files are large; they served their purpose
        res["store"] = store_size(work / "ws-parquet")

        log("feeding nfcapd (NetFlow v9 over loopback)")
        nfc = nfdump_ref.collect(f, work / "nfcapd")
        got = nfdump_ref.summary(nfc.directory)
        want = (flows, int(f.bytes.sum()), int(f.packets.sum()))
        res["nfcapd"] = {
            "flows": nfc.flows,
            "datagrams": nfc.datagrams,
            "seconds": nfc.seconds,
            "flows_per_s": flows / nfc.seconds,
            "drops": nfc.drops,
            "disk_bytes": sum(p.stat().st_size for p in nfc.directory.iterdir()),
            "complete": got == want,
        }
        if got != want:
            raise RuntimeError(f"nfcapd holds (flows, bytes, packets) {got}, sent {want}")

        log("running queries")
        res["queries"] = queries(work / "ws-parquet", nfc.directory, repeat)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    res["rows"] = [asdict(r) for r in table_rows(res)]
    (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
    return res


def table_rows(res: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    nfc = res["nfcapd"]
    for ing in res["ingest"]:
        metric = f"ingest {ing['format']} (flows/s)"
        if not ing["available"]:
            rows.append(Row(metric, ing["note"], target="≥1,000,000", verdict="n/a"))
            continue
        rate = ing["flows_per_s"]
        rows.append(
            Row(
                metric,
                f"{rate:,.0f}",
                f"{nfc['flows_per_s']:,.0f} (nfcapd v9 collect)",
                f"{rate / nfc['flows_per_s']:.2f}",
                "≥1,000,000",
                "PASS" if rate >= INGEST_TARGET else "FAIL",
            )
        )
    st = res["store"]
    nfc_bpf = nfc["disk_bytes"] / res["flows"]
    m = st["measured_bytes_per_flow"]
    rows.append(
        Row(
            "store bytes/flow, measured cols",
            f"{m:.2f}",
            f"{nfc_bpf:.2f} (nfcapd lz4)",
            f"{nfc_bpf / m:.2f}",
            f"≤{SIZE_TARGET:g}",
            "PASS" if m <= SIZE_TARGET else "FAIL",
        )
    )
    a = st["all_bytes_per_flow"]
    rows.append(
        Row(
            "store bytes/flow, all cols",
            f"{a:.2f}",
            f"{nfc_bpf:.2f} (nfcapd lz4)",
            f"{nfc_bpf / a:.2f}",
        )
    )
    for q in res["queries"]:
        verdict = "PASS" if q["agree"] else "FAIL"
        goal = TARGETS.get(q["query"])
        rows.append(
            Row(
                f"query {q['query']}, warm (s)",
                f"{q['rogueflow_warm_s']:.3f}",
                f"{q['nfdump_s']:.3f} (nfdump)",
                f"{q['ratio_warm']:.1f}",
                f"answers agree, ≥{goal:g}×" if goal else "answers agree",
                verdict
                if not goal or not q["agree"]
                else ("PASS" if q["ratio_warm"] >= goal else "FAIL"),
            )
        )
        rows.append(
            Row(
                f"query {q['query']}, cold (s)",
                f"{q['rogueflow_cold_s']:.3f}",
                f"{q['nfdump_s']:.3f} (nfdump)",
                f"{q['ratio_cold']:.1f}",
                "answers agree",
                verdict,
            )
        )
    return rows


def render(rows: list[Row]) -> str:
    head = Row("metric", "rogueflow", "reference", "ratio", "target", "result")
    cells = [[getattr(r, k) for k in asdict(head)] for r in [head, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flows", type=int, default=DEFAULT_FLOWS, help="flows to generate")
    p.add_argument("--quick", action="store_true", help=f"{QUICK_FLOWS:,} flows (smoke run)")
    p.add_argument("--out", type=Path, default=Path("bench-out"), help="results directory")
    p.add_argument(
        "--text-flows",
        type=int,
        default=TEXT_FLOWS,
        help="flows in the CSV and Zeek inputs (rate only; default %(default)s)",
    )
    p.add_argument("--repeat", type=int, default=1, help="runs per timing, best kept")
    p.add_argument("--keep", action="store_true", help="keep the inputs, stores and nfcapd files")
    args = p.parse_args(argv)
    n = QUICK_FLOWS if args.quick else args.flows
    t0 = time.perf_counter()
    res = run(
        n,
        args.out,
        text_flows=args.text_flows,
        repeat=args.repeat,
        keep=args.keep,
        log=progress(),
    )
    print()
    print(
        f"{n:,} flows ({res['text_flows']:,} in the CSV/Zeek inputs), "
        f"{res['machine']['cpus']} CPUs, {res['machine']['nfdump']}"
    )
    print(render(table_rows(res)))
    print(
        f"\nratios: query = nfdump time / rogueflow time; ingest = rogueflow / nfcapd rate; "
        f"size = nfcapd / rogueflow bytes.  Results: {args.out / 'results.json'}"
    )
    print(f"total {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
