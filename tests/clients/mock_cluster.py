#!/usr/bin/env python3
"""A librdkafka mock cluster of the librdkafka inside the confluent-kafka wheel (2.16), whose mock
serves share groups (ShareGroupHeartbeat, ShareFetch v1, ShareAcknowledge v1), which the 2.12 build
inside the `rdkafka` crate does not. confluent-kafka has no Python API for the mock cluster, so this
calls the wheel's own librdkafka through ctypes, as rdkafka's `mocking` module does from Rust.

Prints `bootstrap HOST:PORT,...` once the cluster is up, then obeys one command a line on stdin,
answering `ok` (or `error ...`) to each, and exits when stdin closes:

    topic NAME PARTITIONS REPLICAS      create a topic
    leader TOPIC PARTITION BROKER       move a partition's leader
    down BROKER / up BROKER             take a broker down or bring it back
"""
import argparse
import ctypes
import glob
import os
import sys

import confluent_kafka


def librdkafka():
    libs = os.path.join(os.path.dirname(confluent_kafka.__file__), os.pardir, "confluent_kafka.libs")
    found = glob.glob(os.path.join(libs, "librdkafka*.so*"))
    if not found:
        sys.exit("no librdkafka in the confluent-kafka wheel at " + libs)
    lib = ctypes.CDLL(found[0])
    p, i32, s = ctypes.c_void_p, ctypes.c_int32, ctypes.c_char_p
    for name, res, args in [
        ("rd_kafka_conf_new", p, []),
        ("rd_kafka_conf_set", ctypes.c_int, [p, s, s, s, ctypes.c_size_t]),
        ("rd_kafka_new", p, [ctypes.c_int, p, s, ctypes.c_size_t]),
        ("rd_kafka_mock_cluster_new", p, [p, ctypes.c_int]),
        ("rd_kafka_mock_cluster_bootstraps", s, [p]),
        ("rd_kafka_mock_broker_set_rack", ctypes.c_int, [p, i32, s]),
        ("rd_kafka_mock_topic_create", ctypes.c_int, [p, s, ctypes.c_int, ctypes.c_int]),
        ("rd_kafka_mock_partition_set_leader", ctypes.c_int, [p, s, i32, i32]),
        ("rd_kafka_mock_broker_set_down", ctypes.c_int, [p, i32]),
        ("rd_kafka_mock_broker_set_up", ctypes.c_int, [p, i32]),
        ("rd_kafka_mock_sharegroup_set_auto_offset_reset", None, [p, ctypes.c_int]),
    ]:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--racks", default="us-west-2a,us-west-2c,us-west-2b")
    args = ap.parse_args()
    lib = librdkafka()
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    # The handle only hosts the cluster; it never connects anywhere.
    lib.rd_kafka_conf_set(conf, b"log_level", b"3", err, 512)
    rk = lib.rd_kafka_new(0, conf, err, 512)
    if not rk:
        sys.exit("rd_kafka_new: " + err.value.decode())
    cluster = lib.rd_kafka_mock_cluster_new(rk, args.brokers)
    if not cluster:
        sys.exit("rd_kafka_mock_cluster_new failed")
    for node, rack in enumerate(args.racks.split(",")[: args.brokers], start=1):
        lib.rd_kafka_mock_broker_set_rack(cluster, node, rack.encode())
    # Share groups start from the earliest record, so a consumer sees what was produced before it.
    lib.rd_kafka_mock_sharegroup_set_auto_offset_reset(cluster, 1)
    print("bootstrap " + lib.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "topic":
            code = lib.rd_kafka_mock_topic_create(cluster, words[1].encode(), int(words[2]), int(words[3]))
        elif words[0] == "leader":
            code = lib.rd_kafka_mock_partition_set_leader(cluster, words[1].encode(), int(words[2]), int(words[3]))
        elif words[0] == "down":
            code = lib.rd_kafka_mock_broker_set_down(cluster, int(words[1]))
        elif words[0] == "up":
            code = lib.rd_kafka_mock_broker_set_up(cluster, int(words[1]))
        else:
            print("error unknown command " + words[0], flush=True)
            continue
        print("ok" if code == 0 else "error %d" % code, flush=True)
    # The process exits without destroying the handle: the cluster's threads end with it.
    os._exit(0)


if __name__ == "__main__":
    main()
