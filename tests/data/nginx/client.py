"""nginx_link test client: python3 client.py NAME RESULT_FILE

Names its process NAME (its comm), prints "waiting", then for each line
"get HOST PORT N" on stdin makes N requests, each on a new TCP connection
(HTTP/1.0 GET, read to the close), writes "OK BACKEND=COUNT BACKEND=COUNT.."
(by the body each answer carries) to RESULT_FILE and prints "done".
Exits when stdin closes.
"""
import os
import socket
import sys

name, result = sys.argv[1], sys.argv[2]
with open("/proc/self/comm", "w") as f:
    f.write(name)
print("waiting", flush=True)

for line in sys.stdin:
    parts = line.split()
    if len(parts) != 4 or parts[0] != "get":
        print("bad " + line.strip(), flush=True)
        continue
    host, port, n = parts[1], int(parts[2]), int(parts[3])
    ok, by = 0, {}
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
            s.close()
        except OSError:
            continue
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0] + b" ":
            ok += 1
            who = body.decode(errors="replace").strip()
            by[who] = by.get(who, 0) + 1
    with open(result + ".tmp", "w") as f:
        f.write("%d %s\n" % (ok, " ".join("%s=%d" % kv for kv in sorted(by.items()))))
    os.rename(result + ".tmp", result)
    print("done", flush=True)
