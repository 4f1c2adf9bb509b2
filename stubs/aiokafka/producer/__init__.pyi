from .producer import AIOKafkaProducer as AIOKafkaProducer

__all__ = ["AIOKafkaProducer"]
