#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each, JOBS at a time,
# niced, each from its seeds (fuzz/seeds/T, copied into the working corpus
# fuzz/corpus/T the first time). Prints one line per target: executions,
# coverage, corpus size, crashes (saved in fuzz/artifacts/T/). Needs the
# nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#
#   fuzz/run.sh [SECONDS] [JOBS] [TARGET...]     # default 600 s, 2 at a time, all
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-600}"
JOBS="${2:-2}"
shift 2 2>/dev/null || shift $#
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mediarelay-fuzz-target}"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
LOGS="${FUZZ_LOGS:-$CARGO_TARGET_DIR/fuzz-logs}"
mkdir -p "$LOGS"
# Built once: the runs below start the binaries directly, so an edit of the
# sources during a long run does not rebuild (and block) the next target.
cargo +nightly fuzz build -O >/dev/null 2>&1 || cargo +nightly fuzz build -O || exit 1
BINS="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
run_one() {
  local t="$1"
  mkdir -p "corpus/$t" "artifacts/$t"
  [[ -n "$(ls -A "corpus/$t")" ]] || cp "seeds/$t"/* "corpus/$t/"
  nice -n 19 "$BINS/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    > "$LOGS/$t.log" 2>&1
  local rc=$?
  local runs cov ft crashes
  runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$LOGS/$t.log" | grep -oE '[0-9]+$')"
  cov="$(grep -oE 'cov: [0-9]+' "$LOGS/$t.log" | tail -1 | grep -oE '[0-9]+')"
  ft="$(grep -oE 'ft: [0-9]+' "$LOGS/$t.log" | tail -1 | grep -oE '[0-9]+')"
  crashes="$(ls "artifacts/$t" 2>/dev/null | wc -l)"
  echo "$t: exit $rc, ${runs:-?} executions in ${SECONDS_EACH} s, cov ${cov:-?}, ft ${ft:-?}, corpus $(ls "corpus/$t" | wc -l), crashes $crashes"
}
export -f run_one
export SECONDS_EACH LOGS BINS
printf '%s\n' "${targets[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
