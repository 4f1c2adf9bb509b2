# Private module of aiokafka: the transactional producer's state machine.
from enum import Enum

class TransactionState(Enum):
    UNINITIALIZED = 1
    READY = 2
    IN_TRANSACTION = 3
    COMMITTING_TRANSACTION = 4
    ABORTING_TRANSACTION = 5
    ABORTABLE_ERROR = 6
    FATAL_ERROR = 7
    @classmethod
    def is_transition_valid(cls, source: TransactionState, target: TransactionState) -> bool: ...

class TransactionManager:
    transactional_id: str | None
    transaction_timeout_ms: int
    state: TransactionState
    def __init__(self, transactional_id: str | None, transaction_timeout_ms: int) -> None: ...
    def is_in_transaction(self) -> bool: ...
    def has_pid(self) -> bool: ...
