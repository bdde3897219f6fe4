#!/usr/bin/env python3
"""A SASL listener in front of a broker that has none (librdkafka's mock cluster), for the tests.

    sasl_front.py --user NAME:PASSWORD ... [--lifetime-ms N] [--legacy] LISTEN_PORT=BROKER_HOST:BROKER_PORT ...

It plays the SASL part of a Kafka broker's listener (Kafka's SaslServerAuthenticator), with
scramp's SCRAM server and a PLAIN check against --user, and forwards everything else to the broker
behind it, answers in request order:
- before a connection authenticates it may send ApiVersions (forwarded) and SaslHandshake v0/v1;
  any other request closes it, as a Kafka SASL listener does;
- after SaslHandshake v1 the tokens come in SaslAuthenticate v0-v2 requests; after v0 they are bare
  size-prefixed frames, answered with bare frames. With --legacy, ApiVersions offers SaslHandshake
  v0 and no SaslAuthenticate, as a Kafka 0.10 broker does, which is when clients send v0;
- a failed authentication is answered with error 58 (v1) and the connection closes (v0: closes);
- SaslHandshake and SaslAuthenticate on an authenticated connection re-authenticate (KIP-368);
  with --lifetime-ms the answer carries session_lifetime_ms, and a request after the session
  expired closes the connection.

Prints one line per event on stdout: `listening PORT`, `auth ok USER MECHANISM vN [reauth]`,
`auth failed USER MECHANISM`, `refused API_KEY vN before authentication`, `expired`.
"""

import argparse
import asyncio
import struct
import sys
import time

from scramp import ScramException, ScramMechanism

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM = 58, 33
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def say(line):
    print(line, flush=True)


def framed(payload):
    return struct.pack(">i", len(payload)) + payload


async def read_frame(reader):
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


def uvarint(value):
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_uvarint(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def body_at(payload, flexible):
    """Where a request's body starts: after api key, version, correlation id, client id and, in
    header v2, tagged fields."""
    (client_id_len,) = struct.unpack(">h", payload[8:10])
    at = 10 + max(client_id_len, 0)
    if flexible:
        count, at = read_uvarint(payload, at)
        for _ in range(count):
            _, at = read_uvarint(payload, at)
            size, at = read_uvarint(payload, at)
            at += size
    return at


def skip_tags(data, at):
    count, at = read_uvarint(data, at)
    for _ in range(count):
        _, at = read_uvarint(data, at)
        size, at = read_uvarint(data, at)
        at += size
    return at


def with_sasl_apis(payload, version, legacy):
    """The broker's ApiVersions answer (correlation id and body), naming SaslHandshake v0-v1 and
    SaslAuthenticate v0-v2 as this listener serves them (legacy: SaslHandshake v0 only): a client
    only authenticates with a broker that offers them."""
    body = payload[4:]
    (error,) = struct.unpack(">h", body[:2])
    if error != 0:
        return payload
    flexible = version >= 3
    if flexible:
        count, at = read_uvarint(body, 2)
        count -= 1
    else:
        (count,) = struct.unpack(">i", body[2:6])
        at = 6
    entries = []
    for _ in range(count):
        key, low, high = struct.unpack(">hhh", body[at : at + 6])
        end = skip_tags(body, at + 6) if flexible else at + 6
        entries.append((key, body[at:end]))
        at = end
    kept = [raw for key, raw in entries if key not in (SASL_HANDSHAKE, SASL_AUTHENTICATE)]
    tags = b"\0" if flexible else b""
    if legacy:
        kept += [struct.pack(">hhh", SASL_HANDSHAKE, 0, 0) + tags]
    else:
        kept += [struct.pack(">hhh", SASL_HANDSHAKE, 0, 1) + tags, struct.pack(">hhh", SASL_AUTHENTICATE, 0, 2) + tags]
    size = uvarint(len(kept) + 1) if flexible else struct.pack(">i", len(kept))
    return payload[:4] + body[:2] + size + b"".join(kept) + body[at:]


class Mechanism:
    """One server-side SASL exchange; `step` takes a client token and returns the answer, or
    raises ValueError when authentication fails."""

    def __init__(self, name, users):
        self.name, self.users, self.user, self.done = name, users, None, False
        self.scram = None

    def step(self, token):
        if self.name == "PLAIN":
            _, user, password = token.split(b"\0")
            self.user = user.decode()
            if self.users.get(self.user) != password.decode():
                raise ValueError("invalid credentials")
            self.done = True
            return b""
        if self.scram is None:
            first = token.decode()
            self.user = first.split("n=", 1)[1].split(",", 1)[0]
            if self.user not in self.users:
                raise ValueError("unknown user")
            mechanism = ScramMechanism(self.name)
            info = mechanism.make_auth_info(self.users[self.user], iteration_count=4096)
            self.scram = mechanism.make_server(lambda _user: info)
            self.scram.set_client_first(first)
            return self.scram.get_server_first().encode()
        try:
            self.scram.set_client_final(token.decode())
        except ScramException as e:
            raise ValueError(str(e)) from e
        self.done = True
        return self.scram.get_server_final().encode()


class Connection:
    def __init__(self, args, reader, writer, broker):
        self.args, self.reader, self.writer, self.broker = args, reader, writer, broker
        self.authenticated, self.expires = False, None
        self.mechanism, self.raw, self.handshake_version = None, False, 1
        self.answers = asyncio.Queue()  # in request order: None = the broker's next answer

    async def run(self):
        host, port = self.broker.rsplit(":", 1)
        broker_reader, self.broker_writer = await asyncio.open_connection(host, int(port))
        relay = asyncio.create_task(self.relay(broker_reader))
        try:
            while True:
                payload = await read_frame(self.reader)
                if not await self.handle(payload):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        await self.answers.put(b"")  # closes after what was answered
        await relay
        self.broker_writer.close()

    async def relay(self, broker_reader):
        try:
            while True:
                item = await self.answers.get()
                if item is None:
                    self.writer.write(framed(await read_frame(broker_reader)))
                elif isinstance(item, int):
                    answer = await read_frame(broker_reader)
                    self.writer.write(framed(with_sasl_apis(answer, item, self.args.legacy)))
                elif item == b"":
                    break
                else:
                    self.writer.write(item)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.writer.close()

    def forward(self, payload):
        self.broker_writer.write(framed(payload))
        self.answers.put_nowait(None)

    def answer(self, correlation_id, body, header_tags=False):
        header = struct.pack(">i", correlation_id) + (b"\0" if header_tags else b"")
        self.answers.put_nowait(framed(header + body))

    def authenticate(self, token):
        """Steps the exchange; returns (answer, error message)."""
        try:
            answer = self.mechanism.step(token)
        except (ValueError, ScramException) as e:
            say(f"auth failed {self.mechanism.user} {self.mechanism.name}")
            return None, f"Authentication failed: {e}"
        if self.mechanism.done:
            kind = "reauth" if self.authenticated else ""
            say(f"auth ok {self.mechanism.user} {self.mechanism.name} v{self.handshake_version} {kind}".rstrip())
            self.authenticated = True
            if self.args.lifetime_ms:
                self.expires = time.monotonic() + self.args.lifetime_ms / 1000
        return answer, None

    async def handle(self, payload):
        if self.raw:
            answer, error = self.authenticate(payload)
            if error:
                return False
            self.raw = not self.mechanism.done
            self.answers.put_nowait(framed(answer))
            return True
        api_key, version, correlation_id = struct.unpack(">hhi", payload[:8])
        if api_key == API_VERSIONS:
            self.broker_writer.write(framed(payload))
            self.answers.put_nowait(version)
        elif api_key == SASL_HANDSHAKE:
            at = body_at(payload, False)
            (size,) = struct.unpack(">h", payload[at : at + 2])
            name = payload[at + 2 : at + 2 + size].decode()
            error = 0 if name in MECHANISMS else UNSUPPORTED_SASL_MECHANISM
            body = struct.pack(">hi", error, len(MECHANISMS))
            for m in MECHANISMS:
                body += struct.pack(">h", len(m)) + m.encode()
            self.answer(correlation_id, body)
            if error:
                return False
            self.mechanism, self.handshake_version = Mechanism(name, self.args.users), version
            self.raw = version == 0
        elif api_key == SASL_AUTHENTICATE:
            flexible = version >= 2
            at = body_at(payload, flexible)
            if flexible:
                size, at = read_uvarint(payload, at)
                token = payload[at : at + size - 1]
            else:
                (size,) = struct.unpack(">i", payload[at : at + 4])
                token = payload[at + 4 : at + 4 + size]
            answer, error = self.authenticate(token)
            code, message = (SASL_AUTHENTICATION_FAILED, error) if error else (0, None)
            answer = answer or b""
            if flexible:
                text = uvarint(0) if message is None else uvarint(len(message) + 1) + message.encode()
                body = struct.pack(">h", code) + text + uvarint(len(answer) + 1) + answer
            else:
                text = struct.pack(">h", -1) if message is None else struct.pack(">h", len(message)) + message.encode()
                body = struct.pack(">h", code) + text + struct.pack(">i", len(answer)) + answer
            if version >= 1:
                body += struct.pack(">q", self.args.lifetime_ms if not error else 0)
            if flexible:
                body += b"\0"
            self.answer(correlation_id, body, header_tags=flexible)
            if error:
                return False
        elif not self.authenticated:
            say(f"refused {api_key} v{version} before authentication")
            return False
        elif self.expires is not None and time.monotonic() > self.expires:
            say("expired")
            return False
        else:
            self.forward(payload)
        return True


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--user", action="append", default=[], help="NAME:PASSWORD")
    parser.add_argument("--lifetime-ms", type=int, default=0)
    parser.add_argument("--legacy", action="store_true", help="offer SaslHandshake v0 only, as Kafka 0.10 did")
    parser.add_argument("pairs", nargs="+", help="LISTEN_PORT=BROKER_HOST:BROKER_PORT")
    args = parser.parse_args()
    args.users = dict(user.split(":", 1) for user in args.user)
    servers = []
    for pair in args.pairs:
        port, broker = pair.split("=", 1)

        async def serve(reader, writer, broker=broker):
            await Connection(args, reader, writer, broker).run()

        servers.append(await asyncio.start_server(serve, "127.0.0.1", int(port)))
        say(f"listening {port}")
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
