"""tcp_link test server: python3 server.py HOST PORT REQ RESP

Accepts connections forever; on each one reads REQ bytes, answers RESP
bytes, then waits for the client to close and closes too. Prints "ready"
once listening.
"""
import socket
import sys
import threading

host, port, req, resp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
s = socket.socket(fam)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
s.listen(1024)
print("ready", flush=True)


def serve(c):
    got = 0
    while got < req:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
    c.sendall(b"s" * resp)
    while c.recv(65536):
        pass
    c.close()


while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
