"""haproxy_link test backend: python3 backend.py NAME HOST PORT

Names its process NAME (its comm, what tcp_link reports), serves HTTP/1.1
with keep-alive on HOST:PORT (every GET answers 200 with the body NAME),
prints "ready", and runs until killed.
"""
import http.server
import sys

name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open("/proc/self/comm", "w") as f:
    f.write(name)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without this, Nagle holds the body
    # for the client's delayed ACK (40 ms a request).
    disable_nagle_algorithm = True

    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


srv = http.server.ThreadingHTTPServer((host, port), Handler)
srv.daemon_threads = True
print("ready", flush=True)
srv.serve_forever()
