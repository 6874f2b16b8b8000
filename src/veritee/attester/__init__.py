"""The guest side: evidence collectors (configfs-tsm, /dev/sev-guest, emulated) and the KBS
client (:mod:`veritee.attester.kbs_client`)."""

from veritee.attester.errors import CollectorError, CollectorUnavailableError
from veritee.attester.snp import (
    EmulatedSnpCollector,
    HardwareSnpCollector,
    SnpCollected,
    SnpCollector,
    collect_snp,
)

__all__ = [
    "CollectorError",
    "CollectorUnavailableError",
    "EmulatedSnpCollector",
    "HardwareSnpCollector",
    "SnpCollected",
    "SnpCollector",
    "collect_snp",
]
