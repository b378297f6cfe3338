#!/usr/bin/env bash
# Regenerates crates/capstan/link-order.txt: the functions `capstan server --disable-agent` runs from
# start-up through SECONDS_IDLE of idling, in order of first touch, then those a short
# `capstan-bench api` run adds (requests, watches, lists, the scheduler and controllers at work), so
# that the idle set comes first and the request paths sit together after it (see
# crates/capstan/build.rs).
#
# How: a separate release build with every function aligned to its own 4 KiB page, started with its
# code out of the page cache, no read-ahead on its disk and MADV_RANDOM on its code (random-text.c),
# so that each function's first run is one page fault; perf records the faults and sections.py maps
# them to symbols through the linker map. Symbol names do not depend on the alignment flag.
# Needs root, perf (apt-get install linux-perf) and gcc. Run from the repository root; ~8 minutes.
set -euo pipefail
SECONDS_IDLE=${SECONDS_IDLE:-8}
here=$(cd "$(dirname "$0")" && pwd)
target=target/link-order
work=$(mktemp -d /tmp/capstan-link-order.XXXXXX)
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT  # KEEP_WORK=1 keeps it

gcc -O2 -shared -fPIC -o "$work/random-text.so" "$here/random-text.c"
CARGO_TARGET_DIR=$target RUSTFLAGS="-C llvm-args=-align-all-functions=12" \
  CAPSTAN_LINK_MAP="$work/capstan.map" cargo build --release -p capstan
bin=$target/release/capstan
# Drops the binary from the page cache, so that its code is read (and faults) page by page.
evict() {
  python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)' "$bin"
}

dev=$(findmnt -no SOURCE --target "$bin")
disk=$(lsblk -no PKNAME "$dev" 2>/dev/null | head -1)
ra=/sys/block/${disk:-$(basename "$dev")}/queue/read_ahead_kb
old_ra=$(cat "$ra")
trap 'echo "$old_ra" >"$ra"; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
echo 0 >"$ra"
sync
evict
mkdir -p "$work/data"
timeout -s INT "$SECONDS_IDLE" perf record -q -e exceptions:page_fault_user -o "$work/perf.data" -- \
  env LD_PRELOAD="$work/random-text.so" "$bin" server --disable-agent --data-dir "$work/data" \
  --https-port 16999 --bind-address 127.0.0.1 >"$work/server.log" 2>&1 || true
perf script -i "$work/perf.data" >"$work/idle.txt" 2>/dev/null

cargo build --release -p capstan-bench
evict
perf record -q -e exceptions:page_fault_user -o "$work/perf-load.data" -- \
  env LD_PRELOAD="$work/random-text.so" target/release/capstan-bench api --server-bin "$bin" \
  --pods 3000 --clients 8 --watchers 10 >"$work/bench.log" 2>&1 || true
echo "$old_ra" >"$ra"
perf script -i "$work/perf-load.data" >"$work/load.txt" 2>/dev/null
python3 "$here/sections.py" "$work/capstan.map" crates/capstan/link-order.txt "$work/idle.txt" "$work/load.txt"
