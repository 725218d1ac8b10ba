#!/usr/bin/env bash
# Soak: one publisher and mixed viewers (RTMP, LL-HLS, WHEP) against one
# server for a long time, sampling the server's RSS, open fds and CPU every
# SAMPLE seconds into a CSV (and a PNG plot when mediarelay-plot is built).
#
#   scripts/soak.sh [SECONDS] [RTMP HLS WHEP]     # default: 3600 s, 80 80 40
#
# Pass/fail (exit code 1 on a failure, every check printed):
# - every viewer got media and none failed (the load tool's summary);
# - no panic and no ERROR line in the server's log (peer-caused
#   disconnects are logged at warn);
# - open fds back to what they were before the viewers came, once they
#   have left (sessions and sockets all closed);
# - for runs of 10 minutes or more: RSS flat, the mean of the last quarter
#   within 5 % of the mean of the second quarter (the first is warm-up).
#
# Binaries: release builds by default; SOAK_SERVER_BIN and SOAK_LOAD_BIN
# point to others (not MEDIARELAY_*: that prefix is the server's config) (the CI test tests/soak.rs runs a 2-minute soak on its debug
# build). Output: target/soak/soak.csv, soak.log (the server's), soak.json
# (the load tool's summary), soak.png. Everything on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TOTAL="${1:-3600}"
N_RTMP="${2:-80}"
N_HLS="${3:-80}"
N_WHEP="${4:-40}"
SAMPLE="${SAMPLE:-10}"
OUT="${SOAK_OUT:-target/soak}"
mkdir -p "$OUT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mediarelay-target}"
if [[ -z "${SOAK_SERVER_BIN:-}" || -z "${SOAK_LOAD_BIN:-}" ]]; then
  cargo build --release --quiet --bin mediarelay --bin mediarelay-load
  SOAK_SERVER_BIN="$CARGO_TARGET_DIR/release/mediarelay"
  SOAK_LOAD_BIN="$CARGO_TARGET_DIR/release/mediarelay-load"
fi
SOURCE="${SOAK_SOURCE:-fixtures/media/res_a_320x240.flv}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# The server on free ports, its log in the output directory.
LOG="$OUT/soak.log"
# Every viewer comes from 127.0.0.1: the per-client admission limits
# (connection and WHEP POST rates, connections per client) are off. The HLS
# muxer stops 10 s after its last request (default 60 s), so the fd check
# below also sees the window's segment memory files closed in its 30 s.
MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_LIMITS_MAX_CONNECTIONS_PER_IP=0 \
  MEDIARELAY_LIMITS_WEBRTC_POST_RATE=0 MEDIARELAY_HLS_IDLE_TIMEOUT=10s \
  "$SOAK_SERVER_BIN" --rtmp-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
  --webrtc-listen 127.0.0.1:0 --webrtc-tcp-listen "" --rtsp-listen "" --rtmps-listen "" --log-level info \
  > "$LOG" 2>&1 &
SERVER=$!
PIDS+=("$SERVER")
for _ in $(seq 200); do grep -q "mediarelay listening" "$LOG" && break; sleep 0.1; done
listening="$(grep "mediarelay listening" "$LOG" | head -1)"
[[ -n "$listening" ]] || { echo "FAIL: the server did not start:"; cat "$LOG"; exit 1; }
addr_of() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$listening"; }
RTMP="$(addr_of rtmp)"
HTTP="$(addr_of http)"
echo "server pid $SERVER rtmp $RTMP http $HTTP"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
cpu_s() { python3 -c 'import os,sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK"))' "$1"; }

CSV="$OUT/soak.csv"
echo "seconds,rss_kib,fds,cpu_seconds,phase" > "$CSV"
T0=$(date +%s)
sample() { echo "$(( $(date +%s) - T0 )),$(rss_kib "$SERVER"),$(fds "$SERVER"),$(cpu_s "$SERVER"),$1" >> "$CSV"; }

FDS_BASE="$(fds "$SERVER")"
sample idle
# Publisher and viewers: the load tool publishes (looped, real-time pace)
# and after its 5 s warm-up lets the viewers in.
"$SOAK_LOAD_BIN" --rtmp "$RTMP" --http "$HTTP" --path live/soak --publish "$SOURCE" \
  --rtmp-players "$N_RTMP" --hls-viewers "$N_HLS" --whep-viewers "$N_WHEP" --whep-decode 5 \
  --warmup 5 --seconds "$SECONDS_TOTAL" --server-pid "$SERVER" --json > "$OUT/soak.json" 2> "$OUT/load.err" &
LOAD=$!
PIDS+=("$LOAD")
while kill -0 "$LOAD" 2>/dev/null; do
  sleep "$SAMPLE"
  kill -0 "$SERVER" 2>/dev/null || { echo "FAIL: the server died"; exit 1; }
  sample load
done
wait "$LOAD" || true
# Viewers gone: HLS viewer sessions expire after hls.viewer_timeout (15 s),
# the HLS muxer and its segment files after hls.idle_timeout (10 s here),
# WebRTC sessions on DTLS close or ICE timeout.
for _ in $(seq 30); do
  sleep 1
  [[ "$(fds "$SERVER")" -le "$FDS_BASE" ]] && break
done
sleep 2
sample after
FDS_END="$(fds "$SERVER")"

fail=0
check() { if "${@:2}"; then echo "ok:   $1"; else echo "FAIL: $1"; fail=1; fi; }
summary="$(tail -1 "$OUT/soak.json")"
viewers_ok() {
  python3 - "$summary" <<'EOF'
import json, sys
s = json.loads(sys.argv[1])
bad = [p for p in ("rtmp", "hls", "whep")
       if s[p]["viewers"] and (s[p]["with_media"] != s[p]["viewers"] or s[p]["failed"])]
for p in ("rtmp", "hls", "whep"):
    print(f"      {p}: {s[p]['with_media']}/{s[p]['viewers']} with media, {s[p]['failed']} failed")
sys.exit(1 if bad else 0)
EOF
}
check "every viewer got media" viewers_ok
check "no panic in the server's log" bash -c "! grep -qi 'panic' '$LOG'"
check "no ERROR in the server's log" bash -c "! grep -q ' ERROR ' '$LOG'"
echo "      fds: $FDS_BASE before the viewers, $FDS_END after they left"
check "fds back to the baseline" test "$FDS_END" -le "$FDS_BASE"
if [[ "$SECONDS_TOTAL" -ge 600 ]]; then
  rss_flat() {
    python3 - "$CSV" <<'EOF'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["phase"] == "load"]
q = len(rows) // 4
second = [int(r["rss_kib"]) for r in rows[q:2 * q]]
last = [int(r["rss_kib"]) for r in rows[3 * q:]]
a, b = sum(second) / len(second), sum(last) / len(last)
print(f"      RSS mean {a / 1024:.1f} MiB (2nd quarter) -> {b / 1024:.1f} MiB (last quarter), {100 * (b - a) / a:+.1f} %")
sys.exit(0 if abs(b - a) <= 0.05 * a else 1)
EOF
  }
  check "RSS flat after warm-up (within 5 %)" rss_flat
fi
PLOT="$CARGO_TARGET_DIR/release/mediarelay-plot"
if [[ -x "$PLOT" ]]; then
  "$PLOT" --soak "$CSV" --out "$OUT" || echo "(no plot: mediarelay-plot failed)"
fi
echo "csv: $CSV  log: $LOG  summary: $OUT/soak.json"
exit "$fail"
