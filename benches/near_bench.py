#!/usr/bin/env python3
"""One hot key read through a forwarding node: near cache on vs off (issue #5).

Starts a local 3-node cluster of `shoal serve` processes (release build, real
QUIC + mTLS on loopback, certificates from `shoal certs` in a temporary
directory), stores one 100-byte value under `key:__rand_int__` (the key
`redis-benchmark -t get` reads when `-r` is absent), finds its primary, and
runs `redis-benchmark -t get -n N -c 50` with no `-r`:

  * `one`: against one node that does NOT own the key (it forwards every GET
    with the near cache off, answers from its near copy with it on);
  * `all`: against all three nodes at once (N / 3 requests each), so the key
    is read by every client through every node.

Each mode runs with the near cache on (`near-cache-keys = 1024`, TTL 1 s,
threshold 1000 reads/s: the defaults) and off (`near-cache-keys = 0`), the
order alternating by round, on a fresh cluster each time. It prints ops/s and
the CPU of each `shoal serve` process during the run (from /proc/PID/stat,
utime + stime, in % of one core), the owner's first, plus the forwarding
node's `SHOAL NEAR` counters.

`--keyspace N` adds `-r N` (N random keys, none hot): the cost the near
cache's bookkeeping adds to cold forwarded reads.

Usage:
    python3 benches/near_bench.py               # 3 rounds, 400k requests per run
    python3 benches/near_bench.py --keyspace 100000 --modes one   # cold keys
    python3 benches/near_bench.py --quick       # 1 round, 100k requests
    python3 benches/near_bench.py --no-build    # use target/release/shoal as is
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster_compare import (  # noqa: E402  (a sibling script's helpers)
    ROOT, SUMMARY, Procs, ensure_redis_tools, free_port, free_udp_port, info_cluster, wait_port,
)

KEY = "key:__rand_int__"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime + stime of `pid` in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name (field 2) may hold spaces: split after its ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def start(binary, near_on, replicas):
    s = Procs("cluster", None, [])
    s.tmp = tempfile.TemporaryDirectory(prefix="shoal-near-bench-")
    certs = s.tmp.name
    subprocess.run([binary, "certs", "init", "--dir", certs], check=True, capture_output=True)
    seed = None
    for i in range(1, 4):
        name = f"node-{i}"
        subprocess.run([binary, "certs", "issue", name, "--dir", certs, "--ip", "127.0.0.1"],
                       check=True, capture_output=True)
        conf = os.path.join(certs, f"{name}.toml")
        with open(conf, "w") as f:
            f.write(f"near-cache-keys = {1024 if near_on else 0}\n")
        port, gossip = free_port(), free_udp_port()
        argv = [binary, "serve", "--config", conf, "--name", name, "--listen", f"127.0.0.1:{port}",
                "--gossip", f"127.0.0.1:{gossip}", "--certs", certs, "--replicas", str(replicas),
                "--admin", "off", "--log-level", "warn"]
        if seed is None:
            seed = f"127.0.0.1:{gossip}"
        else:
            argv += ["--seed", seed]
        s.spawn(argv)
        s.all_ports.append(port)
    try:
        for p in s.all_ports:
            wait_port(p)
        deadline = time.time() + 60
        while True:
            infos = [info_cluster(p) for p in s.all_ports]
            digests = {i.get("cluster_ring_digest") for i in infos}
            if all(i.get("cluster_ring_members") == "3" for i in infos) and len(digests) == 1:
                break
            if time.time() > deadline:
                raise RuntimeError(f"the cluster did not form within 60 s: {infos}")
            time.sleep(0.1)
    except Exception:
        s.dump_logs()
        s.stop()
        raise
    return s


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True,
                          timeout=10).stdout.split()


def owner_index(srv):
    """Index (0..2) of the node that is KEY's primary."""
    # SHOAL PARTITION: the partition, then the replicas' names, primary first.
    names = cli(srv.all_ports[0], "SHOAL", "PARTITION", KEY)
    primary = names[1]
    return int(primary.rsplit("-", 1)[1]) - 1


def near_counters(port):
    out = cli(port, "SHOAL", "NEAR")
    return dict(zip(out[0::2], out[1::2]))


def bench(ports, n, clients, keyspace=0):
    """Run redis-benchmark against every port in `ports` at once; total ops/s."""
    procs = [subprocess.Popen(["redis-benchmark", "-h", "127.0.0.1", "-p", str(p), "-t", "get",
                               "-n", str(n // len(ports)), "-c", str(clients), "-q"]
                              + (["-r", str(keyspace)] if keyspace else []),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for p in ports]
    total = 0.0
    for pr in procs:
        out, _ = pr.communicate(timeout=900)
        rates = [float(x.split()[1]) for x in out.replace("\r", "\n").splitlines()
                 if x.startswith("GET:") and "requests per second" in x]
        m = SUMMARY.search(out)
        if rates:
            total += rates[-1]
        elif m:
            total += float(m.group(1))
        else:
            raise RuntimeError(f"could not parse redis-benchmark output:\n{out[-2000:]}")
    return total


def one_run(binary, near_on, mode, n, clients, replicas, keyspace=0):
    srv = start(binary, near_on, replicas)
    try:
        owner = owner_index(srv)
        others = [i for i in range(3) if i != owner]
        cli(srv.all_ports[owner], "SET", KEY, "x" * 100)
        targets = [srv.all_ports[others[0]]] if mode == "one" else srv.all_ports
        pids = [p.pid for p in srv.procs]
        before = [cpu_ticks(pid) for pid in pids]
        t0 = time.time()
        if keyspace:
            # Fill the keys first (through the owner: SETs are not timed).
            subprocess.run(["redis-benchmark", "-p", str(srv.all_ports[owner]), "-t", "set", "-n",
                            str(keyspace * 2), "-r", str(keyspace), "-d", "100", "-q"],
                           capture_output=True, timeout=900)
        ops = bench(targets, n, clients, keyspace)
        wall = time.time() - t0
        after = [cpu_ticks(pid) for pid in pids]
        cpu = [100.0 * (a - b) / CLK_TCK / wall for a, b in zip(after, before)]
        near = near_counters(srv.all_ports[others[0]])
        fwd = info_cluster(srv.all_ports[others[0]]).get("cluster_forwarded", "?")
        return ops, cpu[owner], [cpu[i] for i in others], owner, near, fwd
    finally:
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=400_000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--modes", default="one,all")
    ap.add_argument("--keyspace", type=int, default=0, help="-r N: random keys instead of one")
    ap.add_argument("--quick", action="store_true", help="100k requests, one round")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "shoal"))
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.rounds = 100_000, 1
    ensure_redis_tools()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--bin", "shoal"], cwd=ROOT, check=True)
    print(f"cores: {os.cpu_count()}; load average at start: {os.getloadavg()}; R = {args.replicas}; "
          f"redis-benchmark -t get -n {args.requests} -c {args.clients} "
          f"{f'-r {args.keyspace}' if args.keyspace else f'(no -r: one key, {KEY})'}", flush=True)
    modes = args.modes.split(",")
    results = {}
    for rnd in range(args.rounds):
        order = [True, False] if rnd % 2 == 0 else [False, True]
        for mode in modes:
            for near_on in order:
                ops, own_cpu, other_cpu, owner, near, fwd = one_run(
                    args.binary, near_on, mode, args.requests, args.clients, args.replicas, args.keyspace)
                results.setdefault((mode, near_on), []).append((ops, own_cpu, sum(other_cpu)))
                print(f"round {rnd + 1} {mode:3} near {'on ' if near_on else 'off'}: {ops:>10,.0f} ops/s; "
                      f"owner node-{owner + 1} CPU {own_cpu:5.1f}%, others "
                      f"{', '.join(f'{c:.1f}%' for c in other_cpu)}; forwarding node: forwarded {fwd}, "
                      f"near hits {near.get('hits', '?')} fills {near.get('fills', '?')}", flush=True)
    print()
    print(f"median of {args.rounds} round(s), alternating; load average at end: {os.getloadavg()}")
    print(f"{'mode':5} {'near':4} {'ops/s':>10} {'owner CPU %':>12} {'others CPU %':>13}")
    for mode in modes:
        for near_on in (False, True):
            rs = results[(mode, near_on)]
            print(f"{mode:5} {'on' if near_on else 'off':4} {statistics.median(r[0] for r in rs):>10,.0f} "
                  f"{statistics.median(r[1] for r in rs):>12.1f} {statistics.median(r[2] for r in rs):>13.1f}")
        on = statistics.median(r[0] for r in results[(mode, True)])
        off = statistics.median(r[0] for r in results[(mode, False)])
        own_on = statistics.median(r[1] for r in results[(mode, True)])
        own_off = statistics.median(r[1] for r in results[(mode, False)])
        print(f"{mode:5} on/off throughput {on / off:.2f}x; owner CPU {own_off:.1f}% -> {own_on:.1f}%")


if __name__ == "__main__":
    main()
