#!/usr/bin/env bash
# Builds Capstan and runs a single-node cluster: embedded SQLite store, local agent, containerd
# started as needed. Extra arguments go to `capstan server`. The admin kubeconfig is written to
# DATA_DIR/admin.kubeconfig (default /var/lib/capstan/server/admin.kubeconfig).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/images.sh
cargo build --release --locked -p capstan
exec target/release/capstan server "$@"
