class NewTopic:
    name: str
    num_partitions: int
    replication_factor: int
    replica_assignments: dict[int, list[int]]
    topic_configs: dict[str, str]
    def __init__(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        replica_assignments: dict[int, list[int]] | None = None,
        topic_configs: dict[str, str] | None = None,
    ) -> None: ...
