from .client import AIOKafkaAdminClient as AIOKafkaAdminClient
from .new_topic import NewTopic as NewTopic
from .records_to_delete import RecordsToDelete as RecordsToDelete

__all__ = ["AIOKafkaAdminClient", "NewTopic", "RecordsToDelete"]
