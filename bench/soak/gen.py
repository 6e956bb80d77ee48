#!/usr/bin/env python3
"""The soak benchmark's extend probe: `|soak_N|id|worker|sent|level|` lines
at a fixed rate on stdout, over a set of live series that churns.

The series are `--series` slots spread over `--tables` tables (soak_0...,
bench/soak/soak.meta). Every `--churn-secs` seconds a `--churn` fraction of
the slots moves on to a new generation, i.e. a new series id: the old id is
no longer sent and expires in the agent (imdb.record_timeout), as the
series of short-lived processes do.

Every second it writes how many lines it has written so far to
`--count-file` (replaced atomically). Once `--stop-file` exists it stops
sending, writes its final count with the word `stopped`, and waits to be
stopped by the agent.
"""

import argparse
import os
import sys
import time


def write_count(path, sent, stopped):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d%s\n" % (sent, " stopped" if stopped else ""))
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=10000, help="lines per second")
    ap.add_argument("--series", type=int, default=3000, help="live series")
    ap.add_argument("--tables", type=int, default=5, help="tables soak_0..")
    ap.add_argument("--churn", type=float, default=0.05, help="fraction of slots renewed per churn period")
    ap.add_argument("--churn-secs", type=float, default=10.0)
    ap.add_argument("--count-file", required=True)
    ap.add_argument("--stop-file", required=True)
    a = ap.parse_args()
    if a.rate <= 0 or a.series <= 0 or a.tables <= 0:
        sys.exit("gen.py: --rate, --series and --tables must be positive")

    out = sys.stdout
    gen = [0] * a.series
    per_slot = [0] * a.series
    churn_n = max(1, int(a.series * a.churn))
    next_churn_slot = 0
    slot = 0
    sent = 0
    t0 = time.monotonic()
    next_churn = t0 + a.churn_secs
    next_count = t0 + 1.0
    tick = 0.01
    while True:
        now = time.monotonic()
        if os.path.exists(a.stop_file):
            out.flush()
            write_count(a.count_file, sent, True)
            while True:
                time.sleep(3600)
        if now >= next_churn:
            for _ in range(churn_n):
                gen[next_churn_slot] += 1
                per_slot[next_churn_slot] = 0
                next_churn_slot = (next_churn_slot + 1) % a.series
            next_churn += a.churn_secs
        # Catch up with the wall clock, but never by more than a second's
        # worth at once (after a stall the rate is not made up for).
        due = int((now - t0) * a.rate) - sent
        if due > a.rate:
            t0 += (due - a.rate) / a.rate
            due = a.rate
        if due > 0:
            lines = []
            for _ in range(due):
                per_slot[slot] += 1
                lines.append(
                    "|soak_%d|s%dg%d|w%d|%d|%d|\n"
                    % (slot % a.tables, slot, gen[slot], slot % 16, per_slot[slot], (sent * 7919) % 1000)
                )
                sent += 1
                slot = (slot + 1) % a.series
            out.write("".join(lines))
            out.flush()
        if now >= next_count:
            write_count(a.count_file, sent, False)
            next_count += 1.0
        time.sleep(tick)


if __name__ == "__main__":
    try:
        main()
    except (BrokenPipeError, KeyboardInterrupt):
        pass
