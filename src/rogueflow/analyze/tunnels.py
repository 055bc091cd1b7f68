"""DNS tunnels seen from the flow store: which domains carry one, from which hosts, when.

Two sources of evidence, combined per registered domain:

* flows the ingest detector (:mod:`rogueflow.detect.dnstunnel`) labelled
  ``dns.tunnel`` — it saw every query of the dns.log or capture, with entropy and
  question types;
* this module's own heuristic over the DNS flows' query names (``dns_query`` of
  flows to server port 53), for stores whose ingest saw too few queries per
  client and domain to judge (the detector needs 50 in one file): at least
  :data:`MIN_QUERIES` queries and :data:`MIN_NAMES` distinct names under the
  domain, a mean subdomain of :data:`LONG_SUBDOMAIN`+ characters and
  :data:`UNIQUE`+ of the queries distinct.

An endpoint is *direct* when the domain's queries go to a server that answers
almost nothing else (:data:`DIRECT` of its named queries): the client talks to
the tunnel's own name server instead of a resolver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime

from rogueflow.addr import format_one, parse_one
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.analyze.engine import sql_string
from rogueflow.detect.dnstunnel import _GENERIC_SLD

MIN_QUERIES, MIN_NAMES = 50, 30
LONG_SUBDOMAIN = 20.0
UNIQUE = 0.7
DIRECT = 0.9
TUNNEL = "dns.tunnel"
_SAFE = re.compile(r"^[a-z0-9_.-]+$")


def registered_sql(name: str) -> str:
    """Registered domain of a normalised name in portable SQL: the last two labels, or
    three under a two-letter country code with a generic second level (``co.uk``) — the
    approximation :func:`rogueflow.detect.dnstunnel.registered_domain` makes."""
    t2 = f"regexp_extract({name}, '([^.]+[.][^.]+)$', 1)"
    t3 = f"regexp_extract({name}, '([^.]+[.][^.]+[.][^.]+)$', 1)"
    generic = f"regexp_extract({t2}, '^(({_GENERIC_SLD})[.][a-z][a-z])$', 1)"
    return f"CASE WHEN {generic} <> '' AND {t3} <> '' THEN {t3} ELSE {t2} END"


@dataclass
class Domain:
    """One registered domain's DNS flows, summed over the servers they went to."""

    name: str
    queries: int = 0
    names: int = 0
    name_chars: float = 0.0  # sum of query-name lengths
    first_day: date | None = None
    last_day: date | None = None
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    detector: int = 0  # flows the ingest detector labelled dns.tunnel
    servers: dict[str, tuple[int, float]] = field(default_factory=dict)  # addr -> (q, share)

    @property
    def subdomain(self) -> float:
        """Mean length of the part before the registered domain."""
        if not self.queries:
            return 0.0
        return max(self.name_chars / self.queries - len(self.name) - 1, 0.0)

    @property
    def unique(self) -> float:
        return min(self.names / self.queries, 1.0) if self.queries else 0.0

    @property
    def heuristic(self) -> bool:
        return (
            self.queries >= MIN_QUERIES
            and self.names >= MIN_NAMES
            and self.subdomain >= LONG_SUBDOMAIN
            and self.unique >= UNIQUE
        )

    @property
    def flagged(self) -> bool:
        return self.detector > 0 or self.heuristic

    @property
    def direct(self) -> list[str]:
        """Servers that answer (almost) only this domain: the tunnel's own endpoint."""
        return [a for a, (_, share) in self.servers.items() if share >= DIRECT]

    def how(self) -> str:
        parts = []
        if self.detector:
            parts.append(f"ingest detector ({self.detector:,} flows labelled)")
        if self.heuristic:
            parts.append(
                f"query names: {self.queries:,} queries, {self.names:,} distinct, mean "
                f"subdomain {self.subdomain:.0f} characters"
            )
        return "; ".join(parts) or "not flagged"


def candidates(scope: Scope) -> tuple[list[Domain], dict[str, float]]:
    """Registered domains with enough DNS flows to judge (or labelled by the detector),
    largest first, and coverage figures: DNS flows, and those carrying a query name."""
    q = "lower(TRIM(TRAILING '.' FROM dns_query))"
    # two stages: distinct names per server first (a name repeats thousands of times),
    # then the regular expressions on those names only
    rows = scope.rows(
        "DNS query names per registered domain and server",
        f"""
        WITH names AS (
          SELECT dns_query, remote_addr, count(*) AS n, min(local_day) AS first_day,
                 max(local_day) AS last_day, min(ts_utc) AS first_ts, max(ts_utc) AS last_ts,
                 sum(CASE WHEN category = '{TUNNEL}' THEN 1 ELSE 0 END) AS detector,
                 max(CASE WHEN category = '{TUNNEL}' THEN service END) AS labelled
          FROM {VIEW}
          WHERE (dns_query IS NOT NULL AND remote_port = 53 AND side <> 'in')
             OR category = '{TUNNEL}'
          GROUP BY dns_query, remote_addr),
        normal AS (
          SELECT {q} AS q, remote_addr, n, first_day, last_day, first_ts, last_ts, detector,
                 labelled
          FROM names),
        reg AS (
          SELECT coalesce(labelled, {registered_sql("q")}) AS reg, q, remote_addr, n,
                 first_day, last_day, first_ts, last_ts, detector
          FROM normal)
        SELECT reg, remote_addr, queries, names, chars, first_day, last_day, first_ts,
               last_ts, detector, server_queries
        FROM (
          SELECT reg, remote_addr, sum(n) AS queries, count(DISTINCT q) AS names,
                 sum(n * length(q)) AS chars, min(first_day) AS first_day,
                 max(last_day) AS last_day, min(first_ts) AS first_ts, max(last_ts) AS last_ts,
                 sum(detector) AS detector,
                 sum(sum(n)) OVER (PARTITION BY remote_addr) AS server_queries
          FROM reg
          WHERE reg IS NOT NULL AND reg <> ''
          GROUP BY reg, remote_addr
        ) g
        WHERE queries >= {MIN_QUERIES // 5} OR detector > 0
        """,
    )
    cov = scope.rows(
        "DNS flows with a query name",
        f"""
        SELECT count(*) AS dns_flows,
               sum(CASE WHEN dns_query IS NOT NULL THEN 1 ELSE 0 END) AS named
        FROM {VIEW} WHERE remote_port = 53 AND side <> 'in'
        """,
    )[0]
    by: dict[str, Domain] = {}
    for r in rows:
        d = by.setdefault(str(r["reg"]), Domain(str(r["reg"])))
        n = int(r["queries"])
        d.queries += n
        d.names += int(r["names"])
        d.name_chars += float(r["chars"] or 0)
        d.detector += int(r["detector"] or 0)
        d.first_day = min(x for x in (d.first_day, r["first_day"]) if x is not None)
        d.last_day = max(x for x in (d.last_day, r["last_day"]) if x is not None)
        d.first_ts = min(x for x in (d.first_ts, r["first_ts"]) if x is not None)
        d.last_ts = max(x for x in (d.last_ts, r["last_ts"]) if x is not None)
        if r["remote_addr"] is not None:
            share = n / max(float(r["server_queries"] or n), 1.0)
            d.servers[format_one(r["remote_addr"])] = (n, share)
    out = sorted(by.values(), key=lambda d: (-d.flagged, -d.queries, d.name))
    coverage = {"dns_flows": float(cov["dns_flows"] or 0), "named": float(cov["named"] or 0)}
    return out, coverage


def tunnel_sql(domains: list[Domain]) -> str:
    """Flows of the flagged domains: labelled by the detector, a query under one of the
    domains, or a DNS flow to a direct endpoint (the tunnel's own server)."""
    conds = [f"category = '{TUNNEL}'"]
    names = [d.name for d in domains if d.flagged and _SAFE.match(d.name)]
    dns = []
    for d in domains:  # the cheap test first
        if d.flagged:
            for a in d.direct:
                dns.append(f"remote_addr = unhex('{_hex(a)}')")
    # the name itself or any name under it, with or without the root's trailing dot
    q = "('.' || lower(dns_query))"
    for n in names:
        dns.append(f"{q} LIKE {sql_string('%.' + n)}")
        dns.append(f"{q} LIKE {sql_string('%.' + n + '.')}")
    if dns:
        conds.append(f"(remote_port = 53 AND side <> 'in' AND ({' OR '.join(dns)}))")
    return "(" + " OR ".join(conds) + ")"


def _hex(text: str) -> str:
    return parse_one(text).hex()
