"""gala-spider end-to-end helper processes: python3 node.py MODE NAME ARGS..

Every mode first names its process NAME (its comm, what tcp_link reports).
  server NAME HOST PORT                 echo server; prints "ready"
  proxy  NAME HOST PORT UPHOST UPPORT   relays every connection to the
                                        upstream (an L4 stand-in for nginx);
                                        prints "ready"
  client NAME HOST:PORT [HOST:PORT..]   prints "waiting", waits for a "go"
                                        line on stdin, then keeps one
                                        connection per target open and
                                        exchanges a message on each every
                                        0.2 s; prints "connected" after the
                                        first round; exits when stdin closes
"""
import select
import socket
import sys
import threading
import time

mode, name = sys.argv[1], sys.argv[2]
with open("/proc/self/comm", "w") as f:
    f.write(name)


def listen(host, port):
    s = socket.socket(socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(128)
    return s


def pump(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    for c in (src, dst):
        try:
            c.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def echo(c):
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
    except OSError:
        pass
    c.close()


if mode == "server":
    s = listen(sys.argv[3], sys.argv[4])
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
elif mode == "proxy":
    s = listen(sys.argv[3], sys.argv[4])
    up = (sys.argv[5], int(sys.argv[6]))
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        u = socket.create_connection(up, timeout=30)
        threading.Thread(target=pump, args=(c, u), daemon=True).start()
        threading.Thread(target=pump, args=(u, c), daemon=True).start()
elif mode == "client":
    targets = [(h, int(p)) for h, p in (t.rsplit(":", 1) for t in sys.argv[3:])]
    print("waiting", flush=True)
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)
    conns = [socket.create_connection(t, timeout=30) for t in targets]
    first = True
    while True:
        for c in conns:
            c.sendall(b"ping\n")
            got = b""
            while len(got) < 5:
                b = c.recv(64)
                if not b:
                    sys.exit("peer closed")
                got += b
        if first:
            print("connected", flush=True)
            first = False
        r, _, _ = select.select([sys.stdin], [], [], 0.2)
        if r and not sys.stdin.readline():
            break
    for c in conns:
        c.close()
    time.sleep(0.1)
else:
    sys.exit(f"unknown mode {mode}")
