/*
 * Per-byte cost of permessage-deflate on 4 KiB JSON-like messages: zlib's
 * raw deflate and inflate called directly (a sync flush per message, the
 * stream reset per message as without context takeover), beside
 * ngx_wsp_deflate() and ngx_wsp_inflate() (src/protocol/ngx_wsp_deflate.c)
 * used the same way; levels 1 and 6, window 15, memLevel 8.  Prints a
 * Markdown table, in ns per uncompressed byte.  With a file argument the
 * messages are its first 64 pieces of 4 KiB (W6's own, which
 * `wsbench sample 4096` writes), else generated here.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_wsp_deflate.h"


#define MSG_SIZE   4096
#define NMSG       64
#define ROUNDS     100


static unsigned char   msgs[NMSG][MSG_SIZE];
static unsigned char   comp[NMSG][MSG_SIZE + 64];
static size_t          comp_len[NMSG];
static unsigned char   out[MSG_SIZE + 64];
static unsigned        seed = 12345, counter;


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static unsigned
rnd(unsigned n)
{
    seed = seed * 1103515245 + 12345;
    return (seed >> 8) % n;
}


/* records of an API's answer: varied keys, numbers, short strings */

static void
make_json(unsigned char *p)
{
    static const char  *keys[] = { "id", "user", "name", "email", "score",
        "active", "created_at", "tags", "country", "balance", "level",
        "last_seen", "device", "version", "status", "latency_ms" };
    static const char  *words[] = { "alpha", "bravo", "charlie", "delta",
        "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
        "lima", "mike", "november", "oscar", "papa", "quebec", "romeo" };
    static const char  *status[] = { "ok", "pending", "failed", "retry" };
    /* 0 id, 1 word, 2 email, 3 decimal, 4 boolean, 5 list, 6 time */
    static const int    types[] = { 0, 1, 1, 2, 3, 4, 6, 5, 1, 3, 0, 6, 1,
                                    1, 5, 0 };
    char                 rec[512];
    size_t               len, n;
    int                  k, i;

    len = 0;
    p[len++] = '[';

    while (len < MSG_SIZE - 2) {
        n = sprintf(rec, "{\"type\":\"account\",\"region\":\"%s\","
                    "\"plan\":\"%s\",\"flags\":{\"beta\":%s,"
                    "\"admin\":false,\"verified\":true},\"parent\":null",
                    rnd(2) ? "eu-west-1" : "us-east-2",
                    rnd(3) ? "free" : "pro", rnd(4) ? "false" : "true");

        for (k = 0; k < 16; k++) {
            if (rnd(10) == 0) {
                continue;
            }

            n += sprintf(rec + n, ",\"%s\":", keys[k]);

            switch (types[k]) {
            case 0:
                n += sprintf(rec + n, "%u", 4200000 + counter++);
                break;
            case 1:
                n += sprintf(rec + n, "\"%s%s%u\"", words[rnd(18)],
                             rnd(2) ? "_" : ".", rnd(4));
                break;
            case 2:
                n += sprintf(rec + n, "\"%s@%s.example\"", words[rnd(18)],
                             words[rnd(18)]);
                break;
            case 3:
                n += sprintf(rec + n, "%u.5", rnd(20));
                break;
            case 4:
                n += sprintf(rec + n, "%s", rnd(2) ? "true" : "false");
                break;
            case 6:
                n += sprintf(rec + n, "\"2026-12-%02uT%02u:%02u:00Z\"",
                             1 + rnd(2), rnd(24), rnd(60));
                break;
            default:
                n += sprintf(rec + n, "[");
                for (i = rnd(4); i >= 0; i--) {
                    n += sprintf(rec + n, "\"%s\"%s", rnd(2)
                                 ? words[rnd(18)] : status[rnd(4)],
                                 i ? "," : "");
                }
                n += sprintf(rec + n, "]");
            }
        }

        n += sprintf(rec + n, "}");

        if (len + n + 2 > MSG_SIZE) {
            break;
        }

        if (len > 1) {
            p[len++] = ',';
        }

        memcpy(p + len, rec, n);
        len += n;
    }

    /* pad to exactly 4 KiB with spaces, valid JSON still */
    p[len++] = ']';
    memset(p + len, ' ', MSG_SIZE - len);
}


static double
min(double a, double b)
{
    return a < b ? a : b;
}


static double
zlib_deflate(z_stream *z, int set)
{
    int     i, r;
    double  t, bytes;

    bytes = 0;
    t = now();

    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < NMSG; i++) {
            deflateReset(z);
            z->next_in = msgs[i];
            z->avail_in = MSG_SIZE;
            z->next_out = set ? comp[i] : out;
            z->avail_out = MSG_SIZE + 64;
            deflate(z, Z_SYNC_FLUSH);

            if (set) {
                comp_len[i] = (MSG_SIZE + 64) - z->avail_out - 4;
            }

            bytes += MSG_SIZE;
        }
    }

    return (now() - t) * 1e9 / bytes;
}


static double
zlib_inflate(z_stream *z)
{
    int            i, r;
    double         t, bytes;
    unsigned char  tail[4] = { 0, 0, 0xff, 0xff };

    bytes = 0;
    t = now();

    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < NMSG; i++) {
            inflateReset(z);
            z->next_in = comp[i];
            z->avail_in = (uInt) comp_len[i];
            z->next_out = out;
            z->avail_out = sizeof(out);
            inflate(z, Z_SYNC_FLUSH);
            z->next_in = tail;
            z->avail_in = 4;
            inflate(z, Z_SYNC_FLUSH);

            if (sizeof(out) - z->avail_out != MSG_SIZE) {
                fprintf(stderr, "zlib inflate: bad length\n");
                exit(1);
            }

            bytes += MSG_SIZE;
        }
    }

    return (now() - t) * 1e9 / bytes;
}


static double
wsp_deflate(z_stream *z)
{
    int             i, r;
    size_t          used;
    double          t, bytes;
    unsigned char  *o;

    bytes = 0;
    t = now();

    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < NMSG; i++) {
            o = out;
            if (ngx_wsp_deflate(z, msgs[i], MSG_SIZE, &used, 1, &o,
                                out + sizeof(out))
                != NGX_WSP_Z_OK)
            {
                fprintf(stderr, "ngx_wsp_deflate: not OK\n");
                exit(1);
            }

            deflateReset(z);
            bytes += MSG_SIZE;
        }
    }

    return (now() - t) * 1e9 / bytes;
}


static double
wsp_inflate(z_stream *z)
{
    int             i, r;
    size_t          used;
    double          t, bytes;
    unsigned char  *o;

    bytes = 0;
    t = now();

    for (r = 0; r < ROUNDS; r++) {
        for (i = 0; i < NMSG; i++) {
            o = out;
            if (ngx_wsp_inflate(z, comp[i], comp_len[i], &used, 1, &o,
                                out + sizeof(out))
                != NGX_WSP_Z_OK || o - out != MSG_SIZE)
            {
                fprintf(stderr, "ngx_wsp_inflate: not OK\n");
                exit(1);
            }

            inflateReset(z);
            bytes += MSG_SIZE;
        }
    }

    return (now() - t) * 1e9 / bytes;
}


/* the messages of a file: NMSG pieces of MSG_SIZE bytes, or -1 */

static int
read_msgs(const char *path)
{
    int    i;
    FILE  *f;

    f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }

    for (i = 0; i < NMSG; i++) {
        if (fread(msgs[i], 1, MSG_SIZE, f) != MSG_SIZE) {
            fclose(f);
            return -1;
        }
    }

    fclose(f);
    return 0;
}


int
main(int argc, char **argv)
{
    int        i, l, level;
    size_t     total;
    double     zd, zi, wd, wi;
    z_stream   d, w, zin, win;

    if (argc > 1) {
        if (read_msgs(argv[1]) != 0) {
            fprintf(stderr, "%s: not %d messages of %d bytes\n", argv[1],
                    NMSG, MSG_SIZE);
            return 1;
        }

    } else {
        for (i = 0; i < NMSG; i++) {
            make_json(msgs[i]);
        }
    }

    printf("| level | ratio | zlib deflate | ngx_wsp_deflate "
           "| zlib inflate | ngx_wsp_inflate |\n");
    printf("| ---: | ---: | ---: | ---: | ---: | ---: |\n");

    for (l = 0; l < 2; l++) {
        level = l ? 6 : 1;

        memset(&d, 0, sizeof(d));
        memset(&w, 0, sizeof(w));
        memset(&zin, 0, sizeof(zin));
        memset(&win, 0, sizeof(win));
        deflateInit2(&d, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
        ngx_wsp_deflate_init(&w, level, 15, 8);
        inflateInit2(&zin, -15);
        ngx_wsp_inflate_init(&win, 15);

        /* the compressed messages both inflates read */
        zlib_deflate(&d, 1);

        total = 0;
        for (i = 0; i < NMSG; i++) {
            total += comp_len[i];
        }

        /* the best of 5 runs: the machine is shared */

        zd = wd = zi = wi = 1e9;

        for (i = 0; i < 5; i++) {
            zd = min(zd, zlib_deflate(&d, 0));
            wd = min(wd, wsp_deflate(&w));
            zi = min(zi, zlib_inflate(&zin));
            wi = min(wi, wsp_inflate(&win));
        }

        printf("| %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", level,
               (double) NMSG * MSG_SIZE / total, zd, wd, zi, wi);

        deflateEnd(&d);
        deflateEnd(&w);
        inflateEnd(&zin);
        inflateEnd(&win);
    }

    printf("\n(ns per uncompressed byte, %d messages of %d bytes%s, "
           "each deflated and inflated alone; best of 5)\n", NMSG, MSG_SIZE,
           argc > 1 ? ", W6's own" : "");

    return 0;
}
