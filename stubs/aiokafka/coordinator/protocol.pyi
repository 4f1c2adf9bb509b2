from typing import Any, ClassVar, NamedTuple

from aiokafka.protocol.struct import Struct
from aiokafka.structs import TopicPartition

class ConsumerProtocolMemberMetadata(Struct):
    version: int
    subscription: list[str]
    user_data: bytes
    SCHEMA: ClassVar[Any]

class ConsumerProtocolMemberAssignment(Struct):
    class Assignment(NamedTuple):
        topic: str
        partitions: list[int]

    version: int
    assignment: list[Assignment]
    user_data: bytes
    SCHEMA: ClassVar[Any]
    def partitions(self) -> list[TopicPartition]: ...
