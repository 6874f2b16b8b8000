"""The guest side: the KBS client (:mod:`veritee.attester.kbs_client`), the Linux
configfs-tsm interface every TEE driver shares (:mod:`veritee.attester.tsm`), and one room
per TEE with its collectors (``veritee/attester/<room>``), named by the platform
descriptors."""

from veritee.attester.errors import CollectorError, CollectorUnavailableError

__all__ = ["CollectorError", "CollectorUnavailableError"]
