/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * RFC 6455 frame codec, see ngx_wsp_frame.h.  Plain C99: no nginx.
 */


#include <string.h>

#include "ngx_wsp_frame.h"


size_t
ngx_wsp_frame_write_header(unsigned char *dst, int fin, int opcode,
    uint64_t len, const unsigned char *mask)
{
    size_t  n;
    int     i;

    dst[0] = (unsigned char) ((fin ? 0x80 : 0)
                              | (opcode & (NGX_WSP_RSV1 | 0xf)));

    if (len < 126) {
        dst[1] = (unsigned char) len;
        n = 2;

    } else if (len < 65536) {
        dst[1] = 126;
        dst[2] = (unsigned char) (len >> 8);
        dst[3] = (unsigned char) len;
        n = 4;

    } else {
        dst[1] = 127;
        for (i = 0; i < 8; i++) {
            dst[2 + i] = (unsigned char) (len >> (56 - 8 * i));
        }
        n = 10;
    }

    if (mask) {
        dst[1] |= 0x80;
        memcpy(dst + n, mask, 4);
        n += 4;
    }

    return n;
}


/*
 * XOR with the key 8 bytes at a time: the key is rotated to the payload
 * offset and widened to 64 bits once (an 8-byte window into the key
 * repeated three times), and memcpy() loads and stores are plain moves on
 * any alignment.
 */

void
ngx_wsp_mask(unsigned char *dst, const unsigned char *src, size_t n,
    const unsigned char key[4], uint64_t offset)
{
    size_t         i;
    uint64_t       k8, w;
    unsigned char  k[12];

    memcpy(k, key, 4);
    memcpy(k + 4, key, 4);
    memcpy(k + 8, key, 4);
    memcpy(&k8, k + (offset & 3), 8);

    i = 0;

    for ( /* void */ ; i + 32 <= n; i += 32) {
        uint64_t  a, b, c, d;

        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= k8; b ^= k8; c ^= k8; d ^= k8;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }

    for ( /* void */ ; i + 8 <= n; i += 8) {
        memcpy(&w, src + i, 8);
        w ^= k8;
        memcpy(dst + i, &w, 8);
    }

    for ( /* void */ ; i < n; i++) {
        dst[i] = src[i] ^ k[(offset + i) & 3];
    }
}


int
ngx_wsp_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


int
ngx_wsp_close_check(const unsigned char *p, size_t n, unsigned *code,
    const char **reason)
{
    if (n == 0) {
        *code = 1005;
        return 0;
    }

    if (n == 1) {
        *reason = "close frame with a 1-byte payload";
        return 1002;
    }

    *code = (p[0] << 8) | p[1];

    if (!ngx_wsp_close_code_valid(*code)) {
        *reason = "invalid close status code";
        return 1002;
    }

    if (ngx_wsp_utf8_validate(NGX_WSP_UTF8_ACCEPT, p + 2, n - 2)
        != NGX_WSP_UTF8_ACCEPT)
    {
        *reason = "close reason is not UTF-8";
        return 1007;
    }

    return 0;
}


/*
 * state: 0 accept, 1 reject, else (bytes still due << 16) | (lo << 8) | hi,
 * the range the next byte must be in: a sequence cut between two pieces
 * of a message goes on in the next call.
 */

static uint32_t
ngx_wsp_utf8_lead(unsigned c)
{
    if (c >= 0xc2 && c <= 0xdf) {
        return (1u << 16) | (0x80 << 8) | 0xbf;
    }

    if (c == 0xe0) {
        return (2u << 16) | (0xa0 << 8) | 0xbf;
    }

    if (c == 0xed) {
        return (2u << 16) | (0x80 << 8) | 0x9f;
    }

    if (c >= 0xe1 && c <= 0xef) {
        return (2u << 16) | (0x80 << 8) | 0xbf;
    }

    if (c == 0xf0) {
        return (3u << 16) | (0x90 << 8) | 0xbf;
    }

    if (c >= 0xf1 && c <= 0xf3) {
        return (3u << 16) | (0x80 << 8) | 0xbf;
    }

    if (c == 0xf4) {
        return (3u << 16) | (0x80 << 8) | 0x8f;
    }

    return NGX_WSP_UTF8_REJECT;
}


uint32_t
ngx_wsp_utf8_validate(uint32_t state, const unsigned char *p, size_t n)
{
    uint32_t              need;
    uint64_t              w;
    unsigned char         c, lo, hi, any;
    const unsigned char  *end;

    end = p + n;

    if (state == NGX_WSP_UTF8_ACCEPT) {
        /* the usual piece is all ASCII: words, then the tail at once */

        while (end - p >= 8) {
            memcpy(&w, p, 8);

            if (w & 0x8080808080808080ULL) {
                break;
            }

            p += 8;
        }

        if (end - p < 8) {
            for (any = 0, c = 0; p + c < end; c++) {
                any |= p[c];
            }

            if (!(any & 0x80)) {
                return NGX_WSP_UTF8_ACCEPT;
            }
        }
    }

    for ( ;; ) {

        /* the rest of a sequence, byte by byte, as it may be cut again */

        while (state != NGX_WSP_UTF8_ACCEPT) {

            if (state == NGX_WSP_UTF8_REJECT || p == end) {
                return state;
            }

            need = state >> 16;
            lo = (state >> 8) & 0xff;
            hi = state & 0xff;

            if (*p < lo || *p > hi) {
                return NGX_WSP_UTF8_REJECT;
            }

            p++;
            need--;
            state = need ? (need << 16) | (0x80 << 8) | 0xbf : 0;
        }

        if (p == end) {
            return NGX_WSP_UTF8_ACCEPT;
        }

        c = *p;

        if (c < 0x80) {
            /* ASCII runs are checked 8 bytes at a time */

            p++;

            while (end - p >= 8) {
                memcpy(&w, p, 8);

                if (w & 0x8080808080808080ULL) {
                    break;
                }

                p += 8;
            }

            continue;
        }

        state = ngx_wsp_utf8_lead(c);

        if (state == NGX_WSP_UTF8_REJECT) {
            return state;
        }

        need = state >> 16;

        if ((size_t) (end - p) <= need) {
            /* cut by the end of this piece: the loop above takes it on */
            p++;
            continue;
        }

        /* a whole sequence: checked at once */

        lo = (state >> 8) & 0xff;
        hi = state & 0xff;

        if (p[1] < lo || p[1] > hi
            || (need >= 2 && (p[2] & 0xc0) != 0x80)
            || (need == 3 && (p[3] & 0xc0) != 0x80))
        {
            return NGX_WSP_UTF8_REJECT;
        }

        p += need + 1;
        state = NGX_WSP_UTF8_ACCEPT;
    }
}


uint32_t
ngx_wsp_utf8_validate_masked(uint32_t state, const unsigned char *p,
    size_t n, const unsigned char key[4], uint64_t offset)
{
    size_t         k;
    uint64_t       w, key8;
    unsigned char  any, tmp[256];

    if (state == NGX_WSP_UTF8_ACCEPT) {
        /* ASCII runs: 8 bytes at a time through the mask, no copy */

        memcpy(tmp, key, 4);
        memcpy(tmp + 4, key, 4);
        memcpy(tmp + 8, key, 4);
        memcpy(&key8, tmp + (offset & 3), 8);

        while (n >= 8) {
            memcpy(&w, p, 8);

            if ((w ^ key8) & 0x8080808080808080ULL) {
                break;
            }

            p += 8;
            n -= 8;
            offset += 8;
        }

        if (n < 8) {
            for (any = 0, k = 0; k < n; k++) {
                any |= p[k] ^ tmp[(offset + k) & 3];
            }

            if (!(any & 0x80)) {
                return NGX_WSP_UTF8_ACCEPT;
            }
        }
    }

    while (n && state != NGX_WSP_UTF8_REJECT) {
        k = n < sizeof(tmp) ? n : sizeof(tmp);

        ngx_wsp_mask(tmp, p, k, key, offset);
        state = ngx_wsp_utf8_validate(state, tmp, k);

        p += k;
        n -= k;
        offset += k;
    }

    return state;
}
