#!/usr/bin/env python3
"""Turns a page-fault trace of `capstan server` into crates/capstan/link-order.txt (see trace.sh).

Reads the linker map (lld -Map) of the traced binary and `perf script` outputs of
exceptions:page_fault_user events, in the order given; every input section of .text that shares a
4 KiB page with an instruction fetch fault is listed, in order of first touch, by the first symbol
it defines. Faults outside the binary's .text (other programs in the trace) are ignored.
Usage: sections.py <map> <out> <perf-script-output>...
"""
import bisect
import re
import sys

PAGE = 4096


def read_map(path):
    """(start, size, symbol) of each input section in .text, sorted by start."""
    sections = []
    current = None
    in_text = False
    row = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+( +)(\S.*)$")
    for line in open(path, encoding="utf-8", errors="replace"):
        m = row.match(line)
        if not m:
            continue
        vma, size = int(m.group(1), 16), int(m.group(2), 16)
        depth, name = len(m.group(3)), m.group(4)
        # Output sections are least indented, then input sections ("file:(.text.x)"), then symbols.
        if depth < 4:
            in_text = name == ".text"
            current = None
        elif not in_text:
            continue
        elif ":(" in name:
            current = [vma, size, None]
            sections.append(current)
        elif current is not None and current[2] is None:
            current[2] = name
    return sorted((s for s in sections if s[2] and s[1] > 0), key=lambda s: s[0])


def main():
    map_path, out_path, trace_paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    sections = read_map(map_path)
    starts = [s[0] for s in sections]
    lo, hi = sections[0][0], sections[-1][0] + sections[-1][1]
    pattern = re.compile(r"address=0x([0-9a-f]+) ip=0x[0-9a-f]+ error_code=0x([0-9a-f]+)")
    pages = []
    seen_pages = set()
    lines = (
        line
        for path in trace_paths
        for line in open(path, encoding="utf-8", errors="replace")
    )
    for line in lines:
        m = pattern.search(line)
        if not m:
            continue
        address, code = int(m.group(1), 16), int(m.group(2), 16)
        if not code & 0x10 or not lo <= address < hi:
            continue  # not an instruction fetch in .text
        page = address - address % PAGE
        if page not in seen_pages:
            seen_pages.add(page)
            pages.append(page)
    order, listed = [], set()
    for page in pages:
        i = max(bisect.bisect_right(starts, page) - 1, 0)
        while i < len(sections) and sections[i][0] < page + PAGE:
            start, size, symbol = sections[i]
            if start + size > page and symbol not in listed:
                listed.add(symbol)
                order.append(symbol)
            i += 1
    with open(out_path, "w", encoding="utf-8") as out:
        out.write("\n".join(order) + "\n")
    touched = len(pages) * PAGE
    print(
        f"{len(pages)} code pages touched ({touched / 1048576:.1f} MiB), "
        f"{len(order)} sections listed",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
