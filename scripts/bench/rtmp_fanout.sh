#!/usr/bin/env bash
# RTMP fan-out, mediarelay vs nginx-rtmp, same machine, same media, same
# load tool, one after the other: 1 publisher at ~2 Mbit/s, N RTMP players.
# The server runs on core 0, the load tool on core 1 (taskset). Prints a
# markdown table and writes target/bench/rtmp_fanout.csv:
#   server,viewers,seconds,cpu_seconds,cpu_per_viewer_second,rss_max_bytes,viewers_with_media,bytes,rss_base_bytes,latency_p50_ms,latency_p99_ms,load_cpu_seconds
#
# The latency columns are the load tool's probe (publisher's stamp → player,
# second half of the run, so after the players' GOP catch-up), the same
# measurement for both servers; load_cpu_seconds is the load tool's own CPU,
# which is the receiving side's: when it nears its core (about 1000 players
# at 2 Mbit/s), players read late, both servers' socket queues fill and
# their latency is partly the load tool's.
#
#   scripts/bench/rtmp_fanout.sh [VIEWER COUNTS…]     (default: 10 100 500 1000)
#
# mediarelay runs twice per count: with its defaults (each video frame is
# written as it arrives), and with merged writes (MERGE_WRITES, default
# 100ms, the `rtmp_merge_writes` setting; several windows separated by
# spaces, e.g. MERGE_WRITES="33ms 100ms", run one after the other;
# MERGE_WRITES= skips them).
#
# Needs: nginx + libnginx-mod-rtmp, ffmpeg, taskset (util-linux). Builds
# mediarelay and mediarelay-load in release mode. Loopback only; the load
# tool is bounded by `timeout`, the servers are stopped after each run and
# on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNTS=("${@:-10 100 500 1000}")
read -r -a COUNTS <<<"${COUNTS[*]}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-20}"
MERGE_WRITES="${MERGE_WRITES-100ms}"
. scripts/bench/common.sh

echo "server,viewers,seconds,cpu_seconds,cpu_per_viewer_second,rss_max_bytes,viewers_with_media,bytes,rss_base_bytes,latency_p50_ms,latency_p99_ms,load_cpu_seconds" >"$OUT/rtmp_fanout.csv"

# run SERVER VIEWERS RTMP_PORT HTTP_PORT PID
measure() {
  local server=$1 n=$2 rtmp=$3 http=$4 pid=$5
  local json
  json=$(timeout $((SECONDS_PER_RUN + 60)) taskset -c 1 "$BIN/mediarelay-load" --json \
    --rtmp "127.0.0.1:$rtmp" --http "127.0.0.1:$http" --path live/bench \
    --publish "$SRC" --rtmp-players "$n" --seconds "$SECONDS_PER_RUN" --server-pid "$pid" | tail -n 1)
  python3 - "$server" "$n" "$json" >>"$OUT/rtmp_fanout.csv" <<'PY'
import json, sys
server, n, s = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
cpu = s["server_cpu_seconds"] or 0.0
steady = s["latency_ms"]["rtmp"]["steady"]
ms = lambda v: "" if v is None else f"{v:.2f}"
print(f'{server},{n},{s["seconds"]},{cpu:.3f},{cpu / (n * s["seconds"]):.6f},{s["server_rss_max_bytes"]},{s["rtmp"]["with_media"]},{s["rtmp"]["bytes"]},{s["server_rss_base_bytes"] or 0},{ms(steady["p50"])},{ms(steady["p99"])},{s["load_cpu_seconds"]:.2f}')
PY
}

# mediarelay NAME VIEWERS MERGE: one run on core 0.
mediarelay() {
  local name=$1 n=$2 merge=$3 rtmp http api pid
  rtmp=$(free_port); http=$(free_port); api=$(free_port)
  # Every player comes from 127.0.0.1: the per-client limits are off.
  MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_LIMITS_MAX_CONNECTIONS_PER_IP=0 \
    MEDIARELAY_LIMITS_MAX_CONNECTIONS=0 MEDIARELAY_RTMP_MERGE_WRITES="$merge" \
    taskset -c 0 "$SERVER" --rtmp-listen "127.0.0.1:$rtmp" \
    --http-listen "127.0.0.1:$http" --api-listen "127.0.0.1:$api" --webrtc-listen "" --webrtc-tcp-listen "" --rtsp-listen "" \
    --log-level warn >"$TMP/mediarelay.log" 2>&1 &
  pid=$!; PIDS+=("$pid")   # taskset execs the server: this is its pid
  wait_port "$rtmp"
  measure "$name" "$n" "$rtmp" "$http" "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for n in "${COUNTS[@]}"; do
  mediarelay mediarelay "$n" 0s
  for merge in $MERGE_WRITES; do
    mediarelay "mediarelay-merge-$merge" "$n" "$merge"
  done

  # nginx-rtmp on core 0, one worker.
  port=$(free_port)
  nginx_rtmp_conf "$port"
  taskset -c 0 nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" &
  pid=$!; PIDS+=("$pid")
  wait_port "$port"
  measure nginx-rtmp "$n" "$port" "$port" "$pid"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done

python3 - "$OUT/rtmp_fanout.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| viewers | server | CPU s per viewer-second | RSS MiB | KiB per viewer | viewers with media | latency p50 / p99 ms | load tool CPU s |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    per = (int(r["rss_max_bytes"]) - int(r["rss_base_bytes"] or 0)) / int(r["viewers"]) / 1024
    print(f'| {r["viewers"]} | {r["server"]} | {float(r["cpu_per_viewer_second"]):.6f} | {int(r["rss_max_bytes"]) / 2**20:.1f} | {per:.1f} | {r["viewers_with_media"]}/{r["viewers"]} | {r["latency_p50_ms"] or "–"} / {r["latency_p99_ms"] or "–"} | {r["load_cpu_seconds"]} |')
by = {}
for r in rows:
    by.setdefault(r["viewers"], {})[r["server"]] = float(r["cpu_per_viewer_second"])
print()
for n, s in by.items():
    for name, cpu in s.items():
        if name.startswith("mediarelay") and cpu and s.get("nginx-rtmp"):
            print(f'{n} viewers: nginx-rtmp / {name} CPU per viewer = {s["nginx-rtmp"] / cpu:.2f}x')
PY

# The PNG plot (CPU and RSS against viewers), with the `bench` feature's
# mediarelay-plot; a failure to plot does not fail the benchmark.
cargo run --quiet --features bench --bin mediarelay-plot -- --rtmp "$OUT/rtmp_fanout.csv" --out "$OUT" ||
  echo "no plot: mediarelay-plot failed (see above)" >&2
