#!/usr/bin/env python3
"""gala-gopher extend probe for redis servers.

Every period it asks each redis server for INFO and CLIENT LIST, speaking
RESP over a plain TCP socket, and prints records of the tables
`redis_server` and `redis_client` (meta/redis.meta) on stdout:

    |redis_server|<server_ip>|<server_port>|<labels...>|<gauges...>|
    |redis_client|<server_ip>|<server_port>|<client_ip>|<labels...>|<gauges...>|

The servers are given with `-s host:port[,host:port...]`, or found in /proc
(the TCP ports that processes named redis-server listen on). A password is
read from the environment (REDIS_PASSWORD) or from a file
(`--password-file`), never from the command line.

A server that refuses the connection or answers something that is not RESP
gives one line on stderr and a `redis_server` record with up = 0; the probe
tries again at the next period. Python 3 standard library only.
"""

import argparse
import os
import socket
import sys
import time

PROBE_CLIENT_NAME = "gala-gopher-probe"
CONNECT_TIMEOUT = 2.0
IO_TIMEOUT = 3.0
MAX_BULK = 64 * 1024 * 1024


class ProbeError(Exception):
    """A failure talking to one server, reported on one line."""


# ---------------------------------------------------------------- RESP -----


class Resp:
    """A minimal RESP2 client over one TCP connection."""

    def __init__(self, host, port):
        self.where = "%s:%d" % (host, port)
        try:
            self.sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        except OSError as e:
            raise ProbeError("cannot connect to redis at %s: %s" % (self.where, e.strerror or e))
        self.sock.settimeout(IO_TIMEOUT)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def command(self, *args):
        """Sends one command and returns its reply (an error reply raises)."""
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        try:
            self.sock.sendall(b"".join(out))
            reply = self._reply()
        except OSError as e:
            raise ProbeError("redis at %s: %s during %s" % (self.where, e.strerror or e, args[0]))
        if isinstance(reply, RespError):
            raise ProbeError("redis at %s answered %s with an error: %s" % (self.where, args[0], reply))
        return reply

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ProbeError("redis at %s closed the connection" % self.where)
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2:]
                return line
            if len(self.buf) > 65536:
                raise ProbeError("redis at %s sent a line longer than 64 KiB without CRLF: not RESP" % self.where)
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data, tail, self.buf = self.buf[:n], self.buf[n:n + 2], self.buf[n + 2:]
        if tail != b"\r\n":
            raise ProbeError("redis at %s sent a bulk string not ended by CRLF: not RESP" % self.where)
        return data

    def _int(self, raw, what):
        try:
            return int(raw)
        except ValueError:
            raise ProbeError("redis at %s sent a bad %s %r: not RESP" % (self.where, what, raw[:40]))

    def _reply(self, depth=0):
        line = self._line()
        if not line:
            raise ProbeError("redis at %s sent an empty line: not RESP" % self.where)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return self._int(rest, "integer")
        if kind == b"$":
            n = self._int(rest, "bulk length")
            if n < 0:
                return None
            if n > MAX_BULK:
                raise ProbeError("redis at %s announced a %d-byte reply: refused" % (self.where, n))
            return self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = self._int(rest, "array length")
            if n < 0:
                return None
            if depth > 8 or n > 1000000:
                raise ProbeError("redis at %s sent an array too deep or too long" % self.where)
            return [self._reply(depth + 1) for _ in range(n)]
        raise ProbeError(
            "redis at %s sent %r where a RESP reply was expected (is it a redis server?)"
            % (self.where, line[:40].decode("latin-1"))
        )


class RespError(str):
    """An error reply (`-ERR ...`)."""


# ------------------------------------------------------------ parsing ------


def parse_info(text):
    """INFO text -> {field: value string}, plus `db<N>` keyspace lines."""
    info = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        info[k] = v
    return info


def keyspace_keys(info):
    """Total keys over the `dbN:keys=..,expires=..` lines."""
    total = 0
    for k, v in info.items():
        if k.startswith("db") and k[2:].isdigit():
            for part in v.split(","):
                name, _, val = part.partition("=")
                if name == "keys" and val.isdigit():
                    total += int(val)
    return total


def parse_client_list(text):
    """CLIENT LIST text -> list of {field: value} (one per connection)."""
    clients = []
    for line in text.splitlines():
        c = {}
        for part in line.split(" "):
            k, sep, v = part.partition("=")
            if sep:
                c[k] = v
        if c:
            clients.append(c)
    return clients


def client_ip(addr):
    """`ip:port`, `[v6]:port` or a unix socket path -> the client's ip."""
    if not addr:
        return "unknown"
    if addr.startswith("/"):
        return "unix"
    host, _, _ = addr.rpartition(":")
    host = host.strip("[]")
    if host.startswith("::ffff:") and host.count(".") == 3:
        host = host[len("::ffff:"):]
    return host or "unknown"


def num(v):
    """A numeric INFO value as printed, or '' (null) when absent/bad."""
    if v is None:
        return ""
    try:
        float(v)
    except ValueError:
        return ""
    return v


def clean(v):
    """A label value safe in a record: no '|' and no line breaks."""
    return str(v).replace("|", "/").replace("\n", " ").replace("\r", " ")


# ------------------------------------------------------------ records ------

SERVER_GAUGES = [
    # (field in INFO, position in the record follows meta/redis.meta)
    "connected_clients",
    "blocked_clients",
    "used_memory",
    "used_memory_rss",
    "mem_fragmentation_ratio",
    "instantaneous_ops_per_sec",
    "connected_slaves",
    "rdb_changes_since_last_save",
    "uptime_in_seconds",
]
SERVER_COUNTERS = [
    "total_connections_received",
    "total_commands_processed",
    "keyspace_hits",
    "keyspace_misses",
    "evicted_keys",
    "expired_keys",
    "rejected_connections",
]
SERVER_LABELS = [
    "redis_version",
    "role",
    "master_link_status",
    "rdb_last_bgsave_status",
    "aof_enabled",
    "aof_last_write_status",
]


def server_record(host, port, info):
    vals = ["redis_server", host, str(port)]
    vals += [clean(info.get(k, "")) for k in SERVER_LABELS]
    vals.append("1")
    vals += [num(info.get(k)) for k in SERVER_GAUGES]
    vals.append(str(keyspace_keys(info)))
    vals += [num(info.get(k)) for k in SERVER_COUNTERS]
    return "|" + "|".join(vals) + "|"


def down_record(host, port):
    n = len(SERVER_LABELS) + 1 + len(SERVER_GAUGES) + 1 + len(SERVER_COUNTERS)
    vals = ["redis_server", host, str(port)] + [""] * n
    vals[3 + len(SERVER_LABELS)] = "0"
    return "|" + "|".join(vals) + "|"


def client_records(host, port, clients, own_id):
    """One record per client ip: connections, blocked ones, names, commands."""
    per_ip = {}
    for c in clients:
        if own_id is not None and c.get("id") == str(own_id):
            continue
        ip = client_ip(c.get("addr", ""))
        e = per_ip.setdefault(ip, {"n": 0, "blocked": 0, "idle": 0, "mem": 0, "names": set(), "cmds": set()})
        e["n"] += 1
        if "b" in c.get("flags", ""):
            e["blocked"] += 1
        try:
            e["idle"] = max(e["idle"], int(c.get("idle", "0")))
        except ValueError:
            pass
        try:
            e["mem"] += int(c.get("tot-mem", "0"))
        except ValueError:
            pass
        if c.get("name"):
            e["names"].add(c["name"])
        if c.get("cmd") and c["cmd"] != "NULL":
            e["cmds"].add(c["cmd"])
    out = []
    for ip in sorted(per_ip):
        e = per_ip[ip]
        vals = [
            "redis_client",
            host,
            str(port),
            clean(ip),
            clean(",".join(sorted(e["names"]))[:200]),
            clean(",".join(sorted(e["cmds"]))[:200]),
            str(e["n"]),
            str(e["blocked"]),
            str(e["idle"]),
            str(e["mem"]),
        ]
        out.append("|" + "|".join(vals) + "|")
    return out


def collect(host, port, user, password):
    """All records of one server; raises ProbeError."""
    conn = Resp(host, port)
    try:
        if password is not None:
            if user:
                conn.command("AUTH", user, password)
            else:
                conn.command("AUTH", password)
        conn.command("CLIENT", "SETNAME", PROBE_CLIENT_NAME)
        own_id = conn.command("CLIENT", "ID")
        info_text = conn.command("INFO")
        clients_text = conn.command("CLIENT", "LIST")
    finally:
        conn.close()
    if not isinstance(info_text, str) or not isinstance(clients_text, str):
        raise ProbeError("redis at %s:%d answered INFO or CLIENT LIST with something other than text" % (host, port))
    info = parse_info(info_text)
    if "redis_version" not in info:
        raise ProbeError("redis at %s:%d answered INFO without redis_version: not a redis server?" % (host, port))
    return [server_record(host, port, info)] + client_records(host, port, parse_client_list(clients_text), own_id)


# ---------------------------------------------------------- discovery ------


def listening_inodes():
    """{inode: (ip, port)} of the TCP sockets in LISTEN state."""
    found = {}
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            if len(p) < 10 or p[3] != "0A":
                continue
            ip_hex, _, port_hex = p[1].partition(":")
            try:
                port = int(port_hex, 16)
                raw = bytes.fromhex(ip_hex)
            except ValueError:
                continue
            if v6:
                # four little-endian 32-bit words
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                ip = socket.inet_ntop(socket.AF_INET6, raw)
                if ip.startswith("::ffff:"):
                    ip = ip[len("::ffff:"):]
            else:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            found[p[9]] = (ip, port)
    return found


def discover():
    """(host, port) of every TCP port a redis-server process listens on."""
    inodes = listening_inodes()
    found = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
            if comm != "redis-server":
                continue
            fds = os.listdir("/proc/%s/fd" % pid)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink("/proc/%s/fd/%s" % (pid, fd))
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                ip, port = inodes[target[8:-1]]
                if ip in ("0.0.0.0", "::"):
                    ip = "127.0.0.1"
                found.add((ip, port))
    # one address per port: a server listening on 127.0.0.1 and ::1 is one server
    per_port = {}
    for ip, port in sorted(found):
        per_port.setdefault(port, ip)
    return sorted((ip, port) for port, ip in per_port.items())


# --------------------------------------------------------------- main ------


def parse_servers(text):
    servers = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bad server %r in --servers: expected host:port" % item)
        servers.append((host, int(port)))
    return servers


def read_password(args):
    if args.password_file:
        try:
            with open(args.password_file) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise ValueError("cannot read --password-file %s: %s" % (args.password_file, e.strerror or e))
        if not lines or not lines[0]:
            raise ValueError("--password-file %s: the first line must be the password" % args.password_file)
        return lines[0]
    return os.environ.get("REDIS_PASSWORD") or None


def log(msg):
    sys.stderr.write("redis_probe: %s\n" % msg)
    sys.stderr.flush()


class Errors:
    """Error lines per target: a new error is logged at once, the same one
    again at most every REPEAT seconds, and the recovery once."""

    REPEAT = 60.0

    def __init__(self):
        self.last = {}

    def failed(self, target, msg):
        now = time.monotonic()
        prev = self.last.get(target)
        if prev is None or prev[0] != msg or now - prev[1] >= self.REPEAT:
            log(msg)
            self.last[target] = (msg, now)

    def ok(self, target):
        if self.last.pop(target, None) is not None:
            log("%s: answering again" % target)


def main():
    ap = argparse.ArgumentParser(description="gala-gopher extend probe: redis servers and their clients")
    ap.add_argument("-t", "--period", type=float, default=5.0, help="seconds between collections (default 5)")
    ap.add_argument("-s", "--servers", default="", help="host:port[,host:port...]; default: find redis-server in /proc")
    ap.add_argument("--user", default=os.environ.get("REDIS_USER", ""), help="ACL user for AUTH (or REDIS_USER)")
    ap.add_argument("--password-file", default="", help="file whose first line is the password (else REDIS_PASSWORD)")
    ap.add_argument("--once", action="store_true", help="collect once and exit")
    args = ap.parse_args()
    if args.period <= 0:
        ap.error("-t must be > 0")
    try:
        fixed = parse_servers(args.servers)
        password = read_password(args)
    except ValueError as e:
        ap.error(str(e))

    errors = Errors()
    while True:
        started = time.monotonic()
        servers = fixed or discover()
        if not servers:
            errors.failed("discovery", "no redis-server listening on a TCP port was found in /proc (give -s host:port)")
        lines = []
        for host, port in servers:
            target = "redis at %s:%d" % (host, port)
            try:
                lines += collect(host, port, args.user, password)
                errors.ok(target)
            except ProbeError as e:
                errors.failed(target, str(e))
                lines.append(down_record(host, port))
            except Exception as e:  # never die on a server's answer
                errors.failed(target, "%s: unexpected %s: %s" % (target, type(e).__name__, e))
                lines.append(down_record(host, port))
        if lines:
            try:
                sys.stdout.write("\n".join(lines) + "\n")
                sys.stdout.flush()
            except BrokenPipeError:
                return 0
        if args.once:
            return 0
        time.sleep(max(0.0, args.period - (time.monotonic() - started)))


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
