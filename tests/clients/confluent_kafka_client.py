#!/usr/bin/env python3
"""The client matrix's confluent-kafka (Python, librdkafka inside the wheel) counting client.

    metadata --bootstrap B                       `broker ID HOST:PORT` per broker, by id
    produce  --bootstrap B --topic T --count N [--pause-at K]
                                                 acks=all; at K prints `paused at K` and waits for a
                                                 line on stdin; ends with `produced N errors E`
    consume  --bootstrap B --topic T --group G --count N
                                                 a consumer group; ends with
                                                 `consumed N distinct D duplicates X`
    share    --bootstrap B --topic T --group G --count N
                                                 the same as a share-group member (KIP-932)
Every message is `message-I`; a consumer counts them by I.
"""
import sys
import time

from common import args, counted, pause, report_consumed, report_produced

import confluent_kafka
import confluent_kafka.admin


def base(a):
    return {"bootstrap.servers": a.bootstrap, "socket.timeout.ms": 10000, "log_level": 3}


def metadata(a):
    md = confluent_kafka.admin.AdminClient(base(a)).list_topics(timeout=a.timeout)
    for b in sorted(md.brokers.values(), key=lambda b: b.id):
        print(f"broker {b.id} {b.host}:{b.port}")


def produce(a):
    errors = []
    p = confluent_kafka.Producer({**base(a), "acks": "all", "enable.idempotence": True,
                                  "message.timeout.ms": a.timeout * 1000})

    def sent(err, _msg):
        if err is not None:
            errors.append(err)

    for i in range(a.count):
        if i == a.pause_at:
            p.flush(a.timeout)
            pause(i)
        while True:
            try:
                p.produce(a.topic, value=f"message-{i}".encode(), on_delivery=sent)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    left = p.flush(a.timeout)
    report_produced(a.count - left, len(errors) + left)


def consume(a):
    c = confluent_kafka.Consumer({**base(a), "group.id": a.group, "auto.offset.reset": "earliest",
                                  "enable.auto.commit": True})
    c.subscribe([a.topic])
    seen = counted()
    deadline = time.monotonic() + a.timeout
    while seen.total < a.count and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            seen.add(m.value())
    c.close()
    report_consumed(seen)


def share(a):
    c = confluent_kafka.ShareConsumer({**base(a), "group.id": a.group})
    c.subscribe([a.topic])
    seen = counted()
    deadline = time.monotonic() + a.timeout
    while seen.total < a.count and time.monotonic() < deadline:
        for m in c.poll(0.5) or []:
            if m.error() is None:
                seen.add(m.value())
    # Implicit acknowledgement: what a poll returned is accepted by the next poll or this commit.
    c.commit_sync(a.timeout)
    c.close()
    report_consumed(seen)


if __name__ == "__main__":
    a = args(sys.argv[1:])
    {"metadata": metadata, "produce": produce, "consume": consume, "share": share}[a.command](a)
