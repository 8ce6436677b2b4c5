#!/usr/bin/env python3
"""Resident memory per idle client connection.

Starts `flowgate serve` with bench/flowgate-bench.toml (origin not needed: idle clients
send nothing), opens N TCP connections to its public port that stay idle, and reports
(RSS with N open - RSS before) / N. Usage: bench/idle-conns.py [N] (default 10000).
"""
import os, resource, socket, subprocess, sys, time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
binary = os.path.join(root, "target", "release", "flowgate")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, N + 1000)), hard))
proc = subprocess.Popen([binary, "serve", "--config", os.path.join(root, "bench", "flowgate-bench.toml")],
                        stderr=subprocess.DEVNULL, preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N + 1000), hard)))

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0

try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", 18101), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(0.5)
    before = rss_kib(proc.pid)
    socks = []
    for i in range(N):
        s = socket.create_connection(("127.0.0.1", 18101))
        socks.append(s)
    time.sleep(2.0)
    after = rss_kib(proc.pid)
    per = (after - before) * 1024 / N
    print(f"idle connections: {N}; rss before {before} KiB, with them {after} KiB; {per:.0f} bytes per idle connection")
    for s in socks:
        s.close()
finally:
    proc.terminate()
    proc.wait(timeout=10)
