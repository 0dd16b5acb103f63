"""The Kafka backend (aiokafka): the broker, its group consumers and the admin client.

Aiokafka errors are translated into nativekit errors here and go no further.
Importing this package imports aiokafka..
"""

from nativekit.backends.kafka._admin import KafkaAdmin, TopicNotFound
from nativekit.backends.kafka._broker import KafkaBroker, KafkaGroupConsumer
from nativekit.backends.kafka._client import KafkaProbe, kafka_client_options
from nativekit.backends.kafka._producer import producer_options

__all__ = [
    "kafka_client_options",
    "KafkaAdmin",
    "KafkaBroker",
    "KafkaGroupConsumer",
    "KafkaProbe",
    "producer_options",
    "TopicNotFound",
]
