from .client import AIOKafkaAdminClient as AIOKafkaAdminClient
from .new_topic import NewTopic as NewTopic

__all__ = ["AIOKafkaAdminClient", "NewTopic"]
