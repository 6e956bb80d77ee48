"""haproxy_link test client: python3 client.py NAME MODE HOST PORT COUNT

Names its process NAME, prints "waiting", and on each "go" line of stdin
sends COUNT requests to HOST:PORT, then prints "done <ok>" (<ok> requests
answered 200 by a backend). Exits when stdin closes.
  http  one keep-alive connection, COUNT requests on it (haproxy's HTTP
        mode makes one stream per request)
  tcp   COUNT connections, one request each (Connection: close; haproxy's
        TCP mode makes one stream per connection)
"""
import http.client
import sys

name, mode, host, port, count = sys.argv[1:6]
port, count = int(port), int(count)
with open("/proc/self/comm", "w") as f:
    f.write(name)


def burst():
    ok = 0
    if mode == "http":
        c = http.client.HTTPConnection(host, port, timeout=10)
        for _ in range(count):
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            ok += r.status == 200
        c.close()
    else:
        for _ in range(count):
            c = http.client.HTTPConnection(host, port, timeout=10)
            c.request("GET", "/", headers={"Connection": "close"})
            r = c.getresponse()
            r.read()
            ok += r.status == 200
            c.close()
    return ok


print("waiting", flush=True)
for line in sys.stdin:
    if line.strip() == "go":
        print("done %d" % burst(), flush=True)
