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
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
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
