# Shared by run.sh and test.sh: what Debian 12 packages the project needs.

# Needed to build the server (ffmpeg-next: libav* headers and clang for bindgen).
BUILD_PACKAGES=(gcc pkg-config clang libclang-dev libavcodec-dev libavformat-dev libavutil-dev
  libswresample-dev)
# Real peers the tests start: ffmpeg/ffprobe as publisher and players,
# Chromium for hls.js in a browser, VLC as a desktop player, a GStreamer RTSP
# server as the IP camera, gst-launch-1.0 (rtspsrc, rtspclientsink) as an
# RTSP reader and publisher.
TEST_PACKAGES=(ffmpeg chromium vlc-bin vlc-plugin-base gstreamer1.0-tools
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)

# Installs the packages that are not installed yet (apt-get, as root or with sudo).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Node.js for the browser tests: the machine's own if there is one, else Debian's.
ensure_node() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && return 0
  ensure_packages nodejs npm
}
