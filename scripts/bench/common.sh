# Shared by the benchmark scripts (sourced, not run): the release build, a
# scratch directory and the processes to stop on exit, the ~2 Mbit/s source
# file, free ports, and process CPU time. Expects to run from the
# repository root with `set -euo pipefail`.

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/mediarelay-target}"
BIN="$CARGO_TARGET_DIR/release"
OUT=target/bench
mkdir -p "$OUT"
TMP="$(mktemp -d /tmp/mediarelay-bench.XXXXXX)"
chmod 755 "$TMP"
PIDS=()
CGROUPS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for c in "${CGROUPS[@]}"; do rmdir "$c" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

cargo build --release --quiet --bin mediarelay --bin mediarelay-load
# The server binary measured; SERVER=/path/to/mediarelay measures another
# build (an A/B comparison) with this tree's load tool and scripts.
SERVER="${SERVER:-$BIN/mediarelay}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# ~2 Mbit/s H.264 + AAC, 1280x720 30 fps, keyframe every 2 s (so 2 s HLS
# segments of ten 200 ms parts), 20 s, looped by the load tool.
SRC="$TMP/src_2mbit.flv"
ffmpeg -v error -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=48000" \
  -t 20 -c:v libx264 -preset veryfast -tune zerolatency -b:v 1900k -maxrate 2000k -bufsize 2000k \
  -g 60 -keyint_min 60 -pix_fmt yuv420p -c:a aac -b:a 96k -ar 48000 -ac 2 -f flv "$SRC"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
free_udp_port() { python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
# User + system CPU seconds of a process (proc(5): fields 14 and 15).
cpu_of() { python3 -c 'import os,sys; f=open(f"/proc/{sys.argv[1]}/stat").read().rsplit(")",1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf("SC_CLK_TCK"))' "$1"; }

# Writes $TMP/nginx/nginx.conf: nginx-rtmp on 127.0.0.1:PORT, one worker
# without a master process, the chunk size mediarelay uses (4096). Start it
# with `nginx -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx/" -e "$TMP/nginx/error.log"`.
nginx_rtmp_conf() {
  nginx_conf "load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;" "" \
    "rtmp { server { listen 127.0.0.1:$1; chunk_size 4096; application live { live on; } } }"
}

# nginx_conf PREAMBLE EVENTS BODY: writes $TMP/nginx/nginx.conf, one nginx
# worker in the foreground without a master process (the benchmarks'
# setting), its logs and pid under $TMP/nginx; EVENTS is added to the events
# block.
nginx_conf() {
  mkdir -p "$TMP/nginx"
  cat >"$TMP/nginx/nginx.conf" <<CONF
$1
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile 65536;
error_log $TMP/nginx/error.log warn;
pid $TMP/nginx/nginx.pid;
events { worker_connections 16384; $2 }
$3
CONF
}

# nginx_static_conf PORT STATUS_PORT ROOT SENDFILE: nginx serving the files
# under ROOT on 127.0.0.1:PORT at its best for static files (one worker,
# epoll, sendfile SENDFILE (on/off), open_file_cache, no access log), its
# stub_status on STATUS_PORT: the HLS baseline of hls_serve.sh and
# hls_instructions.sh.
nginx_static_conf() {
  nginx_conf "" "use epoll;" "$(cat <<CONF
http {
  types { application/vnd.apple.mpegurl m3u8; video/mp4 mp4 m4s; }
  access_log off;
  sendfile $4;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 65;
  keepalive_requests 100000000;
  open_file_cache max=1000 inactive=60s;
  server { listen 127.0.0.1:$1 backlog=16384; root $3; }
  server { listen 127.0.0.1:$2; location = /status { stub_status; } }
}
CONF
)"
}

# served_requests SERVER PORT: how many HTTP requests the server has
# answered so far, by its own count (mediarelay: /metrics of its API on
# PORT, the http listener's requests; nginx: stub_status on PORT).
served_requests() {
  case $1 in
    mediarelay) curl -s --max-time 60 "http://127.0.0.1:$2/metrics" |
      awk '/^mediarelay_http_requests_total[{]listener="http"/ { s += $NF } END { printf "%d\n", s }' ;;
    nginx) curl -s --max-time 60 "http://127.0.0.1:$2/status" | awk 'NR == 3 { print $3 }' ;;
  esac
}

# budget_cgroup NAME BUDGET: makes a cgroup that may use BUDGET (a share of
# one core, e.g. 0.25) as a CFS quota per 10 ms period, what `docker run
# --cpus` sets; its path is left in BUDGET_CG and it is removed on exit.
# Needs root; cgroup v1's `cpu` controller (where these numbers were taken)
# or v2's `cpu.max` (written as the kernel's cgroup-v2 document gives it).
budget_cgroup() {
  local period=10000 quota
  quota=$(python3 -c "print(round(float('$2') * $period))")
  # The kernel's smallest quota is 1 ms.
  [ "$quota" -ge 1000 ] || { echo "a CPU budget must be at least 0.1 (1 ms per 10 ms)" >&2; return 1; }
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    BUDGET_CG=/sys/fs/cgroup/mediarelay-bench-$$-$1
    grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control || echo +cpu >/sys/fs/cgroup/cgroup.subtree_control
    mkdir "$BUDGET_CG"; CGROUPS+=("$BUDGET_CG")
    echo "$quota $period" >"$BUDGET_CG/cpu.max"
  elif [ -d /sys/fs/cgroup/cpu ]; then
    BUDGET_CG=/sys/fs/cgroup/cpu/mediarelay-bench-$$-$1
    mkdir "$BUDGET_CG"; CGROUPS+=("$BUDGET_CG")
    echo "$period" >"$BUDGET_CG/cpu.cfs_period_us"
    echo "$quota" >"$BUDGET_CG/cpu.cfs_quota_us"
  else
    echo "no cgroup cpu controller under /sys/fs/cgroup" >&2
    return 1
  fi
}

# in_cgroup CGROUP COMMAND…: runs COMMAND inside CGROUP (the shell joins it,
# then execs the command, so `$!` of `in_cgroup … &` is the command's pid).
in_cgroup() { exec sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$@"; }
