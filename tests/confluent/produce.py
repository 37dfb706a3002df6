"""Produces events with Confluent's own serializers (the `confluent-kafka` package).

    python produce.py BOOTSTRAP TOPIC FORMAT EVENTS.jsonl

FORMAT is `avro`, `protobuf` or `json` (JSON Schema). Each event of the JSON Lines file
is serialized by confluent_kafka's AvroSerializer, ProtobufSerializer or JSONSerializer
in the Confluent Schema Registry wire format, with the schemas of schemas/accord/v1/,
against confluent_kafka's in-process mock registry (`mock://`): no Schema Registry
server could be installed here. Prints the number of records produced.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SCHEMAS = os.path.join(ROOT, "schemas")


def avro_value(v):
    """JSON to the accord.v1.Value record of the .avsc files."""
    if isinstance(v, dict):
        return {"value": {k: avro_value(x) for k, x in v.items()}}
    if isinstance(v, list):
        return {"value": [avro_value(x) for x in v]}
    return {"value": v}


def to_avro(event, _ctx):
    out = dict(event)
    out.setdefault("device_id", None)
    at = datetime.datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    out["occurred_at"] = at
    attrs = event.get("attributes")
    out["attributes"] = None if attrs is None else {k: avro_value(x) for k, x in attrs.items()}
    return out


def protobuf_module():
    """event.proto compiled for Python with grpc_tools' protoc (PyPI)."""
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp()
    includes = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(["protoc", f"-I{SCHEMAS}", f"-I{includes}", f"--python_out={out}", "accord/v1/event.proto"])
    if rc != 0:
        sys.exit("protoc failed")
    sys.path.insert(0, out)
    from accord.v1 import event_pb2

    return event_pb2


def main():
    bootstrap, topic, fmt, events_file = sys.argv[1:5]
    registry = SchemaRegistryClient.new_client({"url": "mock://accord"})
    if fmt == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer

        with open(os.path.join(SCHEMAS, "accord/v1/sensor_event.avsc")) as f:
            serializer = AvroSerializer(registry, f.read(), to_avro)
    elif fmt == "json":
        from confluent_kafka.schema_registry.json_schema import JSONSerializer

        with open(os.path.join(SCHEMAS, "accord/v1/sensor_event.schema.json")) as f:
            serializer = JSONSerializer(f.read(), registry)
    elif fmt == "protobuf":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
        from google.protobuf import json_format

        pb = protobuf_module()
        serializer = ProtobufSerializer(pb.SensorEvent, registry, {"use.deprecated.format": False})
    else:
        sys.exit(f"unknown format {fmt}")

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    n = 0
    with open(events_file) as f:
        for line in f:
            if not line.strip():
                continue
            event = json.loads(line)
            if fmt == "protobuf":
                event = json_format.ParseDict(event, pb.SensorEvent(), ignore_unknown_fields=True)
            value = serializer(event, SerializationContext(topic, MessageField.VALUE))
            producer.produce(topic, value=value, partition=0)
            n += 1
    if producer.flush(60) != 0:
        sys.exit("not every record was delivered")
    print(n)


if __name__ == "__main__":
    main()
