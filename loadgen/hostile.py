#!/usr/bin/env python3
"""Hostile-input figures for the README: what an attacker costs the server.

Each scenario starts a fresh release `fanout` (pinned to core 0 when taskset exists), attacks
it from this process (pinned to core 1), samples the server's VmRSS every 20 ms, and prints
the peak during the attack and the RSS 3 s after the attacking connections are gone, next to
the budget the server's flags promise. The stuck-subscriber scenario prints the server's CPU
instead. Only 127.0.0.1 is used; every loop is bounded in time and count.

Usage: loadgen/hostile.py [SCENARIO ...]   (default: all)
  pipeline   50 connections pipelining GET / without reading (cap: --max-backpressure 4 MiB)
  channels   3 connections pipelining GET /channels (pages of 1 000) over 2 000 channels named
             with 64 bytes, each with an idle subscriber
  pings      10 connections sending pings for 10 s without reading a pong
  names      20 s of empty publishes to distinct channel names, --history 1
             --max-history-memory 32MiB
  stuck      500 subscribers that never read, one publisher at 2 000 msg/s, --slow-consumer
             drop: the server's CPU for 10 s once their queues are full
"""
import base64
import os
import re
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
FANOUT = os.path.join(TARGET, "release", "fanout")
PIN = ["taskset", "-c", "0"] if subprocess.run(["which", "taskset"], capture_output=True).returncode == 0 else []
MIB = 1 << 20


def start(*args):
    proc = subprocess.Popen(PIN + [FANOUT, "--listen", "127.0.0.1:0", *args],
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening addr=([\d.]+):(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, ("127.0.0.1", int(m.group(2)))
    raise SystemExit("fanout did not start")


def rss(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024


def cpu_ticks(proc):
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Peak:
    """Samples a process's RSS every 20 ms until stopped."""

    def __init__(self, proc):
        self.proc, self.peak, self.running = proc, rss(proc), True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss(self.proc))
            time.sleep(0.02)

    def stop(self):
        self.running = False
        self.thread.join()
        return self.peak


def ws(addr, channel):
    s = socket.create_connection(addr)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: {channel}\r\n\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def masked(opcode, payload):
    n = len(payload)
    head = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else bytes([0x80 | opcode, 0xFE]) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload  # a zero mask key leaves the payload as it is


def metric(addr, name):
    s = socket.create_connection(addr)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    m = re.search(rb"\n" + re.escape(name.encode()) + rb" (\d+)", data)
    return int(m.group(1))


def report(name, proc, peak, before, budget, conns_gone):
    for c in conns_gone:
        c.close()
    time.sleep(3)
    after = rss(proc)
    print(f"{name:9} peak RSS {peak / MIB:7.1f} MiB (start {before / MIB:.1f} MiB, "
          f"budget {budget / MIB:.1f} MiB + start)  RSS 3 s after {after / MIB:7.1f} MiB", flush=True)


def pipeline_flood(addr, request, count, conns):
    socks = []
    for _ in range(conns):
        s = socket.create_connection(addr)
        s.settimeout(2)
        data = request * count
        try:
            s.sendall(data)
        except socket.timeout:
            pass  # the server stopped reading: what it holds is what we measure
        socks.append(s)
    return socks


def scenario_pipeline():
    proc, addr = start()
    before = rss(proc)
    peak = Peak(proc)
    socks = pipeline_flood(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 20_000, 50)
    time.sleep(2)
    report("pipeline", proc, peak.stop(), before, 50 * 4 * MIB, socks)
    proc.kill()


def scenario_channels():
    proc, addr = start()
    subs = [ws(addr, f"{i:064d}") for i in range(2000)]
    before = rss(proc)
    peak = Peak(proc)
    socks = pipeline_flood(addr, b"GET /channels?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n", 2000, 3)
    # The loop stays responsive for everyone else meanwhile.
    t = time.time()
    metric(addr, "fanout_channels")
    stall = time.time() - t
    time.sleep(2)
    print(f"channels  a /metrics scrape during the flood took {stall * 1000:.1f} ms")
    report("channels", proc, peak.stop(), before, 3 * 4 * MIB, socks)
    for s in subs:
        s.close()
    proc.kill()


def scenario_pings():
    proc, addr = start()
    socks = [ws(addr, "room") for _ in range(10)]
    before = rss(proc)
    peak = Peak(proc)
    ping = masked(9, b"p" * 125) * 512
    end = time.time() + 10

    def flood(s):
        s.settimeout(0.2)
        while time.time() < end:
            try:
                s.sendall(ping)
            except socket.timeout:
                pass

    threads = [threading.Thread(target=flood, args=(s,)) for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"pings     server read {metric(addr, 'fanout_received_bytes_total') / MIB:.0f} MiB of pings; "
          f"pongs coalesced: {metric(addr, 'fanout_pongs_coalesced_total')}")
    report("pings", proc, peak.stop(), before, 10 * 4 * MIB, socks)
    proc.kill()


def scenario_names():
    proc, addr = start("--history", "1", "--max-history-memory", "32MiB")
    before = rss(proc)
    peak = Peak(proc)
    s = socket.create_connection(addr)
    end = time.time() + 20
    sent = [0]

    def writer():
        i = 0
        while time.time() < end:
            batch = b"".join(b"POST /publish/n%d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n" % (i + k)
                             for k in range(500))
            s.sendall(batch)
            i += 500
        sent[0] = i

    w = threading.Thread(target=writer)
    w.start()
    # Read the answers as they come (the server stops reading a peer that does not), and
    # after the last publish ask for a close so the read ends.
    reader_done = threading.Event()

    def reader():
        while s.recv(1 << 20):
            pass
        reader_done.set()

    threading.Thread(target=reader, daemon=True).start()
    w.join()
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    reader_done.wait(60)
    print(f"names     {sent[0]} publishes to distinct names; channels now "
          f"{metric(addr, 'fanout_channels')}, history {metric(addr, 'fanout_history_bytes') / MIB:.1f} MiB counted")
    report("names", proc, peak.stop(), before, 32 * MIB, [s])
    proc.kill()


def scenario_stuck():
    proc, addr = start("--slow-consumer", "drop")
    subs = [ws(addr, "feed") for _ in range(500)]
    pub = ws(addr, "feed")
    frame = masked(2, b"x" * 64)
    # 2 000 msg/s until the subscribers' queues are full and messages are dropped (at most
    # 60 s), then 10 s more, measured: the steady state of a stuck subscriber.
    t0 = time.time()
    measured = None
    for i in range(140_000):
        due = t0 + i / 2000
        while time.time() < due:
            time.sleep(0.0005)
        pub.sendall(frame)
        if measured is None and i % 2000 == 0 and (metric(addr, "fanout_dropped_total") > 0 or i >= 120_000):
            measured = (i, time.time(), cpu_ticks(proc), metric(addr, "fanout_send_calls_total"))
        if measured and i >= measured[0] + 20_000:
            break
    wall, ticks = time.time() - measured[1], cpu_ticks(proc) - measured[2]
    sends = metric(addr, "fanout_send_calls_total") - measured[3]
    cpu = ticks / os.sysconf("SC_CLK_TCK") / wall * 100
    print(f"stuck     500 stuck subscribers at the cap, 2 000 msg/s for {wall:.1f} s: server CPU "
          f"{cpu:.1f} % of a core, {sends} sends; dropped {metric(addr, 'fanout_dropped_total')} "
          f"in all", flush=True)
    for s in subs + [pub]:
        s.close()
    proc.kill()


SCENARIOS = {"pipeline": scenario_pipeline, "channels": scenario_channels, "pings": scenario_pings,
             "names": scenario_names, "stuck": scenario_stuck}

if __name__ == "__main__":
    if PIN:
        os.sched_setaffinity(0, {1})
    subprocess.run(["cargo", "build", "--release", "-p", "fanout"], check=True, cwd=ROOT)
    for name in sys.argv[1:] or SCENARIOS:
        SCENARIOS[name]()
