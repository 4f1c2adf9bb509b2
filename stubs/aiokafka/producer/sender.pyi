# Private module of aiokafka: the producer's background task that sends batches and drives transactions.
import asyncio
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.producer.transaction_manager import TransactionManager

class Sender:
    def __init__(
        self,
        client: AIOKafkaClient,
        *,
        acks: int,
        txn_manager: TransactionManager | None,
        message_accumulator: Any,
        retry_backoff_ms: int,
        request_timeout_ms: int,
    ) -> None: ...
    # None until AIOKafkaProducer.start() (Sender.start()); it ends with the exception that stopped the producer,
    # ProducerFenced when a newer producer took the transactional.id.
    @property
    def sender_task(self) -> asyncio.Task[None] | None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
