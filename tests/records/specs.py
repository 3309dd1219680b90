"""Registry of the record specs (tests/records/specs_early.py, specs_late.py); see oracle.py."""

from __future__ import annotations

from records.common import HESSIANS
from records.oracle import RecordSpec
from records.specs_early import PR374, RECORD_0319, RECORD_0321, RECORD_0322
from records.specs_late import RECORD_0323, RECORD_0329, RECORD_0409

__all__ = ["HESSIANS", "SPECS"]

SPECS: dict[str, RecordSpec] = {s.key: s for s in (RECORD_0319, RECORD_0321, RECORD_0322, PR374, RECORD_0323,
                                                   RECORD_0329, RECORD_0409)}
