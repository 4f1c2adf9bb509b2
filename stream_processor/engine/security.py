"""Connection options every Kafka client of the worker shares: bootstrap servers, TLS and SASL.

``client_options(kafka)`` turns :class:`~stream_processor.engine.settings.KafkaSettings` into the keyword arguments
of aiokafka's consumer, producer, admin client and ``AIOKafkaClient``. Secrets (the SASL password, the private
key's password) are read from the environment or from their files when the options are built, never logged and
never printed by ``check-config``.

``auth_failure(exc)`` tells an authentication or TLS failure (a wrong password, an unknown user, a certificate the
broker or the client refuses) from a broker that is merely unreachable, so that ``/health`` can say which one it
is instead of retrying in silence.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from .kafka_internals import create_conn, create_ssl_context

if TYPE_CHECKING:
    from pydantic import SecretStr

    from .settings import KafkaSettings

_AUTH_ERRORS = (SaslAuthenticationFailed, AuthenticationFailedError, AuthenticationMethodNotSupported,
                UnsupportedSaslMechanismError, IllegalSaslStateError)
_ACL_ERRORS = (TopicAuthorizationFailedError, GroupAuthorizationFailedError, ClusterAuthorizationFailedError,
               TransactionalIdAuthorizationFailed)


def _secret(value: SecretStr | None, path: Path | None) -> str | None:
    """The secret's text: from ``value`` (a pydantic SecretStr) or the file at ``path`` (trailing newline dropped)."""
    if value is not None:
        return value.get_secret_value()
    if path is not None:
        return path.read_text().rstrip("\r\n")
    return None


class TLSFileError(ValueError):
    """A TLS file of the settings cannot be used; ``key`` names its setting (``ssl_cafile``, ...)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext:
    """The TLS context of ``kafka``: the CA bundle (default: the system's), the client certificate for mTLS,
    hostname checks as ``ssl_check_hostname`` says (the certificate chain is always verified).

    Raises:
        TLSFileError: a file cannot be read, is not PEM, or the key does not match the certificate.
    """
    try:
        context = create_ssl_context(cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None)
    except (OSError, ssl.SSLError) as exc:
        raise TLSFileError("ssl_cafile", f"not a PEM CA bundle: {exc}") from None
    if kafka.ssl_cafile is None:
        context.load_default_certs()
    if kafka.ssl_certfile is not None:
        try:
            context.load_cert_chain(str(kafka.ssl_certfile), str(kafka.ssl_keyfile),
                                    _secret(kafka.ssl_key_password, kafka.ssl_key_password_file))
        except (OSError, ssl.SSLError) as exc:
            raise TLSFileError("ssl_certfile", f"cannot load the client certificate and key: {exc}") from None
    context.check_hostname = kafka.ssl_check_hostname
    return context


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client: ``bootstrap_servers`` and, when configured, TLS and SASL."""
    options: dict[str, Any] = {"bootstrap_servers": kafka.bootstrap_servers}
    if kafka.security_protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = kafka.security_protocol
    if kafka.security_protocol.endswith("SSL"):
        options["ssl_context"] = ssl_context(kafka)
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = _secret(kafka.sasl_password, kafka.sasl_password_file)
    return options


def auth_failure(exc: BaseException, kafka: KafkaSettings) -> str | None:
    """A one-line explanation when ``exc`` (or its cause) is an authentication or TLS failure, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _AUTH_ERRORS):
            return (f"authentication failed: the broker refused {kafka.sasl_mechanism} for user "
                    f"{kafka.sasl_username!r} ({type(current).__name__}: {current}); check the user and password")
        if isinstance(current, _ACL_ERRORS):
            return (f"not authorized: the broker's ACLs refuse user {kafka.sasl_username!r} "
                    f"({type(current).__name__}: {current})")
        if isinstance(current, ssl.SSLCertVerificationError):
            return (f"TLS failed: the broker's certificate is not trusted ({current.verify_message}); check "
                    "kafka.ssl_cafile and kafka.ssl_check_hostname")
        if isinstance(current, ssl.SSLError):
            return f"TLS failed: {current}; check the certificates and kafka.security_protocol"
        current = current.__cause__ or current.__context__
    return None


async def diagnose(kafka: KafkaSettings, timeout_s: float = 5.0) -> str | None:
    """Connect to the first bootstrap server with the configured TLS and SASL and say why it fails, if it is an
    authentication or TLS failure (None otherwise, and when it succeeds).

    aiokafka's bootstrap reports every failure as "Unable to bootstrap"; one direct connection keeps the cause.
    """
    host, _, port = kafka.bootstrap_servers[0].rpartition(":")
    options = client_options(kafka)
    options.pop("bootstrap_servers")
    try:
        conn = await create_conn(host.strip("[]"), int(port), request_timeout_ms=int(timeout_s * 1000), **options)
    except Exception as exc:  # noqa: BLE001 - classified below; anything else is "unreachable"
        return auth_failure(exc, kafka)
    conn.close()
    return None
