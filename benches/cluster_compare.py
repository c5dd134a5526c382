#!/usr/bin/env python3
"""One Shoal node vs node 1 of a 3-node Shoal cluster, on this machine, alternating.

Runs the same `redis-benchmark -t set,get -n N -c 50 -d 100 -r 100000` at -P 1
and -P 16 against
  (a) one standalone `shoal serve`, and
  (b) node 1 of a local 3-node cluster (real QUIC + mTLS on loopback), where
      about 2/3 of the keys belong to the other two nodes and are forwarded,
over several rounds, alternating which goes first, and prints the median ops/s
and p50/p99 latency of each, the ratios, and whether the bar holds: forwarded
p99 at -P 1 within 2x of the local p99.

The cluster is either one `shoal up --nodes 3` process (default: the three
nodes share one runtime, as `shoal up` users get) or three `shoal serve`
processes with certificates made by `shoal certs init/issue` in a temporary
directory (`--cluster serve`).

Usage:
    python3 benches/cluster_compare.py                   # full run (issue #3 figures)
    python3 benches/cluster_compare.py --quick           # 100k requests, one round
    python3 benches/cluster_compare.py --cluster serve   # three processes instead of `shoal up`
    python3 benches/cluster_compare.py --replicas 1      # no replication: forwarding cost alone

The cluster runs with R = 2 by default (what `shoal up` users get): a SET
through node 1 is forwarded to its primary, which replicates it before it
answers, while the standalone node replicates nothing. `--replicas 1`
isolates the cost of forwarding.

Installs redis-tools (redis-benchmark, redis-cli) with apt-get when missing.
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


def ensure_redis_tools():
    if shutil.which("redis-benchmark") and shutil.which("redis-cli"):
        return
    print("installing redis-tools with apt-get ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-tools"], check=True, env=env)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_range_free(base, count, kind):
    """Whether ports base..base+count-1 can all be bound now (TCP or UDP)."""
    socks = []
    try:
        for p in range(base, base + count):
            s = socket.socket(socket.AF_INET, kind)
            socks.append(s)
            s.bind(("127.0.0.1", p))
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_range(count, kind):
    for _ in range(200):
        base = free_port() if kind == socket.SOCK_STREAM else free_udp_port()
        if base + count < 65535 and port_range_free(base, count, kind):
            return base
    raise RuntimeError(f"no {count} consecutive free ports found")


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


def info_cluster(port):
    """INFO cluster of the node at `port` as a dict ({} if it does not answer)."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "INFO", "cluster"], capture_output=True, text=True, timeout=10
    ).stdout
    fields = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.strip().split(":", 1)
            fields[k] = v
    return fields


class Procs:
    """Child processes making up one system under test; `port` is where clients go."""

    def __init__(self, name, port, all_ports):
        self.name = name
        self.port = port
        self.all_ports = all_ports
        self.procs = []
        self.logs = []
        self.tmp = None

    def spawn(self, argv):
        log = tempfile.TemporaryFile()
        self.logs.append(log)
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log))

    def dump_logs(self):
        for log in self.logs:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-4000:])

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.tmp is not None:
            self.tmp.cleanup()


def start_standalone(binary):
    port = free_port()
    s = Procs("local", port, [port])
    s.spawn([binary, "serve", "--listen", f"127.0.0.1:{port}", "--log-level", "warn"])
    try:
        wait_port(port)
    except Exception:
        s.dump_logs()
        s.stop()
        raise
    return s


def start_cluster(binary, how, replicas, nodes=3):
    if how == "up":
        base = free_range(nodes, socket.SOCK_STREAM)
        gbase = free_range(nodes, socket.SOCK_DGRAM)
        ports = list(range(base, base + nodes))
        s = Procs("cluster", base, ports)
        s.spawn([binary, "up", "--nodes", str(nodes), "--base-port", str(base),
                 "--gossip-base-port", str(gbase), "--replicas", str(replicas), "--log-level", "warn"])
    else:
        s = Procs("cluster", None, [])
        s.tmp = tempfile.TemporaryDirectory(prefix="shoal-bench-certs-")
        certs = s.tmp.name
        subprocess.run([binary, "certs", "init", "--dir", certs], check=True, capture_output=True)
        seed = None
        for i in range(1, nodes + 1):
            name = f"node-{i}"
            subprocess.run([binary, "certs", "issue", name, "--dir", certs, "--ip", "127.0.0.1"],
                           check=True, capture_output=True)
            port, gossip = free_port(), free_udp_port()
            argv = [binary, "serve", "--name", name, "--listen", f"127.0.0.1:{port}",
                    "--gossip", f"127.0.0.1:{gossip}", "--certs", certs, "--replicas", str(replicas),
                    "--log-level", "warn"]
            if seed is not None:
                argv += ["--seed", seed]
            else:
                seed = f"127.0.0.1:{gossip}"
            s.spawn(argv)
            s.all_ports.append(port)
        s.port = s.all_ports[0]
    try:
        for p in s.all_ports:
            wait_port(p)
        deadline = time.time() + 60
        while True:
            infos = [info_cluster(p) for p in s.all_ports]
            digests = {i.get("cluster_ring_digest") for i in infos}
            if all(i.get("cluster_ring_members") == str(nodes) for i in infos) and len(digests) == 1:
                break
            if time.time() > deadline:
                raise RuntimeError(f"the {nodes}-node cluster did not form within 60 s: {infos}")
            time.sleep(0.1)
        # Measure the steady state: after forming, partitions pulled by the
        # joiners settle (a read that misses there still asks the old holder,
        # up to 2 anti-entropy intervals); wait until none is syncing or settling.
        began = time.time()
        while time.time() < began + 60:
            infos = [info_cluster(p) for p in s.all_ports]
            busy = sum(
                int(i.get("cluster_partitions_syncing", "0")) + int(i.get("cluster_partitions_settling", "0"))
                for i in infos
            )
            if busy == 0:
                break
            time.sleep(0.5)
        print(f"  (cluster settled {time.time() - began:.1f} s after forming)", flush=True)
    except Exception:
        s.dump_logs()
        s.stop()
        raise
    return s


SUMMARY = re.compile(r"throughput summary:\s*([\d.]+) requests per second")
LAT = re.compile(r"^\s*([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def run_benchmark(port, test, pipeline, n, clients, size, keyspace):
    argv = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", test,
        "-n", str(n), "-c", str(clients), "-d", str(size), "-r", str(keyspace),
        "-P", str(pipeline), "--precision", "3",
    ]
    # Without -q redis-benchmark prints the latency summary too.
    out = subprocess.run(argv, capture_output=True, text=True, timeout=900).stdout
    ops = p50 = p99 = None
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


def forwarding_report(srv):
    """Keys held per node and commands node 1 forwarded, after a cluster run."""
    infos = [info_cluster(p) for p in srv.all_ports]
    keys = [int(i.get("cluster_local_keys", "0")) for i in infos]
    total = sum(keys) or 1
    fwd = infos[0].get("cluster_forwarded", "?")
    batches = infos[0].get("cluster_forward_batches", "-")
    errs = infos[0].get("cluster_forward_errors", "?")
    repl = infos[0].get("cluster_replicated_writes", "-")
    served = ", ".join(i.get("cluster_peer_requests_served", "?") for i in infos)
    share = ", ".join(f"{k:,} ({k / total:.0%})" for k in keys)
    return (f"keys held per node (replicas included) {share}; node 1: forwarded {fwd} in {batches} batches, "
            f"forward errors {errs}, replicated writes {repl}; peer requests served per node {served}")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x):
    return "-" if x is None else f"{x:.3f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--keyspace", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cluster", choices=["up", "serve"], default="up",
                    help="one `shoal up --nodes 3` process (default) or three `shoal serve` processes")
    ap.add_argument("--replicas", type=int, default=2, help="R of the cluster (default 2, as `shoal up`)")
    ap.add_argument("--quick", action="store_true", help="100k requests, one round")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "shoal"))
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 100_000, 1

    ensure_redis_tools()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "shoal"], cwd=ROOT, check=True)
    print(subprocess.run(["redis-benchmark", "--version"], capture_output=True, text=True).stdout.strip())
    print(f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()}; cluster: {args.cluster}, "
          f"R = {args.replicas}")

    results = {}  # (who, test, P) -> list of (ops, p50, p99)
    configs = [(t, p) for p in (1, 16) for t in ("set", "get")]
    for rnd in range(args.rounds):
        order = ["local", "cluster"] if rnd % 2 == 0 else ["cluster", "local"]
        for who in order:
            srv = start_standalone(args.binary) if who == "local" else start_cluster(args.binary, args.cluster, args.replicas)
            try:
                for test, p in configs:
                    r = run_benchmark(srv.port, test, p, args.requests, args.clients, args.size, args.keyspace)
                    results.setdefault((who, test, p), []).append(r)
                    print(f"round {rnd + 1} {who:7} {test.upper():3} -P {p:<2}: {r[0]:>12,.0f} ops/s  "
                          f"p50 {fmt(r[1])} ms  p99 {fmt(r[2])} ms", flush=True)
                if who == "cluster":
                    print(f"round {rnd + 1} cluster: {forwarding_report(srv)}", flush=True)
            finally:
                srv.stop()

    print()
    print(f"redis-benchmark -t set,get -n {args.requests} -c {args.clients} -d {args.size} -r {args.keyspace}; "
          f"median of {args.rounds} round(s), alternating; load average at end: {os.getloadavg()}")
    print(f"{'test':10} {'local ops/s':>12} {'cluster ops/s':>14} {'ratio':>6}   "
          f"{'local p50/p99 ms':>17} {'cluster p50/p99 ms':>19} {'p50 ratio':>9} {'p99 ratio':>9}")
    verdicts = []
    for test, p in configs:
        loc = results[("local", test, p)]
        clu = results[("cluster", test, p)]
        l_ops, c_ops = med(x[0] for x in loc), med(x[0] for x in clu)
        l50, l99 = med(x[1] for x in loc), med(x[2] for x in loc)
        c50, c99 = med(x[1] for x in clu), med(x[2] for x in clu)
        r50, r99 = ratio(c50, l50), ratio(c99, l99)
        print(f"{test.upper() + ' -P ' + str(p):10} {l_ops:>12,.0f} {c_ops:>14,.0f} {c_ops / l_ops:>6.2f}   "
              f"{fmt(l50) + '/' + fmt(l99):>17} {fmt(c50) + '/' + fmt(c99):>19} "
              f"{'-' if r50 is None else f'{r50:.2f}':>9} {'-' if r99 is None else f'{r99:.2f}':>9}")
        if p == 1:
            verdicts.append((test.upper(), r99))
    print()
    for test, r99 in verdicts:
        ok = r99 is not None and r99 <= 2.0
        shown = "unknown" if r99 is None else f"{r99:.2f}x"
        print(f"bar (cluster p99 at -P 1 within 2x of local p99), {test}: {shown} -> {'PASS' if ok else 'FAIL'}")
    print("(p99 on a shared 2-core box is dominated by scheduling noise when the load average is high: "
          "read the verdict with the load averages above, and compare the p50 ratio too)")


if __name__ == "__main__":
    main()
