import asyncio
from collections.abc import Callable
from enum import IntEnum
from ssl import SSLContext

from aiokafka.abc import AbstractTokenProvider

__all__ = ["AIOKafkaConnection", "create_conn"]

class CloseReason(IntEnum):
    CONNECTION_BROKEN = 0
    CONNECTION_TIMEOUT = 1
    OUT_OF_SYNC = 2
    IDLE_DROP = 3
    SHUTDOWN = 4
    AUTH_FAILURE = 5

async def create_conn(
    host: str,
    port: int,
    *,
    client_id: str = "aiokafka",
    request_timeout_ms: int = 40000,
    ssl_context: SSLContext | None = None,
    security_protocol: str = "PLAINTEXT",
    max_idle_ms: int | None = None,
    on_close: Callable[[AIOKafkaConnection, CloseReason], object] | None = None,
    sasl_mechanism: str | None = None,
    sasl_plain_username: str | None = None,
    sasl_plain_password: str | None = None,
    sasl_kerberos_service_name: str = "kafka",
    sasl_kerberos_domain_name: str | None = None,
    sasl_oauth_token_provider: AbstractTokenProvider | None = None,
) -> AIOKafkaConnection: ...

class AIOKafkaConnection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        client_id: str = "aiokafka",
        request_timeout_ms: int = 40000,
        ssl_context: SSLContext | None = None,
        security_protocol: str = "PLAINTEXT",
        max_idle_ms: int | None = None,
        on_close: Callable[[AIOKafkaConnection, CloseReason], object] | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_password: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_kerberos_service_name: str = "kafka",
        sasl_kerberos_domain_name: str | None = None,
        sasl_oauth_token_provider: AbstractTokenProvider | None = None,
    ) -> None: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    def connected(self) -> bool: ...
    def close(self, reason: CloseReason | None = None, exc: BaseException | None = None) -> asyncio.Future[None]: ...
