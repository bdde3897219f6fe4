#!/usr/bin/env python3
"""The client matrix's kafka-python (pure Python) counting client; the commands and output of
confluent_kafka_client.py (no share groups: kafka-python has no share consumer)."""
import sys
import time

from common import args, counted, pause, report_consumed, report_produced

import kafka


def metadata(a):
    c = kafka.KafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=10000)
    for b in sorted(c.describe_cluster()["brokers"], key=lambda b: b["node_id"]):
        print(f"broker {b['node_id']} {b['host']}:{b['port']}")
    c.close()


def produce(a):
    p = kafka.KafkaProducer(bootstrap_servers=a.bootstrap, acks="all", retries=2**31 - 1,
                            max_in_flight_requests_per_connection=1, request_timeout_ms=10000,
                            max_block_ms=20000)
    futures, errors = [], 0
    for i in range(a.count):
        if i == a.pause_at:
            p.flush(a.timeout)
            pause(i)
        futures.append(p.send(a.topic, f"message-{i}".encode()))
    p.flush(a.timeout)
    for f in futures:
        try:
            f.get(timeout=a.timeout)
        except Exception:  # a delivery failure, counted; the test asserts there are none
            errors += 1
    p.close()
    report_produced(a.count - errors, errors)


def consume(a):
    c = kafka.KafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group,
                            auto_offset_reset="earliest", enable_auto_commit=True)
    seen = counted()
    deadline = time.monotonic() + a.timeout
    while seen.total < a.count and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=500).values():
            for r in records:
                seen.add(r.value)
    c.close()
    report_consumed(seen)


if __name__ == "__main__":
    a = args(sys.argv[1:])
    {"metadata": metadata, "produce": produce, "consume": consume}[a.command](a)
