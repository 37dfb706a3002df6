"""Reads Accord's framed outputs with Confluent's own deserializers.

    python consume.py BOOTSTRAP FORMAT COUNT TOPIC...

FORMAT is `avro` or `protobuf`. Reads every TOPIC from the beginning until COUNT
records are read (or 60 s pass), deserializes each with confluent_kafka's
AvroDeserializer or ProtobufDeserializer, and prints one JSON object per record:
{"topic", "schema_id", "value"}. For Avro, the EnforcedEvent schema is registered in
the in-process mock registry first: it gets id 1, the id the gateway is configured to
carry.
"""

import json
import os
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from produce import SCHEMAS, protobuf_module  # noqa: E402


def plain(v):
    """accord.v1.Value records back to JSON."""
    if isinstance(v, dict) and set(v) == {"value"}:
        return plain(v["value"])
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def main():
    bootstrap, fmt, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    topics = sys.argv[4:]
    registry = SchemaRegistryClient.new_client({"url": "mock://accord-out"})
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroDeserializer

        with open(os.path.join(SCHEMAS, "accord/v1/enforced_event.avsc")) as f:
            schema_id = registry.register_schema("accord-value", Schema(f.read(), "AVRO"))
        assert schema_id == 1, schema_id
        deserializer = AvroDeserializer(registry)
        to_json = lambda v: {k: (x.isoformat() if hasattr(x, "isoformat") else plain(x)) for k, x in v.items()}
    elif fmt == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer
        from google.protobuf import json_format

        pb = protobuf_module()
        deserializer = ProtobufDeserializer(pb.EnforcedEvent, {"use.deprecated.format": False})
        to_json = lambda m: json_format.MessageToDict(m, preserving_proto_field_name=True)
    else:
        sys.exit(f"unknown format {fmt}")

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": str(uuid.uuid4()), "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    n, deadline = 0, time.time() + 60
    while n < count and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is None or m.error():
            continue
        value = deserializer(m.value(), SerializationContext(m.topic(), MessageField.VALUE))
        schema_id = int.from_bytes(m.value()[1:5], "big")
        print(json.dumps({"topic": m.topic(), "schema_id": schema_id, "value": to_json(value)}))
        n += 1
    consumer.close()


if __name__ == "__main__":
    main()
