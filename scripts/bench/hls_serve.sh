#!/usr/bin/env bash
# HLS serving, mediarelay (parts and segments from memory, while the stream
# runs) vs nginx (the same bytes saved to files, sendfile), same machine,
# same request mix, same HTTP load generator (wrk), one after the other.
# The server runs on core 0, wrk on core 1 (taskset). Prints a markdown
# table and writes target/bench/hls_serve.csv:
#   server,connections,seconds,requests,requests_per_second,bytes_per_second,cpu_seconds,cpu_ms_per_1000_requests,errors,client_cpu_seconds,total_cpu_ms_per_1000_requests,round,steady_seconds,steady_requests,steady_requests_per_second,steady_cpu_seconds,steady_cpu_ms_per_1000_requests,steady_client_cpu_seconds
#
#   scripts/bench/hls_serve.sh [CONNECTION COUNTS…]     (default: 1000 5000 10000)
#
# Each wrk run lasts WARMUP (default 10) + SECONDS_PER_RUN (default 15) s
# and is measured twice: as a whole (wrk's request count; the server's CPU
# from before wrk starts to after it ends, so it includes opening every
# connection, each new viewer's session, and TCP windows growing from their
# initial size) and over its steady window, the last SECONDS_PER_RUN s
# (requests counted by the server itself: mediarelay's /metrics, nginx's
# stub_status; CPU from /proc at the window's two ends). ROUNDS (default 1):
# how many times each count is measured, the two servers alternating
# (mediarelay, nginx, mediarelay, …); the ratio is given per round and as
# the median of the rounds, since one run moves by ±10–30 % on these
# machines. SEGMENTS (default 4):
# how many of the most recent complete segments, with all their parts, make
# the request mix (plus the playlist and the init segment). NGINX_SENDFILE
# (default on): nginx's `sendfile`; `off` makes it copy its files into the
# sockets.
#
# Every request carries a `mediarelay_hls` cookie, one of as many ids as
# there are connections, so mediarelay tracks as many HLS viewer sessions as
# wrk has connections (nginx ignores the cookie; the bytes on the wire are
# the same for both servers).
#
# SYSCALLS=1: also counts each server's system calls by kind during its
# runs (perf stat on the syscalls tracepoints; needs perf and root) and
# prints them per request, in $OUT/hls_syscalls.csv. PERF_RECORD=1: records
# each server's CPU profile during each run's steady window (perf record,
# cpu-clock, call graphs) into $OUT/hls_perf_SERVER_CONNECTIONS_ROUND.data.
#
# Needs: nginx, wrk, ffmpeg, curl, taskset (util-linux). Builds mediarelay
# and mediarelay-load in release mode. Loopback only; every client is
# bounded by `timeout`, the servers are stopped after their runs and on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNTS=("${@:-1000 5000 10000}")
read -r -a COUNTS <<<"${COUNTS[*]}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-15}"
WARMUP="${WARMUP:-10}"
RUN_SECONDS=$((WARMUP + SECONDS_PER_RUN + 10))
SEGMENTS="${SEGMENTS:-4}"
ROUNDS="${ROUNDS:-1}"
NGINX_SENDFILE="${NGINX_SENDFILE:-on}"
CPU_BUDGET="${CPU_BUDGET:-}"
. scripts/bench/common.sh

# launch NAME COMMAND…: runs COMMAND (exec'd: `$!` of `launch … &` is its
# pid), inside a cgroup of its own with CPU_BUDGET when that is set.
declare -A BUDGET_OF=()
if [ -n "$CPU_BUDGET" ]; then
  for srv in mediarelay nginx; do budget_cgroup "$srv" "$CPU_BUDGET"; BUDGET_OF[$srv]=$BUDGET_CG; done
fi
launch() {
  if [ -n "$CPU_BUDGET" ]; then in_cgroup "${BUDGET_OF[$1]}" "${@:2}"; else exec "${@:2}"; fi
}

# mediarelay on core 0, publishing for the whole benchmark. The window holds
# 100 complete segments (~200 s), so the segments chosen below stay served
# while every run happens.
rtmp=$(free_port); http=$(free_port); api=$(free_port)
MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_LIMITS_MAX_CONNECTIONS_PER_IP=0 \
  MEDIARELAY_LIMITS_MAX_CONNECTIONS=0 MEDIARELAY_HLS_SEGMENT_COUNT=100 \
  launch mediarelay taskset -c 0 "$SERVER" --rtmp-listen "127.0.0.1:$rtmp" \
  --http-listen "127.0.0.1:$http" --api-listen "127.0.0.1:$api" --webrtc-listen "" --webrtc-tcp-listen "" --rtsp-listen "" \
  --log-level warn >"$TMP/mediarelay.log" 2>&1 &
mr_pid=$!; PIDS+=("$mr_pid")   # taskset execs the server: this is its pid
wait_port "$rtmp"
n_runs=${#COUNTS[@]}
PUBLISH_SECONDS=$((n_runs * ROUNDS * 2 * (RUN_SECONDS + 30) + 60))
timeout $((PUBLISH_SECONDS + 30)) taskset -c 1 "$BIN/mediarelay-load" --rtmp "127.0.0.1:$rtmp" \
  --http "127.0.0.1:$http" --path live/bench --publish "$SRC" --seconds "$PUBLISH_SECONDS" \
  >"$TMP/publisher.log" 2>&1 &
PIDS+=("$!")

# The playlist request starts the muxer; wait until SEGMENTS + 1 segments are complete.
BASE="http://127.0.0.1:$http/live/bench"
for _ in $(seq 60); do
  n=$(curl -s --max-time 15 "$BASE/index.m3u8" | grep -c '^seg_' || true)
  [ "$n" -gt "$SEGMENTS" ] && break
  sleep 1
done
[ "$n" -gt "$SEGMENTS" ] || { echo "no $SEGMENTS complete segments after 60 s" >&2; exit 1; }

# choose_mix: the request mix, $TMP/paths: the playlist, the init segment,
# the last SEGMENTS complete segments and all their parts, saved byte for
# byte under $WWW for nginx. Chosen again before each pair of runs (the
# window holds 100 segments, ~200 s: a mix chosen once would leave it
# during long benchmarks), so both servers of a round serve the same bytes.
WWW="$TMP/www"
choose_mix() {
  rm -rf "$WWW"
  mkdir -p "$WWW/live/bench"
  curl -s --max-time 15 -o "$WWW/live/bench/index.m3u8" "$BASE/index.m3u8"
  python3 - "$WWW/live/bench/index.m3u8" "$SEGMENTS" >"$TMP/files" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
segs = re.findall(r"^seg_(\d+)\.m4s$", text, re.M)[-int(sys.argv[2]):]
init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text).group(1)
print("index.m3u8")
print(init)
for msn in segs:
    print(f"seg_{msn}.m4s")
    # Parts of a complete segment are served whether or not the playlist
    # still lists them: ask for them until the first 404.
    print(f"PARTS {msn}")
PY
  : >"$TMP/paths"
  local f msn k name code
  while read -r f; do
    if [[ $f == PARTS* ]]; then
      msn=${f#PARTS }
      for k in $(seq 0 99); do
        name="part_${msn}_$k.m4s"
        code=$(curl -s --max-time 15 -o "$WWW/live/bench/$name" -w '%{http_code}' "$BASE/$name")
        if [ "$code" != 200 ]; then rm -f "$WWW/live/bench/$name"; break; fi
        echo "/live/bench/$name" >>"$TMP/paths"
      done
    else
      [ "$f" = index.m3u8 ] || curl -sf --max-time 15 -o "$WWW/live/bench/$f" "$BASE/$f"
      echo "/live/bench/$f" >>"$TMP/paths"
    fi
  done <"$TMP/files"
  echo "request mix: $(wc -l <"$TMP/paths") URLs, $(du -sb "$WWW" | cut -f1) bytes in all" >&2
}

# wrk: rotates over the paths; connection i's requests carry viewer id i
# (rotated with the paths, so every id is used).
cat >"$TMP/mix.lua" <<'LUA'
local paths, ids, reqs = {}, {}, {}
for line in io.lines(os.getenv("HLS_PATHS")) do paths[#paths + 1] = line end
local n = tonumber(os.getenv("HLS_VIEWERS"))
local i = 0
request = function()
  i = i + 1
  local p = paths[(i - 1) % #paths + 1]
  local id = string.format("%032x", (i - 1) % n)
  return wrk.format("GET", p, { Cookie = "mediarelay_hls=" .. id })
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d\n", summary.duration, summary.requests, summary.bytes,
    e.connect + e.read + e.write + e.timeout, e.status))
end
LUA

[ -z "${SYSCALLS:-}" ] || echo "server,connections,round,syscall,count,per_request" >"$OUT/hls_syscalls.csv"
echo "server,connections,seconds,requests,requests_per_second,bytes_per_second,cpu_seconds,cpu_ms_per_1000_requests,errors,client_cpu_seconds,total_cpu_ms_per_1000_requests,round,steady_seconds,steady_requests,steady_requests_per_second,steady_cpu_seconds,steady_cpu_ms_per_1000_requests,steady_client_cpu_seconds" >"$OUT/hls_serve.csv"

# Runs a command and then prints "CLIENT_CPU <user + system seconds>" of it
# (and its children): wrk's own CPU, so that the client's share of the
# loopback TCP work is seen next to the server's.
with_cpu() {
  python3 -c 'import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, text=True)
sys.stdout.write(r.stdout)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"CLIENT_CPU {u.ru_utime + u.ru_stime:.3f}")' "$@"
}

# served SERVER: how many HTTP requests the server has answered so far.
served() {
  case $1 in
    mediarelay) served_requests mediarelay "$api" ;;
    nginx) served_requests nginx "$nstatus" ;;
  esac
}

# sample SERVER PID WRK_PID: "<seconds since the epoch> <answered> <server
# CPU s> <wrk CPU s>", the count first, the CPU times right after it.
sample() {
  local count
  count=$(served "$1")
  echo "$(date +%s.%N) ${count:-nan} $(cpu_of "$2") $(cpu_of "$3" 2>/dev/null || echo nan)"
}

# measure SERVER CONNECTIONS PORT PID: one wrk run of WARMUP +
# SECONDS_PER_RUN s. The whole run is measured from wrk's totals and the
# server's CPU before and after it; the steady window (the last
# SECONDS_PER_RUN s, after every connection is open and its TCP windows have
# grown) from the server's own request counts and CPU at its two ends.
measure() {
  local server=$1 n=$2 port=$3 pid=$4
  local before after out line client wrk_pid start end
  before=$(cpu_of "$pid")
  local perf_pid=""
  if [ -n "${SYSCALLS:-}" ]; then
    perf stat -x, -e 'syscalls:sys_enter_*' -p "$pid" -o "$TMP/syscalls_${server}_${n}_$round" &
    perf_pid=$!
    sleep 1
  fi
  with_cpu env HLS_PATHS="$TMP/paths" HLS_VIEWERS="$n" timeout $((RUN_SECONDS + 60)) \
    taskset -c 1 wrk -t1 -c "$n" -d "${RUN_SECONDS}s" --timeout 10s -s "$TMP/mix.lua" \
    "http://127.0.0.1:$port" >"$TMP/wrk.out" || true &
  local runner=$!
  wrk_pid=""
  for _ in $(seq 50); do
    wrk_pid=$(pgrep -n -x wrk || true)
    [ -n "$wrk_pid" ] && break
    sleep 0.1
  done
  sleep "$WARMUP"
  start=$(sample "$server" "$pid" "${wrk_pid:-0}")
  local record_pid=""
  if [ -n "${PERF_RECORD:-}" ]; then
    perf record -q -e cpu-clock -g -p "$pid" -o "$OUT/hls_perf_${server}_${n}_$round.data" &
    record_pid=$!
  fi
  sleep "$SECONDS_PER_RUN"
  end=$(sample "$server" "$pid" "${wrk_pid:-0}")
  if [ -n "$record_pid" ]; then kill -INT "$record_pid"; wait "$record_pid" || true; fi
  wait "$runner" || true
  out=$(cat "$TMP/wrk.out")
  after=$(cpu_of "$pid")
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
  line=$(grep '^RESULT' <<<"$out" || true)
  client=$(grep '^CLIENT_CPU' <<<"$out" | cut -d' ' -f2 || true)
  [ -n "$line" ] || { echo "wrk gave no result for $server at $n connections" >&2; return 1; }
  python3 - "$server" "$n" "$before" "$after" "${client:-nan}" "$round" "$start" "$end" $line >>"$OUT/hls_serve.csv" <<'PY'
import sys
server, n, before, after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
client = float(sys.argv[5])
start, end = (list(map(float, a.split())) for a in sys.argv[7:9])
micros, reqs, nbytes, sock_errors, status_errors = map(int, sys.argv[10:15])
secs = micros / 1e6
cpu = after - before
per = 1000 * 1000 / max(reqs, 1)
w_secs, w_reqs, w_cpu, w_client = (e - s for s, e in zip(start, end))
w_per = 1000 * 1000 / w_reqs if w_reqs > 0 else float("nan")
print(f"{server},{n},{secs:.2f},{reqs},{reqs / secs:.0f},{nbytes / secs:.0f},{cpu:.2f},"
      f"{per * cpu:.3f},{sock_errors + status_errors},{client:.2f},{per * (cpu + client):.3f},{sys.argv[6]},"
      f"{w_secs:.2f},{w_reqs:.0f},{w_reqs / w_secs:.0f},{w_cpu:.2f},{w_per * w_cpu:.3f},{w_client:.2f}")
PY
  if [ -n "$perf_pid" ]; then
    python3 - "$server" "$n,$round" "$TMP/syscalls_${server}_${n}_$round" "$OUT/hls_syscalls.csv" $line <<'PY'
import sys
server, n, src, dst = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
reqs = max(int(sys.argv[7]), 1)  # $line: RESULT micros requests …
with open(dst, "a") as out:
    for row in open(src):
        f = row.strip().split(",")
        if len(f) < 3 or not f[0].isdigit() or int(f[0]) == 0:
            continue
        name = f[2].removeprefix("syscalls:sys_enter_")
        out.write(f"{server},{n},{name},{f[0]},{int(f[0]) / reqs:.3f}\n")
PY
  fi
}

# The stream alone (ingest and muxing, no viewers) costs mediarelay this
# much CPU per second; reported so the serving cost can be told apart.
c0=$(cpu_of "$mr_pid"); sleep 5; c1=$(cpu_of "$mr_pid")
STREAM_CPU=$(python3 -c "print(f'{($c1 - $c0) / 5:.4f}')")

# nginx on core 0, one worker, at its best for static files.
nport=$(free_port); nstatus=$(free_port)
nginx_static_conf "$nport" "$nstatus" "$WWW" "$NGINX_SENDFILE"

for n in "${COUNTS[@]}"; do
  for round in $(seq "$ROUNDS"); do
    choose_mix
    measure mediarelay "$n" "$http" "$mr_pid"
    launch nginx taskset -c 0 nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" &
    ng_pid=$!; PIDS+=("$ng_pid")
    wait_port "$nport"
    measure nginx "$n" "$nport" "$ng_pid"
    kill "$ng_pid"; wait "$ng_pid" 2>/dev/null || true
  done
done

python3 - "$OUT/hls_serve.csv" "$STREAM_CPU" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
stream_cpu = float(sys.argv[2])
print(f"mediarelay CPU for the stream alone (ingest + muxing): {stream_cpu:.3f} s per second")
print()
print("| connections | server | requests/s | MB/s | CPU s | CPU ms per 1000 requests | errors | wrk CPU s | server + wrk CPU ms per 1000 requests |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    print(f'| {r["connections"]} | {r["server"]} | {float(r["requests_per_second"]):.0f} | '
          f'{float(r["bytes_per_second"]) / 1e6:.1f} | {float(r["cpu_seconds"]):.2f} | '
          f'{float(r["cpu_ms_per_1000_requests"]):.1f} | {r["errors"]} | '
          f'{float(r["client_cpu_seconds"]):.2f} | {float(r["total_cpu_ms_per_1000_requests"]):.1f} |')
by = {}
for r in rows:
    by.setdefault(r["connections"], {}).setdefault(r["round"], {})[r["server"]] = r
def per_cpu(r, minus=0.0):
    cpu = float(r["cpu_seconds"]) - minus * float(r["seconds"])
    return int(r["requests"]) / cpu if cpu > 0 else float("nan")
def median(xs):
    xs = sorted(xs)
    k = len(xs) // 2
    return xs[k] if len(xs) % 2 else (xs[k - 1] + xs[k]) / 2
def steady_per_cpu(r, minus=0.0):
    cpu = float(r["steady_cpu_seconds"]) - minus * float(r["steady_seconds"])
    return float(r["steady_requests"]) / cpu if cpu > 0 else float("nan")
print()
print("Steady window (the last seconds of each run, from the servers' own request counts):")
print()
print("| connections | server | requests/s | CPU s | CPU ms per 1000 requests | wrk CPU s |")
print("| ---: | --- | ---: | ---: | ---: | ---: |")
for r in rows:
    print(f'| {r["connections"]} | {r["server"]} | {float(r["steady_requests_per_second"]):.0f} | '
          f'{float(r["steady_cpu_seconds"]):.2f} | {float(r["steady_cpu_ms_per_1000_requests"]):.1f} | '
          f'{float(r["steady_client_cpu_seconds"]):.2f} |')
print()
for label, f in (("whole run", per_cpu), ("steady window", steady_per_cpu)):
    for n, rounds in by.items():
        raw, net = [], []
        for s in rounds.values():
            m, g = s.get("mediarelay"), s.get("nginx")
            if m and g:
                raw.append(f(m) / f(g))
                net.append(f(m, stream_cpu) / f(g))
        if not raw:
            continue
        each = " ".join(f"{x:.2f}" for x in raw)
        print(f"{n} connections, {label}: mediarelay / nginx requests per CPU-second = {median(raw):.2f}x "
              f"({median(net):.2f}x without the stream's own CPU)"
              + (f"; median of {len(raw)} rounds: {each}" if len(raw) > 1 else ""))
PY


if [ -n "${SYSCALLS:-}" ]; then
  echo
  echo "system calls per request (counted from 1 s before each wrk run to its end):"
  python3 - "$OUT/hls_syscalls.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
# Per server and count: each call's mean over the rounds.
runs, sums = {}, {}
for r in rows:
    key = (r["server"], r["connections"])
    runs.setdefault(key, set()).add(r["round"])
    sums.setdefault(key, {}).setdefault(r["syscall"], 0.0)
    sums[key][r["syscall"]] += float(r["per_request"])
for key, calls in sums.items():
    mean = sorted(((v / len(runs[key]), k) for k, v in calls.items()), reverse=True)
    top = ", ".join(f"{k} {v:.2f}" for v, k in mean if v >= 0.01)
    print(f"{key[0]} at {key[1]} connections: {sum(v for v, _ in mean):.2f} in all ({top})")
PY
fi

# The PNG plot (requests/s and CPU per request against connections), with
# the `bench` feature's mediarelay-plot; a failure to plot does not fail the
# benchmark.
cargo run --quiet --features bench --bin mediarelay-plot -- --hls "$OUT/hls_serve.csv" --out "$OUT" ||
  echo "no plot: mediarelay-plot failed (see above)" >&2
