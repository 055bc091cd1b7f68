"""Detectors: what a flow is, from its payload (captures) or its shape (flow records).

Payload detectors (:mod:`.stratum`, :mod:`.p2p`) read the bytes of a capture's
sessions and prove mining or blockchain traffic with an excerpt; behaviour
detectors (:mod:`.behaviour`) score payload-less flow records by port convention,
indicators and flow shape. Every label carries its evidence.
"""

#: Evidence of a detector's label starts with one of these. Enrichment (and a later
#: ``rogueflow enrich``) keeps such labels: they came from payload or from the shape of
#: a whole session, which re-enriching one row cannot see again.
DETECTOR_PREFIXES = ("payload: ", "flow shape: ", "fan-out: ", "dns tunnel ")
#: The columns a detector may set (besides the label itself, for mining flows).
DETECTION_COLUMNS = ("coin", "pool", "wallet")
