"""Errors of the stream processor, under one root."""

from __future__ import annotations


class StreamProcessorError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(StreamProcessorError):
    """The configuration is invalid; the message names the file and the key."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        super().__init__(f"{source}: {key}: {reason}")


class RecordError(StreamProcessorError):
    """An input record cannot be processed; it goes to the dead-letter topic with ``reason``."""

    reason = "invalid"


class DecodeError(RecordError):
    """The record's bytes are not the expected encoding (not JSON, not UTF-8)."""

    reason = "undecodable"


class InvalidRecordError(RecordError):
    """The record decodes but is not a valid market-data message (unknown kind, missing or bad field)."""

    reason = "invalid"


class StateRecordError(StreamProcessorError):
    """A key's state cannot become a changelog record: not encodable (``state_unserializable``) or larger than the
    changelog topic allows (``state_too_large``). The record that made it so is found and dead-lettered."""

    def __init__(self, key: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.reason = reason


class TransactionStateError(StreamProcessorError):
    """An exactly-once checkpoint was used in a state that does not allow the call."""


class StateRestoreError(StreamProcessorError):
    """A changelog snapshot cannot be read by this code (layout changed without a migration) and its store is set
    to fail rather than reset the key."""


class AgentTimeoutError(StreamProcessorError):
    """An agent awaited I/O for longer than its record may take (half of ``kafka.transaction_timeout_ms``): its
    transaction is aborted and retried, as for a broker error."""
