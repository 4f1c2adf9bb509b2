import asyncio
from collections.abc import Iterable
from ssl import SSLContext

from aiokafka.abc import AbstractTokenProvider
from aiokafka.cluster import ClusterMetadata

__all__ = ["AIOKafkaClient"]

class AIOKafkaClient:
    cluster: ClusterMetadata
    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        bootstrap_servers: str | list[str] = "localhost",
        client_id: str = ...,
        metadata_max_age_ms: int = 300000,
        request_timeout_ms: int = 40000,
        retry_backoff_ms: int = 100,
        ssl_context: SSLContext | None = None,
        security_protocol: str = "PLAINTEXT",
        api_version: str | None = None,
        connections_max_idle_ms: int = 540000,
        sasl_mechanism: str = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        sasl_kerberos_service_name: str = "kafka",
        sasl_kerberos_domain_name: str | None = None,
        sasl_oauth_token_provider: AbstractTokenProvider | None = None,
    ) -> None: ...
    async def close(self) -> None: ...
    async def bootstrap(self) -> None: ...
    # Private: one metadata request for ``topics`` (all topics when empty or None), its answer written into
    # ``cluster_metadata``; False when no broker answered (or the answer named no broker).
    async def _metadata_update(self, cluster_metadata: ClusterMetadata, topics: Iterable[str] | None) -> bool: ...
    # Wakes the background metadata task; the future (shielded) is True once the refresh succeeded.
    def force_metadata_update(self) -> asyncio.Future[bool]: ...
    async def fetch_all_metadata(self) -> ClusterMetadata: ...
    def add_topic(self, topic: str) -> asyncio.Future[bool]: ...
    def set_topics(self, topics: Iterable[str]) -> asyncio.Future[bool]: ...
