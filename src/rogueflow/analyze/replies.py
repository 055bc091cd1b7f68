"""What counts as an inside host answering, and as a failed attempt to reach one (SQL).

Shared by :mod:`rogueflow.analyze.hosted` (services answered by inside addresses)
and :mod:`rogueflow.analyze.probing` (attempts nobody answered), so the two
never disagree about a flow. The predicates read only ``territory_flows``
columns and portable SQL (bitwise ``&`` on ``tcp_flags``; flags may be absent, 0).

* **answered** (:data:`ANSWERED_SQL`, on an inbound flow): UDP and others — any
  reverse packet; TCP — two or more reverse packets, or one carrying payload
  (> 60 bytes), or a lone SYN-ACK; never a flow with RST and no ACK at all (a
  refused attempt: Zeek ``REJ``). A scan of a closed port is not an answer.
* **uniflow server half** (:data:`UNIFLOW_REPLY_SQL`): exporters without
  reverse counters (NetFlow v5/v9) report the server's packets as their own
  outbound flow from the service port to an ephemeral port (≥ 1024), with SYN
  and ACK set for TCP.
* **served** (:data:`SERVED_SQL`): either of the above on a port of
  :data:`SERVER_PORTS`.
* **failed attempt** (:data:`FAILED_SQL`): an inbound flow of at most
  :data:`MAX_ATTEMPT_PACKETS` packets that was not answered; for TCP without
  reverse counters the client must also never have sent an ACK, so the client
  half of an established uniflow session does not count (Zeek ``S0``/``REJ``,
  NetFlow SYN-only flows). With no reverse counters anywhere (:func:`failed_sql`
  with ``uniflow``), only TCP SYNs without an ACK count.
"""

from __future__ import annotations

from collections import defaultdict

TCP, UDP = 6, 17
#: (port, transport) -> (service name, group); the groups name the server in a statement
SERVER_PORTS: dict[tuple[int, int], tuple[str, str]] = {
    (25, TCP): ("smtp", "mail"),
    (465, TCP): ("smtps", "mail"),
    (587, TCP): ("submission", "mail"),
    (110, TCP): ("pop3", "mail"),
    (995, TCP): ("pop3s", "mail"),
    (143, TCP): ("imap", "mail"),
    (993, TCP): ("imaps", "mail"),
    (20, TCP): ("ftp-data", "FTP"),
    (21, TCP): ("ftp", "FTP"),
    (990, TCP): ("ftps", "FTP"),
    (53, UDP): ("dns", "DNS"),
    (53, TCP): ("dns", "DNS"),
    (80, TCP): ("http", "web"),
    (443, TCP): ("https", "web"),
    (443, UDP): ("quic", "web"),
    (8080, TCP): ("http-alt", "web"),
    (8443, TCP): ("https-alt", "web"),
    (22, TCP): ("ssh", "SSH"),
    (23, TCP): ("telnet", "telnet"),
    (3389, TCP): ("rdp", "remote-desktop"),
    (123, UDP): ("ntp", "NTP"),
    (1194, UDP): ("openvpn", "VPN"),
    (1194, TCP): ("openvpn", "VPN"),
    (500, UDP): ("ike", "VPN"),
    (4500, UDP): ("ipsec-nat-t", "VPN"),
    (1723, TCP): ("pptp", "VPN"),
}

#: the inside end answered an inbound flow (see the module docstring); flags may be absent (0)
ANSWERED_SQL = (
    "(CASE WHEN proto = 6 THEN "
    "(coalesce(rev_packets, 0) >= 2 "
    "OR (coalesce(rev_packets, 0) = 1 AND coalesce(rev_bytes, 0) > 60) "
    "OR (coalesce(rev_packets, 0) = 1 AND (coalesce(tcp_flags, 0) & 22) = 18)) "
    "AND NOT ((coalesce(tcp_flags, 0) & 4) <> 0 AND (coalesce(tcp_flags, 0) & 16) = 0) "
    "ELSE coalesce(rev_packets, 0) > 0 END)"
)
#: a uniflow exporter's server half: from the server port to an ephemeral port
UNIFLOW_REPLY_SQL = (
    "(side = 'out' AND coalesce(rev_packets, 0) = 0 AND remote_port >= 1024 "
    "AND (proto = 17 OR (proto = 6 AND (coalesce(tcp_flags, 0) & 18) = 18)))"
)


def _ports_sql() -> str:
    by_proto: dict[int, list[int]] = defaultdict(list)
    for port, proto in SERVER_PORTS:
        by_proto[proto].append(port)
    parts = [
        f"(proto = {p} AND internal_port IN ({', '.join(str(x) for x in sorted(ports))}))"
        for p, ports in sorted(by_proto.items())
    ]
    return "(" + " OR ".join(parts) + ")"


SERVED_SQL = f"({_ports_sql()} AND ((side = 'in' AND {ANSWERED_SQL}) OR {UNIFLOW_REPLY_SQL}))"

MAX_ATTEMPT_PACKETS = 5  # a connection attempt: a SYN and its retransmissions, a datagram or two


def failed_sql(uniflow: bool = False) -> str:
    """Failed inbound attempts; ``uniflow`` (no flow has reverse counters) keeps only TCP
    flows that never sent an ACK, since a UDP request looks the same answered or not."""
    if uniflow:
        return (
            f"(side = 'in' AND proto = 6 AND coalesce(packets, 0) <= {MAX_ATTEMPT_PACKETS} "
            "AND (coalesce(tcp_flags, 0) & 18) = 2)"
        )
    return (
        f"(side = 'in' AND NOT {ANSWERED_SQL} AND coalesce(packets, 0) <= {MAX_ATTEMPT_PACKETS} "
        "AND (proto <> 6 OR coalesce(rev_packets, 0) > 0 OR (coalesce(tcp_flags, 0) & 16) = 0))"
    )


FAILED_SQL = failed_sql()
