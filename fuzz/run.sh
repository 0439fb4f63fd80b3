#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 45) from the committed seed corpus and
# fails on the first crash. New inputs go to a scratch directory, so the committed corpus
# only grows by hand. Prints one line per target: executions, time, corpus size.
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo fuzz use the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-45}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -O
for t in mbox series console config; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if ! cargo fuzz run -O "$t" "$scratch/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576 -timeout=20 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t FAILED (crash input under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    echo "fuzz: $t ok: $runs(s), $cov, corpus $(ls "corpus/$t" | wc -l) seeds + $(ls "$scratch/$t" | wc -l) new"
done
