from collections.abc import Sequence

class DefaultPartitioner:
    # A classmethod at runtime: ``DefaultPartitioner()(key, all_partitions, available)``, Java's murmur2 of the key
    # modulo the partition count; a random available partition when the key is None.
    @classmethod
    def __call__(cls, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int: ...

def murmur2(data: bytes) -> int: ...
