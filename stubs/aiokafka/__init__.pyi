from .abc import ConsumerRebalanceListener as ConsumerRebalanceListener
from .client import AIOKafkaClient as AIOKafkaClient
from .consumer import AIOKafkaConsumer as AIOKafkaConsumer
from .errors import ConsumerStoppedError as ConsumerStoppedError
from .errors import IllegalOperation as IllegalOperation
from .producer import AIOKafkaProducer as AIOKafkaProducer
from .structs import (
    ConsumerRecord as ConsumerRecord,
)
from .structs import (
    OffsetAndMetadata as OffsetAndMetadata,
)
from .structs import (
    OffsetAndTimestamp as OffsetAndTimestamp,
)
from .structs import (
    TopicPartition as TopicPartition,
)

__version__: str

__all__ = [
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaClient",
    "ConsumerRebalanceListener",
    "ConsumerStoppedError",
    "IllegalOperation",
    "ConsumerRecord",
    "TopicPartition",
    "OffsetAndTimestamp",
    "OffsetAndMetadata",
]
