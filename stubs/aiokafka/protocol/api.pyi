import abc
from typing import Any

from .struct import Struct

class Response(Struct, metaclass=abc.ABCMeta):
    @property
    @abc.abstractmethod
    def API_KEY(self) -> int: ...
    @property
    @abc.abstractmethod
    def API_VERSION(self) -> int: ...
    def to_object(self) -> dict[str, Any]: ...
    # The fields of the response's SCHEMA (``resources``, ``groups``, ...), set as attributes by Struct.__init__;
    # their names and shapes depend on the response type and version.
    def __getattr__(self, name: str) -> Any: ...
