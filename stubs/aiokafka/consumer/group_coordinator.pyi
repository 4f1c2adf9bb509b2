# Private module of aiokafka: the consumer's group membership (created by AIOKafkaConsumer.start()).
from abc import ABCMeta
from collections.abc import Sequence

from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor

class BaseCoordinator:
    def __init__(
        self, client: AIOKafkaClient, subscription: SubscriptionState, *, exclude_internal_topics: bool = True
    ) -> None: ...

class NoGroupCoordinator(BaseCoordinator):
    # The consumer has no group_id: no group, no generation, nothing to rejoin.
    async def close(self) -> None: ...

class GroupCoordinator(BaseCoordinator):
    generation: int  # OffsetCommitRequest.DEFAULT_GENERATION_ID (-1) until the group is joined
    member_id: str
    group_id: str
    coordinator_id: int | None
    def __init__(
        self,
        client: AIOKafkaClient,
        subscription: SubscriptionState,
        *,
        group_id: str = "aiokafka-default-group",
        group_instance_id: str | None = None,
        session_timeout_ms: int = 10000,
        heartbeat_interval_ms: int = 3000,
        retry_backoff_ms: int = 100,
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        # ``| tuple[ABCMeta]``: the runtime default is (RoundRobinPartitionAssignor,) and stubtest sees only
        # its metaclass.
        assignors: Sequence[type[AbstractPartitionAssignor]] | tuple[ABCMeta] = ...,
        exclude_internal_topics: bool = True,
        max_poll_interval_ms: int = 300000,
        rebalance_timeout_ms: int = 30000,
    ) -> None: ...
    async def close(self) -> None: ...
    def request_rejoin(self) -> None: ...
    def reset_generation(self) -> None: ...
