# Shared by run.sh and test.sh: what Debian 12 packages the project needs.

# Needed to build the server.
BUILD_PACKAGES=(gcc pkg-config)
# Real peers the tests start: ffmpeg/ffprobe as publisher and players.
TEST_PACKAGES=(ffmpeg)

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
