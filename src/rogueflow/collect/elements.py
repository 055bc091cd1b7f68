"""Information elements the decoders read, by number (IANA IPFIX registry, RFC 3954).

Only elements that become canonical columns, times or sampling rates are named here;
every other element of a template is carried as opaque bytes of its length and
skipped (enterprise-specific ones included). NetFlow v9 field types 1–127 share
their numbers with the IPFIX elements.
"""

from __future__ import annotations

#: RFC 5103 reverse elements: enterprise 29305, same numbers as the forward ones
REVERSE_PEN = 29305

# role names -> element ids (IANA "IPFIX Information Elements")
FLOW_ROLES: dict[int, str] = {
    1: "bytes",  # octetDeltaCount / IN_BYTES
    2: "packets",  # packetDeltaCount / IN_PKTS
    4: "proto",  # protocolIdentifier
    6: "flags",  # tcpControlBits (1 byte in v9, 2 in IPFIX)
    7: "sport",  # sourceTransportPort
    8: "src4",  # sourceIPv4Address
    11: "dport",  # destinationTransportPort
    12: "dst4",  # destinationIPv4Address
    21: "end_uptime",  # flowEndSysUpTime / LAST_SWITCHED (ms of the exporter's uptime)
    22: "start_uptime",  # flowStartSysUpTime / FIRST_SWITCHED
    23: "post_bytes",  # postOctetDeltaCount (egress counters, used when ingress are absent)
    24: "post_packets",  # postPacketDeltaCount
    27: "src6",  # sourceIPv6Address
    28: "dst6",  # destinationIPv6Address
    32: "icmp4",  # icmpTypeCodeIPv4 (type*256+code)
    34: "sampling_interval",  # samplingInterval (1 in N), deprecated but sent by Cisco
    48: "sampler_id",  # samplerId / FLOW_SAMPLER_ID
    50: "sampler_random_interval",  # samplerRandomInterval / FLOW_SAMPLER_RANDOM_INTERVAL
    85: "bytes_total",  # octetTotalCount
    86: "packets_total",  # packetTotalCount
    139: "icmp6",  # icmpTypeCodeIPv6
    150: "start_s",  # flowStartSeconds
    151: "end_s",
    152: "start_ms",  # flowStartMilliseconds
    153: "end_ms",
    154: "start_us_ntp",  # flowStartMicroseconds (NTP format)
    155: "end_us_ntp",
    156: "start_ns_ntp",  # flowStartNanoseconds (NTP format)
    157: "end_ns_ntp",
    158: "start_delta_us",  # flowStartDeltaMicroseconds (before the export time)
    159: "end_delta_us",
    160: "system_init_ms",  # systemInitTimeMilliseconds (options: the exporter's boot time)
    161: "duration_ms",  # flowDurationMilliseconds
    162: "duration_us",  # flowDurationMicroseconds
    176: "icmp_type4",
    177: "icmp_code4",
    178: "icmp_type6",
    179: "icmp_code6",
    302: "selector_id",  # selectorId (PSAMP)
    305: "packet_interval",  # samplingPacketInterval
    306: "packet_space",  # samplingPacketSpace
    309: "sampling_size",  # samplingSize
    310: "sampling_population",  # samplingPopulation
    311: "sampling_probability",  # samplingProbability (float64)
}

REVERSE_ROLES: dict[int, str] = {1: "rev_bytes", 2: "rev_packets"}

#: roles holding an address (kept as bytes, not integers)
ADDRESS_ROLES = frozenset({"src4", "dst4", "src6", "dst6"})

#: seconds between the NTP era (1900) and the Unix epoch
NTP_UNIX_OFFSET = 2_208_988_800


def role_of(element: int, enterprise: int) -> str | None:
    """The canonical role of an element, or None for one we skip."""
    if enterprise == 0:
        return FLOW_ROLES.get(element)
    if enterprise == REVERSE_PEN:
        return REVERSE_ROLES.get(element)
    return None
