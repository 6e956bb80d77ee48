"""nginx_link test backend: python3 backend.py NAME HOST PORT

Names its process NAME (its comm), serves HTTP/1.0 on HOST:PORT (each
answer's body is NAME), prints "ready". The same bytes reach it through
nginx's http proxy and through its stream proxy.
"""
import http.server
import sys

name, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open("/proc/self/comm", "w") as f:
    f.write(name)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        body = (name + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    request_queue_size = 512
    daemon_threads = True


srv = Server((host, port), Handler)
print("ready", flush=True)
srv.serve_forever()
