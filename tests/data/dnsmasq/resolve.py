#!/usr/bin/env python3
"""Resolves NAME COUNT times through the system resolver (glibc, per
/etc/resolv.conf). FAMILY "inet" (the default) asks IPv4 only, one A query
per call (glibc connects and sends); "any" asks both, an A and an AAAA
query per call (glibc sends the two with one sendmmsg). Prints its pid and
each answer."""
import os
import socket
import sys

name, count = sys.argv[1], int(sys.argv[2])
family = socket.AF_UNSPEC if sys.argv[3:] == ["any"] else socket.AF_INET
print(f"pid {os.getpid()}", flush=True)
for _ in range(count):
    infos = socket.getaddrinfo(name, None, family, socket.SOCK_DGRAM)
    print("answer", infos[0][4][0], flush=True)
