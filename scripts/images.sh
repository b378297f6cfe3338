#!/usr/bin/env bash
# Builds Capstan's test images from Debian's busybox-static with umoci (no docker) and serves them from a
# local registry (Debian's docker-registry) on 127.0.0.1:5000, from which containerd pulls over plain HTTP:
#   127.0.0.1:5000/busybox:latest     busybox + all applets in /bin, /etc/passwd and /etc/group, /tmp; cmd sh
#   127.0.0.1:5000/pause:3.10         the pod sandbox: /bin/pause sleeps until SIGTERM/SIGINT, then exits 0
#   127.0.0.1:5000/httpserver:latest  busybox httpd on :8080 serving /www (index.html, cgi-bin/hostname, cgi-bin/client)
# Image sources are in images/<name>/ (copied over the busybox root for pause and httpserver).
#
# As root. Idempotent: every image config carries the label io.capstan.inputs, a hash of this script,
# images/ and /bin/busybox; when the registry already has all three tags with the current hash nothing is
# built or pushed (a warm run takes a few HTTP requests). State, registry config, storage and logs live in
# ${CAPSTAN_IMAGES_DIR:-/var/lib/capstan-images}. Prints "NAME DIGEST" per image; on failure exits
# non-zero with one line on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CAPSTAN_IMAGES_DIR:-/var/lib/capstan-images}
REGISTRY=127.0.0.1:5000
LABEL=io.capstan.inputs
LOG=$DIR/build.log
IMAGES=("busybox:latest" "pause:3.10" "httpserver:latest")

die() {
  echo "images: $*" >&2
  exit 1
}

# run DESCRIPTION COMMAND...: runs COMMAND with its output in the build log; dies with one line on failure.
run() {
  local desc=$1
  shift
  if ! "$@" >>"$LOG" 2>&1; then
    die "$desc failed: $(tail -n 1 "$LOG") (log: $LOG)"
  fi
}

[ "$(id -u)" = 0 ] || die "must run as root"
for tool in umoci skopeo docker-registry curl jq sha256sum flock setsid; do
  command -v "$tool" >/dev/null || die "$tool not found (bash scripts/setup.sh installs it)"
done
[ -x /bin/busybox ] || die "/bin/busybox not found (package busybox-static)"

case "$(uname -m)" in
  x86_64) ARCH=amd64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  armv7l) ARCH=arm ;;
  ppc64le) ARCH=ppc64le ;;
  s390x) ARCH=s390x ;;
  riscv64) ARCH=riscv64 ;;
  *) die "unsupported machine $(uname -m)" ;;
esac

mkdir -p "$DIR"
# One run at a time (cluster.sh and test.sh may both call this). Children must not inherit fd 9.
exec 9>"$DIR/lock"
flock -w 300 9 || die "timed out waiting for $DIR/lock"

# --- registry ---------------------------------------------------------------------------------------

registry_up() {
  curl -fsS -o /dev/null --max-time 2 "http://$REGISTRY/v2/" 2>/dev/null
}

start_registry() {
  mkdir -p "$DIR/registry"
  cat >"$DIR/registry.yml" <<EOF
# Written by scripts/images.sh; Capstan's local image registry.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  setsid nohup docker-registry serve "$DIR/registry.yml" >>"$DIR/registry.log" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$DIR/registry.pid"
  local i
  for ((i = 0; i < 100; i++)); do
    registry_up && return 0
    kill -0 "$pid" 2>/dev/null || die "registry exited: $(tail -n 1 "$DIR/registry.log") (log: $DIR/registry.log)"
    sleep 0.1
  done
  die "registry (pid $pid) did not answer on http://$REGISTRY/v2/ within 10 s (log: $DIR/registry.log)"
}

registry_up || start_registry

# --- what the registry has ----------------------------------------------------------------------------

# The hash of everything an image is built from; stored as a config label in every image.
inputs_hash() {
  {
    echo "arch=$ARCH"
    sha256sum scripts/images.sh /bin/busybox
    (cd images && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c 1-64
}
HASH=$(inputs_hash)

TMP=$DIR/tmp
mkdir -p "$TMP"

# remote NAME:TAG: sets DIGEST and REMOTE_HASH (the inputs label) from the registry; fails if absent.
remote() {
  local name=${1%%:*} tag=${1#*:} cfg
  DIGEST= REMOTE_HASH=
  curl -fsS --max-time 5 -D "$TMP/headers" -o "$TMP/manifest" \
    -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    "http://$REGISTRY/v2/$name/manifests/$tag" 2>/dev/null || return 1
  DIGEST=$(tr -d '\r' <"$TMP/headers" | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: *//p')
  [ -n "$DIGEST" ] || DIGEST=sha256:$(sha256sum <"$TMP/manifest" | cut -c 1-64)
  cfg=$(jq -r '.config.digest // empty' "$TMP/manifest") || return 1
  [ -n "$cfg" ] || return 1
  REMOTE_HASH=$(curl -fsS --max-time 5 "http://$REGISTRY/v2/$name/blobs/$cfg" 2>/dev/null |
    jq -r --arg l "$LABEL" '.config.Labels[$l] // empty') || return 1
}

# up_to_date: whether every image is in the registry with the current inputs hash; fills DIGESTS.
declare -A DIGESTS
up_to_date() {
  local image
  for image in "${IMAGES[@]}"; do
    remote "$image" && [ "$REMOTE_HASH" = "$HASH" ] || return 1
    DIGESTS[$image]=$DIGEST
  done
}

# --- build and push -----------------------------------------------------------------------------------

# config TAG OPTIONS...: sets the platform and the inputs label, plus OPTIONS, on layout tag TAG.
config() {
  local tag=$1
  shift
  run "umoci config $tag" umoci config --image "$LAYOUT:$tag" --no-history \
    --os linux --architecture "$ARCH" --config.label "$LABEL=$HASH" "$@"
}

build_and_push() {
  : >"$LOG"
  WORK=$(mktemp -d "$DIR/build.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  LAYOUT=$WORK/oci
  run "umoci init" umoci init --layout "$LAYOUT"

  # busybox: the root every image shares. (umoci insert writes unterminated tars; unpack/repack does not.)
  local bundle=$WORK/bundle-busybox applet
  run "umoci new busybox" umoci new --image "$LAYOUT:busybox"
  run "umoci unpack busybox" umoci unpack --image "$LAYOUT:busybox" "$bundle"
  local root=$bundle/rootfs
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/proc" "$root/sys" "$root/dev"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$root/bin/$applet"
  done
  install -m 0644 images/busybox/etc/passwd "$root/etc/passwd"
  install -m 0644 images/busybox/etc/group "$root/etc/group"
  chmod 0755 "$root" "$root/bin" "$root/etc" "$root/proc" "$root/sys" "$root/dev" "$root/bin/busybox"
  chmod 1777 "$root/tmp"
  chmod 0700 "$root/root"
  run "umoci repack busybox" umoci repack --image "$LAYOUT:busybox" \
    --history.created_by "capstan images.sh: busybox-static" "$bundle"
  config busybox --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --config.cmd sh

  # pause and httpserver: busybox plus images/<name>/ (files under bin/ and cgi-bin/ executable).
  local name files
  for name in pause httpserver; do
    bundle=$WORK/bundle-$name
    files=$WORK/files-$name
    run "umoci unpack $name" umoci unpack --image "$LAYOUT:busybox" "$bundle"
    cp -r "images/$name" "$files"
    find "$files" -type d -exec chmod 0755 {} +
    find "$files" -type f -exec chmod 0644 {} +
    find "$files" -type f \( -path '*/bin/*' -o -path '*/cgi-bin/*' \) -exec chmod 0755 {} +
    cp -a "$files/." "$bundle/rootfs/"
    run "umoci repack $name" umoci repack --image "$LAYOUT:$name" \
      --history.created_by "capstan images.sh: images/$name" "$bundle"
  done
  config pause --clear config.cmd --config.entrypoint /bin/pause --config.stopsignal SIGTERM
  config httpserver --config.cmd /bin/httpserver --config.exposedports 8080/tcp

  local image
  for image in "${IMAGES[@]}"; do
    run "push $image" skopeo --insecure-policy copy --quiet --dest-tls-verify=false \
      "oci:$LAYOUT:${image%%:*}" "docker://$REGISTRY/$image"
  done
  rm -rf "$WORK"
  trap - EXIT
}

if ! up_to_date; then
  build_and_push
  up_to_date || die "registry does not serve the images just pushed (hash $HASH)"
fi

for image in "${IMAGES[@]}"; do
  echo "$REGISTRY/$image ${DIGESTS[$image]}"
done
