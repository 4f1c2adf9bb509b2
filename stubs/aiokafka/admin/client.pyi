import asyncio
from ssl import SSLContext

from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin.config_resource import ConfigResource
from aiokafka.admin.new_topic import NewTopic
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.protocol.api import Response
from aiokafka.structs import OffsetAndMetadata, TopicPartition

class AIOKafkaAdminClient:
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        bootstrap_servers: str | list[str] = "localhost",
        client_id: str = ...,
        request_timeout_ms: int = 40000,
        connections_max_idle_ms: int = 540000,
        retry_backoff_ms: int = 100,
        metadata_max_age_ms: int = 300000,
        security_protocol: str = "PLAINTEXT",
        ssl_context: SSLContext | None = None,
        api_version: None = None,
        sasl_mechanism: str = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        sasl_kerberos_service_name: str = "kafka",
        sasl_kerberos_domain_name: str | None = None,
        sasl_oauth_token_provider: AbstractTokenProvider | None = None,
    ) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def create_topics(
        self, new_topics: list[NewTopic], timeout_ms: int | None = None, validate_only: bool = False
    ) -> Response: ...
    async def delete_topics(self, topics: list[str], timeout_ms: int | None = None) -> Response: ...
    async def list_topics(self) -> list[str]: ...
    async def delete_records(
        self, records_to_delete: dict[TopicPartition, RecordsToDelete], timeout_ms: int | None = None
    ) -> dict[TopicPartition, int]: ...
    async def describe_configs(
        self, config_resources: list[ConfigResource], include_synonyms: bool = False
    ) -> list[Response]: ...
    async def alter_configs(self, config_resources: list[ConfigResource]) -> list[Response]: ...
    async def describe_consumer_groups(
        self, group_ids: list[str], group_coordinator_id: int | None = None, include_authorized_operations: bool = False
    ) -> list[Response]: ...
    async def list_consumer_group_offsets(
        self, group_id: str, group_coordinator_id: int | None = None, partitions: list[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata]: ...
