"""tcp_link test client: python3 client.py HOST PORT REQ RESP SHORT KEEP

Opens SHORT connections one after the other (send REQ bytes, read RESP
bytes, close), then KEEP connections that it holds open. Prints "done",
waits until its stdin is closed, closes the kept connections and prints
"closed".
"""
import socket
import sys

host, port, req, resp, short, keep = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:7])


def exchange():
    c = socket.create_connection((host, port), timeout=60)
    c.sendall(b"c" * req)
    got = 0
    while got < resp:
        b = c.recv(65536)
        if not b:
            raise SystemExit("server closed early")
        got += len(b)
    return c


for _ in range(short):
    exchange().close()
kept = [exchange() for _ in range(keep)]
print("done", flush=True)
sys.stdin.read()
for c in kept:
    c.close()
print("closed", flush=True)
