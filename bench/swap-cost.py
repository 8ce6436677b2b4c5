#!/usr/bin/env python3
"""Throughput cost of a table swap every 10 ms under full load.

flowgate (one worker, bench/flowgate-bench.toml plus a token and a state folder, so every
push is validated, compiled, swapped and fsynced as in production) and the example origin
share core 1; wrk (-t1 -c64) and the pusher share core 0. Each round runs three trials in
turn, DURATION seconds each:

  none   no pushes
  same   a PUT every 10 ms of the table in force (auth, JSON parse, compare; no swap):
         the harness's own cost
  swap   a PUT every 10 ms of a new version with other weights: the real thing

The pusher keeps one HTTP/1.1 connection open. Prints each trial's req/s, the pushes made
and refused, and the ratios of medians. Usage: ROUNDS=3 DURATION=5 bench/swap-cost.py;
PERSIST=0 leaves the state folder out (no fsync per push), to tell the two costs apart;
TMPDIR=/dev/shm puts the state folder on tmpfs (check `df /tmp`: the default is meant to be
a disk). FLOWGATE_BIN=path runs that binary instead of building target/release/flowgate (to
compare two builds). Also prints, per trial kind, the CPU time of each flowgate thread (from
/proc/PID/task/*/stat, summed over the rounds): where the core's time goes.
"""
import http.client, json, os, re, statistics, subprocess, sys, tempfile, threading, time

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "5"))
PERSIST = os.environ.get("PERSIST", "1") != "0"
PERIOD = 0.010
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
tmp = tempfile.mkdtemp()
with open(os.path.join(tmp, "tokens"), "w") as f:
    f.write("bench secret\n")
os.mkdir(os.path.join(tmp, "state"))
with open(os.path.join(root, "bench", "flowgate-bench.toml")) as f:
    cfg = f.read().replace(
        'listen = "127.0.0.1:18109"',
        f'listen = "127.0.0.1:18109"\ntoken_file = "{tmp}/tokens"' + (f'\nstate_dir = "{tmp}/state"' if PERSIST else ""))
with open(os.path.join(tmp, "flowgate.toml"), "w") as f:
    f.write(cfg)

BIN = os.environ.get("FLOWGATE_BIN") or os.path.join(root, "target/release/flowgate")
ORIGIN = os.environ.get("ORIGIN_BIN") or os.path.join(root, "target/release/examples/origin")
if not os.environ.get("FLOWGATE_BIN"):
    subprocess.run(["cargo", "build", "--release", "--bin", "flowgate", "--example", "origin"],
                   cwd=root, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
procs = [
    subprocess.Popen(["taskset", "-c", "1", ORIGIN,
                      "127.0.0.1:18080"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    subprocess.Popen(["taskset", "-c", "1", BIN, "serve",
                      "--config", os.path.join(tmp, "flowgate.toml")],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
]
os.sched_setaffinity(0, {0})


def admin():
    return http.client.HTTPConnection("127.0.0.1", 18109, timeout=5)


for _ in range(100):
    try:
        c = admin()
        c.request("GET", "/readyz")
        if c.getresponse().status == 200:
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    sys.exit("flowgate did not become ready")

HEADERS = {"authorization": "Bearer secret", "content-type": "application/json"}
version = 1


def table(v, w):
    return json.dumps({"version": v, "weights": {"bench": {"bench": w}}})


def push(conn, body):
    conn.request("PUT", "/v1/table", body=body, headers=HEADERS)
    r = conn.getresponse()
    r.read()
    return r.status


def pusher(mode, stop, counts):
    """A PUT every PERIOD on one connection until `stop`; counts [made, refused]."""
    global version
    conn = admin()
    nxt = time.monotonic()
    while not stop.is_set():
        if mode == "swap":
            version += 1
        status = push(conn, table(version, version % 7 + 1))
        counts[0] += 1
        counts[1] += status >= 300
        nxt += PERIOD
        time.sleep(max(0.0, nxt - time.monotonic()))


TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """{thread name: CPU seconds (user + system)} of every thread of `pid`, same names summed."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
    return out


cpu = {"none": {}, "same": {}, "swap": {}}


def trial(mode):
    stop, counts = threading.Event(), [0, 0]
    before = thread_cpu(procs[1].pid)
    t = threading.Thread(target=pusher, args=(mode, stop, counts)) if mode != "none" else None
    if t:
        t.start()
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{DURATION}s", "http://127.0.0.1:18101/"],
                         capture_output=True, text=True).stdout
    stop.set()
    if t:
        t.join()
    after = thread_cpu(procs[1].pid)
    for name, secs in after.items():
        cpu[mode][name] = cpu[mode].get(name, 0.0) + secs - before.get(name, 0.0)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return rps, counts


try:
    push(admin(), table(version, version % 7 + 1))  # the table `same` re-sends
    results = {"none": [], "same": [], "swap": []}
    pushes = {"same": [0, 0], "swap": [0, 0]}
    subprocess.run(["wrk", "-t1", "-c64", "-d2s", "http://127.0.0.1:18101/"], capture_output=True)
    for r in range(ROUNDS):
        order = ["none", "same", "swap"][r % 3:] + ["none", "same", "swap"][:r % 3]
        for mode in order:
            rps, counts = trial(mode)
            results[mode].append(rps)
            if mode in pushes:
                pushes[mode][0] += counts[0]
                pushes[mode][1] += counts[1]
    conn = admin()
    conn.request("GET", "/v1/table")
    applied = json.loads(conn.getresponse().read())["version"]
    med = {m: statistics.median(v) for m, v in results.items()}
    secs = ROUNDS * DURATION
    for m in ("none", "same", "swap"):
        extra = f"; {pushes[m][0] / secs:.0f} pushes/s, {pushes[m][1]} refused" if m in pushes else ""
        print(f"{m:5} req/s {' '.join(f'{x:.0f}' for x in results[m])} (median {med[m]:.0f}){extra}")
    print(f"last version applied: {applied} (pushed {version})")
    print(f"swap / none: {med['swap'] / med['none']:.3f}")
    print(f"same / none: {med['same'] / med['none']:.3f}  (the harness's own cost)")
    print(f"swap / same: {med['swap'] / med['same']:.3f}  (the cost of swapping itself)")
    for m in ("none", "same", "swap"):
        busy = sorted(((s, n) for n, s in cpu[m].items() if s >= 0.005), reverse=True)
        print(f"{m:5} CPU s per thread: " + ", ".join(f"{n} {s:.2f}" for s, n in busy))
finally:
    for p in procs:
        p.terminate()
        p.wait()
