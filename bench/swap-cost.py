#!/usr/bin/env python3
"""Cost of a table swap every 10 ms under full load, in throughput and in the proxy's CPU.

flowgate (one worker, bench/flowgate-bench.toml plus a token and a state folder, so every
push is validated, compiled, swapped and persisted as in production) is pinned to core 1
(PROXY_CORE) with the example origin (ORIGIN_CORE, default the proxy's: the origin's work
then loads the proxy's core, not the load generator's); wrk (-t1 -c64) and the pusher are
pinned to core 0 (LOAD_CORE), so the harness's own CPU never lands on the proxy's core.
Each round runs three trials in turn (their order rotates from round to round), DURATION
seconds each:

  none   no pushes
  same   a PUT every 10 ms of the table in force (auth, JSON parse, compare; no swap):
         the harness's own cost
  swap   a PUT every 10 ms of a new version with other weights: the real thing

Besides req/s, each trial reads the proxy's CPU time (utime + stime of /proc/PID/stat)
and divides it by the requests wrk made: CPU per request, which other processes on the
machine move much less than throughput (they take the core away; they do not make the
proxy's own work bigger). The proxy's CPU per push is what a trial with pushes spent
beyond the same round's `none` CPU per request times its requests, over its pushes; and
again without load (IDLE_ROUNDS rounds of IDLE_SECONDS per kind, nanoseconds from
/proc/PID/task/*/schedstat): the proxy's CPU with pushes minus its CPU idle, per push.
A push every 10 ms that costs C µs of CPU takes C / 10,000 of the core: that is the
throughput it costs a proxy whose core is the bottleneck, the figure printed last.

Prints a table of medians (req/s, CPU µs per request, pushes, CPU µs per push), each
trial's figures, and the CPU time of each flowgate thread per trial kind (from
/proc/PID/task/*/stat, summed over the rounds): where the core's time goes.

Usage: ROUNDS=5 DURATION=5 bench/swap-cost.py. PERSIST=0 leaves the state folder out (no
file written per push), to tell the costs apart; TMPDIR=/dev/shm puts the state folder on
tmpfs (check `df /tmp`: the default is meant to be a disk). FLOWGATE_BIN=path runs that
binary instead of building target/release/flowgate (to compare two builds).

INSTRUCTIONS=N counts instead of timing: no load, flowgate under valgrind's callgrind, N
pushes of new tables then N of the table in force, back to back over one connection;
prints the instructions per push of each (user space only: the kernel's part of a push,
its socket and file system calls, is not counted) and the functions that cost the most in
the new tables' part. The profiles stay in /tmp/flowgate-push-callgrind.out.{1,2} for
`callgrind_annotate --inclusive=yes`.
"""
import glob, http.client, json, os, re, statistics, subprocess, sys, tempfile, threading, time

ROUNDS = int(os.environ.get("ROUNDS", "5"))
DURATION = int(os.environ.get("DURATION", "5"))
IDLE_ROUNDS = int(os.environ.get("IDLE_ROUNDS", "3"))
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "3"))
PERSIST = os.environ.get("PERSIST", "1") != "0"
INSTRUCTIONS = int(os.environ.get("INSTRUCTIONS", "0"))
PROXY_CORE = os.environ.get("PROXY_CORE", "1")
ORIGIN_CORE = os.environ.get("ORIGIN_CORE", PROXY_CORE)
LOAD_CORE = int(os.environ.get("LOAD_CORE", "0"))
PERIOD = 0.010
MODES = ("none", "same", "swap")
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
SERVE = [BIN, "serve", "--config", os.path.join(tmp, "flowgate.toml")]
CALLGRIND_OUT = "/tmp/flowgate-push-callgrind.out"
if INSTRUCTIONS:
    for old in glob.glob(CALLGRIND_OUT + "*"):
        os.remove(old)
    procs = [subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                               f"--callgrind-out-file={CALLGRIND_OUT}"] + SERVE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
else:
    procs = [
        subprocess.Popen(["taskset", "-c", ORIGIN_CORE, ORIGIN, "127.0.0.1:18080"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(["taskset", "-c", PROXY_CORE] + SERVE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
proxy_pid = procs[-1].pid
os.sched_setaffinity(0, {LOAD_CORE})


def admin():
    return http.client.HTTPConnection("127.0.0.1", 18109, timeout=30)


for _ in range(600):
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


def pusher(mode, stop, counts, period=PERIOD):
    """A PUT every `period` on one connection until `stop`; counts [made, refused]."""
    global version
    conn = admin()
    nxt = time.monotonic()
    while not stop.is_set():
        if mode == "swap":
            version += 1
        status = push(conn, table(version, version % 7 + 1))
        counts[0] += 1
        counts[1] += status >= 300
        nxt += period
        time.sleep(max(0.0, nxt - time.monotonic()))


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid):
    """CPU seconds (user + system) of the whole process, exited threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_ns(pid):
    """Nanoseconds on a CPU of the live threads (schedstat: finer than stat's ticks)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


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


def callgrind(*args):
    subprocess.run(["callgrind_control", *args, str(proxy_pid)], check=True, stdout=subprocess.DEVNULL)


def count_instructions(n):
    """Instructions per push, new tables then the same table, under callgrind."""
    global version
    conn = admin()
    for _ in range(20):  # warm up: the runtime's blocking thread, the state file
        version += 1
        push(conn, table(version, version % 7 + 1))
    callgrind("-i", "on")
    made = {}
    for mode in ("swap", "same"):
        refused = 0
        for _ in range(n):
            if mode == "swap":
                version += 1
            refused += push(conn, table(version, version % 7 + 1)) >= 300
        callgrind("-d")
        made[mode] = refused
    callgrind("-i", "off")
    parts = sorted(glob.glob(CALLGRIND_OUT + ".*"), key=lambda p: int(p.rsplit(".", 1)[1]))
    if len(parts) < 2:
        sys.exit(f"expected two callgrind dumps, found {parts}")
    for mode, part in zip(("swap", "same"), parts[-2:]):
        out = subprocess.run(["callgrind_annotate", part], capture_output=True, text=True).stdout
        total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", out).group(1).replace(",", ""))
        print(f"{mode}: {n} pushes ({made[mode]} refused), {total / n:,.0f} instructions per push")
        if mode == "swap":
            top = subprocess.run(["callgrind_annotate", "--inclusive=yes", part],
                                 capture_output=True, text=True).stdout
            lines = [l for l in top.splitlines() if re.match(r"\s*[\d,]+ \(", l)]
            print("  most costly (inclusive, per push):")
            for l in lines[1:26]:
                m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(.*)", l)
                if m:
                    name = re.sub(r"^\S*:", "", m.group(3))[:110]
                    print(f"  {int(m.group(1).replace(',', '')) / n:>10,.0f}  {m.group(2):>5}%  {name}")


def trial(mode):
    stop, counts = threading.Event(), [0, 0]
    before, cpu0 = thread_cpu(proxy_pid), proc_cpu(proxy_pid)
    t = threading.Thread(target=pusher, args=(mode, stop, counts)) if mode != "none" else None
    if t:
        t.start()
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{DURATION}s", "http://127.0.0.1:18101/"],
                         capture_output=True, text=True).stdout
    stop.set()
    if t:
        t.join()
    cpu = proc_cpu(proxy_pid) - cpu0
    after = thread_cpu(proxy_pid)
    for name, secs in after.items():
        threads[mode][name] = threads[mode].get(name, 0.0) + secs - before.get(name, 0.0)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "requests": requests, "cpu": cpu, "pushes": counts[0], "refused": counts[1]}


def idle_trial(mode):
    """The proxy's CPU nanoseconds over IDLE_SECONDS with no load, and the pushes made."""
    stop, counts = threading.Event(), [0, 0]
    t = threading.Thread(target=pusher, args=(mode, stop, counts)) if mode != "none" else None
    ns0, t0 = proc_ns(proxy_pid), time.monotonic()
    if t:
        t.start()
    time.sleep(IDLE_SECONDS)
    stop.set()
    if t:
        t.join()
    return proc_ns(proxy_pid) - ns0, time.monotonic() - t0, counts[0]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


threads = {m: {} for m in MODES}
try:
    push(admin(), table(version, version % 7 + 1))  # the table `same` re-sends
    if INSTRUCTIONS:
        count_instructions(INSTRUCTIONS)
        sys.exit(0)
    runs = {m: [] for m in MODES}
    per_push = {"same": [], "swap": []}
    subprocess.run(["wrk", "-t1", "-c64", "-d2s", "http://127.0.0.1:18101/"], capture_output=True)
    for r in range(ROUNDS):
        order = MODES[r % 3:] + MODES[:r % 3]
        got = {mode: trial(mode) for mode in order}
        base = got["none"]["cpu"] / max(1, got["none"]["requests"])
        for mode in MODES:
            runs[mode].append(got[mode])
            if mode != "none" and got[mode]["pushes"]:
                extra = got[mode]["cpu"] - base * got[mode]["requests"]
                per_push[mode].append(extra / got[mode]["pushes"] * 1e6)
    idle = {"same": [], "swap": []}
    for r in range(IDLE_ROUNDS):
        got = {mode: idle_trial(mode) for mode in MODES}
        idle_rate = got["none"][0] / got["none"][1]
        for mode in ("same", "swap"):
            ns, secs, n = got[mode]
            if n:
                idle[mode].append((ns - idle_rate * secs) / n / 1e3)
    conn = admin()
    conn.request("GET", "/v1/table")
    applied = json.loads(conn.getresponse().read())["version"]

    rps = {m: med([x["rps"] for x in runs[m]]) for m in MODES}
    # A trial in which wrk made no request (it could not connect) has no CPU per request.
    us_req = {m: med([x["cpu"] / x["requests"] * 1e6 for x in runs[m] if x["requests"]]) for m in MODES}
    secs = ROUNDS * DURATION
    print(f"{ROUNDS} rounds of {DURATION} s per kind, medians; proxy on core {PROXY_CORE}, origin on "
          f"{ORIGIN_CORE}, wrk and pusher on {LOAD_CORE}; state folder {'on' if PERSIST else 'off'}")
    print(f"{'':5} | {'req/s':>8} | {'/ none':>6} | {'CPU µs/req':>10} | {'/ none':>6} | "
          f"{'pushes/s':>8} | {'refused':>7} | {'CPU µs/push':>11} | {'idle µs/push':>12}")
    print("|".join(["-" * 6, "-" * 10, "-" * 8, "-" * 12, "-" * 8, "-" * 10, "-" * 9, "-" * 13, "-" * 13]))
    for m in MODES:
        made = sum(x["pushes"] for x in runs[m])
        refused = sum(x["refused"] for x in runs[m])
        pp = f"{med(per_push[m]):.1f}" if m in per_push else "-"
        ip = f"{med(idle[m]):.1f}" if m in idle else "-"
        print(f"{m:5} | {rps[m]:8.0f} | {rps[m] / rps['none']:6.3f} | {us_req[m]:10.2f} | "
              f"{us_req[m] / us_req['none']:6.3f} | {made / secs if m != 'none' else 0:8.0f} | "
              f"{refused:7} | {pp:>11} | {ip:>12}")
    for m in MODES:
        print(f"{m:5} per trial: " + ", ".join(
            f"{x['rps']:.0f} req/s {x['cpu'] / max(1, x['requests']) * 1e6:.2f} µs/req" for x in runs[m]))
    for m in idle:
        print(f"{m:5} idle µs/push per round: " + " ".join(f"{x:.1f}" for x in idle[m]))
    print(f"last version applied: {applied} (pushed {version})")
    print(f"swap / same req/s: {rps['swap'] / rps['same']:.3f}; CPU µs/req swap - same: "
          f"{us_req['swap'] - us_req['same']:+.2f} (the cost of swapping itself)")
    for label, figure in (("under load", med(per_push["swap"])), ("idle", med(idle["swap"]))):
        print(f"a new table every 10 ms, from its CPU per push {label}: {figure:.1f} µs × 100/s = "
              f"{figure / 100:.2f} % of the proxy's core")
    for m in MODES:
        busy = sorted(((s, n) for n, s in threads[m].items() if s >= 0.005), reverse=True)
        print(f"{m:5} CPU s per thread: " + ", ".join(f"{n} {s:.2f}" for s, n in busy))
finally:
    for p in procs:
        p.terminate()
        p.wait()
