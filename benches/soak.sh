#!/usr/bin/env bash
# The soak run: release build, a 3-node cluster under mixed load with
# maxmemory set (benches/soak.rs), then the PNG (benches/soak_plot).
#
#   benches/soak.sh                  # 600 s, 64 MiB per node
#   DURATION=120 benches/soak.sh     # shorter
#   benches/soak.sh --keys 500000    # extra arguments go to the soak bench
#
# Writes benches/results/soak.csv, soak_summary.txt and soak.png; prints a
# sample line every 10 s and PASS/FAIL per bar at the end. Exit status is
# the bench's (0 = every bar passed).
set -u
cd "$(dirname "$0")/.."

duration=${DURATION:-600}
maxmemory=${MAXMEMORY_MB:-64}
out=${OUT:-benches/results}

cargo build --release --bin shoal || exit 2
cargo bench --bench soak -- --duration "$duration" --maxmemory-mb "$maxmemory" \
    --out "$out" --shoal target/release/shoal "$@"
rc=$?

base=$(sed -n 's/^base (RSS of an empty node after forming): \([0-9.]*\) MiB.*/\1/p' "$out/soak_summary.txt" 2>/dev/null)
if [ -s "$out/soak.csv" ]; then
    cargo run --quiet --release --manifest-path benches/soak_plot/Cargo.toml -- \
        "$out/soak.csv" "$out/soak.png" "$maxmemory" "${base:-0}" || echo "plot failed" >&2
fi
exit "$rc"
