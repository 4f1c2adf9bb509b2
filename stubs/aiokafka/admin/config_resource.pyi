from enum import IntEnum

class ConfigResourceType(IntEnum):
    BROKER = 4
    TOPIC = 2

class ConfigResource:
    resource_type: ConfigResourceType
    name: str
    # None for a key: describe it (describe_configs) or reset it to the default (alter_configs).
    configs: dict[str, str | None] | None
    def __init__(
        self, resource_type: ConfigResourceType | str, name: str, configs: dict[str, str | None] | None = None
    ) -> None: ...
