/* LD_PRELOAD shim for scripts/link-order/trace.sh: advises the main executable's code mapping
 * MADV_RANDOM before any of it runs, so that a page fault reads and maps that one page only (no
 * read-around, and fault-around finds no neighbours in the page cache). Each first touch of a code
 * page then shows as one fault, which is what the trace needs. Not part of capstan itself. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

__attribute__((constructor)) static void advise_random(void) {
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return;
    exe[n] = 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    if (!maps) return;
    char line[8192];
    while (fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) != 3) continue;
        if (perms[2] == 'x' && strstr(line, exe))
            madvise((void *)start, end - start, MADV_RANDOM);
    }
    fclose(maps);
}
