/*
 * Per-byte cost of masking and UTF-8 validation
 * (src/protocol/ngx_wsp_frame.c), beside a byte-at-a-time mask and
 * memcpy() as the memory-speed reference.  Prints a Markdown table.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_wsp_frame.h"


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
naive_mask(unsigned char *dst, const unsigned char *src, size_t n,
    const unsigned char key[4])
{
    size_t  i;

    for (i = 0; i < n; i++) {
        dst[i] = src[i] ^ key[i & 3];
    }
}


static volatile unsigned  sink;


int
main(void)
{
    size_t          sizes[] = { 32, 1024, 16384, 1048576 };
    size_t          i, n, iters, k;
    unsigned char  *src, *dst, key[4] = { 1, 2, 3, 4 };
    double          t, r[6];

    src = malloc(1048576 + 8);
    dst = malloc(1048576 + 8);

    printf("| size | memcpy | ngx_wsp_mask | naive mask | UTF-8 ASCII "
           "| UTF-8 multi-byte | UTF-8 ASCII, masked |\n");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");

    for (i = 0; i < 4; i++) {
        n = sizes[i];
        iters = (256UL * 1048576) / n;

        for (k = 0; k < 6; k++) {
            size_t  j;

            if (k == 3) {
                memset(src, 'a', n);
            } else if (k == 5) {
                /* a client's ASCII text, still masked */
                for (j = 0; j < n; j++) src[j] = 'a' ^ key[j & 3];
            } else if (k == 4) {
                for (j = 0; j + 2 <= n; j += 2) {
                    src[j] = 0xc3; src[j + 1] = 0xa9;     /* "é" */
                }
                if (n & 1) src[n - 1] = 'a';
            } else {
                for (j = 0; j < n; j++) src[j] = (unsigned char) j;
            }

            t = now();

            for (j = 0; j < iters; j++) {
                switch (k) {
                case 0: memcpy(dst + 1, src + 3, n); break;
                case 1: ngx_wsp_mask(dst + 1, src + 3, n, key, j); break;
                case 2: naive_mask(dst + 1, src + 3, n, key); break;
                case 5:
                    sink += ngx_wsp_utf8_validate_masked(0, src, n, key, 0);
                    break;
                default:
                    sink += ngx_wsp_utf8_validate(0, src, n);
                }
                sink += dst[1];
            }

            r[k] = (now() - t) * 1e9 / ((double) iters * n);
        }

        printf("| %zu B | %.3f ns/B | %.3f ns/B | %.3f ns/B | %.3f ns/B "
               "| %.3f ns/B | %.3f ns/B |\n", n, r[0], r[1], r[2], r[3],
               r[4], r[5]);
    }

    return 0;
}
