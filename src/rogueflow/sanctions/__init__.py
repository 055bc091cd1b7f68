"""Sanctions lists: OFAC SDN parsing, per-chain address checks, snapshots, TagPacks.

- :mod:`.ofac_xml` — the advanced XML, streamed through defusedxml;
- :mod:`.ofac_csv` — the legacy ``sdn.csv`` (addresses inside the remarks);
- :mod:`.addresses` — validation and normalisation per chain (:func:`check`);
- :mod:`.model` — :class:`SanctionsList` (per-asset address sets, screening);
- :mod:`.snapshots` — list issues as dated workspace snapshots, and diffs;
- :mod:`.tagpack` — GraphSense TagPacks in and out.

>>> lst = read_list("sdn_advanced.xml.bz2")  # doctest: +SKIP
>>> lst.screen("0x098b716b8aaf21512996dc57eb0615e2383e2f96").match  # doctest: +SKIP
True
"""

from rogueflow.sanctions.addresses import Checked, check
from rogueflow.sanctions.model import SanctionsList, ScreenResult, read_list

__all__ = ["Checked", "SanctionsList", "ScreenResult", "check", "read_list"]
