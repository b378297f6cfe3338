#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, then every unit, integration and end-to-end test,
# built once. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check

echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== test images and the local registry" >&2
bash scripts/images.sh

echo "== cargo nextest" >&2
cargo nextest run --workspace --locked --no-fail-fast "$@"
