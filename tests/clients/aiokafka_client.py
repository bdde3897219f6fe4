#!/usr/bin/env python3
"""The client matrix's aiokafka (asyncio) counting client; the commands and output of
confluent_kafka_client.py (no share groups: aiokafka has no share consumer)."""
import asyncio
import sys
import time

from common import args, counted, pause, report_consumed, report_produced

import aiokafka
import aiokafka.admin


async def metadata(a):
    c = aiokafka.admin.AIOKafkaAdminClient(bootstrap_servers=a.bootstrap, request_timeout_ms=a.timeout * 1000)
    await c.start()
    cluster = await c.describe_cluster()
    for b in sorted(cluster["brokers"], key=lambda b: b["node_id"]):
        print(f"broker {b['node_id']} {b['host']}:{b['port']}")
    await c.close()


async def produce(a):
    p = aiokafka.AIOKafkaProducer(bootstrap_servers=a.bootstrap, acks="all", enable_idempotence=True,
                                  request_timeout_ms=10000)
    await p.start()
    sent, errors = [], 0
    for i in range(a.count):
        if i == a.pause_at:
            await p.flush()
            await asyncio.to_thread(pause, i)
        sent.append(await p.send(a.topic, f"message-{i}".encode()))
    for f in sent:
        try:
            await f
        except Exception:  # a delivery failure, counted; the test asserts there are none
            errors += 1
    await p.stop()
    report_produced(a.count - errors, errors)


async def consume(a):
    c = aiokafka.AIOKafkaConsumer(a.topic, bootstrap_servers=a.bootstrap, group_id=a.group,
                                  auto_offset_reset="earliest", enable_auto_commit=True)
    await c.start()
    seen = counted()
    deadline = time.monotonic() + a.timeout
    while seen.total < a.count and time.monotonic() < deadline:
        for records in (await c.getmany(timeout_ms=500)).values():
            for r in records:
                seen.add(r.value)
    await c.stop()
    report_consumed(seen)


if __name__ == "__main__":
    a = args(sys.argv[1:])
    asyncio.run({"metadata": metadata, "produce": produce, "consume": consume}[a.command](a))
