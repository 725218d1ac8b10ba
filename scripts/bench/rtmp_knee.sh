#!/usr/bin/env bash
# RTMP players per CPU at the knee, mediarelay vs nginx-rtmp: each server
# gets the same CPU budget (a CFS quota, what `docker run --cpus` sets) on
# core 0, and the player count goes up until the server no longer keeps up.
# The fan-out benchmark (rtmp_fanout.sh) compares CPU per player at equal
# counts below the knee; this one finds the knee itself, which on a whole
# core lies past what the load tool on the other core can receive (about
# 1000 players at 2 Mbit/s): a fraction of a core brings the knee within
# its reach.
#
#   scripts/bench/rtmp_knee.sh [PLAYER COUNTS…]   (default: 200 300 400 500 600 800 1000 1200 1400)
#
# A count keeps up when every player got media, the players' mean bitrate
# over the second half of the run is at least 97 % of the source file's,
# and the players' steady latency p99 (the load tool's probe: publisher's
# stamp → player, second half) is at most LATENCY_BOUND_MS (default 100,
# three frame intervals of the source). A server's knee is its largest
# count that keeps up below its first count that does not; once a server
# has failed two counts in a row its larger counts are skipped.
#
# CPU_BUDGET (default 0.25): the share of one core, as a quota per 10 ms
# period. SECONDS_PER_RUN (default 20; shorter runs make the bitrate check
# unreliable: half a run then holds too few of the source's GOPs).
# MERGE_WRITES (default empty): windows for extra mediarelay runs with
# `rtmp_merge_writes`, as in rtmp_fanout.sh. Writes target/bench/rtmp_knee.csv:
#   server,budget,players,seconds,cpu_seconds,with_media,kbit_s_second_half,latency_p50_ms,latency_p99_ms,latency_max_ms,throttled_periods,load_cpu_seconds,keeps_up
#
# Needs root (a cgroup of its own: v1's `cpu` controller or v2's `cpu.max`;
# run on v1 here, the v2 branch follows the kernel's cgroup-v2 document),
# nginx + libnginx-mod-rtmp, ffmpeg, taskset. Loopback only; the load tool is
# bounded by `timeout`, the servers are stopped after each run and the
# cgroup is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNTS=("${@:-200 300 400 500 600 800 1000 1200 1400}")
read -r -a COUNTS <<<"${COUNTS[*]}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-20}"
CPU_BUDGET="${CPU_BUDGET:-0.25}"
LATENCY_BOUND_MS="${LATENCY_BOUND_MS:-100}"
MERGE_WRITES="${MERGE_WRITES-}"
. scripts/bench/common.sh

# The cgroup every server runs in, one at a time.
budget_cgroup server "$CPU_BUDGET"
CG="$BUDGET_CG"
throttled() { awk '$1 == "nr_throttled" { print $2 }' "$CG/cpu.stat"; }

# The source's own bitrate: what a player that keeps up receives.
SOURCE_KBPS=$(python3 -c "
import json, os, subprocess, sys
d = float(json.loads(subprocess.check_output(['ffprobe', '-v', 'error', '-show_entries', 'format=duration', '-of', 'json', sys.argv[1]]))['format']['duration'])
print(os.path.getsize(sys.argv[1]) * 8 / 1000 / d)" "$SRC")
echo "source: $SOURCE_KBPS kbit/s; budget: $CPU_BUDGET of core 0 ($CG)" >&2

CSV="$OUT/rtmp_knee.csv"
echo "server,budget,players,seconds,cpu_seconds,with_media,kbit_s_second_half,latency_p50_ms,latency_p99_ms,latency_max_ms,throttled_periods,load_cpu_seconds,keeps_up" >"$CSV"

# measure NAME PLAYERS RTMP_PORT HTTP_PORT PID: one load run, one CSV row;
# succeeds when the count kept up.
measure() {
  local name=$1 n=$2 rtmp=$3 http=$4 pid=$5 json before
  before=$(throttled)
  json=$(timeout $((SECONDS_PER_RUN + 60)) taskset -c 1 "$BIN/mediarelay-load" --json \
    --rtmp "127.0.0.1:$rtmp" --http "127.0.0.1:$http" --path live/bench \
    --publish "$SRC" --rtmp-players "$n" --seconds "$SECONDS_PER_RUN" --server-pid "$pid" | tail -n 1)
  python3 - "$name" "$CPU_BUDGET" "$n" "$json" $(($(throttled) - before)) "$SOURCE_KBPS" "$LATENCY_BOUND_MS" "$CSV" <<'PY'
import json, sys
name, budget, n, s, throttled, source, bound, csv = sys.argv[1:]
n, s, source, bound = int(n), json.loads(s), float(source), float(bound)
r, lat = s["rtmp"], s["latency_ms"]["rtmp"]["steady"]
rate = r.get("kbit_s_per_viewer_second_half") or 0.0
p99 = lat["p99"]
ok = r["with_media"] == n and rate >= 0.97 * source and p99 is not None and p99 <= bound
ms = lambda v: "" if v is None else f"{v:.2f}"
with open(csv, "a") as f:
    f.write(f'{name},{budget},{n},{s["seconds"]},{s["server_cpu_seconds"] or 0:.3f},{r["with_media"]},{rate:.1f},'
            f'{ms(lat["p50"])},{ms(p99)},{ms(lat.get("max"))},{throttled},{s["load_cpu_seconds"]:.2f},{"yes" if ok else "no"}\n')
print(f'{name} {n}: {rate:.0f} kbit/s, p99 {ms(p99)} ms: {"keeps up" if ok else "behind"}', file=sys.stderr)
sys.exit(0 if ok else 1)
PY
}

# mediarelay NAME PLAYERS MERGE: one run in the budget.
mediarelay() {
  local name=$1 n=$2 merge=$3 rtmp http api pid ok=0
  rtmp=$(free_port); http=$(free_port); api=$(free_port)
  # Every player comes from 127.0.0.1: the per-client limits are off.
  MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_LIMITS_MAX_CONNECTIONS_PER_IP=0 \
    MEDIARELAY_LIMITS_MAX_CONNECTIONS=0 MEDIARELAY_RTMP_MERGE_WRITES="$merge" \
    in_cgroup "$CG" taskset -c 0 "$SERVER" --rtmp-listen "127.0.0.1:$rtmp" \
    --http-listen "127.0.0.1:$http" --api-listen "127.0.0.1:$api" --webrtc-listen "" --webrtc-tcp-listen "" --rtsp-listen "" \
    --log-level warn >"$TMP/mediarelay.log" 2>&1 &
  pid=$!; PIDS+=("$pid")   # sh execs taskset, which execs the server: this is its pid
  wait_port "$rtmp"
  measure "$name" "$n" "$rtmp" "$http" "$pid" || ok=1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  return $ok
}

nginx_rtmp() {
  local n=$1 port pid ok=0
  port=$(free_port)
  nginx_rtmp_conf "$port"
  in_cgroup "$CG" taskset -c 0 nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" &
  pid=$!; PIDS+=("$pid")
  wait_port "$port"
  measure nginx-rtmp "$n" "$port" "$port" "$pid" || ok=1
  kill "$pid"; wait "$pid" 2>/dev/null || true
  return $ok
}

# Per server: consecutive counts that did not keep up; at 2 it is skipped.
declare -A FAILS=()
run() {
  local name=$1; shift
  [ "${FAILS[$name]:-0}" -ge 2 ] && return 0
  if "$@"; then FAILS[$name]=0; else FAILS[$name]=$((${FAILS[$name]:-0} + 1)); fi
}
for n in "${COUNTS[@]}"; do
  run mediarelay mediarelay mediarelay "$n" 0s
  for merge in $MERGE_WRITES; do
    run "mediarelay-merge-$merge" mediarelay "mediarelay-merge-$merge" "$n" "$merge"
  done
  run nginx-rtmp nginx_rtmp "$n"
done

python3 - "$CSV" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print("| server | players | server CPU s/s | kbit/s per player, 2nd half | latency p50 / p99 / max ms | throttled periods | load tool CPU s | keeps up |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: | --- |")
for r in rows:
    print(f'| {r["server"]} | {r["players"]} | {float(r["cpu_seconds"]) / float(r["seconds"]):.3f} | {float(r["kbit_s_second_half"]):.0f} | '
          f'{r["latency_p50_ms"] or "–"} / {r["latency_p99_ms"] or "–"} / {r["latency_max_ms"] or "–"} | {r["throttled_periods"]} | {r["load_cpu_seconds"]} | {r["keeps_up"]} |')
knees = {}
for name in dict.fromkeys(r["server"] for r in rows):
    knee = 0
    for r in sorted((r for r in rows if r["server"] == name), key=lambda r: int(r["players"])):
        if r["keeps_up"] != "yes":
            break
        knee = int(r["players"])
    knees[name] = knee
print()
for name, knee in knees.items():
    print(f"{name}: keeps up to {knee} players" + (" (the largest count run: the knee may be further)"
          if knee and knee == max(int(r["players"]) for r in rows if r["server"] == name) else ""))
base = knees.get("nginx-rtmp")
for name, knee in knees.items():
    if name != "nginx-rtmp" and base:
        print(f"{name} / nginx-rtmp players per CPU at the knee: {knee / base:.2f}x")
PY
