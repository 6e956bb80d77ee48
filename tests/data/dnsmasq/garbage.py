#!/usr/bin/env python3
"""Sends datagrams that are not DNS to SERVER:53: a header with a
malformed question, a 2-byte datagram, a question name that runs past the
data and 32 random bytes with the query bit clear."""
import os
import socket
import sys

server = sys.argv[1]
bad = [
    bytes.fromhex("1234 0000 0001 0000 0000 0000") + b"\xff\xfegarbage",
    b"xx",
    bytes.fromhex("1234 0100 0001 0000 0000 0000") + b"\x3fabc",
    bytes.fromhex("1234 0000") + os.urandom(4) + b"\x00\x00\x00\x00" + b"\xc0" + os.urandom(19),
]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for d in bad:
    s.sendto(d, (server, 53))
print("sent", len(bad), flush=True)
