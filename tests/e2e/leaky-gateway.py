#!/usr/bin/env python3
"""A deliberately leaky "gateway" for testing the testbed: it forwards the bootstrap port to the first
upstream bootstrap server byte for byte and rewrites nothing, as a plain TCP proxy would. Through it a
client is handed the brokers' own addresses; private-link.sh must then fail with LEAK.

usage (as private-link.sh's E2E_SERVE): leaky-gateway.py --config FILE [--set listeners.G.bind=IP]...
"""
import asyncio
import sys
import tomllib


def parse(argv):
    config, binds = None, {}
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            config = next(it)
        elif arg == "--set":
            key, value = next(it).split("=", 1)
            if key.endswith(".bind"):
                binds[key.split(".")[1]] = value
    with open(config, "rb") as f:
        return tomllib.load(f), binds


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def main():
    config, binds = parse(sys.argv[1:])
    servers = config["upstream"]["bootstrap_servers"]
    servers = servers.split(",") if isinstance(servers, str) else servers
    host, port = servers[0].strip().rsplit(":", 1)
    name, group = next(iter(config["listeners"].items()))

    async def handle(client_reader, client_writer):
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer))

    server = await asyncio.start_server(handle, binds.get(name, "0.0.0.0"), group["bootstrap_port"])
    await server.serve_forever()


asyncio.run(main())
