#!/usr/bin/env bash
# Run every fuzz target for a bounded time and print executions and crashes
# per target.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     (default: 60 s each, every target)
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# The growing corpus lives in fuzz/corpus/TARGET (git-ignored), seeded from
# fuzz/seeds/TARGET (checked in); crashing inputs land in
# fuzz/artifacts/TARGET. A crash stops that target's run (libFuzzer's
# default); the script goes on with the next and exits 1 at the end.
set -u
cd "$(dirname "$0")"

secs=${1:-60}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# One build of every target (the library is compiled once); the runs below
# use the binaries directly, so an edit elsewhere in the tree during a run
# does not trigger a rebuild.
cargo +nightly fuzz build >build.log 2>&1 || {
    echo "build failed; see fuzz/build.log" >&2
    exit 2
}
bin=target/x86_64-unknown-linux-gnu/release

failed=0
printf '%-20s %8s %14s %8s %8s\n' target seconds executions crashes corpus
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t" logs
    before=$(find "artifacts/$t" -type f | wc -l)
    log="logs/$t.log"
    "$bin/$t" "corpus/$t" "seeds/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    if [ -z "$execs" ]; then
        # No final stats (the run crashed): take the last progress line.
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    fi
    after=$(find "artifacts/$t" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="?(rc=$rc)"
    fi
    [ "$rc" -ne 0 ] && failed=1
    printf '%-20s %8s %14s %8s %8s\n' "$t" "$secs" "${execs:-0}" "$crashes" "$(find "corpus/$t" -type f | wc -l)"
done
[ "$failed" -eq 0 ] || echo "some target failed: see fuzz/logs/TARGET.log and fuzz/artifacts/" >&2
exit "$failed"
