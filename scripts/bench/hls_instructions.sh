#!/usr/bin/env bash
# User-space instructions per HLS request, counted by callgrind: a measure
# of the request path that the machine's noise does not move (wrk's CPU
# per request does, by ±10 % between identical runs on these machines).
# The server runs under callgrind with instrumentation off until the
# stream and the request mix are ready; then two windows of the same
# length are counted: one while wrk sends requests, one with no requests
# (the stream's ingest and muxing alone). Per request: (busy − idle) ÷
# requests. Everything in user space is counted (tokio included); nothing
# in the kernel is.
#
#   scripts/bench/hls_instructions.sh [BINARY]    (default: $SERVER or the release build)
#
# Prints "requests N busy B idle I per_request P". With NGINX=1 it also
# counts nginx (the configuration of hls_serve.sh: one worker, sendfile,
# open_file_cache) serving the same files, saved byte for byte, under the
# same wrk mix, and prints its line ("nginx requests …"): the user-space
# baseline of the same work. CACHE_SIM=1 adds callgrind's cache simulation
# (first-level data and last-level misses per request, for caches the size
# of this machine's: what instruction counts do not show when thousands of
# connections each touch their own state; slower). REQUESTS_SECONDS
# (default 20): length of the counted window; WARMUP (default 0): seconds
# of requests before it (not counted; the window's requests are then the
# server's own count); CONNECTIONS (default 10): wrk's
# connections, one viewer cookie each (the request mix and cookies of
# hls_serve.sh). Needs valgrind, wrk, curl,
# python3. Loopback only; bounded by `timeout`. CALLGRIND_OUT (and
# NGINX_CALLGRIND_OUT): where to
# keep the busy window's profile (for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/common.sh
SERVER="${1:-$SERVER}"
REQUESTS_SECONDS="${REQUESTS_SECONDS:-20}"
WARMUP="${WARMUP:-0}"
CONNECTIONS="${CONNECTIONS:-10}"

SIM=()
[ "${CACHE_SIM:-0}" = 1 ] && SIM=(--cache-sim=yes)
rtmp=$(free_port); http=$(free_port); api=$(free_port)
MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_HLS_SEGMENT_COUNT=100 \
  valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
  --instr-atstart=no "${SIM[@]}" \
  "$SERVER" --rtmp-listen "127.0.0.1:$rtmp" --http-listen "127.0.0.1:$http" \
  --api-listen "127.0.0.1:$api" --webrtc-listen "" --webrtc-tcp-listen "" --rtsp-listen "" \
  --log-level warn >"$TMP/server.log" 2>&1 &
vg=$!; PIDS+=("$vg")  # valgrind itself: stopped on exit
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$rtmp") 2>/dev/null && break; sleep 0.2; done
timeout 300 "$BIN/mediarelay-load" --rtmp "127.0.0.1:$rtmp" --http "127.0.0.1:$http" \
  --path live/bench --publish "$SRC" --seconds 240 >"$TMP/publisher.log" 2>&1 &
PIDS+=("$!")

# Two complete segments; their URLs (and the init segment's) make the mix.
BASE="http://127.0.0.1:$http/live/bench"
n=0
for _ in $(seq 120); do
  n=$(curl -s --max-time 20 "$BASE/index.m3u8" | grep -c '^seg_' || true)
  [ "$n" -gt 2 ] && break
  sleep 1
done
[ "$n" -gt 2 ] || { echo "no complete segments under valgrind" >&2; exit 1; }
playlist=$(curl -s --max-time 20 "$BASE/index.m3u8")
: >"$TMP/paths"
echo "/live/bench/index.m3u8" >>"$TMP/paths"
init=$(grep -o 'URI="init_[0-9]*\.mp4"' <<<"$playlist" | head -1 | cut -d'"' -f2)
echo "/live/bench/$init" >>"$TMP/paths"
for seg in $(grep '^seg_' <<<"$playlist" | head -2); do
  echo "/live/bench/$seg" >>"$TMP/paths"
  msn=${seg#seg_}; msn=${msn%.m4s}
  grep -o "URI=\"part_${msn}_[0-9]*\.m4s\"" <<<"$playlist" | cut -d'"' -f2 |
    sed 's|^|/live/bench/|' >>"$TMP/paths"
done

cat >"$TMP/mix.lua" <<'LUA'
local paths = {}
for line in io.lines(os.getenv("HLS_PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i + 1
  local id = string.format("%032x", (i - 1) % tonumber(os.getenv("HLS_VIEWERS")))
  return wrk.format("GET", paths[(i - 1) % #paths + 1], { Cookie = "mediarelay_hls=" .. id })
end
done = function(summary)
  io.write(string.format("RESULT %d %d\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status))
end
LUA
# window NAME PORT PID: wrk on PORT for WARMUP + REQUESTS_SECONDS s; the
# last REQUESTS_SECONDS s are counted (callgrind's dump .1), then as long
# again with no requests (.2); sets REQUESTS to the requests of the busy
# window: wrk's count without a warm-up, else the server's own count
# across the window (so the first request of each connection and viewer,
# which makes its session, falls in the warm-up).
window() {
  local name=$1 port=$2 pid=$3 c0 wrk_pid
  [ "$WARMUP" -gt 0 ] || callgrind_control -i on "$pid" >/dev/null
  HLS_PATHS="$TMP/paths" HLS_VIEWERS="$CONNECTIONS" timeout $((WARMUP + REQUESTS_SECONDS + 60)) wrk -t1 -c"$CONNECTIONS" \
    -d "$((WARMUP + REQUESTS_SECONDS))s" --timeout 10s -s "$TMP/mix.lua" "http://127.0.0.1:$port" >"$TMP/wrk.out" &
  wrk_pid=$!
  if [ "$WARMUP" -gt 0 ]; then
    sleep "$WARMUP"
    c0=$(served "$name")
    callgrind_control -i on "$pid" >/dev/null
    sleep "$REQUESTS_SECONDS"
    callgrind_control -d "$pid" >/dev/null  # the busy window
    callgrind_control -i off "$pid" >/dev/null
    REQUESTS=$(($(served "$name") - c0))
    wait "$wrk_pid" || true
    callgrind_control -i on "$pid" >/dev/null
  else
    wait "$wrk_pid" || true
    callgrind_control -d "$pid" >/dev/null  # the busy window
    REQUESTS=$(awk '/^RESULT/ { print $2 }' "$TMP/wrk.out")
  fi
  local errors
  errors=$(awk '/^RESULT/ { print $3 }' "$TMP/wrk.out")
  [ "${errors:-1}" = 0 ] || echo "warning: $name: ${errors:-unknown} errors" >&2
  sleep "$REQUESTS_SECONDS"
  callgrind_control -d "$pid" >/dev/null  # the idle window
}

# served NAME: requests the server has answered so far.
served() {
  case $1 in
    mediarelay) served_requests mediarelay "$api" ;;
    nginx) served_requests nginx "$nstatus" ;;
  esac
}

window mediarelay "$http" "$vg"
requests=$REQUESTS
if [ "${NGINX:-0}" = 1 ]; then
  # The same bytes for nginx, fetched before the stream moves on.
  WWW="$TMP/www"
  while read -r p; do
    mkdir -p "$WWW$(dirname "$p")"
    curl -sf --max-time 20 -o "$WWW$p" "http://127.0.0.1:$http$p"
  done <"$TMP/paths"
fi
kill -TERM "$vg"
wait "$vg" 2>/dev/null || true
# per_request LABEL REQUESTS BUSY_FILE IDLE_FILE: instructions per request,
# and with the cache simulation its first-level data read and write misses
# (D1mr, D1mw) and last-level data misses (DLmr + DLmw) per request.
per_request() {
  python3 - "$@" <<'PY'
import sys
label, requests, busy, idle = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def totals(path):
    events, sums = None, None
    for line in open(path, errors="replace"):
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith(("summary:", "totals:")):
            sums = [int(x) for x in line.split()[1:]]
    return dict(zip(events, sums))
b, i = totals(busy), totals(idle)
per = {k: (b[k] - i.get(k, 0)) / max(requests, 1) for k in b}
out = f"{label}requests {requests} busy {b['Ir']} idle {i.get('Ir', 0)} per_request {per['Ir']:.0f}"
if "D1mr" in per:
    out += (f" D1_read_misses {per['D1mr']:.1f} D1_write_misses {per['D1mw']:.1f}"
            f" LL_data_misses {per['DLmr'] + per['DLmw']:.1f}")
print(out)
PY
}
cp "$TMP/callgrind.out.1" "${CALLGRIND_OUT:-/dev/null}" 2>/dev/null || true
per_request "" "$requests" "$TMP/callgrind.out.1" "$TMP/callgrind.out.2"

[ "${NGINX:-0}" = 1 ] || exit 0
nport=$(free_port); nstatus=$(free_port)
nginx_static_conf "$nport" "$nstatus" "$WWW" on
valgrind --tool=callgrind --callgrind-out-file="$TMP/nginx.out" --instr-atstart=no "${SIM[@]}" \
  nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" >"$TMP/nginx.log" 2>&1 &
ng=$!; PIDS+=("$ng")
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.2; done
window nginx "$nport" "$ng"
requests=$REQUESTS
# nginx under valgrind may sleep through SIGTERM with no connection left;
# its counts are written already.
kill -TERM "$ng"
for _ in $(seq 50); do kill -0 "$ng" 2>/dev/null || break; sleep 0.2; done
kill -KILL "$ng" 2>/dev/null || true
wait "$ng" 2>/dev/null || true
cp "$TMP/nginx.out.1" "${NGINX_CALLGRIND_OUT:-/dev/null}" 2>/dev/null || true
per_request "nginx " "$requests" "$TMP/nginx.out.1" "$TMP/nginx.out.2"
