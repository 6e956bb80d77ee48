#!/usr/bin/env python3
"""Test helper: a minimal AMQP 0-9-1 client holding one connection.

usage: amqp_client.py <port> <queue> <messages> <local port>

Logs in as guest/guest on vhost /, opens channel 1, declares <queue>,
publishes <messages> messages to it and waits until the broker counts them
(a passive declare returns the queue's message count). Prints
`ready` and holds the connection until stdin closes.
"""
import socket
import struct
import sys

FRAME_END = b"\xce"


def shortstr(s):
    b = s.encode()
    return struct.pack("B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def table(d):
    body = b"".join(shortstr(k) + b"S" + longstr(v.encode()) for k, v in d.items())
    return longstr(body)


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + FRAME_END


def method(channel, cls, mth, args=b""):
    return frame(1, channel, struct.pack(">HH", cls, mth) + args)


class Conn:
    def __init__(self, port, local_port):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=20, source_address=("127.0.0.1", local_port)
        )
        self.buf = b""

    def exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("the broker closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def wait_method(self, cls, mth):
        """Reads frames until method cls.mth; returns its arguments."""
        while True:
            kind, _channel, size = struct.unpack(">BHI", self.exact(7))
            payload = self.exact(size)
            if self.exact(1) != FRAME_END:
                raise SystemExit("bad frame end")
            if kind != 1:
                continue
            got = struct.unpack(">HH", payload[:4])
            if got == (10, 50) or got == (20, 40):
                raise SystemExit("the broker closed: %r" % payload[4:200])
            if got == (cls, mth):
                return payload[4:]

    def send(self, data):
        self.sock.sendall(data)


def main():
    port, queue, count, local_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    c = Conn(port, local_port)
    c.send(b"AMQP\x00\x00\x09\x01")
    c.wait_method(10, 10)  # Connection.Start
    props = table({"product": "gala-gopher-test", "connection_name": "middleware-test"})
    c.send(method(0, 10, 11, props + shortstr("PLAIN") + longstr(b"\x00guest\x00guest") + shortstr("en_US")))
    tune = c.wait_method(10, 30)
    channel_max, frame_max, _hb = struct.unpack(">HIH", tune[:8])
    c.send(method(0, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))  # no heartbeats
    c.send(method(0, 10, 40, shortstr("/") + shortstr("") + b"\x00"))
    c.wait_method(10, 41)
    c.send(method(1, 20, 10, shortstr("")))
    c.wait_method(20, 11)
    c.send(method(1, 50, 10, struct.pack(">H", 0) + shortstr(queue) + b"\x00" + struct.pack(">I", 0)))
    c.wait_method(50, 11)
    for i in range(count):
        body = ("message %d" % i).encode()
        c.send(
            method(1, 60, 40, struct.pack(">H", 0) + shortstr("") + shortstr(queue) + b"\x00")
            + frame(2, 1, struct.pack(">HHQH", 60, 0, len(body), 0))
            + frame(3, 1, body)
        )
    while True:
        c.send(method(1, 50, 10, struct.pack(">H", 0) + shortstr(queue) + b"\x01" + struct.pack(">I", 0)))
        ok = c.wait_method(50, 11)
        qlen = ok[0]
        n = struct.unpack(">I", ok[1 + qlen:5 + qlen])[0]
        if n >= count:
            break
    print("ready", flush=True)
    c.sock.settimeout(None)
    sys.stdin.read()
    c.sock.close()


if __name__ == "__main__":
    main()
