"""The canonical flow record, declared once.

Every reader produces Arrow batches of exactly this schema; the store writes
it to Parquet with the schema version in the file metadata; the docs page
``docs/schema.md`` is generated from ``FIELDS`` (``rogueflow schema --markdown``).

Addresses use the 16-byte form of :mod:`rogueflow.addr`, so a prefix test is a
range comparison. Times are UTC microseconds. Counters are signed 64-bit so
that every engine (DuckDB, Spark) reads them without unsigned surprises.

When the schema changes, bump ``SCHEMA_VERSION`` and add ``convert_N_to_N+1``
to ``MIGRATIONS``; old Parquet files are upgraded step by step on read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from rogueflow.addr import ADDR_TYPE

SCHEMA_VERSION = 4
METADATA_KEY = b"rogueflow.schema_version"

TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Field:
    name: str
    type: pa.DataType
    nullable: bool
    measured: bool
    doc: str
    default: object = None


FIELDS: tuple[Field, ...] = (
    Field("ts_start", TIMESTAMP, False, True, "First packet of the flow, UTC, microseconds."),
    Field("ts_end", TIMESTAMP, False, True, "Last packet of the flow, UTC, microseconds."),
    Field(
        "src_addr",
        ADDR_TYPE,
        False,
        True,
        "Source address: 16 bytes, IPv4 as ::ffff:a.b.c.d. `ip_text(src_addr)` shows it.",
    ),
    Field("dst_addr", ADDR_TYPE, False, True, "Destination address, same form as src_addr."),
    Field("src_port", pa.uint16(), False, True, "Source port; 0 where the protocol has none.", 0),
    Field(
        "dst_port",
        pa.uint16(),
        False,
        True,
        "Destination port; for ICMP, type*256+code as nfdump and IPFIX do.",
        0,
    ),
    Field("proto", pa.uint8(), False, True, "IP protocol number (6 TCP, 17 UDP, 1 ICMP …)."),
    Field("tcp_flags", pa.uint8(), False, True, "OR of the TCP flags seen (0 if unknown).", 0),
    Field(
        "packets",
        pa.int64(),
        False,
        True,
        "Packets from src to dst as reported (not multiplied by sampling).",
    ),
    Field("bytes", pa.int64(), False, True, "Bytes (layer 3) from src to dst as reported."),
    Field(
        "rev_packets",
        pa.int64(),
        False,
        True,
        "Packets from dst to src for bidirectional sources (Zeek, pcap, biflow); else 0.",
        0,
    ),
    Field("rev_bytes", pa.int64(), False, True, "Bytes from dst to src; else 0.", 0),
    Field(
        "sampling_rate",
        pa.uint32(),
        False,
        True,
        "1 in N packets sampled by the exporter; 1 = unsampled.",
        1,
    ),
    Field(
        "exporter",
        pa.string(),
        True,
        False,
        "Exporter address or sensor name (NetFlow source, Zeek node, capture host).",
    ),
    Field(
        "observation_point",
        pa.string(),
        True,
        False,
        "Observation domain / interface / capture file inside the exporter.",
    ),
    Field(
        "app_label",
        pa.string(),
        True,
        False,
        "Application label given by the source (nDPI protocol, Zeek service).",
    ),
    Field(
        "server_name",
        pa.string(),
        True,
        False,
        "Server name seen in the flow: TLS/QUIC SNI or HTTP Host.",
    ),
    Field("dns_query", pa.string(), True, False, "DNS query name carried by this flow."),
    Field(
        "source_format",
        pa.string(),
        False,
        False,
        "Reader that produced the record (zeek-conn, nfcapd, pcap, csv …).",
    ),
    Field(
        "source_id",
        pa.string(),
        False,
        False,
        "Content hash (sha256, 16 hex) of the ingested file; key into the catalog.",
    ),
    # --- enrichment (schema 2): derived from reference data valid at ts_start -------------
    Field(
        "src_country",
        pa.string(),
        True,
        False,
        "ISO 3166 country of src_addr (geolocation snapshot valid at ts_start).",
    ),
    Field("dst_country", pa.string(), True, False, "ISO 3166 country of dst_addr."),
    Field("src_asn", pa.uint32(), True, False, "Origin AS of src_addr (null when unknown)."),
    Field("dst_asn", pa.uint32(), True, False, "Origin AS of dst_addr."),
    Field("src_as_org", pa.string(), True, False, "Organisation of src_addr's network or AS."),
    Field("dst_as_org", pa.string(), True, False, "Organisation of dst_addr's network or AS."),
    Field(
        "service",
        pa.string(),
        True,
        False,
        "Service the flow belongs to (facebook, minexmr, tor …), from the taxonomy.",
    ),
    Field(
        "category",
        pa.string(),
        True,
        False,
        "Category (social.western, crypto.mining, anonymizer.tor …; 'unclassified').",
    ),
    Field(
        "confidence",
        pa.float32(),
        True,
        False,
        "Confidence of service/category, 0–1, by the rule that made it.",
    ),
    Field(
        "evidence",
        pa.string(),
        True,
        False,
        "What made the label: the rule, list entry or label (e.g. 'domain dns.google (exact)').",
    ),
    # --- detection (schema 3): what payload or behaviour detectors found -----------------
    Field(
        "coin",
        pa.string(),
        True,
        False,
        "Cryptocurrency of a mining or blockchain flow (ticker: XMR, ZEC, BTC, ETH …).",
    ),
    Field(
        "pool",
        pa.string(),
        True,
        False,
        "Mining pool host named in the flow (Stratum subscribe, HTTP Host) or by indicators.",
    ),
    Field(
        "wallet",
        pa.string(),
        True,
        False,
        "Payout wallet address seen in the payload (Stratum login/authorize), format-checked.",
    ),
    Field(
        "intel",
        pa.string(),
        True,
        False,
        "Reference-data snapshot ids used to enrich this row, ';'-separated.",
    ),
    # --- territory index (schema 4): written by the store from the territory profiles ----
    Field(
        "src_territory",
        pa.string(),
        True,
        False,
        "Watched territory (profile code, e.g. kp) whose prefixes held src_addr at ts_start, "
        "among the built-in profiles the store indexes; null when none. Files written before "
        "schema 4 hold nulls until `rogueflow enrich`.",
    ),
    Field("dst_territory", pa.string(), True, False, "Same for dst_addr."),
)

ENRICHMENT = (
    "src_country", "dst_country", "src_asn", "dst_asn", "src_as_org", "dst_as_org",
    "service", "category", "confidence", "evidence", "coin", "pool", "wallet", "intel",
    "src_territory", "dst_territory",
)  # fmt: skip

FIELD_BY_NAME = {f.name: f for f in FIELDS}
MEASURED = tuple(f.name for f in FIELDS if f.measured)

FLOW_SCHEMA = pa.schema(
    [pa.field(f.name, f.type, nullable=f.nullable) for f in FIELDS],
    metadata={METADATA_KEY: str(SCHEMA_VERSION).encode()},
)

#: String columns with few distinct values per file (enrichment labels, provenance).
#: They travel from the enricher to the store, and sit in the store files, as Arrow
#: dictionaries: rows carry int32 codes, each distinct string is stored once, and the
#: Parquet writer takes the codes as they are instead of hashing every string again.
#: Their logical type is still ``string``: :func:`read_store_file` and every query see
#: strings.
DICTIONARY_COLUMNS = (
    "source_format", "source_id", "src_country", "dst_country", "src_as_org", "dst_as_org",
    "service", "category", "evidence", "coin", "intel", "src_territory", "dst_territory",
)  # fmt: skip
DICTIONARY_TYPE = pa.dictionary(pa.int32(), pa.string())

#: FLOW_SCHEMA as rows are written (see DICTIONARY_COLUMNS).
STORE_SCHEMA = pa.schema(
    [
        pa.field(f.name, DICTIONARY_TYPE if f.name in DICTIONARY_COLUMNS else f.type, f.nullable)
        for f in FIELDS
    ],
    metadata=FLOW_SCHEMA.metadata,
)


def conform(
    table: pa.Table | pa.RecordBatch,
    *,
    source_format: str,
    source_id: str,
) -> pa.Table:
    """Cast a reader's columns to FLOW_SCHEMA, fill defaults, add provenance.

    Missing nullable columns become nulls; missing columns with a default take it;
    a missing required column is a programming error in the reader.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    n = table.num_rows
    cols: list[pa.Array | pa.ChunkedArray] = []
    for f in FIELDS:
        if f.name == "source_format":
            # pa.repeat: a Python list of n strings costs ~1 s per 1M rows
            cols.append(pa.repeat(pa.scalar(source_format, pa.string()), n))
            continue
        if f.name == "source_id":
            cols.append(pa.repeat(pa.scalar(source_id, pa.string()), n))
            continue
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                col = pc.cast(col, f.type)
            if f.default is not None and col.null_count:
                col = pc.fill_null(col, pa.scalar(f.default, f.type))
            cols.append(col)
        elif f.default is not None:
            cols.append(pa.repeat(pa.scalar(f.default, f.type), n))
        elif f.nullable:
            cols.append(pa.nulls(n, f.type))
        else:
            raise KeyError(f"reader produced no {f.name!r} column")
    return pa.Table.from_arrays(cols, schema=FLOW_SCHEMA)


# --- migrations -----------------------------------------------------------------

Migration = Callable[[pa.Table], pa.Table]


def convert_1_to_2(table: pa.Table) -> pa.Table:
    """Schema 2 adds the enrichment columns, empty until the data is (re-)enriched.

    Also used by later steps that only add nullable columns: every missing
    enrichment column of the current schema is added as nulls.
    """
    for name in ENRICHMENT:
        if name not in table.column_names:
            f = FIELD_BY_NAME[name]
            table = table.append_column(pa.field(name, f.type), pa.nulls(table.num_rows, f.type))
    return table.select([f.name for f in FIELDS]).replace_schema_metadata(FLOW_SCHEMA.metadata)


def convert_2_to_3(table: pa.Table) -> pa.Table:
    """Schema 3 adds the detection columns coin, pool and wallet (null in older data)."""
    return convert_1_to_2(table)


def convert_3_to_4(table: pa.Table) -> pa.Table:
    """Schema 4 adds src_territory and dst_territory, null (and not claimed by the file's
    territory index, so never trusted) until the store writes the file again."""
    return convert_1_to_2(table)


#: the first schema whose files carry the territory index (src_territory, dst_territory)
INDEX_SCHEMA = 4

#: MIGRATIONS[n] converts a table of version n to version n+1.
MIGRATIONS: dict[int, Migration] = {1: convert_1_to_2, 2: convert_2_to_3, 3: convert_3_to_4}


def upgrade(table: pa.Table, version: int) -> pa.Table:
    """Bring a table written with schema ``version`` to SCHEMA_VERSION."""
    if version > SCHEMA_VERSION:
        raise ValueError(
            f"data written by a newer rogueflow (schema {version} > {SCHEMA_VERSION}); "
            "upgrade rogueflow"
        )
    while version < SCHEMA_VERSION:
        table = MIGRATIONS[version](table)
        version += 1
    return table


def markdown() -> str:
    """The schema page of the docs, generated from FIELDS."""
    lines = [
        f"# Canonical flow record (schema version {SCHEMA_VERSION})",
        "",
        "Generated from `rogueflow.schema.FIELDS` by `rogueflow schema --markdown`; do not edit.",
        "",
        "| column | type | null | measured | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in FIELDS:
        lines.append(
            f"| `{f.name}` | {f.type} | {'yes' if f.nullable else 'no'} | "
            f"{'yes' if f.measured else ''} | {f.doc} |"
        )
    lines += [
        "",
        "Columns computed in the `flows` view (not stored): `day` (UTC date of ts_start), "
        "`hour` (the UTC hour ts_start falls in), `src_ip`, `dst_ip` (text), "
        "`community_id` (Community ID v1, seed 0), `source_file`.",
        "",
        "Store files hold each day's flows that touch an indexed territory first, then the "
        "rest, each block by `ts_start`; a file's footer key `rogueflow.territories` names "
        "the territories it indexed with a fingerprint of their dated prefixes. A report "
        "uses `src_territory`/`dst_territory` only when every file it reads indexed its "
        "territory as the profile is now, and tests the prefixes otherwise "
        "(see `rogueflow.enrich.territory`); `rogueflow query` warns on stderr when a "
        "query names them while sources stored before schema 4 remain.",
        "",
    ]
    return "\n".join(lines)
