#!/usr/bin/env python3
"""What CI can check of docker/compose.yaml without a Docker engine.

The file parses; the brokers are the guides' 3-node KRaft cluster with only INTERNAL and CONTROLLER
listeners and no TiDB Cloud pattern in advertised.listeners; the gateway's configuration passes the
gateway's own validation; and the client's private hosts map exactly the names the gateway will
advertise for those brokers (computed by `kafka-gateway validate`) to the gateway's address, on a
network where no broker is; and the gateway's health check, in the image and in the compose file, is
`kafka-gateway health`, a client of the admin endpoint's /readyz, which the configuration turns on.

usage: check-compose.py KAFKA_GATEWAY_BINARY
"""
import os
import subprocess
import sys
import tomllib

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DOCKER = os.path.join(HERE, "..", "..", "docker")


def fail(message):
    print(f"compose check FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def main(binary):
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]

    brokers = {}
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if "KAFKA_NODE_ID" not in env:
            continue
        listeners, advertised = env["KAFKA_LISTENERS"], env["KAFKA_ADVERTISED_LISTENERS"]
        if "EXTERNAL" in listeners or "EXTERNAL" in advertised:
            fail(f"{name} has an EXTERNAL listener; the gateway is there to make it unnecessary")
        if "tidbcloud" in advertised:
            fail(f"{name} advertises a TiDB Cloud name: {advertised}")
        if set(listeners.split(",")) != {"INTERNAL://0.0.0.0:9092", "CONTROLLER://0.0.0.0:29092"}:
            fail(f"{name} listeners: {listeners}")
        if env["KAFKA_PROCESS_ROLES"] != "broker,controller":
            fail(f"{name} is not a KRaft broker and controller")
        brokers[int(env["KAFKA_NODE_ID"])] = (name, env["KAFKA_BROKER_RACK"])
    if sorted(brokers) != [1, 2, 3]:
        fail(f"expected brokers 1, 2, 3, found {sorted(brokers)}")

    gateway = services["gateway"]
    link_ip = gateway["networks"]["link"]["ipv4_address"]
    if "./gateway.toml:/etc/kafka-gateway/gateway.toml:ro" not in gateway["volumes"]:
        fail("the gateway does not mount ./gateway.toml where the image expects it")

    config = os.path.join(DOCKER, "gateway.toml")
    args = [binary, "validate", "--config", config]
    for node, (_, rack) in sorted(brokers.items()):
        args += ["--broker", f"{node}:{rack}"]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"kafka-gateway validate refused docker/gateway.toml:\n{out.stdout}{out.stderr}")
    # The table's rows; each group's `access` line and `ok:` follow it.
    rows = [line.split() for line in out.stdout.splitlines()[1:] if line and not line.startswith(("ok", "access "))]
    advertised = {row[5].rsplit(":", 1)[0] for row in rows}

    client = services["client"]
    if client["networks"] != ["link"]:
        fail(f"the client must be only on the link network, not {client['networks']}")
    for name, _ in brokers.values():
        if "link" in services[name]["networks"]:
            fail(f"{name} is reachable from the client's network")
    hosts = dict(entry.rsplit(":", 1) for entry in client["extra_hosts"])
    if set(hosts) != advertised:
        fail(f"client hosts {sorted(hosts)} != advertised names {sorted(advertised)}")
    if set(hosts.values()) != {link_ip}:
        fail(f"client hosts must all point at the gateway ({link_ip}): {hosts}")

    with open(config, "rb") as f:
        gateway_toml = tomllib.load(f)
    upstream = gateway_toml["upstream"]["bootstrap_servers"]
    admin_bind = gateway_toml.get("admin", {}).get("bind", "127.0.0.1:9644")
    if not admin_bind:
        fail("docker/gateway.toml turns the admin endpoint off; the health check asks its /readyz")
    health = ["/usr/local/bin/kafka-gateway", "health", "--config", "/etc/kafka-gateway/gateway.toml"]
    if gateway.get("healthcheck", {}).get("test") != ["CMD"] + health:
        fail(f"the gateway's compose health check is not `kafka-gateway health`: {gateway.get('healthcheck')}")
    with open(os.path.join(DOCKER, "Dockerfile")) as f:
        dockerfile = f.read()
    if 'CMD ["' + '", "'.join(health) + '"]' not in dockerfile:
        fail("the image's HEALTHCHECK is not `kafka-gateway health`")
    if client.get("depends_on", {}).get("gateway", {}).get("condition") != "service_healthy":
        fail("the client must wait for a ready gateway")
    for server in upstream:
        if server.split(":")[0] not in services:
            fail(f"upstream {server} is not a compose service")

    print(f"compose ok: brokers {sorted(brokers)}, the client resolves {len(hosts)} names to the gateway at {link_ip}, "
          f"health from /readyz on {admin_bind}")


if __name__ == "__main__":
    main(sys.argv[1])
