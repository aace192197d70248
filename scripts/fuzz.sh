#!/usr/bin/env bash
# Runs the cargo-fuzz targets for a while each, one after the other, one job each.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 300 s, every target)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); this stable toolchain builds it
# with RUSTC_BOOTSTRAP=1. New inputs go to fuzz/work/<target>/ (git-ignored), seeded from
# the committed fuzz/corpus/<target>/; crashes land in fuzz/artifacts/<target>/ and should
# be copied to fuzz/regressions/<target>/ (replayed by tests/corpus_replay.rs) once fixed.
# Each target's libFuzzer log is fuzz/work/<target>.log; a summary line per target
# (executions, coverage `cov`, features `ft`) is printed at the end.
#
# SEED_FROM="targetA targetB" also loads fuzz/work/<targetA>/ ... as read-only inputs (new
# finds still go to the target's own directory): a slow target such as `ndjson` starts from
# what the faster document targets already reached instead of rediscovering it.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-300}"
shift || true
export RUSTC_BOOTSTRAP=1
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -O
failed=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/work/$t"
    extra=()
    for s in ${SEED_FROM:-}; do
        if [ "$s" != "$t" ] && [ -d "fuzz/work/$s" ]; then
            extra+=("fuzz/work/$s")
        fi
    done
    echo "==> $t for ${seconds}s${extra[*]:+ (also reading ${extra[*]})}"
    if ! cargo fuzz run -O "$t" "fuzz/work/$t" "fuzz/corpus/$t" "${extra[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        >"fuzz/work/$t.log" 2>&1; then
        echo "    $t FAILED: see fuzz/work/$t.log and fuzz/artifacts/$t/"
        failed=1
    fi
done

echo
# last_new: the execution at which the run last found new coverage (a `NEW` line), and
# where that falls in the run: a run whose last find came early has stopped finding.
printf '%-18s %12s %8s %8s %12s %6s\n' target execs cov ft last_new at
for t in "${targets[@]}"; do
    log="fuzz/work/$t.log"
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    last=$(grep -E '#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
    ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$last")
    new=$(grep -E '^#[0-9]+[[:space:]]+NEW' "$log" | tail -1 | sed -E 's/^#([0-9]+).*/\1/' || true)
    at='?'
    if [[ "$execs" =~ ^[0-9]+$ && "$new" =~ ^[0-9]+$ && "$execs" -gt 0 ]]; then
        at="$((100 * new / execs))%"
    fi
    printf '%-18s %12s %8s %8s %12s %6s\n' "$t" "$execs" "$cov" "$ft" "${new:-?}" "$at"
done
exit "$failed"
