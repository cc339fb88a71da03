/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * permessage-deflate (RFC 7692), see ngx_wsp_deflate.h.  Plain C99 and
 * zlib: no nginx.
 */


#include <string.h>

#include "ngx_wsp_deflate.h"
#include "ngx_wsp_handshake.h"


/* the parameters of RFC 7692 7.1, one bit each in ngx_wsp_pmd_ext_t.seen */
#define NGX_WSP_PMD_SNCT   0x01      /* server_no_context_takeover */
#define NGX_WSP_PMD_CNCT   0x02      /* client_no_context_takeover */
#define NGX_WSP_PMD_SMWB   0x04      /* server_max_window_bits */

/*
 * zlib has no raw deflate with a window of 8 (deflateInit2() refuses -8;
 * zlib itself turns 8 into 9 where it can): what the module compresses
 * uses at least 9, so it never promises 8 for itself, asks for 9 where
 * it is configured with 8, and declines what would make it compress with
 * 8.  A peer's window of 8 is fine: inflate has one.
 */
#define NGX_WSP_PMD_MIN_DEFLATE_BITS  9
#define ngx_wsp_pmd_bits(conf)                                                \
    ((conf)->window_bits < NGX_WSP_PMD_MIN_DEFLATE_BITS                       \
     ? NGX_WSP_PMD_MIN_DEFLATE_BITS : (conf)->window_bits)
#define NGX_WSP_PMD_CMWB   0x08      /* client_max_window_bits */

#define NGX_WSP_PMD_NAME   "permessage-deflate"

/* a quoted or plain parameter value longer than this is no window size */
#define NGX_WSP_PMD_VALUE  4


/* one element of an extension-list, as far as permessage-deflate cares */
typedef struct {
    uint8_t         pmd;             /* it is permessage-deflate */
    uint8_t         seen;            /* NGX_WSP_PMD_* bits */
    uint8_t         server_bits;     /* 8..15, 0: no value */
    uint8_t         client_bits;     /* 8..15, 0: no value */
    const char     *bad;             /* why its parameters are invalid */
} ngx_wsp_pmd_ext_t;


static const unsigned char *ngx_wsp_pmd_ows(const unsigned char *p,
    const unsigned char *end);
static const unsigned char *ngx_wsp_pmd_token(const unsigned char *p,
    const unsigned char *end);
static const unsigned char *ngx_wsp_pmd_value(const unsigned char *p,
    const unsigned char *end, unsigned char *v, size_t *vlen);
static int ngx_wsp_pmd_is(const unsigned char *s, size_t len,
    const char *name);
static int ngx_wsp_pmd_next(const unsigned char **pos,
    const unsigned char *end, ngx_wsp_pmd_ext_t *ext);
static void ngx_wsp_pmd_param(ngx_wsp_pmd_ext_t *ext,
    const unsigned char *name, size_t len, const unsigned char *v,
    size_t vlen, int has_value);
static unsigned char *ngx_wsp_pmd_put(unsigned char *out, const char *s);
static unsigned char *ngx_wsp_pmd_put_bits(unsigned char *out,
    const char *name, unsigned bits);
static int ngx_wsp_inflate_end_of_stream(z_stream *z);


static const unsigned char *
ngx_wsp_pmd_ows(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    return p;
}


/* the end of the token at p, or NULL when there is none */

static const unsigned char *
ngx_wsp_pmd_token(const unsigned char *p, const unsigned char *end)
{
    const unsigned char  *start;

    start = p;

    while (p < end && ngx_wsp_is_tchar(*p)) {
        p++;
    }

    return p == start ? NULL : p;
}


/*
 * A parameter value: a token, or a quoted-string whose content, once its
 * quoted-pairs are undone, is a token (RFC 6455 9.1).  Its first
 * NGX_WSP_PMD_VALUE characters go to v, *vlen gets its whole length.
 * Returns the end of the value, or NULL for bad syntax.
 */

static const unsigned char *
ngx_wsp_pmd_value(const unsigned char *p, const unsigned char *end,
    unsigned char *v, size_t *vlen)
{
    unsigned char  c;
    size_t         n;

    n = 0;

    if (p < end && *p == '"') {
        for (p++; p < end && *p != '"'; p++) {
            c = *p;

            if (c == '\\') {
                if (++p == end) {
                    return NULL;
                }

                c = *p;
            }

            if (!ngx_wsp_is_tchar(c)) {
                return NULL;
            }

            if (n < NGX_WSP_PMD_VALUE) {
                v[n] = c;
            }

            n++;
        }

        if (p == end || n == 0) {
            return NULL;
        }

        *vlen = n;
        return p + 1;
    }

    while (p < end && ngx_wsp_is_tchar(*p)) {
        if (n < NGX_WSP_PMD_VALUE) {
            v[n] = *p;
        }

        n++;
        p++;
    }

    *vlen = n;

    return n ? p : NULL;
}


/* names compare without regard to case, as HTTP's tokens mostly do */

static int
ngx_wsp_pmd_is(const unsigned char *s, size_t len, const char *name)
{
    size_t         i;
    unsigned char  c;

    if (len != strlen(name)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if (c >= 'A' && c <= 'Z') {
            c |= 0x20;
        }

        if (c != (unsigned char) name[i]) {
            return 0;
        }
    }

    return 1;
}


/*
 * Parses the next element of an extension-list (RFC 6455 9.1) at *pos,
 * skipping the empty elements RFC 7230 7 has a recipient accept.
 * Returns 1 with ext filled, 0 at the end of the list, -1 for bad syntax.
 */

static int
ngx_wsp_pmd_next(const unsigned char **pos, const unsigned char *end,
    ngx_wsp_pmd_ext_t *ext)
{
    size_t                vlen;
    unsigned char         v[NGX_WSP_PMD_VALUE];
    const unsigned char  *p, *name, *q;

    p = *pos;

    for ( ;; ) {
        p = ngx_wsp_pmd_ows(p, end);

        if (p == end) {
            *pos = p;
            return 0;
        }

        if (*p != ',') {
            break;
        }

        p++;
    }

    q = ngx_wsp_pmd_token(p, end);
    if (q == NULL) {
        return -1;
    }

    memset(ext, 0, sizeof(ngx_wsp_pmd_ext_t));
    ext->pmd = ngx_wsp_pmd_is(p, q - p, NGX_WSP_PMD_NAME);
    p = q;

    for ( ;; ) {
        p = ngx_wsp_pmd_ows(p, end);

        if (p == end || *p == ',') {
            *pos = p;
            return 1;
        }

        if (*p != ';') {
            return -1;
        }

        name = ngx_wsp_pmd_ows(p + 1, end);
        q = ngx_wsp_pmd_token(name, end);
        if (q == NULL) {
            return -1;
        }

        p = ngx_wsp_pmd_ows(q, end);

        if (p < end && *p == '=') {
            p = ngx_wsp_pmd_value(ngx_wsp_pmd_ows(p + 1, end), end, v,
                                  &vlen);
            if (p == NULL) {
                return -1;
            }

            ngx_wsp_pmd_param(ext, name, q - name, v, vlen, 1);

        } else {
            ngx_wsp_pmd_param(ext, name, q - name, NULL, 0, 0);
        }
    }
}


/*
 * The one place for the rules of RFC 7692 7.1 that hold in an offer and
 * in an answer alike: each parameter known and at most once, the
 * *_no_context_takeover without a value, a window size a decimal 8..15
 * without leading zeros.  Whether a *_max_window_bits may lack its value
 * depends on the role, and is left to the caller (a 0 in ext).
 */

static void
ngx_wsp_pmd_param(ngx_wsp_pmd_ext_t *ext, const unsigned char *name,
    size_t len, const unsigned char *v, size_t vlen, int has_value)
{
    unsigned  bit, bits;

    if (!ext->pmd || ext->bad) {
        return;
    }

    if (ngx_wsp_pmd_is(name, len, "server_no_context_takeover")) {
        bit = NGX_WSP_PMD_SNCT;

    } else if (ngx_wsp_pmd_is(name, len, "client_no_context_takeover")) {
        bit = NGX_WSP_PMD_CNCT;

    } else if (ngx_wsp_pmd_is(name, len, "server_max_window_bits")) {
        bit = NGX_WSP_PMD_SMWB;

    } else if (ngx_wsp_pmd_is(name, len, "client_max_window_bits")) {
        bit = NGX_WSP_PMD_CMWB;

    } else {
        ext->bad = "an unknown parameter";
        return;
    }

    if (ext->seen & bit) {
        ext->bad = "a repeated parameter";
        return;
    }

    ext->seen |= bit;

    if (!has_value) {
        return;
    }

    if (bit == NGX_WSP_PMD_SNCT || bit == NGX_WSP_PMD_CNCT) {
        ext->bad = "a *_no_context_takeover with a value";
        return;
    }

    bits = 0;

    if (vlen == 1 && v[0] >= '8' && v[0] <= '9') {
        bits = v[0] - '0';

    } else if (vlen == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') {
        bits = 10 + v[1] - '0';
    }

    if (bits == 0) {
        ext->bad = "a *_max_window_bits value other than 8..15";
        return;
    }

    if (bit == NGX_WSP_PMD_SMWB) {
        ext->server_bits = (uint8_t) bits;

    } else {
        ext->client_bits = (uint8_t) bits;
    }
}


size_t
ngx_wsp_pmd_accept(const unsigned char *value, size_t len,
    const ngx_wsp_pmd_conf_t *conf, ngx_wsp_pmd_params_t *p,
    unsigned char *out)
{
    int                   rc, found;
    unsigned              bits;
    unsigned char        *o;
    ngx_wsp_pmd_ext_t     ext, offer;
    const unsigned char  *pos, *end;

    memset(p, 0, sizeof(ngx_wsp_pmd_params_t));
    memset(&offer, 0, sizeof(ngx_wsp_pmd_ext_t));

    pos = value;
    end = value + len;
    found = 0;

    /* the whole list is parsed: bad syntax anywhere declines them all */

    while ((rc = ngx_wsp_pmd_next(&pos, end, &ext)) == 1) {
        if (found || !ext.pmd || ext.bad) {
            continue;
        }

        /* the server's window size is asked for with a value, one zlib
         * can deflate with */

        if ((ext.seen & NGX_WSP_PMD_SMWB)
            && ext.server_bits < NGX_WSP_PMD_MIN_DEFLATE_BITS)
        {
            continue;
        }

        offer = ext;
        found = 1;
    }

    if (rc != 0 || !found) {
        return 0;
    }

    p->on = 1;
    p->server_nct = !conf->context_takeover
                    || (offer.seen & NGX_WSP_PMD_SNCT);
    p->client_nct = !conf->context_takeover
                    || (offer.seen & NGX_WSP_PMD_CNCT);

    bits = offer.server_bits ? offer.server_bits : 15;
    p->server_bits = (uint8_t) (bits < ngx_wsp_pmd_bits(conf)
                                ? bits : ngx_wsp_pmd_bits(conf));

    /*
     * without client_max_window_bits in the offer the client may use any
     * window, and a server cannot ask for a smaller one (RFC 7692 7.1.2.2)
     */

    bits = 15;

    if (offer.seen & NGX_WSP_PMD_CMWB) {
        bits = offer.client_bits ? offer.client_bits : 15;
        bits = bits < ngx_wsp_pmd_bits(conf) ? bits : ngx_wsp_pmd_bits(conf);
    }

    p->client_bits = (uint8_t) bits;

    o = ngx_wsp_pmd_put(out, NGX_WSP_PMD_NAME);

    if (p->server_nct) {
        o = ngx_wsp_pmd_put(o, "; server_no_context_takeover");
    }

    if (p->client_nct) {
        o = ngx_wsp_pmd_put(o, "; client_no_context_takeover");
    }

    if (offer.seen & NGX_WSP_PMD_SMWB) {
        o = ngx_wsp_pmd_put_bits(o, "server_max_window_bits",
                                 p->server_bits);
    }

    if (offer.seen & NGX_WSP_PMD_CMWB) {
        o = ngx_wsp_pmd_put_bits(o, "client_max_window_bits",
                                 p->client_bits);
    }

    return o - out;
}


size_t
ngx_wsp_pmd_offer(const ngx_wsp_pmd_conf_t *conf, unsigned char *out)
{
    unsigned char  *o;

    o = ngx_wsp_pmd_put(out, NGX_WSP_PMD_NAME);

    if (ngx_wsp_pmd_bits(conf) < 15) {
        o = ngx_wsp_pmd_put_bits(o, "client_max_window_bits",
                                 ngx_wsp_pmd_bits(conf));
        o = ngx_wsp_pmd_put_bits(o, "server_max_window_bits",
                                 ngx_wsp_pmd_bits(conf));

    } else {
        o = ngx_wsp_pmd_put(o, "; client_max_window_bits");
    }

    if (!conf->context_takeover) {
        o = ngx_wsp_pmd_put(o, "; server_no_context_takeover"
                               "; client_no_context_takeover");
    }

    return o - out;
}


int
ngx_wsp_pmd_check_answer(const unsigned char *value, size_t len,
    const ngx_wsp_pmd_conf_t *conf, ngx_wsp_pmd_params_t *p,
    const char **err)
{
    int                   rc;
    ngx_wsp_pmd_ext_t     ext, next;
    const unsigned char  *pos, *end;

    memset(p, 0, sizeof(ngx_wsp_pmd_params_t));

    pos = value;
    end = value + len;

    rc = ngx_wsp_pmd_next(&pos, end, &ext);

    if (rc == 0) {
        /* an empty list accepts nothing */
        return 0;
    }

    if (rc == 1) {
        rc = ngx_wsp_pmd_next(&pos, end, &next);

        if (rc == 1) {
            *err = "more than one extension";
            return -1;
        }
    }

    if (rc == -1) {
        *err = "bad syntax";
        return -1;
    }

    if (!ext.pmd) {
        *err = "an extension that was not offered";
        return -1;
    }

    if (ext.bad) {
        *err = ext.bad;
        return -1;
    }

    if (!conf->context_takeover && !(ext.seen & NGX_WSP_PMD_SNCT)) {
        *err = "no server_no_context_takeover, which was asked for";
        return -1;
    }

    if (ext.seen & NGX_WSP_PMD_SMWB) {
        if (ext.server_bits == 0) {
            *err = "server_max_window_bits without a value";
            return -1;
        }

        if (ext.server_bits > ngx_wsp_pmd_bits(conf)) {
            *err = "a server_max_window_bits larger than offered";
            return -1;
        }

    } else if (ngx_wsp_pmd_bits(conf) < 15) {
        *err = "no server_max_window_bits, which was asked for";
        return -1;
    }

    if (ext.seen & NGX_WSP_PMD_CMWB) {
        if (ext.client_bits == 0) {
            *err = "client_max_window_bits without a value";
            return -1;
        }

        if (ext.client_bits > ngx_wsp_pmd_bits(conf)) {
            *err = "a client_max_window_bits larger than offered";
            return -1;
        }

        if (ext.client_bits < NGX_WSP_PMD_MIN_DEFLATE_BITS) {
            *err = "a client_max_window_bits of 8, which zlib cannot "
                   "deflate with";
            return -1;
        }
    }

    p->on = 1;
    p->server_nct = (ext.seen & NGX_WSP_PMD_SNCT) != 0;

    /* the offer's client_no_context_takeover was a promise (7.1.1.2) */
    p->client_nct = !conf->context_takeover
                    || (ext.seen & NGX_WSP_PMD_CNCT);

    p->server_bits = ext.server_bits ? ext.server_bits : 15;
    p->client_bits = ext.client_bits ? ext.client_bits
                                     : ngx_wsp_pmd_bits(conf);

    return 0;
}


static unsigned char *
ngx_wsp_pmd_put(unsigned char *out, const char *s)
{
    size_t  n;

    n = strlen(s);
    memcpy(out, s, n);

    return out + n;
}


static unsigned char *
ngx_wsp_pmd_put_bits(unsigned char *out, const char *name, unsigned bits)
{
    out = ngx_wsp_pmd_put(out, "; ");
    out = ngx_wsp_pmd_put(out, name);
    *out++ = '=';

    if (bits >= 10) {
        *out++ = '1';
    }

    *out++ = (unsigned char) ('0' + bits % 10);

    return out;
}


int
ngx_wsp_inflate_init(z_stream *z, int bits)
{
    z->next_in = Z_NULL;
    z->avail_in = 0;

    return inflateInit2(z, -bits);
}


/*
 * Inflate with its input and output set; a final block (BFINAL, which a
 * sender may use to flush, RFC 7692 7.2.3.4) ends its zlib stream, and
 * the stream is restarted, with the window it had, at once, so that
 * what follows in this message or the next one inflates as a new deflate
 * stream.  Returns zlib's result, Z_STREAM_END when a final block ended.
 */

static int
ngx_wsp_inflate_z(z_stream *z)
{
    int  rc;

    rc = inflate(z, Z_SYNC_FLUSH);

    if (rc == Z_STREAM_END && ngx_wsp_inflate_end_of_stream(z) != Z_OK) {
        return Z_MEM_ERROR;
    }

    return rc;
}


static int
ngx_wsp_inflate_end_of_stream(z_stream *z)
{
    int            rc;
    uInt           n;
    unsigned char  window[1 << 15];

    /*
     * the sender may refer to the data before its final block: the
     * window goes over to the new stream (1 << 15 is zlib's largest)
     */

    n = 0;

    rc = inflateGetDictionary(z, window, &n);
    if (rc != Z_OK) {
        return rc;
    }

    rc = inflateReset(z);
    if (rc != Z_OK) {
        return rc;
    }

    return n ? inflateSetDictionary(z, window, n) : Z_OK;
}


int
ngx_wsp_inflate(z_stream *z, const unsigned char *in, size_t n,
    size_t *used, int fin, unsigned char **out, unsigned char *end)
{
    int                   rc;
    static const uint8_t  tail[4] = { 0x00, 0x00, 0xff, 0xff };

    z->next_in = (unsigned char *) in;
    z->avail_in = (uInt) n;
    z->next_out = *out;
    z->avail_out = (uInt) (end - *out);

    /*
     * The payload.  inflate() does all it can in one call: it stops for
     * want of input or of room (output may then still be due from the
     * input taken), or at the end of a final block, after which what is
     * left starts a new stream.  It is called without input or room too:
     * output may be due from an earlier call, and input that makes no
     * output (a block's header) can be taken without room.
     */

    for ( ;; ) {
        rc = ngx_wsp_inflate_z(z);

        if (rc == Z_STREAM_END && z->avail_in) {
            continue;
        }

        if (rc == Z_BUF_ERROR) {
            /* no progress possible */
            rc = Z_OK;
        }

        break;
    }

    *used = n - z->avail_in;
    *out = z->next_out;

    if (rc != Z_OK && rc != Z_STREAM_END) {
        return NGX_WSP_Z_ERROR;
    }

    if (rc == Z_STREAM_END) {
        /*
         * a final block that ends the payload ends the message (all its
         * output is out): the tail, which would start a block of the new
         * stream, is not fed
         */
        return NGX_WSP_Z_OK;
    }

    if (z->avail_in) {
        return NGX_WSP_Z_FULL;
    }

    if (!fin) {
        return z->avail_out ? NGX_WSP_Z_OK : NGX_WSP_Z_FULL;
    }

    /*
     * The tail completes the empty stored block that ends every message
     * (7.2.1 has a sender append one when its data does not end so):
     * inflated, it gives no output and needs no room.  So, unless output
     * from the payload is still due (the room is full and none of the
     * tail is taken), the tail is taken whole or the message does not
     * end as RFC 7692 has it.
     */

    z->next_in = (unsigned char *) tail;
    z->avail_in = 4;

    rc = ngx_wsp_inflate_z(z);

    if (rc == Z_STREAM_END
        || (rc == Z_OK && z->avail_in == 0 && z->next_out == *out))
    {
        return NGX_WSP_Z_OK;
    }

    if (rc == Z_BUF_ERROR && z->avail_out == 0 && z->avail_in == 4) {
        return NGX_WSP_Z_FULL;
    }

    return NGX_WSP_Z_ERROR;
}


int
ngx_wsp_deflate_init(z_stream *z, int level, int bits, int mem_level)
{
    z->next_in = Z_NULL;
    z->avail_in = 0;

    return deflateInit2(z, level, Z_DEFLATED, bits == 8 ? -9 : -bits,
                        mem_level, Z_DEFAULT_STRATEGY);
}


int
ngx_wsp_deflate(z_stream *z, const unsigned char *in, size_t n,
    size_t *used, int fin, unsigned char **out, unsigned char *end)
{
    int  rc;

    *used = 0;

    /*
     * zlib's deflate ends a call on a full output also when the flush
     * just ended there, and the next call then makes a new flush marker:
     * with less room than one (5 bytes) that never ends
     */

    if (end - *out < NGX_WSP_DEFLATE_MIN_ROOM) {
        return NGX_WSP_Z_FULL;
    }

    z->next_in = (unsigned char *) in;
    z->avail_in = (uInt) n;
    z->next_out = *out;
    z->avail_out = (uInt) (end - *out);

    rc = deflate(z, Z_SYNC_FLUSH);

    *used = n - z->avail_in;
    *out = z->next_out;

    if (rc == Z_BUF_ERROR) {
        /*
         * Nothing to do: no input, and the last call completed a sync
         * flush, so the stream is at a byte boundary, after the 00 00
         * ff ff of an earlier frame.  An empty message still needs
         * something: an empty stored block's header, whose length the
         * receiver's tail supplies.  A frame that does not end the
         * message can stay empty.
         */

        if (fin) {
            *(*out)++ = 0x00;
        }

        return NGX_WSP_Z_OK;
    }

    if (rc != Z_OK) {
        return NGX_WSP_Z_ERROR;
    }

    if (z->avail_out == 0) {
        return NGX_WSP_Z_FULL;
    }

    if (fin) {
        /* the 00 00 ff ff of the flush's empty stored block (7.2.1) */
        *out -= 4;
    }

    return NGX_WSP_Z_OK;
}


/*
 * zlib's zconf.h: inflate needs 1 << windowBits for its window, deflate
 * (1 << (windowBits + 2)) + (1 << (memLevel + 9)); to that their state
 * structures: about 7 KB for inflate (its code tables included), about
 * 6 KB for deflate, in zlib 1.2.x on 64 bits.  Rounded up.
 */

size_t
ngx_wsp_inflate_memory(int bits)
{
    return ((size_t) 1 << bits) + 7424;
}


size_t
ngx_wsp_deflate_memory(int bits, int mem_level)
{
    if (bits == 8) {
        bits = 9;
    }

    return ((size_t) 1 << (bits + 2)) + ((size_t) 1 << (mem_level + 9))
           + 6144;
}
