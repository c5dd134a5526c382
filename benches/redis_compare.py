#!/usr/bin/env python3
"""Shoal vs redis-server on this machine, in one run, alternating.

Runs the same `redis-benchmark` against redis-server and `shoal serve` on
loopback, several rounds, alternating which goes first, and prints the median
ops/s (and p50/p99 latency) of each plus the ratio Shoal/Redis. Then loads
1,000,000 keys (16-byte keys, 100-byte values) into each and prints RSS bytes
per key.

Usage:
    python3 benches/redis_compare.py                 # full run (issue #2 figures)
    python3 benches/redis_compare.py --quick         # fewer requests, one round
    python3 benches/redis_compare.py --skip-memory   # throughput only
    python3 benches/redis_compare.py --shoal-args "--nodes 3" ...

Installs redis-server/redis-tools with apt-get when they are missing.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_redis():
    if shutil.which("redis-server") and shutil.which("redis-benchmark"):
        return
    print("installing redis-server and redis-tools with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "redis-server", "redis-tools"],
        check=True,
        env=env,
    )


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered PING on port {port}")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Server:
    def __init__(self, name, argv, port):
        self.name = name
        self.port = port
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log)
        try:
            wait_port(port)
        except Exception:
            self.stop()
            self.log.seek(0)
            sys.stderr.write(self.log.read().decode(errors="replace"))
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis():
    port = free_port()
    argv = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1",
        "--save", "", "--appendonly", "no", "--protected-mode", "no",
        "--daemonize", "no", "--logfile", "",
    ]
    return Server("redis", argv, port)


def start_shoal(binary, extra):
    port = free_port()
    argv = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warn"] + extra
    return Server("shoal", argv, port)


SUMMARY = re.compile(r"throughput summary:\s*([\d.]+) requests per second")
LAT = re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def run_benchmark(port, test, pipeline, n, clients, size, keyspace):
    argv = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
        "-n", str(n), "-c", str(clients), "-d", str(size), "-r", str(keyspace),
        "-P", str(pipeline), "-q", "--precision", "3",
    ]
    # Without -q redis-benchmark prints the latency table we want; with it, only
    # the summary. Run without -q and parse both.
    argv.remove("-q")
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900).stdout
    ops = None
    p50 = p99 = None
    lines = out.splitlines()
    for i, line in enumerate(lines):
        m = SUMMARY.search(line)
        if m:
            ops = float(m.group(1))
        if "latency summary" in line and i + 2 < len(lines):
            m = LAT.match(lines[i + 2])
            if m:
                p50 = float(m.group(3))
                p99 = float(m.group(5))
    if ops is None:
        raise RuntimeError(f"could not parse redis-benchmark output:\n{out[-2000:]}")
    return ops, p50, p99


def throughput(args, binary):
    results = {}  # (server, test, P) -> list of (ops, p50, p99)
    configs = [(t, p) for p in (1, 16) for t in ("set", "get")]
    for rnd in range(args.rounds):
        order = ["redis", "shoal"] if rnd % 2 == 0 else ["shoal", "redis"]
        for who in order:
            srv = start_redis() if who == "redis" else start_shoal(binary, args.shoal_args.split())
            try:
                for test, p in configs:
                    r = run_benchmark(srv.port, test, p, args.requests, args.clients, args.size, args.keyspace)
                    results.setdefault((who, test, p), []).append(r)
                    print(f"round {rnd + 1} {who:5} {test.upper():3} -P {p:<2}: {r[0]:>12,.0f} ops/s  p50 {r[1]} ms  p99 {r[2]} ms", flush=True)
            finally:
                srv.stop()
    print()
    print(f"redis-benchmark -t set,get -n {args.requests} -c {args.clients} -d {args.size} -r {args.keyspace}; "
          f"median of {args.rounds} rounds, alternating")
    print(f"{'test':10} {'redis ops/s':>14} {'shoal ops/s':>14} {'ratio':>7}   {'redis p50/p99 ms':>18} {'shoal p50/p99 ms':>18}")
    for test, p in configs:
        r = results[("redis", test, p)]
        s = results[("shoal", test, p)]
        r_ops = statistics.median(x[0] for x in r)
        s_ops = statistics.median(x[0] for x in s)
        r_lat = f"{statistics.median(x[1] for x in r if x[1] is not None) if any(x[1] for x in r) else '-'}/" \
                f"{statistics.median(x[2] for x in r if x[2] is not None) if any(x[2] for x in r) else '-'}"
        s_lat = f"{statistics.median(x[1] for x in s if x[1] is not None) if any(x[1] for x in s) else '-'}/" \
                f"{statistics.median(x[2] for x in s if x[2] is not None) if any(x[2] for x in s) else '-'}"
        print(f"{test.upper() + ' -P ' + str(p):10} {r_ops:>14,.0f} {s_ops:>14,.0f} {s_ops / r_ops:>7.2f}   {r_lat:>18} {s_lat:>18}")


def load_keys(port, keys, value_size):
    """SET `keys` keys of 16 bytes with values of `value_size` bytes via redis-cli --pipe."""
    value = b"v" * value_size
    with tempfile.NamedTemporaryFile() as f:
        buf = []
        for i in range(keys):
            k = b"key:%012d" % i
            buf.append(b"*3\r\n$3\r\nSET\r\n$16\r\n" + k + b"\r\n$%d\r\n" % value_size + value + b"\r\n")
            if len(buf) >= 10000:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))
        f.flush()
        with open(f.name, "rb") as data:
            out = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=data, capture_output=True, text=True, timeout=600)
        if "errors: 0" not in out.stdout:
            raise RuntimeError(f"load failed: {out.stdout[-500:]} {out.stderr[-500:]}")


def bytes_per_key(args, binary):
    print()
    print(f"memory: {args.keys:,} keys, 16-byte keys, {args.size}-byte values (RSS after - RSS before) / keys")
    for who in ("redis", "shoal"):
        srv = start_redis() if who == "redis" else start_shoal(binary, args.shoal_args.split())
        try:
            time.sleep(0.5)
            before = rss_bytes(srv.proc.pid)
            load_keys(srv.port, args.keys, args.size)
            time.sleep(1.0)
            after = rss_bytes(srv.proc.pid)
            dbsize = subprocess.run(["redis-cli", "-p", str(srv.port), "DBSIZE"], capture_output=True, text=True).stdout.strip()
            print(f"  {who:5}: RSS {before / 2**20:7.1f} MiB -> {after / 2**20:7.1f} MiB, dbsize {dbsize}, "
                  f"{(after - before) / args.keys:6.1f} bytes/key", flush=True)
        finally:
            srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--keyspace", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100k requests, 1 round, 100k keys")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--shoal-args", default="", help="extra arguments for `shoal serve`")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "shoal"))
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds, args.keys = 100_000, 1, 100_000

    ensure_redis()
    subprocess.run(["cargo", "build", "--release", "--bin", "shoal"], cwd=ROOT, check=True)
    print(subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip())
    print(f"cores: {os.cpu_count()}")
    if not args.skip_throughput:
        throughput(args, args.binary)
    if not args.skip_memory:
        bytes_per_key(args, args.binary)


if __name__ == "__main__":
    main()
