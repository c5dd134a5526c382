#!/usr/bin/env python3
"""Replication figures for issue 4 (benchmarks, not assertions), release build.

Prints three figures, each on local `shoal serve` processes (real QUIC + mTLS
on loopback, certificates made by `shoal certs init/issue` in a temporary
directory):

  a) re-replication: 5 nodes, R = 2, loaded with N keys (default 1,000,000)
     of 100 bytes through `redis-cli --pipe`; one node is killed with
     SIGKILL; prints the time until every survivor's ring has dropped it,
     the time until every partition has R copies again (on every survivor
     `cluster_partitions_underreplicated` == 0 and `cluster_partitions_syncing`
     == 0 in INFO cluster), the bytes moved (sum of `cluster_bytes_moved`
     deltas) and the re-replication rate in MB/s (bytes moved / time from
     the kill to healed).
  b) write cost of replication: three 3-node clusters side by side (R = 2
     with `write-ack all`, R = 2 with `write-ack one`, R = 1), the same
     `redis-benchmark -t set -d 100 -c 50` against node 1 of each, rounds
     alternating between them; prints median ops/s, p50 and p99 per setting.
  c) misses during a join: 3 nodes, R = 2, a preloaded key set, a GET load
     over it (a pipelined client in this script counting hits and nils),
     then a fourth node joins; prints the hit ratio before the join, while
     the cluster moves partitions (from the start of node 4 until every
     node is ready, sees 4 members and reports nothing under-replicated),
     during the old holders' grace period (5 s here; they drop what they
     released at its end), and after.

Usage:
    python3 benches/replication_figures.py                 # full run
    python3 benches/replication_figures.py --quick         # 100k keys, short rounds
    python3 benches/replication_figures.py --only a        # one figure (a, b or c)

Needs `cargo build --release` first (uses target/release/shoal, or the
binary named by $SHOAL_BIN) and redis-tools (redis-cli, redis-benchmark).
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("SHOAL_BIN", os.path.join(ROOT, "target", "release", "shoal"))


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp_command(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def redis_cli(port, *args, timeout=10):
    r = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True, text=True, timeout=timeout,
    )
    return r.stdout


def info(port, section="cluster"):
    try:
        text = redis_cli(port, "INFO", section, timeout=5)
    except subprocess.TimeoutExpired:
        return {}
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    return fields


class Node:
    """One `shoal serve` child."""

    def __init__(self, cluster, i):
        self.name = "node-%d" % (i + 1)
        self.resp = free_port()
        self.gossip = free_port(socket.SOCK_DGRAM)
        self.proc = None
        self.log = os.path.join(cluster.dir, self.name + ".log")


class Cluster:
    """Processes sharing a CA in a temporary directory."""

    def __init__(self, label, replicas, write_ack="all", partitions=4096, settings=None):
        self.label = label
        self.tmp = tempfile.TemporaryDirectory(prefix="shoal-fig-")
        self.dir = self.tmp.name
        self.replicas = replicas
        self.partitions = partitions
        self.nodes = []
        subprocess.run([BINARY, "certs", "init", "--dir", self.dir],
                       check=True, capture_output=True)
        conf = {"admin": '"off"', "write-ack": '"%s"' % write_ack}
        conf.update(settings or {})
        with open(os.path.join(self.dir, "shoal.toml"), "w") as f:
            for k, v in conf.items():
                f.write("%s = %s\n" % (k, v))

    def add(self):
        node = Node(self, len(self.nodes))
        subprocess.run([BINARY, "certs", "issue", node.name, "--dir", self.dir,
                        "--ip", "127.0.0.1"], check=True, capture_output=True)
        cmd = [BINARY, "serve", "--name", node.name,
               "--listen", "127.0.0.1:%d" % node.resp,
               "--gossip", "127.0.0.1:%d" % node.gossip,
               "--certs", self.dir, "--log-level", "warn",
               "--replicas", str(self.replicas),
               "--partitions", str(self.partitions),
               "--config", os.path.join(self.dir, "shoal.toml")]
        for n in self.nodes:
            if n.proc is not None:
                cmd += ["--seed", "127.0.0.1:%d" % n.gossip]
        log = open(node.log, "ab")
        node.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.nodes.append(node)
        deadline = time.time() + 30
        while time.time() < deadline:
            if redis_cli(node.resp, "PING").strip() == "PONG":
                return node
            time.sleep(0.1)
        raise RuntimeError("%s did not start" % node.name)

    def live(self):
        return [n for n in self.nodes if n.proc is not None]

    def settled(self, members):
        """Every live node sees `members` members, is ready, and reports
        nothing under-replicated or syncing."""
        for n in self.live():
            f = info(n.resp)
            if f.get("cluster_ring_members") != str(members):
                return False
            if f.get("cluster_ready", "1") != "1":
                return False
            if f.get("cluster_partitions_underreplicated", "0") != "0":
                return False
            if f.get("cluster_partitions_syncing", "0") != "0":
                return False
        return True

    def wait(self, cond, limit, what):
        start = time.time()
        while time.time() - start < limit:
            if cond():
                return time.time() - start
            time.sleep(0.1)
        raise RuntimeError("%s: %s not reached within %ss" % (self.label, what, limit))

    def kill(self, node):
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait()
        node.proc = None

    def stop(self):
        for n in self.live():
            n.proc.kill()
            n.proc.wait()
            n.proc = None
        self.tmp.cleanup()


def preload(nodes, keys, size, fmt="key:%012d"):
    """SET keys 0..keys-1 (`fmt`) with `size`-byte values, split over
    `nodes` with one `redis-cli --pipe` each, in parallel."""
    value = b"x" * size
    procs = []
    files = []
    for j, n in enumerate(nodes):
        f = tempfile.NamedTemporaryFile(prefix="shoal-pipe-", delete=False)
        for i in range(j, keys, len(nodes)):
            f.write(resp_command(b"SET", (fmt % i).encode(), value))
        f.close()
        files.append(f.name)
    start = time.time()
    for n, path in zip(nodes, files):
        procs.append(subprocess.Popen(
            "redis-cli -p %d --pipe < %s" % (n.resp, path), shell=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    errors = 0
    for p in procs:
        out, _ = p.communicate()
        m = re.search(r"errors: (\d+), replies: (\d+)", out)
        if m:
            errors += int(m.group(1))
    for path in files:
        os.unlink(path)
    return time.time() - start, errors


def figure_a(keys):
    print("\n== a) re-replication after kill -9 (5 nodes, R=2, %d keys of 100 B) ==" % keys, flush=True)
    c = Cluster("a", 2)
    try:
        for _ in range(5):
            c.add()
        c.wait(lambda: c.settled(5), 120, "5-node ring")
        took, errors = preload(c.live(), keys, 100)
        print("preload: %d keys in %.1f s (%.0f keys/s), %d errors" % (keys, took, keys / took, errors))
        c.wait(lambda: c.settled(5), 120, "settled after preload")
        dbsize = redis_cli(c.nodes[0].resp, "DBSIZE").strip()
        print("DBSIZE after preload: %s" % dbsize)
        victim = c.nodes[2]
        survivors = [n for n in c.nodes if n is not victim]
        moved0 = sum(int(info(n.resp).get("cluster_bytes_moved", "0")) for n in survivors)
        t0 = time.time()
        c.kill(victim)
        detect = c.wait(lambda: all(info(n.resp).get("cluster_ring_members") == "4" for n in survivors),
                        120, "dead node dropped")
        c.wait(lambda: c.settled(4), 600, "R copies again")
        healed = time.time() - t0
        moved = sum(int(info(n.resp).get("cluster_bytes_moved", "0")) for n in survivors) - moved0
        dbsize = redis_cli(c.nodes[0].resp, "DBSIZE").strip()
        print("kill -9 %s -> every survivor dropped it: %.1f s" % (victim.name, detect))
        print("kill -9 -> every partition has R=2 copies again: %.1f s (%.1f s after detection)"
              % (healed, healed - detect))
        print("bytes moved by re-replication: %.1f MB; %.1f MB/s over kill->healed, %.1f MB/s over detection->healed"
              % (moved / 1e6, moved / 1e6 / healed, moved / 1e6 / max(healed - detect, 1e-3)))
        print("DBSIZE after healing: %s" % dbsize)
    finally:
        c.stop()


def bench_set(port, n, clients=50, size=100, keyspace=100000):
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set", "-n", str(n), "-c", str(clients),
         "-d", str(size), "-r", str(keyspace), "--csv"],
        capture_output=True, text=True, timeout=600).stdout
    for line in out.splitlines():
        cols = [x.strip('"') for x in line.split(",")]
        if cols and cols[0] == "SET":
            # test, rps, avg, min, p50, p95, p99, max
            return float(cols[1]), float(cols[4]), float(cols[6])
    raise RuntimeError("no SET line in redis-benchmark output: %r" % out)


def figure_b(n, rounds):
    print("\n== b) SET throughput and p99: R=2 write-ack all vs one vs R=1 (3 nodes each, "
          "redis-benchmark -t set -n %d -c 50 -d 100 against node 1, %d alternating rounds) =="
          % (n, rounds), flush=True)
    setups = [("R=2 write-ack all", Cluster("all", 2, "all")),
              ("R=2 write-ack one", Cluster("one", 2, "one")),
              ("R=1", Cluster("r1", 1, "all"))]
    try:
        for _, c in setups:
            for _ in range(3):
                c.add()
        for _, c in setups:
            c.wait(lambda c=c: c.settled(3), 120, "3-node ring")
        results = {label: [] for label, _ in setups}
        for r in range(rounds):
            order = setups if r % 2 == 0 else list(reversed(setups))
            for label, c in order:
                results[label].append(bench_set(c.nodes[0].resp, n))
        print("%-20s %12s %10s %10s" % ("setting", "ops/s", "p50 ms", "p99 ms"))
        for label, _ in setups:
            rs = results[label]
            print("%-20s %12.0f %10.3f %10.3f   (rounds: %s)" % (
                label, statistics.median(x[0] for x in rs), statistics.median(x[1] for x in rs),
                statistics.median(x[2] for x in rs),
                ", ".join("%.0f/%.2f" % (x[0], x[2]) for x in rs)))
    finally:
        for _, c in setups:
            c.stop()


class GetLoad(threading.Thread):
    """Pipelined GETs of random keys of the preloaded set through every
    node in turn; counts hits and nils per time slice."""

    def __init__(self, ports, keys, batch=64):
        super().__init__(daemon=True)
        self.ports = ports
        self.keys = keys
        self.batch = batch
        self.stop_flag = False
        self.lock = threading.Lock()
        self.events = []  # (time, hits, misses, errors)

    def run(self):
        import random
        rng = random.Random(7)
        socks = {}
        turn = 0
        while not self.stop_flag:
            port = self.ports[turn % len(self.ports)]
            turn += 1
            try:
                if port not in socks:
                    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                    socks[port] = (conn, conn.makefile("rb"))
                s, rfile = socks[port]
                req = b"".join(resp_command(b"GET", b"key:%012d" % rng.randrange(self.keys))
                               for _ in range(self.batch))
                s.sendall(req)
                hits = misses = errors = 0
                for _ in range(self.batch):
                    line = rfile.readline()
                    if line.startswith(b"$-1"):
                        misses += 1
                    elif line.startswith(b"$"):
                        rfile.read(int(line[1:]) + 2)
                        hits += 1
                    else:
                        errors += 1
                with self.lock:
                    self.events.append((time.time(), hits, misses, errors))
            except OSError:
                socks.pop(port, None)
                time.sleep(0.05)

    def window(self, t0, t1):
        with self.lock:
            ev = [e for e in self.events if t0 <= e[0] < t1]
        h = sum(e[1] for e in ev)
        m = sum(e[2] for e in ev)
        err = sum(e[3] for e in ev)
        return h, m, err


def figure_c(keys, quiet_secs):
    print("\n== c) hit ratio before/during/after a join (3 -> 4 nodes, R=2, %d keys, GET load) =="
          % keys, flush=True)
    grace = 5
    c = Cluster("c", 2, settings={"rebalance-grace-ms": grace * 1000})
    try:
        for _ in range(3):
            c.add()
        c.wait(lambda: c.settled(3), 120, "3-node ring")
        took, errors = preload(c.live(), keys, 100)
        print("preload: %d keys in %.1f s, %d errors" % (keys, took, errors))
        c.wait(lambda: c.settled(3), 120, "settled after preload")
        load = GetLoad([n.resp for n in c.nodes], keys)
        load.start()
        time.sleep(quiet_secs)
        t_join = time.time()
        c.add()
        c.wait(lambda: c.settled(4), 600, "4-node ring settled")
        t_settled = time.time()
        time.sleep(grace + quiet_secs)
        t_end = time.time()
        load.stop_flag = True
        load.join(timeout=10)
        for label, (a, b) in [("before (%.0f s)" % quiet_secs, (t_join - quiet_secs, t_join)),
                              ("during (%.1f s)" % (t_settled - t_join), (t_join, t_settled)),
                              ("grace (%d s)" % grace, (t_settled, t_settled + grace)),
                              ("after (%.0f s)" % quiet_secs, (t_settled + grace, t_end))]:
            h, m, err = load.window(a, b)
            total = h + m
            ratio = h / total if total else float("nan")
            print("%-16s GETs %8d  hits %8d  misses %6d  errors %4d  hit ratio %.5f"
                  % (label, total, h, m, err, ratio))
    finally:
        c.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--only", choices=["a", "b", "c"], help="run one figure")
    ap.add_argument("--keys", type=int, help="keys for figure a (default 1,000,000)")
    args = ap.parse_args()
    if not os.path.exists(BINARY):
        sys.exit("no %s: run cargo build --release first" % BINARY)
    keys_a = args.keys or (100_000 if args.quick else 1_000_000)
    print("replication figures, %s, binary %s" % (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), BINARY))
    print("machine: %d cores" % os.cpu_count())
    if args.only in (None, "a"):
        figure_a(keys_a)
    if args.only in (None, "b"):
        figure_b(50_000 if args.quick else 200_000, 1 if args.quick else 3)
    if args.only in (None, "c"):
        figure_c(50_000 if args.quick else 200_000, 3 if args.quick else 5)


if __name__ == "__main__":
    main()
