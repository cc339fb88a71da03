/*
 * libFuzzer harness: ngx_wsp_inflate() on a message cut into frames where
 * the input's first bytes say, into output buffers of exactly their size
 * (ASan sees any write past the end) that grow from a small room up to a
 * cap, as a caller with a message size limit would do.  With the first
 * byte's high bit, the rest is deflated first (ngx_wsp_deflate(), frames
 * and rooms as said) and must inflate back to itself.
 *
 * data[0]: bit 7 round trip, bits 0-2 window bits - 8, bit 3 level 9
 * data[1]: frame size - 1 (in 16-byte steps), data[2]: first room
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_deflate.h"


#define CAP  (1 << 18)


/* inflates in frames of fsize; returns the length, -1 error, -2 cap */

static long
inflate_all(int bits, const uint8_t *in, size_t n, size_t fsize,
    size_t room, uint8_t **res)
{
    int             rc, fin;
    long            len;
    size_t          off, chunk, used, size;
    uint8_t        *buf, *o, *nbuf;
    z_stream        z;

    memset(&z, 0, sizeof(z));
    if (ngx_wsp_inflate_init(&z, bits) != Z_OK) {
        abort();
    }

    size = room;
    buf = malloc(size);
    o = buf;
    off = 0;
    len = -2;

    do {
        chunk = n - off < fsize ? n - off : fsize;
        fin = off + chunk == n;

        for ( ;; ) {
            rc = ngx_wsp_inflate(&z, in + off, chunk, &used, fin, &o,
                                 buf + size);

            if (used > chunk || o > buf + size || o < buf) {
                abort();
            }

            off += used;
            chunk -= used;

            if (rc == NGX_WSP_Z_ERROR) {
                len = -1;
                goto done;
            }

            if (rc == NGX_WSP_Z_OK) {
                if (chunk) {
                    abort();
                }
                break;
            }

            if (size == CAP) {
                goto done;
            }

            /* grow to an exact size: a new buffer, the old one freed */
            size = size * 2 < CAP ? size * 2 : CAP;
            nbuf = malloc(size);
            memcpy(nbuf, buf, o - buf);
            o = nbuf + (o - buf);
            free(buf);
            buf = nbuf;
        }

    } while (off < n);

    len = o - buf;

done:

    inflateEnd(&z);
    *res = buf;

    return len;
}


static long
deflate_all(int bits, int level, const uint8_t *in, size_t n, size_t fsize,
    size_t room, uint8_t *out, size_t size)
{
    int        rc, fin;
    size_t     off, chunk, used;
    uint8_t   *o, *end;
    z_stream   z;

    memset(&z, 0, sizeof(z));
    if (ngx_wsp_deflate_init(&z, level, bits, 8) != Z_OK) {
        abort();
    }

    o = out;
    off = 0;

    do {
        chunk = n - off < fsize ? n - off : fsize;
        fin = off + chunk == n;

        for ( ;; ) {
            end = (size_t) (out + size - o) < room ? out + size : o + room;
            rc = ngx_wsp_deflate(&z, in + off, chunk, &used, fin, &o, end);

            if (used > chunk || o > end) {
                abort();
            }

            off += used;
            chunk -= used;

            if (rc == NGX_WSP_Z_OK) {
                break;
            }

            if (rc != NGX_WSP_Z_FULL || o == out + size) {
                abort();
            }
        }

    } while (off < n);

    deflateEnd(&z);

    return o - out;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int       bits, level;
    long      n, m;
    size_t    fsize, room;
    uint8_t  *res, *comp;

    if (size < 3) {
        return 0;
    }

    bits = 8 + (data[0] & 7);
    level = data[0] & 8 ? 9 : 1;
    fsize = (size_t) data[1] * 16 + 1;
    room = (size_t) data[2] + 1;

    if (data[0] & 0x80) {
        /* deflate's worst case: stored blocks, and flush markers */
        comp = malloc(size * 2 + 64 * (size / fsize + 2));
        n = deflate_all(bits, level, data + 3, size - 3, fsize,
                        room + NGX_WSP_DEFLATE_MIN_ROOM, comp,
                        size * 2 + 64 * (size / fsize + 2));

        m = inflate_all(bits, comp, n, fsize, room, &res);

        if (m != (long) size - 3 || memcmp(res, data + 3, m) != 0) {
            abort();
        }

        free(comp);
        free(res);
        return 0;
    }

    inflate_all(bits, data + 3, size - 3, fsize, room, &res);
    free(res);

    return 0;
}
