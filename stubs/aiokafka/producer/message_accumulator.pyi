from collections.abc import Sequence
from typing import Any

class BatchBuilder:
    # Made by AIOKafkaProducer.create_batch(); filled with append(), handed to send_batch().
    def __init__(
        self,
        batch_size: int,
        compression_type: int,
        *,
        is_transactional: int = 0,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> None: ...
    # ``timestamp`` in ms since the epoch (None: now). Returns None when the batch is full (it is then closed),
    # else the record's metadata (offset in the batch, size, timestamp).
    def append(
        self,
        *,
        timestamp: int | None,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = [],
    ) -> Any | None: ...
    def close(self) -> None: ...
    def size(self) -> int: ...
    def record_count(self) -> int: ...
    def closed(self) -> bool: ...
