#!/usr/bin/env python3
"""Builds compare.sh's markdown table from loadgen's JSON files.

Usage: compare_table.py OUT_DIR SERVER...   (files: OUT_DIR/<server>-<tag>-<round>.json)
One row per figure, one column per server, then fanout's ratio to each other server
(fanout / peer: above 1 is better for "higher is better" rows, below 1 for "lower" rows).
With several rounds, a cell is the median over the rounds with the range in brackets, and
ratios are of medians.

A capacity figure (the throughput or latency of a trial) is marked "†" when, in that trial,
loadgen's own CPU % was at least the server's, or at least 90 %: the client, not the server,
may have been the limit, so the figure understates the server. With several rounds the mark
says in how many rounds that happened ("†2/3"). Lines under the table list each marked cell
with both CPU figures.
"""
import glob
import json
import os
import statistics
import sys

# loadgen at or above this CPU % (or at or above the server's) is taken to be the limit.
CLIENT_BOUND_PERCENT = 90


def get(doc, *path):
    for key in path:
        if not isinstance(doc, dict) or doc.get(key) is None:
            return None
        doc = doc[key]
    return doc


def params(doc, *keys):
    return [get(doc, "params", k) for k in keys]


# (tag, label builder, value path, better, format, flag): `flag` rows are capacity figures of a
# trial, marked when loadgen was client-bound in it.
ROWS = [
    ("fanout1000", lambda d: "fanout {} subs × {:g} msg/s × {} B: delivered/s".format(*params(d, "subs", "rate", "size")),
     ("delivered_per_sec",), "higher", "{:,.0f}", True),
    ("fanout1000", lambda d: "fanout {} subs: p99 latency µs".format(*params(d, "subs")),
     ("latency_us", "p99"), "lower", "{:,.1f}", True),
    ("fanout1000", lambda d: "fanout {} subs: server CPU µs / delivery".format(*params(d, "subs")),
     ("server_cpu_us_per_delivery",), "lower", "{:.3f}", False),
    ("fanout1000", lambda d: "fanout {} subs: lost".format(*params(d, "subs")),
     ("lost",), "lower", "{:,d}", False),
    ("sweep1000", lambda d: "sweep {} subs × {} B: max deliveries/s".format(*params(d, "subs", "size")),
     ("max_deliveries_per_sec",), "higher", "{:,.0f}", True),
    ("sweep1000", lambda d: "sweep {} subs: server CPU % at max".format(*params(d, "subs")),
     ("server_cpu_percent",), "info", "{:.0f}", False),
    ("sweep1000", lambda d: "sweep {} subs: loadgen CPU % at max".format(*params(d, "subs")),
     ("loadgen_cpu_percent",), "info", "{:.0f}", False),
    ("sweepbig", lambda d: "sweep {} subs × {} B (p99 ≤ 500 ms): max deliveries/s".format(*params(d, "subs", "size")),
     ("max_deliveries_per_sec",), "higher", "{:,.0f}", True),
    ("sweep16k", lambda d: "sweep {} subs × {} B: max delivered MB/s".format(*params(d, "subs", "size")),
     ("max_delivered_bytes_per_sec",), "higher", "mb", True),
    ("connect", lambda d: "connect {}: handshakes/s".format(*params(d, "conns")),
     ("handshakes_per_sec",), "higher", "{:,.0f}", False),
    ("connect", lambda d: "connect {}: server RSS bytes / idle connection".format(*params(d, "conns")),
     ("server_rss_bytes_per_conn",), "lower", "{:,.0f}", False),
    ("connect", lambda d: "connect {}: connections open".format(*params(d, "conns")),
     ("open",), "higher", "{:,d}", False),
    ("chat", lambda d: "chat {} rooms × {}: p99 latency µs".format(*params(d, "rooms", "members")),
     ("latency_us", "p99"), "lower", "{:,.1f}", True),
    ("chat", lambda d: "chat {} rooms × {}: server CPU µs / delivery".format(*params(d, "rooms", "members")),
     ("server_cpu_us_per_delivery",), "lower", "{:.3f}", False),
    ("chat", lambda d: "chat {} rooms × {}: delivered/s".format(*params(d, "rooms", "members")),
     ("delivered_per_sec",), "higher", "{:,.0f}", True),
]

NAMES = {
    "fanout": "fanout",
    "tokio": "tokio-tungstenite",
    "uws": "uWebSockets.js",
    "contig": "reference (copy)",
    "contig-shared": "reference (shared)",
}


def median(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def cell(values, spec):
    values = [v for v in values if isinstance(v, (int, float))]
    if len(values) < 2:
        return fmt(median(values), spec)
    return "{} ({}–{})".format(fmt(median(values), spec), fmt(min(values), spec), fmt(max(values), spec))


def fmt(value, spec):
    if value is None:
        return "–"
    if spec == "mb":
        return "{:,.1f}".format(value / 1e6)
    if spec == "{:,d}":
        return spec.format(int(value))
    return spec.format(value)


def cpu(doc):
    """(server CPU %, loadgen CPU %) of the trial a document's figures come from."""
    return get(doc, "usage", "server_cpu_percent"), get(doc, "usage", "loadgen_cpu_percent")


def client_bound(doc):
    """Whether loadgen's CPU % reached the server's (or CLIENT_BOUND_PERCENT) in the trial."""
    server, own = cpu(doc)
    if not isinstance(own, (int, float)):
        return False
    return own >= CLIENT_BOUND_PERCENT or (isinstance(server, (int, float)) and own >= server)


def main():
    out, servers = sys.argv[1], sys.argv[2:]
    docs = {}  # (server, tag) -> one document per round
    for s in servers:
        for tag in {r[0] for r in ROWS}:
            for path in sorted(glob.glob(os.path.join(out, f"{s}-{tag}-*.json"))):
                with open(path) as f:
                    docs.setdefault((s, tag), []).append(json.load(f))
    peers = [s for s in servers if s != "fanout"]
    head = ["Figure"] + [NAMES.get(s, s) for s in servers]
    if "fanout" in servers:
        head += [f"fanout / {NAMES.get(p, p)}" for p in peers]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    notes = {}  # (tag, server) -> a line naming the trial and its CPU figures
    for tag, label, path, better, spec, flag in ROWS:
        any_doc = next((docs[(s, tag)][0] for s in servers if (s, tag) in docs), None)
        if any_doc is None:
            continue
        try:
            name = label(any_doc)
        except (TypeError, ValueError, IndexError):
            name = tag
        if better != "info":
            name += f" ({better} is better)"
        rounds = {s: [get(d, *path) for d in docs.get((s, tag), [])] for s in servers}
        values = {s: median(rounds[s]) for s in servers}
        cells = [name]
        for s in servers:
            text = cell(rounds[s], spec)
            bound = [d for d in docs.get((s, tag), []) if flag and client_bound(d)]
            if bound:
                n = len(docs[(s, tag)])
                text += " †" if n == 1 else f" †{len(bound)}/{n}"
                pairs = ", ".join("{} % vs {} %".format(*(fmt(v, "{:.0f}") for v in cpu(d))) for d in bound)
                trial = name.split(":")[0]
                notes.setdefault((tag, s), f"{trial}, {NAMES.get(s, s)}: server vs loadgen CPU {pairs}")
            cells.append(text)
        if "fanout" in servers:
            for p in peers:
                f, v = values.get("fanout"), values.get(p)
                ok = better != "info" and isinstance(f, (int, float)) and isinstance(v, (int, float)) and v
                cells.append("{:.2f}×".format(f / v) if ok else "–")
        print("| " + " | ".join(cells) + " |")
    if notes:
        print()
        print(f"† client-bound: in that trial loadgen's own CPU % was at least the server's (or at least "
              f"{CLIENT_BOUND_PERCENT} %), so the client, not the server, may have been the limit and the "
              "figure understates the server.")
        for line in notes.values():
            print(f"- {line}")


if __name__ == "__main__":
    main()
