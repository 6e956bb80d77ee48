#!/usr/bin/env python3
"""Test helper: clients of a redis server holding their connections.

usage: redis_clients.py <port> <workers>

Opens <workers> connections named worker-<i>; each SETs key-<i>, GETs it (a
keyspace hit) and GETs missing-<i> (a miss). One more connection, named
blocker, blocks in BLPOP on a list nobody pushes to. Prints `ready` when all
that is done, then holds the connections until stdin closes.
"""
import socket
import sys


def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def reply(sock):
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("redis closed the connection")
        data += chunk
    return data


def main():
    port, workers = int(sys.argv[1]), int(sys.argv[2])
    conns = []
    for i in range(workers):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        for c in (
            cmd("CLIENT", "SETNAME", "worker-%d" % i),
            cmd("SET", "key-%d" % i, "v%d" % i),
            cmd("GET", "key-%d" % i),
            cmd("GET", "missing-%d" % i),
        ):
            s.sendall(c)
            reply(s)
        conns.append(s)
    b = socket.create_connection(("127.0.0.1", port), timeout=5)
    b.sendall(cmd("CLIENT", "SETNAME", "blocker"))
    reply(b)
    b.sendall(cmd("BLPOP", "never-pushed", "0"))
    conns.append(b)
    print("ready", flush=True)
    sys.stdin.read()
    for s in conns:
        s.close()


if __name__ == "__main__":
    main()
