"""tcp_link test helper that holds many idle connections.

python3 hold.py server HOST PORT N: listens (prints "ready"), accepts N
connections without threads (prints "held"), holds them until stdin closes.
python3 hold.py client HOST PORT N: opens N connections (prints "held"),
holds them until stdin closes.
"""
import socket
import sys

mode, host, port, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
socks = []
if mode == "server":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(4096)
    print("ready", flush=True)
    while len(socks) < n:
        socks.append(s.accept()[0])
else:
    socks = [socket.create_connection((host, port), timeout=60) for _ in range(n)]
print("held", flush=True)
sys.stdin.read()
