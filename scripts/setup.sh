#!/usr/bin/env bash
# Installs everything Capstan builds and runs with on Debian 12, as root. Idempotent and quiet when
# everything is present already. Used by both README commands (cluster.sh and test.sh).
set -euo pipefail

# Debian packages: build tools (protoc for the etcd/CRI gRPC crates), the etcd server for the HA store
# and its tests, the container runtime stack the kubelet drives, and the network tools the service
# proxy and the pod network run (iptables; ip and bridge from iproute2; nsenter for the two-node test).
PACKAGES=(
  protobuf-compiler
  libprotobuf-dev
  etcd-server
  containerd
  runc
  containernetworking-plugins
  iptables
  iproute2
  util-linux
  busybox-static
  umoci
  skopeo
  docker-registry
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages ${missing[*]}; run as root to install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Postinst scripts may start daemons on systems with an init; Capstan starts its own copies.
# The Rust toolchain and cargo-nextest come with the machine; nextest is installed if absent.
if ! command -v cargo >/dev/null; then
  echo "setup: cargo is required (rustup toolchain)" >&2
  exit 1
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "setup: installing cargo-nextest" >&2
  cargo install --locked cargo-nextest >/dev/null
fi
if ! command -v kubectl >/dev/null; then
  echo "setup: warning: kubectl not found; end-to-end tests need kubectl 1.32 at /usr/bin/kubectl" >&2
fi
