"""Market-data stream processor: raw Kafka topics in, enriched and signal topics out, exactly once."""

__version__ = "0.1.0"
