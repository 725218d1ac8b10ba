#!/usr/bin/env bash
# Latency, WHEP time to first frame, memory per viewer and WebRTC egress per
# core, one mediarelay at a time on core 0, the load tool on core 1
# (taskset), loopback only, a ~2 Mbit/s 1280x720 H.264 + AAC source (the one
# rtmp_fanout.sh makes). A fresh server for every run. Writes
# target/bench/latency_memory.csv:
#   run,protocol,viewers,seconds,metric,value
# and prints markdown tables.
#
#   scripts/bench/latency_memory.sh
#
# Environment (defaults in brackets):
#   SECONDS_PER_RUN [20]        how long viewers watch in every run
#   LATENCY_VIEWERS [10]        (a)+(b): viewers of each protocol, all WHEP ones decoding
#   MEMORY_VIEWERS [200]        (c): viewers of one protocol per run (RTMP and WHEP
#                               also half as many: the slope is one more viewer's cost)
#   MEMORY_WARMUP [20]          (c): seconds of publishing before viewers come
#                               (fills the GOP cache and the 7-segment HLS window)
#   WHEP_COUNTS ["50 100 200 400 800"]  (d): WHEP viewers per run; stops after the
#                               first run where the server saturates
#
# Needs: ffmpeg, taskset (util-linux), python3. Builds mediarelay and
# mediarelay-load in release mode. The load tool is bounded by `timeout`,
# every server is stopped after its run and on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN="${SECONDS_PER_RUN:-20}"
LATENCY_VIEWERS="${LATENCY_VIEWERS:-10}"
MEMORY_VIEWERS="${MEMORY_VIEWERS:-200}"
MEMORY_WARMUP="${MEMORY_WARMUP:-20}"
read -r -a WHEP_COUNTS <<<"${WHEP_COUNTS:-50 100 200 400 800}"
. scripts/bench/common.sh
CSV="$OUT/latency_memory.csv"

echo "run,protocol,viewers,seconds,metric,value" >"$CSV"

# Starts mediarelay on core 0 with every admission limit off (all viewers
# come from 127.0.0.1) and WebRTC on loopback UDP; sets RTMP HTTP PID.
start_server() {
  RTMP=$(free_port); HTTP=$(free_port); local api udp
  api=$(free_port); udp=$(free_udp_port)
  MEDIARELAY_LIMITS_CONNECTION_RATE=0 MEDIARELAY_LIMITS_MAX_CONNECTIONS_PER_IP=0 \
    MEDIARELAY_LIMITS_MAX_CONNECTIONS=0 MEDIARELAY_LIMITS_WEBRTC_POST_RATE=0 \
    MEDIARELAY_LIMITS_API_RATE=0 \
    taskset -c 0 "$SERVER" --rtmp-listen "127.0.0.1:$RTMP" \
    --http-listen "127.0.0.1:$HTTP" --api-listen "127.0.0.1:$api" \
    --webrtc-listen "127.0.0.1:$udp" --webrtc-tcp-listen "" --rtsp-listen "" \
    --log-level warn >>"$TMP/mediarelay.log" 2>&1 &
  PID=$!; PIDS+=("$PID")   # taskset execs the server: this is its pid
  wait_port "$RTMP"
}

stop_server() { kill "$PID"; wait "$PID" 2>/dev/null || true; }

# load RUN [mediarelay-load flags…]: one run against a fresh server; the
# JSON summary goes to $TMP/RUN.json.
load() {
  local run=$1; shift
  start_server
  timeout $((SECONDS_PER_RUN + MEMORY_WARMUP + 90)) taskset -c 1 "$BIN/mediarelay-load" --json \
    --rtmp "127.0.0.1:$RTMP" --http "127.0.0.1:$HTTP" --path live/bench \
    --publish "$SRC" --seconds "$SECONDS_PER_RUN" --server-pid "$PID" "$@" | tail -n 1 >"$TMP/$run.json"
  stop_server
  python3 - "$run" "$TMP/$run.json" >>"$CSV" <<'PY'
import json, sys
run, s = sys.argv[1], json.load(open(sys.argv[2]))
secs = s["seconds"]
def row(proto, n, metric, value):
    if value is not None:
        print(f"{run},{proto},{n},{secs},{metric},{value}")
row("server", "", "server_cpu_seconds", s["server_cpu_seconds"])
row("load", "", "load_cpu_seconds", s["load_cpu_seconds"])
row("server", "", "rss_base_bytes", s["server_rss_base_bytes"])
row("server", "", "rss_end_bytes", s["server_rss_end_bytes"])
row("server", "", "rss_anon_base_bytes", s.get("server_rss_anon_base_bytes"))
row("server", "", "rss_anon_end_bytes", s.get("server_rss_anon_end_bytes"))
row("server", "", "rss_max_bytes", s["server_rss_max_bytes"])
for p in ("rtmp", "hls", "whep"):
    v = s[p]
    n = v["viewers"]
    if n == 0:
        continue
    for k in ("with_media", "failed", "bytes", "lost", "kbit_s_per_viewer",
              "first_media_ms_p50", "first_media_ms_p99", "first_media_ms_max",
              "frames", "packets", "decode_viewers", "kbit_s_per_viewer_second_half",
              "video_fps_mean", "video_fps_min"):
        if k in v:
            row(p, n, k, v[k])
    lat = s["latency_ms"][p]
    for k in ("samples", "p50", "p99", "max"):
        row(p, n, "latency_ms_" + k, lat[k])
        row(p, n, "steady_latency_ms_" + k, lat["steady"][k])
PY
}

# (a) + (b): latency and WHEP first frame, LATENCY_VIEWERS of each protocol.
n=$LATENCY_VIEWERS
load latency --rtmp-players "$n" --hls-viewers "$n" --whep-viewers "$n" --whep-decode "$n"
# The same RTMP players with nothing else on the server: what the other
# egresses' work on the server's one core adds to RTMP's latency.
load latency_rtmp_only --rtmp-players "$n"

# (c) memory per viewer, one protocol per run.
load memory_rtmp --warmup "$MEMORY_WARMUP" --rtmp-players "$MEMORY_VIEWERS"
load memory_hls --warmup "$MEMORY_WARMUP" --hls-viewers "$MEMORY_VIEWERS"
load memory_whep --warmup "$MEMORY_WARMUP" --whep-viewers "$MEMORY_VIEWERS" --whep-decode 5
# Half as many: what one more viewer costs is the slope between the two
# runs; the per-viewer figure of one run also carries what the first
# viewer brings once (pages of code run for the first time, the path's
# Opus transcoder and shared RTP packets), spread over the viewers.
load memory_whep_half --warmup "$MEMORY_WARMUP" --whep-viewers "$((MEMORY_VIEWERS / 2))" --whep-decode 5
# The same for RTMP: its one-run figure also carries the GOP cache and
# the publisher's buffers filling after the baseline.
load memory_rtmp_half --warmup "$MEMORY_WARMUP" --rtmp-players "$((MEMORY_VIEWERS / 2))"

# (d) WHEP viewers until the server saturates: its core busy ≥ 95 %, or
# viewers getting under 90 % of the source's bitrate in the second half of
# the window (after every viewer's start), or under 95 % of its 30 fps, or
# refused.
for n in "${WHEP_COUNTS[@]}"; do
  load "whep_$n" --whep-viewers "$n" --whep-decode 5
  if python3 - "$TMP/whep_$n.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
w = s["whep"]
busy = (s["server_cpu_seconds"] or 0) / s["seconds"]
saturated = (busy >= 0.95 or w["kbit_s_per_viewer_second_half"] < 0.9 * 2000
             or (w["video_fps_mean"] or 0) < 0.95 * 30 or w["failed"] > 0)
sys.exit(0 if saturated else 1)
PY
  then break; fi
done

python3 - "$CSV" <<'PY'
import csv, sys
from collections import defaultdict
v = defaultdict(dict)
for r in csv.DictReader(open(sys.argv[1])):
    v[(r["run"], r["protocol"])][r["metric"]] = float(r["value"])
    v[(r["run"], r["protocol"])]["viewers"] = r["viewers"]
    v[(r["run"], r["protocol"])]["seconds"] = float(r["seconds"])
def g(run, proto, k):
    return v.get((run, proto), {}).get(k)
def f(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)

print("### Latency, publisher send -> viewer receive (ms), and WHEP first frame")
print()
print("| protocol | viewers | samples | p50 | p99 | max | 2nd half p50 | 2nd half p99 | 2nd half max | first media p50 | first media p99 |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for run, p in [("latency", "rtmp"), ("latency", "hls"), ("latency", "whep"), ("latency_rtmp_only", "rtmp")]:
    if (run, p) in v:
        print(f'| {p}{" (alone)" if run != "latency" else ""} | {v[(run, p)]["viewers"]} | {f(g(run, p, "latency_ms_samples"), "{:.0f}")} | '
              f'{f(g(run, p, "latency_ms_p50"), "{:.2f}")} | {f(g(run, p, "latency_ms_p99"), "{:.2f}")} | '
              f'{f(g(run, p, "latency_ms_max"), "{:.2f}")} | '
              f'{f(g(run, p, "steady_latency_ms_p50"), "{:.2f}")} | {f(g(run, p, "steady_latency_ms_p99"), "{:.2f}")} | '
              f'{f(g(run, p, "steady_latency_ms_max"), "{:.2f}")} | {f(g(run, p, "first_media_ms_p50"))} | '
              f'{f(g(run, p, "first_media_ms_p99"))} |')
print()
print("### Memory per viewer (server RSS after the viewing window − before viewers came)")
print()
print("RSS: all resident pages; anon: without the pages of the binary and its libraries.")
print()
print("| protocol | viewers | RSS before MiB | RSS after MiB | RSS max MiB | KiB per viewer | anon KiB per viewer | viewers with media | kbit/s per viewer |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
def grown(run, key):
    b, e = g(run, "server", key + "_base_bytes"), g(run, "server", key + "_end_bytes")
    return None if b is None or e is None else e - b
for p, run in (("rtmp", "memory_rtmp_half"), ("rtmp", "memory_rtmp"), ("hls", "memory_hls"), ("whep", "memory_whep_half"), ("whep", "memory_whep")):
    if (run, p) not in v:
        continue
    n = int(v[(run, p)]["viewers"])
    base, end, mx = g(run, "server", "rss_base_bytes"), g(run, "server", "rss_end_bytes"), g(run, "server", "rss_max_bytes")
    anon = grown(run, "rss_anon")
    print(f'| {p} | {n} | {base / 2**20:.1f} | {end / 2**20:.1f} | {mx / 2**20:.1f} | '
          f'{(end - base) / n / 1024:.1f} | {f(None if anon is None else anon / n / 1024)} | '
          f'{g(run, p, "with_media"):.0f}/{n} | {g(run, p, "kbit_s_per_viewer"):.0f} |')
for p, name in (("rtmp", "RTMP"), ("whep", "WHEP")):
    full, half = f"memory_{p}", f"memory_{p}_half"
    if (full, p) not in v or (half, p) not in v:
        continue
    n1, n2 = int(v[(half, p)]["viewers"]), int(v[(full, p)]["viewers"])
    for key, what in (("rss", "RSS"), ("rss_anon", "anon")):
        a, b = grown(half, key), grown(full, key)
        if a is not None and b is not None and n2 > n1:
            print(f"\n{name}, one more viewer ({what}, slope between {n1} and {n2} viewers): {(b - a) / (n2 - n1) / 1024:.1f} KiB")
print()
print("### WHEP egress until the server's core saturates")
print()
print("| viewers | server CPU s/s | load tool CPU s/s | kbit/s per viewer (2nd half) | video fps mean / min | SRTP egress Mbit/s (2nd half) | Gbit/s per server CPU-second | viewers with media | losses | latency p50 / p99 ms (2nd half) | first frame p50 / p99 ms | RSS MiB |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
runs = sorted({r for (r, p) in v if r.startswith("whep_")}, key=lambda r: int(r[5:]))
for run in runs:
    secs = v[(run, "whep")]["seconds"]
    n = int(v[(run, "whep")]["viewers"])
    cpu = g(run, "server", "server_cpu_seconds") / secs
    load_cpu = g(run, "load", "load_cpu_seconds") / secs
    kbit = g(run, "whep", "kbit_s_per_viewer")
    kbit2 = g(run, "whep", "kbit_s_per_viewer_second_half") or kbit
    mbit = kbit * n / 1000
    mbit2 = kbit2 * n / 1000
    print(f'| {n} | {cpu:.2f} | {load_cpu:.2f} | {kbit:.0f} ({kbit2:.0f}) | '
          f'{f(g(run, "whep", "video_fps_mean"))} / {f(g(run, "whep", "video_fps_min"))} | {mbit:.0f} ({mbit2:.0f}) | '
          f'{mbit / 1000 / max(cpu, 1e-9):.2f} | '
          f'{g(run, "whep", "with_media"):.0f}/{n} | {g(run, "whep", "lost"):.0f} | '
          f'{f(g(run, "whep", "steady_latency_ms_p50"), "{:.1f}")} / {f(g(run, "whep", "steady_latency_ms_p99"), "{:.1f}")} | '
          f'{f(g(run, "whep", "first_media_ms_p50"), "{:.0f}")} / {f(g(run, "whep", "first_media_ms_p99"), "{:.0f}")} | '
          f'{g(run, "server", "rss_end_bytes") / 2**20:.0f} |')
PY
