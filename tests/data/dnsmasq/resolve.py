#!/usr/bin/env python3
"""Resolves a name COUNT times through the system resolver (glibc, per
/etc/resolv.conf), IPv4 only so that each call is one A query. Prints its
pid and each answer."""
import os
import socket
import sys

name, count = sys.argv[1], int(sys.argv[2])
print(f"pid {os.getpid()}", flush=True)
for _ in range(count):
    infos = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_DGRAM)
    print("answer", infos[0][4][0], flush=True)
