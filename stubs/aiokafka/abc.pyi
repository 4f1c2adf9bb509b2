import abc
from collections.abc import Awaitable

from aiokafka.structs import TopicPartition

__all__ = ["AbstractTokenProvider", "ConsumerRebalanceListener"]

class ConsumerRebalanceListener(abc.ABC):
    # aiokafka awaits the result when it is awaitable: either a plain method or an ``async def``.
    @abc.abstractmethod
    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> Awaitable[None] | None: ...
    @abc.abstractmethod
    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> Awaitable[None] | None: ...

class AbstractTokenProvider(abc.ABC):
    @abc.abstractmethod
    async def token(self) -> str: ...
    def extensions(self) -> dict[str, str]: ...
