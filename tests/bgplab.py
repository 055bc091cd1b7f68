"""A live BGP lab on loopback: BIRD 2 and GoBGP peering, a GoBGP collector writing MRT.

Topology (all on 127.0.0.0/8, TCP port 179, so it needs root)::

    watched AS 64500 (BIRD, 127.0.0.2) ──┬── AS 64501 (BIRD,  127.0.0.3) ──┐
                                         └── AS 64502 (GoBGP, 127.0.0.4) ──┴── collector
                                                                   AS 64999 (GoBGP, 127.0.0.9)

The collector dumps every UPDATE it receives to MRT (``[[mrt-dump]]``, type "updates").
``run_lab`` converges the lab, waits a moment, disables the watched AS's session to one
upstream, waits until the collector's RIB and MRT file both show the withdrawal, and
stops every daemon. Not a test module: tests call it (see tests/test_bgp_live.py).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Self

WATCHED_ASN = 64500
COLLECTOR_ASN = 64999
# upstream ASN -> (loopback address, daemon kind)
UPSTREAMS: dict[int, tuple[str, str]] = {
    64501: ("127.0.0.3", "bird"),
    64502: ("127.0.0.4", "gobgp"),
}
WATCHED_ADDR = "127.0.0.2"
COLLECTOR_ADDR = "127.0.0.9"
PREFIXES = ("198.51.100.0/24", "203.0.113.0/24", "2001:db8:100::/48")
MRT_NAME = "updates.mrt"

# Hold 6 s, keepalive 2 s, retry 1 s: the lab converges in a few seconds.
BIRD_TIMERS = """\
  strict bind;   # each instance listens on its own 127.0.0.x:179
  multihop 2;    # BIRD treats 127/8 as host scope and refuses it as a direct neighbour
  connect retry time 1; connect delay time 1; error wait time 1, 2;
  hold time 6; keepalive time 2;"""


def _next_hops(last_octet: int) -> tuple[str, str]:
    """Next hops to announce: GoBGP treats loopback next hops as withdrawals, so each
    speaker announces documentation addresses instead (attributes only; nothing forwards)."""
    return f"192.0.2.{last_octet}", f"2001:db8:ffff::{last_octet}"


class LabError(RuntimeError):
    """The lab failed to start, converge or withdraw; the message carries the daemon logs."""


@dataclass(frozen=True)
class LabResult:
    """What a lab run produced: the MRT files and the facts a test checks them against."""

    mrt_files: tuple[Path, ...]
    prefixes: tuple[str, ...]
    watched_asn: int
    upstream_asns: tuple[int, ...]
    upstream_addrs: dict[int, str]
    withdrawn_upstream: int
    converged_at: datetime  # UTC: the collector's RIB held every path
    withdrawn_at: datetime  # UTC: just before the watched AS disabled the session
    collector_saw_at: datetime  # UTC: the collector's RIB had lost the withdrawn paths
    logs: dict[str, Path] = field(default_factory=dict)

    def log_tails(self, lines: int = 30) -> str:
        return _tails(self.logs, lines)


def _tails(logs: dict[str, Path], lines: int) -> str:
    out = []
    for name, path in logs.items():
        text = path.read_text(errors="replace") if path.exists() else "(no log)"
        out.append(f"--- {name} ({path})\n" + "\n".join(text.splitlines()[-lines:]))
    return "\n".join(out)


@dataclass
class _Daemon:
    name: str
    argv: list[str]
    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _fh: IO[bytes] | None = None

    def start(self) -> None:
        # Held open for the daemon's lifetime; closed in stop().
        self._fh = open(self.log, "ab")  # noqa: SIM115
        # Same process group as pytest: if a CI timeout kills the group, the daemons go too.
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )

    def dead(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps and closes the log."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout)
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class BgpLab:
    """The daemons, their configs and control sockets under ``workdir``; a context manager
    that kills everything it started on exit, whatever happened."""

    def __init__(self, workdir: Path, *, bgpdump: str | None = None) -> None:
        self.workdir = workdir
        self.bgpdump = bgpdump or shutil.which("bgpdump")
        self.mrt_dir = workdir / "collector"
        # Unix socket paths are limited to ~107 bytes; pytest's tmp paths can be longer.
        self._sockdir: str | None = None
        if len(str(workdir)) > 80:
            self._sockdir = tempfile.mkdtemp(prefix="rf-bgp-")
        self.sock = Path(self._sockdir) if self._sockdir else workdir
        self.daemons: dict[str, _Daemon] = {}
        self.bird = shutil.which("bird") or "bird"
        self.birdc_bin = shutil.which("birdc") or "birdc"
        self.gobgpd = shutil.which("gobgpd") or "gobgpd"
        self.gobgp = shutil.which("gobgp") or "gobgp"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def logs(self) -> dict[str, Path]:
        return {name: d.log for name, d in self.daemons.items()}

    def fail(self, problem: str) -> LabError:
        return LabError(f"{problem}\n{_tails(self.logs, 40)}")

    # -- configuration ------------------------------------------------------------------

    def _watched_conf(self) -> str:
        nh4, nh6 = _next_hops(2)
        v4 = " ".join(f"route {p} blackhole;" for p in PREFIXES if ":" not in p)
        v6 = " ".join(f"route {p} blackhole;" for p in PREFIXES if ":" in p)
        peers = "\n".join(
            f"protocol bgp up{asn} from upstream {{ neighbor {addr} as {asn}; }}"
            for asn, (addr, _) in UPSTREAMS.items()
        )
        return f"""router id {WATCHED_ADDR};
log stderr all;  # into <name>.out with the daemon's other output
protocol device {{}}
protocol static static4 {{ ipv4; {v4} }}
protocol static static6 {{ ipv6; {v6} }}
template bgp upstream {{
  local {WATCHED_ADDR} as {WATCHED_ASN};
{BIRD_TIMERS}
  ipv4 {{ import none; export where source = RTS_STATIC; next hop address {nh4}; }};
  ipv6 {{ import none; export where source = RTS_STATIC; next hop address {nh6}; }};
}}
{peers}
"""

    def _bird_upstream_conf(self, asn: int, addr: str) -> str:
        nh4, nh6 = _next_hops(int(addr.rsplit(".", 1)[1]))
        return f"""router id {addr};
log stderr all;  # into <name>.out with the daemon's other output
protocol device {{}}
template bgp peer {{
  local {addr} as {asn};
{BIRD_TIMERS}
}}
protocol bgp customer from peer {{
  neighbor {WATCHED_ADDR} as {WATCHED_ASN};
  ipv4 {{ import all; export none; }};
  ipv6 {{ import all; export none; }};
}}
protocol bgp collector from peer {{
  neighbor {COLLECTOR_ADDR} as {COLLECTOR_ASN};
  ipv4 {{ import none; export all; next hop address {nh4}; }};
  ipv6 {{ import none; export all; next hop address {nh6}; }};
}}
"""

    @staticmethod
    def _gobgp_neighbor(addr: str, asn: int, local: str, *, passive: bool = False) -> str:
        families = "".join(
            f"""  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "{fam}"
"""
            for fam in ("ipv4-unicast", "ipv6-unicast")
        )
        return f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{addr}"
    peer-as = {asn}
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 6
    keepalive-interval = 2
  [neighbors.transport.config]
    local-address = "{local}"
    passive-mode = {str(passive).lower()}
{families}"""

    def _gobgp_upstream_conf(self, asn: int, addr: str) -> str:
        nh4, nh6 = _next_hops(int(addr.rsplit(".", 1)[1]))
        # Next-hop self would announce the loopback address, which GoBGP peers refuse.
        return f"""[global.config]
  as = {asn}
  router-id = "{addr}"
  port = 179
  local-address-list = ["{addr}"]
[global.apply-policy.config]
  export-policy-list = ["next-hop"]
  default-export-policy = "accept-route"

[[defined-sets.prefix-sets]]
  prefix-set-name = "any4"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "0.0.0.0/0"
    masklength-range = "0..32"
[[defined-sets.prefix-sets]]
  prefix-set-name = "any6"
  [[defined-sets.prefix-sets.prefix-list]]
    ip-prefix = "::/0"
    masklength-range = "0..128"

[[policy-definitions]]
  name = "next-hop"
  [[policy-definitions.statements]]
    name = "v4"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "any4"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-next-hop = "{nh4}"
  [[policy-definitions.statements]]
    name = "v6"
    [policy-definitions.statements.conditions.match-prefix-set]
      prefix-set = "any6"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-next-hop = "{nh6}"
{self._gobgp_neighbor(WATCHED_ADDR, WATCHED_ASN, addr)}
{self._gobgp_neighbor(COLLECTOR_ADDR, COLLECTOR_ASN, addr)}"""

    def _collector_conf(self) -> str:
        # A relative file name: gobgpd formats it as a Go time layout (digits in a pytest
        # path would be rewritten), and it rotates at >= 60 s; a name without layout
        # tokens makes rotation reopen the same file in append mode.
        peers = "".join(
            self._gobgp_neighbor(addr, asn, COLLECTOR_ADDR, passive=True)
            for asn, (addr, _) in UPSTREAMS.items()
        )
        return f"""[global.config]
  as = {COLLECTOR_ASN}
  router-id = "{COLLECTOR_ADDR}"
  port = 179
  local-address-list = ["{COLLECTOR_ADDR}"]
[global.apply-policy.config]
  default-export-policy = "reject-route"   # a collector announces nothing

[[mrt-dump]]
  [mrt-dump.config]
    dump-type = "updates"
    file-name = "{MRT_NAME}"
{peers}"""

    # -- lifecycle ----------------------------------------------------------------------

    def _add(self, name: str, conf: str, suffix: str, cwd: Path) -> None:
        """Write ``name``'s config and register the daemon (started later, all together)."""
        path = self.workdir / f"{name}.{suffix}"
        path.write_text(conf)
        if suffix == "conf":
            # BIRD checks a config without starting (-p); fail early with its message.
            check = subprocess.run(
                [self.bird, "-p", "-c", str(path)], capture_output=True, text=True, timeout=10
            )
            if check.returncode:
                raise LabError(f"bird rejects {path}: {check.stdout}{check.stderr}")
            argv = [
                self.bird,
                "-f",
                "-c",
                str(path),
                "-s",
                str(self.sock / f"{name}.ctl"),
                "-P",
                str(self.workdir / f"{name}.pid"),
            ]
        else:
            argv = [
                self.gobgpd,
                "--log-plain",
                "--pprof-disable",
                "--log-level=info",
                f"--api-hosts=unix://{self.sock}/{name}.api",
                "-f",
                str(path),
            ]
        self.daemons[name] = _Daemon(name, argv, cwd, self.workdir / f"{name}.out")

    @staticmethod
    def _check_ports() -> None:
        """Fail clearly when a daemon (say, one left by a killed run) already listens."""
        for host in (WATCHED_ADDR, COLLECTOR_ADDR, *(a for a, _ in UPSTREAMS.values())):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                # As the daemons do: TIME_WAIT connections of an earlier run do not count.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, 179))
                except OSError as e:
                    raise LabError(f"cannot listen on {host}:179 ({e}); see `ss -ltnp`") from e

    def start(self) -> None:
        """Write configs and start the collector, the upstreams and the watched AS."""
        self._check_ports()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.mrt_dir.mkdir(exist_ok=True)
        self._add("collector", self._collector_conf(), "toml", self.mrt_dir)
        for asn, (addr, kind) in UPSTREAMS.items():
            name = f"as{asn}"
            if kind == "gobgp":
                self._add(name, self._gobgp_upstream_conf(asn, addr), "toml", self.workdir)
            else:
                self._add(name, self._bird_upstream_conf(asn, addr), "conf", self.workdir)
        self._add("watched", self._watched_conf(), "conf", self.workdir)
        for d in self.daemons.values():
            d.start()

    def stop(self) -> None:
        """Collector first (its MRT file is then final), then the rest; bounded."""
        for name in sorted(self.daemons, key=lambda n: n != "collector"):
            self.daemons[name].stop()
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    # -- observation --------------------------------------------------------------------

    def _check_alive(self) -> None:
        for d in self.daemons.values():
            if (rc := d.dead()) is not None:
                raise self.fail(f"{d.name} exited with status {rc}")

    def wait(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        """Poll ``ready`` every 0.2 s until true; a dead daemon or the deadline fails."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise self.fail(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.2)

    def collector_paths(self) -> set[tuple[str, tuple[int, ...]]]:
        """(prefix, AS path) of every path in the collector's RIB."""
        out: set[tuple[str, tuple[int, ...]]] = set()
        target = f"unix://{self.sock}/collector.api"
        for family in ("ipv4", "ipv6"):
            res = subprocess.run(
                [self.gobgp, "--target", target, "global", "rib", "-a", family, "-j"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            try:
                rib = json.loads(res.stdout) if res.returncode == 0 else {}
            except json.JSONDecodeError:  # "Network not in table" while empty
                rib = {}
            for prefix, paths in rib.items():
                for p in paths:
                    asns = [
                        a
                        for attr in p["attrs"]
                        if attr["type"] == 2
                        for seg in attr.get("as_paths", [])
                        for a in seg["asns"]
                    ]
                    out.add((str(ipaddress.ip_network(prefix)), tuple(asns)))
        return out

    def mrt_lines(self) -> list[list[str]]:
        """``bgpdump -m`` of the collector's MRT files, split on '|'."""
        if self.bgpdump is None:
            raise self.fail("bgpdump is needed to wait for the MRT file")
        rows: list[list[str]] = []
        for path in self.mrt_files():
            res = subprocess.run(
                [self.bgpdump, "-m", str(path)], capture_output=True, text=True, timeout=10
            )
            rows.extend(line.split("|") for line in res.stdout.splitlines() if line)
        return rows

    def mrt_files(self) -> tuple[Path, ...]:
        return tuple(sorted(p for p in self.mrt_dir.iterdir() if p.is_file() and p.stat().st_size))

    def birdc(self, name: str, *args: str) -> str:
        res = subprocess.run(
            [self.birdc_bin, "-s", str(self.sock / f"{name}.ctl"), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if res.returncode:
            raise self.fail(f"birdc {' '.join(args)}: {res.stdout}{res.stderr}")
        return res.stdout


def _norm(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(str(ipaddress.ip_network(p)) for p in prefixes)


def run_lab(
    workdir: Path,
    *,
    withdraw: int = 64502,
    gap: float = 2.5,
    timeout: float = 25.0,
    bgpdump: str | None = None,
) -> LabResult:
    """Converge, hold ``gap`` seconds (so the timeline has a span), withdraw the watched AS's
    session to upstream ``withdraw``, wait for the collector to see it, stop everything."""
    if withdraw not in UPSTREAMS:
        raise ValueError(f"upstream {withdraw} is not in the lab ({sorted(UPSTREAMS)})")
    prefixes = _norm(PREFIXES)
    with BgpLab(workdir, bgpdump=bgpdump) as lab:
        lab.start()
        want = {(p, (asn, WATCHED_ASN)) for p in prefixes for asn in UPSTREAMS}
        lab.wait("the collector to hold every path", lambda: want <= lab.collector_paths(), timeout)
        converged_at = datetime.now(UTC)
        time.sleep(gap)

        withdrawn_at = datetime.now(UTC)
        out = lab.birdc("watched", "disable", f"up{withdraw}")
        if "disabled" not in out:
            raise lab.fail(f"birdc disable up{withdraw}: {out}")
        gone = {(p, (withdraw, WATCHED_ASN)) for p in prefixes}
        lab.wait(
            "the collector's RIB to lose the withdrawn paths",
            lambda: not gone & lab.collector_paths(),
            timeout,
        )
        collector_saw_at = datetime.now(UTC)

        # The MRT writer runs apart from the RIB: wait for its W records before stopping.
        addr = UPSTREAMS[withdraw][0]

        def withdrawals_written() -> bool:
            seen = {
                str(ipaddress.ip_network(r[5]))
                for r in lab.mrt_lines()
                if len(r) > 5 and r[2] == "W" and r[3] == addr
            }
            return set(prefixes) <= seen

        lab.wait("the withdrawals in the MRT file", withdrawals_written, timeout)
        lab.stop()
        return LabResult(
            mrt_files=lab.mrt_files(),
            prefixes=prefixes,
            watched_asn=WATCHED_ASN,
            upstream_asns=tuple(UPSTREAMS),
            upstream_addrs={asn: a for asn, (a, _) in UPSTREAMS.items()},
            withdrawn_upstream=withdraw,
            converged_at=converged_at,
            withdrawn_at=withdrawn_at,
            collector_saw_at=collector_saw_at,
            logs=lab.logs,
        )


def have_root() -> bool:
    """BGP's port 179 on 127.0.0.x needs root (or CAP_NET_BIND_SERVICE)."""
    return os.geteuid() == 0
