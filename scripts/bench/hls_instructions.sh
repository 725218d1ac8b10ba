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
# baseline of the same work. REQUESTS_SECONDS
# (default 20): length of the wrk run; CONNECTIONS (default 10): wrk's
# connections, one viewer cookie each (the request mix and cookies of
# hls_serve.sh). Needs valgrind, wrk, curl,
# python3. Loopback only; bounded by `timeout`. CALLGRIND_OUT: where to
# keep the busy window's profile (for callgrind_annotate).
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/common.sh
SERVER="${1:-$SERVER}"
REQUESTS_SECONDS="${REQUESTS_SECONDS:-20}"
CONNECTIONS="${CONNECTIONS:-10}"

rtmp=$(free_port); http=$(free_port); api=$(free_port)
MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_HLS_SEGMENT_COUNT=100 \
  valgrind --tool=callgrind --callgrind-out-file="$TMP/callgrind.out" \
  --instr-atstart=no \
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
callgrind_control -i on "$vg" >/dev/null
out=$(HLS_PATHS="$TMP/paths" HLS_VIEWERS="$CONNECTIONS" timeout $((REQUESTS_SECONDS + 60)) wrk -t1 -c"$CONNECTIONS" \
  -d "${REQUESTS_SECONDS}s" --timeout 10s -s "$TMP/mix.lua" "http://127.0.0.1:$http")
callgrind_control -d "$vg" >/dev/null  # the busy window
sleep "$REQUESTS_SECONDS"
callgrind_control -d "$vg" >/dev/null  # the idle window
read -r _ requests errors <<<"$(grep '^RESULT' <<<"$out")"
[ "$errors" = 0 ] || echo "warning: $errors errors" >&2
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
totals() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ && !n { gsub(",", "", $1); print $1; n = 1 }'; }
per_request() {
  python3 -c "import sys; r, b, i = map(int, sys.argv[2:]); print(f'{sys.argv[1]}requests {r} busy {b} idle {i} per_request {(b - i) / max(r, 1):.0f}')" "$@"
}
busy=$(totals "$TMP/callgrind.out.1")
idle=$(totals "$TMP/callgrind.out.2")
cp "$TMP/callgrind.out.1" "${CALLGRIND_OUT:-/dev/null}" 2>/dev/null || true
per_request "" "$requests" "$busy" "$idle"

[ "${NGINX:-0}" = 1 ] || exit 0
nport=$(free_port)
nginx_conf "" "use epoll;" "$(cat <<CONF
http {
  types { application/vnd.apple.mpegurl m3u8; video/mp4 mp4 m4s; }
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000000;
  open_file_cache max=1000 inactive=60s;
  server { listen 127.0.0.1:$nport backlog=16384; root $WWW; }
}
CONF
)"
valgrind --tool=callgrind --callgrind-out-file="$TMP/nginx.out" --instr-atstart=no \
  nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" >"$TMP/nginx.log" 2>&1 &
ng=$!; PIDS+=("$ng")
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.2; done
callgrind_control -i on "$ng" >/dev/null
out=$(HLS_PATHS="$TMP/paths" HLS_VIEWERS="$CONNECTIONS" timeout $((REQUESTS_SECONDS + 60)) wrk -t1 -c"$CONNECTIONS" \
  -d "${REQUESTS_SECONDS}s" --timeout 10s -s "$TMP/mix.lua" "http://127.0.0.1:$nport")
callgrind_control -d "$ng" >/dev/null
sleep "$REQUESTS_SECONDS"
callgrind_control -d "$ng" >/dev/null
read -r _ requests errors <<<"$(grep '^RESULT' <<<"$out")"
[ "$errors" = 0 ] || echo "warning: nginx: $errors errors" >&2
kill -TERM "$ng"
wait "$ng" 2>/dev/null || true
per_request "nginx " "$requests" "$(totals "$TMP/nginx.out.1")" "$(totals "$TMP/nginx.out.2")"
