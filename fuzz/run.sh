#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS (default 45) and fails on the first crash.
# Each target is seeded from the test data the crates already keep (examples/, the crates'
# testdata/, config/), read in place, plus fuzz/corpus/<target> for the few seeds that exist
# nowhere else. libFuzzer writes new inputs only to the first corpus directory, a scratch
# directory here, so no seed folder changes. Prints one line per target: executions, time,
# seeds and new inputs.
# Stable Rust: RUSTC_BOOTSTRAP=1 lets cargo fuzz use the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd .. && pwd)"
secs="${1:-45}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -O

# The seed folders of target $1 (read only), in `dirs`.
seeds() {
    case "$1" in
        mbox | series) dirs=("$root/examples" "$root/analyzers/kbot-series/testdata") ;;
        console) dirs=("$root/analyzers/kbot-console/testdata") ;;
        config) dirs=("$root/bot/kbot-config/testdata" "$root/config") ;;
        inbox_headers | mail_headers) dirs=("$root/examples" "$root/analyzers/kbot-series/testdata" "$root/analyzers/kbot-testdata/testdata") ;;
        atom) dirs=("$root/bot/kbot-lore/testdata") ;;
        *) echo "fuzz: no seeds for target $1" >&2; exit 1 ;;
    esac
    if [ -d "corpus/$1" ]; then
        dirs+=("$PWD/corpus/$1")
    fi
    for d in "${dirs[@]}"; do
        [ -d "$d" ] || { echo "fuzz: seed folder $d is missing" >&2; exit 1; }
    done
}

for t in mbox series console config atom inbox_headers mail_headers; do
    seeds "$t"
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if ! cargo fuzz run -O "$t" "$scratch/$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576 -timeout=20 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: $t FAILED (crash input under fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
    nseeds=$(find "${dirs[@]}" -maxdepth 1 -type f | wc -l)
    echo "fuzz: $t ok: $runs(s), $cov, $nseeds seeds in ${#dirs[@]} folders + $(ls "$scratch/$t" | wc -l) new"
done
