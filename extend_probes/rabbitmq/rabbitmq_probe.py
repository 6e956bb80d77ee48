#!/usr/bin/env python3
"""gala-gopher extend probe for RabbitMQ.

Every period it reads the RabbitMQ management HTTP API (the
rabbitmq_management plugin) of each configured URL and prints records of the
tables in meta/rabbitmq.meta on stdout:

    rabbitmq_server  the cluster seen through one API: up, object and message totals
    rabbitmq_node    each node: file descriptors, sockets, memory, disk, alarms
    rabbitmq_client  each client connection: peer address, user, vhost, channels, state
    rabbitmq_queue   each queue: messages ready / unacknowledged, consumers

Credentials: RABBITMQ_PROBE_USER and RABBITMQ_PROBE_PASSWORD from the
environment, or `--credentials-file` (one line `user:password`), else
guest:guest (which RabbitMQ accepts only from localhost). Never on the
command line.

An API that cannot be reached, refuses the credentials or answers something
that is not the expected JSON gives one line on stderr naming the URL and a
rabbitmq_server record with up = 0; the probe keeps running and tries again
at the next period. Python 3 standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

TIMEOUT = 5.0
MAX_BODY = 64 * 1024 * 1024


class ProbeError(Exception):
    """A failure with one API, reported on one line."""


def clean(v):
    """A label value safe in a record: no '|' and no line breaks."""
    if v is None:
        return ""
    return str(v).replace("|", "/").replace("\n", " ").replace("\r", " ")


def num(v):
    """A number as printed in a record ('' when absent); booleans are 0/1."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return str(v)
    return ""


def ip_of(host):
    """A peer or listener host as the other tables write addresses."""
    h = clean(host)
    if h.startswith("::ffff:") and h.count(".") == 3:
        h = h[len("::ffff:"):]
    return h


class Api:
    """The management API at one base URL."""

    def __init__(self, url, user, password):
        self.url = url.rstrip("/")
        parsed = urllib.parse.urlsplit(self.url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("bad --url %r: expected http://host:port" % url)
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 15672)
        token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        self.auth = "Basic " + token

    def get(self, path):
        full = self.url + path
        req = urllib.request.Request(full, headers={"Authorization": self.auth, "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                body = resp.read(MAX_BODY + 1)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                raise ProbeError(
                    "%s: 401 Unauthorized: the credentials were refused (set RABBITMQ_PROBE_USER/"
                    "RABBITMQ_PROBE_PASSWORD or --credentials-file; the user needs the monitoring tag)" % full
                )
            if e.code == 404:
                raise ProbeError("%s: 404 Not Found: is this the rabbitmq_management plugin's API?" % full)
            raise ProbeError("%s: HTTP %d %s" % (full, e.code, e.reason))
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or e.reason
            raise ProbeError(
                "cannot reach the RabbitMQ management API at %s: %s (is the rabbitmq_management plugin "
                "enabled, `rabbitmq-plugins enable rabbitmq_management`, and listening there?)" % (full, reason)
            )
        except (OSError, ValueError, http.client.HTTPException) as e:
            raise ProbeError("%s: %s: %s (not an HTTP server? the management API listens on 15672 by default)"
                             % (full, type(e).__name__, e))
        if len(body) > MAX_BODY:
            raise ProbeError("%s: answer larger than %d bytes: refused" % (full, MAX_BODY))
        try:
            return json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ProbeError("%s answered something that is not JSON (%s): not the management API?" % (full, e))


def need(value, kind, what):
    if not isinstance(value, kind):
        raise ProbeError("%s: expected a JSON %s" % (what, "list" if kind is list else "object"))
    return value


def server_record(api, overview):
    totals = overview.get("object_totals") or {}
    qtotals = overview.get("queue_totals") or {}
    vals = [
        "rabbitmq_server",
        api.host,
        str(api.port),
        clean(overview.get("rabbitmq_version")),
        clean(overview.get("cluster_name")),
        "1",
        num(totals.get("connections")),
        num(totals.get("channels")),
        num(totals.get("consumers")),
        num(totals.get("queues")),
        num(qtotals.get("messages_ready")),
        num(qtotals.get("messages_unacknowledged")),
    ]
    return "|" + "|".join(vals) + "|"


def down_record(api):
    return "|" + "|".join(["rabbitmq_server", api.host, str(api.port), "", "", "0"] + [""] * 6) + "|"


def amqp_ports(overview):
    """{node: AMQP port} from the overview's listeners."""
    ports = {}
    for lis in overview.get("listeners") or []:
        if isinstance(lis, dict) and lis.get("protocol") == "amqp" and "node" in lis:
            ports.setdefault(lis["node"], lis.get("port"))
    return ports


def node_records(api, overview, nodes):
    ports = amqp_ports(overview)
    out = []
    for n in nodes:
        if not isinstance(n, dict) or not n.get("name"):
            continue
        uptime = n.get("uptime")
        vals = [
            "rabbitmq_node",
            api.host,
            str(api.port),
            clean(n["name"]),
            num(ports.get(n["name"])),
            num(n.get("running")),
            num(n.get("fd_used")),
            num(n.get("fd_total")),
            num(n.get("sockets_used")),
            num(n.get("sockets_total")),
            num(n.get("proc_used")),
            num(n.get("mem_used")),
            num(n.get("mem_limit")),
            num(n.get("mem_alarm")),
            num(n.get("disk_free")),
            num(n.get("disk_free_limit")),
            num(n.get("disk_free_alarm")),
            num(uptime / 1000.0) if isinstance(uptime, (int, float)) else "",
        ]
        out.append("|" + "|".join(vals) + "|")
    return out


def client_records(connections):
    out = []
    for c in connections:
        if not isinstance(c, dict) or c.get("host") is None or c.get("peer_host") is None:
            continue
        props = c.get("client_properties")
        props = props if isinstance(props, dict) else {}
        vals = [
            "rabbitmq_client",
            ip_of(c.get("host")),
            num(c.get("port")),
            ip_of(c.get("peer_host")),
            num(c.get("peer_port")),
            clean(c.get("user")),
            clean(c.get("vhost")),
            clean(c.get("state")),
            clean(c.get("protocol")),
            clean(props.get("product"))[:100],
            clean(props.get("connection_name"))[:100],
            clean(c.get("node")),
            num(c.get("channels")),
            num(c.get("recv_oct")),
            num(c.get("send_oct")),
        ]
        out.append("|" + "|".join(vals) + "|")
    return out


def queue_records(api, queues):
    out = []
    for q in queues:
        if not isinstance(q, dict) or q.get("name") is None:
            continue
        vals = [
            "rabbitmq_queue",
            api.host,
            str(api.port),
            clean(q.get("vhost")),
            clean(q.get("name")),
            clean(q.get("node")),
            clean(q.get("type")),
            clean(q.get("state")),
            num(q.get("messages_ready")),
            num(q.get("messages_unacknowledged")),
            num(q.get("consumers")),
            num(q.get("memory")),
        ]
        out.append("|" + "|".join(vals) + "|")
    return out


def collect(api):
    overview = need(api.get("/api/overview"), dict, api.url + "/api/overview")
    nodes = need(api.get("/api/nodes"), list, api.url + "/api/nodes")
    conns = need(api.get("/api/connections"), list, api.url + "/api/connections")
    queues = need(api.get("/api/queues"), list, api.url + "/api/queues")
    return (
        [server_record(api, overview)]
        + node_records(api, overview, nodes)
        + client_records(conns)
        + queue_records(api, queues)
    )


def read_credentials(path):
    if path:
        try:
            with open(path) as f:
                first = (f.read().splitlines() or [""])[0]
        except OSError as e:
            raise ValueError("cannot read --credentials-file %s: %s" % (path, e.strerror or e))
        user, sep, password = first.partition(":")
        if not sep or not user:
            raise ValueError("--credentials-file %s: the first line must be user:password" % path)
        return user, password
    user = os.environ.get("RABBITMQ_PROBE_USER")
    password = os.environ.get("RABBITMQ_PROBE_PASSWORD")
    if user and password is not None:
        return user, password
    return "guest", "guest"


def log(msg):
    sys.stderr.write("rabbitmq_probe: %s\n" % msg)
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
    ap = argparse.ArgumentParser(description="gala-gopher extend probe: RabbitMQ nodes, clients and queues")
    ap.add_argument("-t", "--period", type=float, default=5.0, help="seconds between collections (default 5)")
    ap.add_argument(
        "-u", "--url", default="http://127.0.0.1:15672",
        help="management API base URL(s), comma separated (default http://127.0.0.1:15672)",
    )
    ap.add_argument("--credentials-file", default="", help="file whose first line is user:password")
    ap.add_argument("--once", action="store_true", help="collect once and exit")
    args = ap.parse_args()
    if args.period <= 0:
        ap.error("-t must be > 0")
    try:
        user, password = read_credentials(args.credentials_file)
        apis = [Api(u.strip(), user, password) for u in args.url.split(",") if u.strip()]
    except ValueError as e:
        ap.error(str(e))
    if not apis:
        ap.error("--url is empty")

    errors = Errors()
    while True:
        started = time.monotonic()
        lines = []
        for api in apis:
            try:
                lines += collect(api)
                errors.ok(api.url)
            except ProbeError as e:
                errors.failed(api.url, str(e))
                lines.append(down_record(api))
            except Exception as e:  # never die on an API's answer
                errors.failed(api.url, "%s: unexpected answer (%s: %s)" % (api.url, type(e).__name__, e))
                lines.append(down_record(api))
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
