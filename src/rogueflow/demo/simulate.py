"""Vectorised flow generator: the scenario becomes an expected-count grid, then rows.

The grid holds, for every stream (one service of one behaviour), local day and
local hour, the expected number of flows. A month of flows is a Poisson draw
from its slice (times day-level lognormal noise), expanded with ``np.repeat``;
every other column is drawn per row from per-stream parameter arrays. Months are
independent given (seed, month), so they can be generated in parallel.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import numpy.typing as npt

from rogueflow.demo import scenario as sc
from rogueflow.territory import utc_offsets

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U32 = npt.NDArray[np.uint32]

US = 1_000_000
DAY_US = 86_400 * US
HOUR_US = 3_600 * US

#: conn_state codes (index into STATES) and their Zeek history strings
STATES = ("SF", "S0", "REJ", "RSTO")
HISTORY_TCP = ("ShADadFf", "S", "Sr", "ShADadR")
HISTORY_UDP = ("Dd", "D", "D", "Dd")
SF, S0, REJ, RSTO = 0, 1, 2, 3

NAME_NONE, NAME_SNI, NAME_DNS, NAME_TUNNEL = 0, 1, 2, 3


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def knots_eval(knots: sc.Knots, days: I64) -> F64:
    """A piecewise-linear curve over local day numbers (days since 1970-01-01)."""
    xs = np.array([(d - date(1970, 1, 1)).days for d, _ in knots], dtype=np.float64)
    ys = np.array([v for _, v in knots], dtype=np.float64)
    return np.interp(days.astype(np.float64), xs, ys)


def _profiles() -> dict[str, F64]:
    """Weekday × hour profiles; each day's 24 values sum to that weekday's factor (mean 1)."""
    hours = np.arange(24)
    leisure_wd = np.select([hours < 7, hours < 17, hours < 23], [0.15, 0.5, 2.4], 1.0)
    leisure_we = np.select([hours < 8, hours < 17, hours < 23], [0.25, 1.2, 2.2], 0.8)
    work_wd = np.select([hours < 7, hours < 9, hours < 18, hours < 20], [0.05, 0.8, 3.0, 0.8], 0.25)
    work_we = np.where((hours >= 9) & (hours < 18), 0.8, 0.2)

    def build(wd: F64, we: F64, factors: tuple[float, ...]) -> F64:
        f = np.array(factors) * 7 / sum(factors)
        rows = [(wd if i < 5 else we) / (wd if i < 5 else we).sum() * f[i] for i in range(7)]
        return np.array(rows)

    return {
        "leisure": build(leisure_wd, leisure_we, (0.7, 0.7, 0.7, 0.75, 0.9, 1.7, 1.6)),
        "work": build(work_wd, work_we, (1.3, 1.3, 1.3, 1.3, 1.25, 0.3, 0.2)),
        "flat": np.ones((7, 24)) / 24,
    }


@dataclass
class Stream:
    behaviour: str
    service: str
    category: str
    group: str
    coin: str
    inbound: bool
    obfuscated: bool
    probe: bool
    noise: bool
    proto: int
    tls: bool
    zeek_service: str
    name_kind: int
    bytes_out: float
    bytes_in: float


@dataclass
class Plan:
    """The compiled scenario: streams, candidate tables and the expected-count grid."""

    seed: int
    streams: list[Stream]
    day0: int  # local day number of scenario START
    grid: F64  # [stream, day, hour] expected flows
    hosts_addr: list[U32]  # per stream: the watched-side (or noise A) addresses
    hosts_first: list[I64]  # per stream: first active local day of each host
    cand_addr: list[U32]  # per stream: counterpart addresses
    cand_port: list[I64]  # per stream: fixed port of each candidate (-1: draw from ports)
    ports: list[I64]
    names: list[list[str]]
    onset_day: list[int]  # per stream: day index of forced onset (-1 none)
    gaps: set[int]  # UTC day numbers with no collection
    offsets: tuple[I64, I64]  # (UTC bounds µs, offset µs) of the zone
    calibration: float
    scenario: str = "reference"

    @property
    def months(self) -> list[tuple[int, int]]:
        out = []
        y, m = sc.START.year, sc.START.month
        while (y, m) <= (sc.END.year, sc.END.month):
            out.append((y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


def zone_steps() -> tuple[I64, I64]:
    start = datetime.combine(sc.START - timedelta(days=2), datetime.min.time(), UTC)
    end = datetime.combine(sc.END + timedelta(days=2), datetime.min.time(), UTC)
    steps = utc_offsets(sc.ZONE, start, end)
    bounds = np.array([int(s[0].timestamp()) * US for s in steps], dtype=np.int64)
    offs = np.array([s[1] * US for s in steps], dtype=np.int64)
    return bounds, offs


def to_local(ts_us: I64, steps: tuple[I64, I64]) -> I64:
    """UTC µs to local wall-clock µs under the zone history."""
    bounds, offs = steps
    idx = np.clip(np.searchsorted(bounds, ts_us, side="right") - 1, 0, None)
    return ts_us + offs[idx]


def to_utc(local_us: I64, steps: tuple[I64, I64]) -> I64:
    """Local wall-clock µs to UTC µs (a skipped local half hour maps just past the jump)."""
    bounds, offs = steps
    local_bounds = bounds + offs
    idx = np.clip(np.searchsorted(local_bounds, local_us, side="right") - 1, 0, None)
    return local_us - offs[idx]


def _net_sample(cidr: str, n: int, rng: np.random.Generator) -> U32:
    net = ipaddress.IPv4Network(cidr)
    lo = int(net.network_address) + 1
    size = max(net.num_addresses - 2, 1)
    return (lo + rng.choice(size, size=min(n, size), replace=False)).astype(np.uint32)


def build_plan(scale: str, seed: int, scenario: str = "reference") -> Plan:
    """Compile a scenario for a scale and seed (cheap: a few hundred thousand cells)."""
    if scenario not in sc.SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(sc.SCENARIOS)}")
    scn = sc.SCENARIOS[scenario]
    if scale not in sc.SCALE_FLOWS:
        raise ValueError(f"unknown scale {scale!r}; one of {', '.join(sc.SCALE_FLOWS)}")
    rng = np.random.default_rng([seed, 0])
    services = {s.name: s for s in sc.SERVICES}
    day0 = (sc.START - date(1970, 1, 1)).days
    n_days = (sc.END - sc.START).days + 1
    days = np.arange(day0, day0 + n_days, dtype=np.int64)
    weekday = (days + 3) % 7
    prof = _profiles()
    vol = knots_eval(scn.volume, days)
    late = days >= (sc.CALIBRATED_FROM - date(1970, 1, 1)).days
    vol_late = knots_eval(scn.volume_late, days)

    streams: list[Stream] = []
    base: list[F64] = []  # [day, hour] grid without the 2019 step
    late_part: list[F64] = []  # the part multiplied by the calibration factor
    hosts_addr, hosts_first, cand_addr, cand_port, ports, names, onset = [], [], [], [], [], [], []
    all_names = sorted({n for s in sc.SERVICES if s.tls for n in s.names})
    for b in scn.behaviours:
        pool = scn.host_pools[b.hosts]
        h_addr = np.array([ip4(a) for a, _ in pool.hosts], dtype=np.uint32)
        h_first = np.array([(d - date(1970, 1, 1)).days for _, d in pool.hosts], dtype=np.int64)
        order = np.argsort(h_first, kind="stable")
        work = knots_eval(b.work_share, days)
        if b.flat:
            shape = prof["flat"][weekday]
        else:
            shape = (
                work[:, None] * prof["work"][weekday]
                + (1 - work[:, None]) * prof["leisure"][weekday]
            )
        for mem in b.members:
            svc = services[mem.service]
            rate = knots_eval(mem.rate, days)
            g = rate[:, None] * shape
            if b.scaled:
                base.append(g * np.where(late, 0.0, vol)[:, None])
                late_part.append(g * np.where(late, vol_late, 0.0)[:, None])
            else:
                base.append(g)
                late_part.append(np.zeros_like(g))
            kind = NAME_NONE
            nm = list(svc.names)
            if svc.name == "dns-tunnel":
                kind = NAME_TUNNEL
            elif svc.zeek_service == "dns":
                kind = NAME_DNS
                nm = nm or all_names
            elif svc.tls:
                kind = NAME_SNI
            streams.append(
                Stream(
                    b.name,
                    svc.name,
                    svc.category,
                    svc.group,
                    b.coin,
                    b.inbound,
                    b.obfuscated,
                    b.probe,
                    False,
                    6 if svc.proto == "tcp" else 17,
                    svc.tls,
                    svc.zeek_service,
                    kind,
                    svc.bytes_out,
                    svc.bytes_in,
                )
            )
            hosts_addr.append(h_addr[order])
            hosts_first.append(h_first[order])
            if svc.fixed:
                cand_addr.append(np.array([ip4(a) for a, _ in svc.fixed], dtype=np.uint32))
                cand_port.append(np.array([p if p else -1 for _, p in svc.fixed], dtype=np.int64))
            else:
                ca = np.concatenate([_net_sample(c, svc.servers, rng) for c in svc.nets])
                cand_addr.append(ca)
                cand_port.append(np.full(len(ca), -1, dtype=np.int64))
            ports.append(np.array(svc.ports or (0,), dtype=np.int64))
            names.append(nm)
            first = np.flatnonzero(rate > 0)
            onset.append(int(first[0]) if b.onset and len(first) and first[0] > 0 else -1)

    base_g = np.stack(base)
    late_g = np.stack(late_part)
    calib = _calibrate(base_g, late_g, days, scn.growth_target)
    grid = base_g + calib * late_g
    # noise: flows on the same link touching no watched address
    kp_day = grid.sum(axis=(0, 2))
    noise_shape = 0.5 * prof["work"][weekday] + 0.5 * prof["leisure"][weekday]
    noise = (kp_day * sc.NOISE_SHARE / (1 - sc.NOISE_SHARE))[:, None] * noise_shape
    grid = np.concatenate([grid, noise[None]], axis=0)
    noise_a = np.concatenate([_net_sample(c, 40, rng) for c in sc.NOISE_NETS + sc.NOISE_NEIGHBOURS])
    noise_b = np.concatenate([_net_sample(c, 40, rng) for c in sc.NOISE_NETS])
    streams.append(
        Stream(
            "noise",
            "noise",
            "noise",
            "",
            "",
            False,
            False,
            False,
            True,
            6,
            True,
            "ssl",
            NAME_SNI,
            2_000.0,
            40_000.0,
        )
    )
    hosts_addr.append(noise_a)
    hosts_first.append(np.zeros(len(noise_a), dtype=np.int64))
    cand_addr.append(noise_b)
    cand_port.append(np.full(len(noise_b), -1, dtype=np.int64))
    ports.append(np.array([443], dtype=np.int64))
    names.append(all_names)
    onset.append(-1)

    grid *= sc.SCALE_FLOWS[scale] / grid.sum()
    # the probing burst keeps a visible floor at any scale
    for i, s in enumerate(streams):
        if s.probe:
            for d in scn.probe_days:
                di = (d - sc.START).days
                day = grid[i, di]
                if day.sum() < sc.PROBE_MIN_PER_DAY:
                    grid[i, di] = day * (sc.PROBE_MIN_PER_DAY / max(day.sum(), 1e-12))
    gaps = _gaps(rng, day0, n_days)
    return Plan(
        seed,
        streams,
        day0,
        grid,
        hosts_addr,
        hosts_first,
        cand_addr,
        cand_port,
        ports,
        names,
        onset,
        gaps,
        zone_steps(),
        calib,
        scenario,
    )


def _calibrate(base: F64, late: F64, days: I64, target: float) -> float:
    """Factor on the 2019 step so that expected flows/day 2019 = GROWTH_TARGET × 2017."""
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    b = base.sum(axis=(0, 2))
    lt = late.sum(axis=(0, 2))
    y17, y19 = years == 2017, years == 2019
    per17 = (b[y17].sum() + lt[y17].sum()) / y17.sum()
    # per19(k) = (b19 + k * l19) / n19
    k = (target * per17 * y19.sum() - b[y19].sum()) / lt[y19].sum()
    return float(k)


def _gaps(rng: np.random.Generator, day0: int, n_days: int) -> set[int]:
    out: set[int] = set()
    for y in range(sc.START.year, sc.END.year + 1):
        lo = max((date(y, 1, 1) - date(1970, 1, 1)).days, day0 + 1)
        hi = min((date(y, 12, 31) - date(1970, 1, 1)).days, day0 + n_days - 2)
        out.update(int(d) for d in rng.choice(np.arange(lo, hi), sc.GAPS_PER_YEAR, replace=False))
    # keep the days the story depends on (onsets, probing) collected
    keep = {
        (d - date(1970, 1, 1)).days + k
        for d in (
            *sc.PROBE_DAYS,
            date(2017, 5, 17),
            date(2019, 3, 11),
            date(2019, 5, 22),
            date(2019, 7, 1),
            date(2019, 2, 11),
        )
        for k in (-1, 0, 1)
    }
    return out - keep


@dataclass
class Flows:
    """One month of generated flows (numpy columns), sorted by ts_us."""

    ts_us: I64  # UTC µs
    dur_us: I64  # -1: unset
    orig: U32
    resp: U32
    orig_p: I64
    resp_p: I64
    proto: npt.NDArray[np.uint8]
    orig_bytes: I64
    resp_bytes: I64
    orig_pkts: I64
    resp_pkts: I64
    orig_ip_bytes: I64
    resp_ip_bytes: I64
    state: npt.NDArray[np.uint8]
    stream: npt.NDArray[np.int16]
    name: npt.NDArray[np.object_]  # str or None: SNI (tls) or DNS query
    uid: npt.NDArray[np.bytes_]  # Zeek-style connection uid, 18 bytes

    def __len__(self) -> int:
        return len(self.ts_us)


_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)
_B32 = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz234567", np.uint8)


def _random_text(
    rng: np.random.Generator,
    n: int,
    width: int,
    alphabet: npt.NDArray[np.uint8],
    prefix: bytes = b"",
) -> npt.NDArray[np.bytes_]:
    body = alphabet[rng.integers(0, len(alphabet), size=(n, width))]
    if prefix:
        body = np.hstack([np.tile(np.frombuffer(prefix, np.uint8), (n, 1)), body])
    return np.ascontiguousarray(body).view(f"S{width + len(prefix)}").ravel()


def _pick(rng: np.random.Generator, sizes: I64, skew: float) -> I64:
    """Index in [0, size) per row, skewed towards 0 (a few servers/hosts get most flows)."""
    return np.minimum((sizes * rng.random(len(sizes)) ** skew).astype(np.int64), sizes - 1)


def generate_month(plan: Plan, year: int, month: int) -> Flows:
    """The flows of one local calendar month (deterministic for plan.seed, year, month)."""
    rng = np.random.default_rng([plan.seed, year, month])
    first = (date(year, month, 1) - date(1970, 1, 1)).days
    nxt = date(year + month // 12, month % 12 + 1, 1)
    last = min((nxt - date(1970, 1, 1)).days, plan.day0 + plan.grid.shape[1])
    d0, d1 = first - plan.day0, last - plan.day0
    lam = plan.grid[:, d0:d1, :]
    n_s, n_d, _ = lam.shape
    # day-level overdispersion: a shared factor (the whole network's day) and a per-stream one
    shared = np.asarray(rng.lognormal(-0.02, 0.2, size=n_d), dtype=np.float64)
    own = np.asarray(rng.lognormal(-0.045, 0.3, size=(n_s, n_d)), dtype=np.float64)
    scripted = np.array([s.probe for s in plan.streams])
    own[scripted] = 1 / shared  # a scan runs to its own script, not the network's mood
    counts = np.asarray(rng.poisson(lam * (shared[None, :] * own)[:, :, None]), dtype=np.int64)
    for s, od in enumerate(plan.onset_day):
        if d0 <= od < d1:  # it started that day, during the working day
            counts[s, od - d0, :10] = 0
            counts[s, od - d0, 10] = max(counts[s, od - d0, 10], 1)
    flat = counts.ravel()
    cells = np.repeat(np.arange(flat.size, dtype=np.int64), flat)
    s_idx, rest = np.divmod(cells, n_d * 24)
    d_idx, h_idx = np.divmod(rest, 24)
    n = len(cells)
    local = (first + d_idx) * DAY_US + h_idx * HOUR_US + rng.integers(0, HOUR_US, n)
    ts = to_utc(local, plan.offsets)
    keep = ~np.isin(ts // DAY_US, np.fromiter(plan.gaps, np.int64, len(plan.gaps)))
    # the window is whole UTC days from START: a sliver of 2016-12-31 (UTC) would read as a
    # separate, nearly empty year to any per-year analysis
    keep &= ts >= plan.day0 * DAY_US
    order = np.argsort(ts[keep], kind="stable")
    ts, s_idx, local_day = ts[keep][order], s_idx[keep][order], (first + d_idx)[keep][order]
    n = len(ts)
    s_idx16 = s_idx.astype(np.int16)

    inside = np.zeros(n, dtype=np.uint32)
    other = np.zeros(n, dtype=np.uint32)
    resp_p = np.zeros(n, dtype=np.int64)
    name = np.full(n, None, dtype=object)
    for s in np.unique(s_idx):
        rows = np.flatnonzero(s_idx == s)
        k = len(rows)
        ha, hf = plan.hosts_addr[s], plan.hosts_first[s]
        active = np.maximum(np.searchsorted(hf, local_day[rows], side="right"), 1)
        inside[rows] = ha[_pick(rng, active, 1.6)]
        ca, cp = plan.cand_addr[s], plan.cand_port[s]
        ci = _pick(rng, np.full(k, len(ca)), 1.5)
        other[rows] = ca[ci]
        ports = plan.ports[s]
        resp_p[rows] = np.where(cp[ci] >= 0, cp[ci], ports[rng.integers(0, len(ports), k)])
        st = plan.streams[s]
        if st.name_kind == NAME_TUNNEL:
            labels = _random_text(rng, k, 52, _B32)
            tags = _random_text(rng, k, 8, _B32, b".")
            name[rows] = [
                f"{a}{b}.t.{sc.TUNNEL_DOMAIN}"
                for a, b in zip(labels.astype("U52"), tags.astype("U9"), strict=True)
            ]
        elif st.name_kind != NAME_NONE:
            nm = np.array(plan.names[s], dtype=object)
            name[rows] = nm[_pick(rng, np.full(k, len(nm)), 1.3)]
        if st.probe:
            resp_p[rows] = ports[rng.integers(0, len(ports), k)]

    inbound = np.array([st.inbound for st in plan.streams])[s_idx]
    proto = np.array([st.proto for st in plan.streams], dtype=np.uint8)[s_idx]
    probe = np.array([st.probe for st in plan.streams])[s_idx]
    orig = np.where(inbound, other, inside).astype(np.uint32)
    resp = np.where(inbound, inside, other).astype(np.uint32)
    # a probing scan comes from one address; its port sweep is the resp port already drawn
    orig_p = rng.integers(32768, 61000, n).astype(np.int64)
    # states: probes fail; a few ordinary attempts fail too
    u = rng.random(n)
    state = np.where(
        probe,
        np.where(u < 0.6, S0, REJ),
        np.where(
            proto == 6, np.select([u < 0.005, u < 0.02], [S0, RSTO], SF), np.where(u < 0.01, S0, SF)
        ),
    ).astype(np.uint8)
    b_out = np.array([st.bytes_out for st in plan.streams])[s_idx]
    b_in = np.array([st.bytes_in for st in plan.streams])[s_idx]
    small = b_in < 1_000  # DNS-like: tight sizes
    sigma = np.where(small, 0.25, 1.0)
    orig_bytes = np.rint(b_out * rng.lognormal(0.0, sigma)).astype(np.int64)
    resp_bytes = np.rint(b_in * rng.lognormal(0.0, sigma)).astype(np.int64)
    failed = state == S0
    orig_bytes[failed | (state == REJ)] = 0
    resp_bytes[failed | (state == REJ)] = 0
    hdr = np.where(proto == 6, 40, 28)
    mss = 1_400
    orig_pkts = np.where(proto == 6, 3, 1) + orig_bytes // mss
    resp_pkts = np.where(proto == 6, 2, 1) + resp_bytes // mss
    orig_pkts = np.where(failed, rng.integers(1, 4, n), orig_pkts)
    resp_pkts = np.where(failed, 0, np.where(state == REJ, 1, resp_pkts))
    orig_pkts = np.where(state == REJ, 1, orig_pkts)
    orig_ip_bytes = orig_bytes + orig_pkts * hdr + np.where(proto == 6, 12 * (orig_pkts > 0), 0)
    resp_ip_bytes = resp_bytes + resp_pkts * hdr
    rate = rng.lognormal(np.log(400_000.0), 0.8, n)  # bytes/s
    dur = ((orig_bytes + resp_bytes) / rate + rng.lognormal(np.log(0.08), 0.6, n)) * US
    dur_us = np.where(failed & (orig_pkts == 1), -1, dur.astype(np.int64))
    dur_us = np.where(state == REJ, rng.integers(80_000, 400_000, n), dur_us)
    uid = _random_text(rng, n, 17, _B62, b"C")
    return Flows(
        ts,
        dur_us,
        orig,
        resp,
        orig_p,
        resp_p,
        proto,
        orig_bytes,
        resp_bytes,
        orig_pkts,
        resp_pkts,
        orig_ip_bytes,
        resp_ip_bytes,
        state,
        s_idx16,
        name,
        uid,
    )
