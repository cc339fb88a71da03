/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * permessage-deflate (RFC 7692) in the relay: what each direction does
 * with compressed messages, and the zlib streams.  The negotiation, each
 * connection's on its own (wp->pmd[]), is upstream's
 * (src/upstream/ngx_http_ws_proxy_negotiate.c).  A direction whose
 * two connections compress alike, and whose payloads nothing needs, lets
 * compressed frames pass in place (NGX_WSP_Z_PASS).  Otherwise the
 * direction inflates what its src compressed, into the message buffer, as
 * the bytes come (limits count what comes out), and compresses what it
 * sends to a dst that negotiated it, in the core's ngx_wsp_emit().
 *
 * zlib streams are taken when a message needs one and, without context
 * takeover, given back at its end to a small per-worker cache, reset: an
 * idle session holds none.  The standalone part (the parameters, the
 * inflate and deflate of a frame) is src/protocol/ngx_wsp_deflate.c.
 */


#include "ngx_http_ws_proxy_pump.h"


/* the idle streams a worker keeps for the next messages */
#define NGX_WSP_ZCACHE_MAX           8

/* a stream's key: its kind and parameters */
#define NGX_WSP_ZKEY_DEFLATE         1
#define ngx_wsp_zkey(kind, bits, level, mem)                                 \
    ((kind) | ((bits) << 1) | ((level) << 5) | ((mem) << 9))


typedef struct ngx_http_ws_proxy_zstream_s  ngx_http_ws_proxy_zstream_t;

struct ngx_http_ws_proxy_zstream_s {
    z_stream                      z;
    ngx_http_ws_proxy_zstream_t  *next;      /* in the worker's cache */
    ngx_uint_t                    key;
};


struct ngx_http_ws_proxy_zdir_s {
    ngx_http_ws_proxy_zstream_t  *in;        /* inflates src's messages */
    ngx_http_ws_proxy_zstream_t  *out;       /* deflates towards dst */
    u_char                       *buf;       /* the deflated frame */
    size_t                        cap;
};


static ngx_int_t ngx_http_ws_proxy_inflate_room(ngx_http_ws_proxy_dir_t *d,
    size_t *room);
static ngx_int_t ngx_http_ws_proxy_inflated(ngx_http_ws_proxy_dir_t *d,
    u_char *p, size_t n);
static ngx_http_ws_proxy_zdir_t *ngx_http_ws_proxy_zdir(
    ngx_http_ws_proxy_dir_t *d);
static ngx_http_ws_proxy_zstream_t *ngx_http_ws_proxy_zget(ngx_uint_t key,
    ngx_log_t *log);
static void ngx_http_ws_proxy_zput(ngx_http_ws_proxy_zstream_t *s);
static void ngx_http_ws_proxy_zend(ngx_http_ws_proxy_zstream_t *s);
static voidpf ngx_http_ws_proxy_zalloc(voidpf opaque, uInt items,
    uInt size);
static void ngx_http_ws_proxy_zfree(voidpf opaque, voidpf address);


static ngx_http_ws_proxy_zstream_t  *ngx_wsp_zcache;
static ngx_uint_t                    ngx_wsp_nzcache;


/* when the pump starts: what each direction does (the core decides) */

void
ngx_http_ws_proxy_deflate_start(ngx_http_ws_proxy_t *wp)
{
#if (NGX_DEBUG)
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;
#endif

    ngx_wsp_deflate_start(&wp->core, wp->pmd);

#if (NGX_DEBUG)
    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wp->log, 0,
                       "ws_proxy %s deflate: %s", ngx_wsp_src_role(d),
                       d->z == 0 ? "off"
                       : (d->z & NGX_WSP_Z_PASS) ? "pass"
                       : d->z == NGX_WSP_Z_RX ? "inflate"
                       : d->z == NGX_WSP_Z_TX ? "deflate"
                       : "inflate, deflate");
    }
#endif
}


/*
 * n payload bytes of a compressed frame, at in (in the input buffer, which
 * they are not sent from: unmasked in place), inflated onto the message
 * buffer.  NGX_OK, or NGX_DONE: the direction was closed (a limit, data
 * that does not inflate, text that is not UTF-8) or the session failed.
 */

int
ngx_http_ws_proxy_inflate(ngx_wsp_sdir_t *sd, u_char *in, size_t n)
{
    int                        rc;
    size_t                     used, room;
    u_char                    *out, *start;
    ngx_uint_t                 fin, key;
    ngx_http_ws_proxy_t       *wp;
    ngx_http_ws_proxy_dir_t   *d;
    ngx_http_ws_proxy_zdir_t  *zd;

    d = (ngx_http_ws_proxy_dir_t *) sd;
    wp = ngx_wsp_dir_wp(d);
    fin = d->frame.fin && (uint64_t) n == d->remaining;

    if (d->frame.masked) {
        ngx_wsp_mask(in, in, n, d->frame.mask, d->offset);
    }

    zd = ngx_http_ws_proxy_zdir(d);
    if (zd == NULL) {
        goto failed;
    }

    if (zd->in == NULL) {
        key = ngx_wsp_zkey(0, ngx_wsp_peer_bits(&wp->pmd[d->dir], d->dir),
                           0, 0);
        zd->in = ngx_http_ws_proxy_zget(key, wp->log);
        if (zd->in == NULL) {
            goto failed;
        }
    }

    d->zbytes += n;

    for ( ;; ) {
        if (ngx_http_ws_proxy_inflate_room(d, &room) != NGX_OK) {
            goto failed;
        }

        start = d->msg + d->msg_len;
        out = start;

        rc = ngx_wsp_inflate(&zd->in->z, in, n, &used, (int) fin, &out,
                             start + room);

        in += used;
        n -= used;

        if (rc == NGX_WSP_Z_ERROR) {
            ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_INVALID_DATA,
                                        "invalid compressed data",
                                        "data that does not inflate");
            return NGX_DONE;
        }

        if (ngx_http_ws_proxy_inflated(d, start, out - start) != NGX_OK) {
            return NGX_DONE;
        }

        if (rc == NGX_WSP_Z_OK) {
            break;
        }
    }

    if (fin && ngx_wsp_peer_nct(&wp->pmd[d->dir], d->dir)) {
        ngx_http_ws_proxy_zput(zd->in);
        zd->in = NULL;
    }

    return NGX_OK;

failed:

    ngx_http_ws_proxy_fail(wp, "out of memory");
    return NGX_DONE;
}


/*
 * Room for the next inflate, within the limits: one byte more than they
 * allow, so that going past them is seen.  The message buffer grows.
 */

static ngx_int_t
ngx_http_ws_proxy_inflate_room(ngx_http_ws_proxy_dir_t *d, size_t *room)
{
    size_t                want;
    uint64_t              left, max;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);

    left = wp->opts.max_payload - d->msg_len;
    max = wp->opts.max_frame_size[d->dir];

    if (max && max - d->msg_size < left) {
        left = max - d->msg_size;
    }

    if (d->msg_len == d->msg_cap) {
        want = ngx_max(d->msg_cap, 4096);

        if ((uint64_t) want > left + 1) {
            want = (size_t) left + 1;
        }

        if (ngx_http_ws_proxy_reserve(&d->core, want) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    want = d->msg_cap - d->msg_len;
    *room = (uint64_t) want > left + 1 ? (size_t) left + 1 : want;

    return NGX_OK;
}


/* what came out of an inflate: counted, checked, and the limits applied */

static ngx_int_t
ngx_http_ws_proxy_inflated(ngx_http_ws_proxy_dir_t *d, u_char *p, size_t n)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);

    d->msg_len += n;
    d->msg_size += n;
    d->zplain += n;

    if (d->check_utf8) {
        d->utf8 = ngx_wsp_utf8_validate(d->utf8, p, n);

        if (d->utf8 == NGX_WSP_UTF8_REJECT) {
            ngx_http_ws_proxy_invalid_utf8(d, 0);
            return NGX_DONE;
        }
    }

    if (wp->opts.max_frame_size[d->dir]
        && d->msg_size > wp->opts.max_frame_size[d->dir])
    {
        ngx_http_ws_proxy_limit(d, NGX_WSP_LIMIT_SIZE, d->msg_size);
        return NGX_DONE;
    }

    if (d->msg_len > wp->opts.max_payload) {
        ngx_http_ws_proxy_limit(d, NGX_WSP_LIMIT_BUFFER, d->msg_len);
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * A data frame for a dst that negotiated permessage-deflate: *data and
 * *len become the deflated payload, in the direction's own buffer.
 */

int
ngx_http_ws_proxy_deflate(ngx_wsp_sdir_t *sd, unsigned fin, u_char **data,
    size_t *len)
{
    int                        rc;
    size_t                     used, n, cap;
    u_char                    *in, *out, *p;
    ngx_uint_t                 key, dst;
    ngx_http_ws_proxy_t       *wp;
    ngx_http_ws_proxy_dir_t   *d;
    ngx_http_ws_proxy_zdir_t  *zd;
    ngx_wsp_pmd_params_t      *pmd;

    d = (ngx_http_ws_proxy_dir_t *) sd;
    wp = ngx_wsp_dir_wp(d);
    dst = 1 - d->dir;
    pmd = &wp->pmd[dst];

    zd = ngx_http_ws_proxy_zdir(d);
    if (zd == NULL) {
        return NGX_ERROR;
    }

    if (zd->out == NULL) {
        key = ngx_wsp_zkey(NGX_WSP_ZKEY_DEFLATE, ngx_wsp_own_bits(pmd, dst),
                           wp->opts.deflate_level,
                           wp->opts.deflate_mem_level);
        zd->out = ngx_http_ws_proxy_zget(key, wp->log);
        if (zd->out == NULL) {
            return NGX_ERROR;
        }
    }

    in = *data;
    n = *len;
    out = zd->buf;

    for ( ;; ) {
        if (out == NULL || zd->buf + zd->cap - out < 64) {
            /* a deflated frame is about as long as the payload, or less */

            cap = ngx_max(zd->cap * 2, n + n / 8 + 256);

            p = ngx_alloc(cap, wp->log);
            if (p == NULL) {
                return NGX_ERROR;
            }

            if (out) {
                ngx_memcpy(p, zd->buf, out - zd->buf);
            }

            out = p + (out - zd->buf);
            ngx_free(zd->buf);
            zd->buf = p;
            zd->cap = cap;
        }

        rc = ngx_wsp_deflate(&zd->out->z, in, n, &used, (int) fin, &out,
                             zd->buf + zd->cap);
        in += used;
        n -= used;

        if (rc == NGX_WSP_Z_OK) {
            break;
        }

        if (rc == NGX_WSP_Z_ERROR) {
            return NGX_ERROR;
        }
    }

    d->zplain += *len;
    d->zbytes += out - zd->buf;

    *data = zd->buf;
    *len = out - zd->buf;

    if (fin && ngx_wsp_own_nct(pmd, dst)) {
        ngx_http_ws_proxy_zput(zd->out);
        zd->out = NULL;
    }

    return NGX_OK;
}


static ngx_http_ws_proxy_zdir_t *
ngx_http_ws_proxy_zdir(ngx_http_ws_proxy_dir_t *d)
{
    if (d->zd == NULL) {
        d->zd = ngx_calloc(sizeof(ngx_http_ws_proxy_zdir_t),
                           ngx_wsp_dir_wp(d)->log);
    }

    return d->zd;
}


/*
 * An idle direction keeps no deflate output, and no streams unless their
 * context is kept.
 */

void
ngx_http_ws_proxy_deflate_idle(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_zdir_t  *zd;

    zd = d->zd;

    if (zd->buf && d->out_body.pos == d->out_body.last) {
        ngx_free(zd->buf);
        zd->buf = NULL;
        zd->cap = 0;
    }

    if (zd->in == NULL && zd->out == NULL && zd->buf == NULL) {
        ngx_free(zd);
        d->zd = NULL;
    }
}


/* the end of a session: streams and buffers go */

void
ngx_http_ws_proxy_deflate_free(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_zdir_t  *zd;

    zd = d->zd;

    if (zd == NULL) {
        return;
    }

    if (zd->in) {
        ngx_http_ws_proxy_zput(zd->in);
    }

    if (zd->out) {
        ngx_http_ws_proxy_zput(zd->out);
    }

    if (zd->buf) {
        ngx_free(zd->buf);
    }

    ngx_free(zd);
    d->zd = NULL;
}


/* a stream of the kind key names: an idle one of the worker's, or new */

static ngx_http_ws_proxy_zstream_t *
ngx_http_ws_proxy_zget(ngx_uint_t key, ngx_log_t *log)
{
    int                            rc, bits;
    ngx_http_ws_proxy_zstream_t   *s, **pp;

    for (pp = &ngx_wsp_zcache; *pp; pp = &(*pp)->next) {
        if ((*pp)->key == key) {
            s = *pp;
            *pp = s->next;
            ngx_wsp_nzcache--;
            return s;
        }
    }

    s = ngx_alloc(sizeof(ngx_http_ws_proxy_zstream_t), log);
    if (s == NULL) {
        return NULL;
    }

    ngx_memzero(&s->z, sizeof(z_stream));
    s->z.zalloc = ngx_http_ws_proxy_zalloc;
    s->z.zfree = ngx_http_ws_proxy_zfree;
    s->key = key;

    bits = (key >> 1) & 0xf;

    if (key & NGX_WSP_ZKEY_DEFLATE) {
        rc = ngx_wsp_deflate_init(&s->z, (key >> 5) & 0xf, bits,
                                  (key >> 9) & 0xf);

    } else {
        rc = ngx_wsp_inflate_init(&s->z, bits);
    }

    if (rc != Z_OK) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "ws_proxy: zlib stream not created: %d", rc);
        ngx_free(s);
        return NULL;
    }

    return s;
}


/* a stream given back: reset for the next message, or ended */

static void
ngx_http_ws_proxy_zput(ngx_http_ws_proxy_zstream_t *s)
{
    int  rc;

    if (ngx_wsp_nzcache == NGX_WSP_ZCACHE_MAX) {
        ngx_http_ws_proxy_zend(s);
        return;
    }

    rc = (s->key & NGX_WSP_ZKEY_DEFLATE) ? deflateReset(&s->z)
                                         : inflateReset(&s->z);
    if (rc != Z_OK) {
        ngx_http_ws_proxy_zend(s);
        return;
    }

    s->next = ngx_wsp_zcache;
    ngx_wsp_zcache = s;
    ngx_wsp_nzcache++;
}


static void
ngx_http_ws_proxy_zend(ngx_http_ws_proxy_zstream_t *s)
{
    if (s->key & NGX_WSP_ZKEY_DEFLATE) {
        (void) deflateEnd(&s->z);

    } else {
        (void) inflateEnd(&s->z);
    }

    ngx_free(s);
}


/* the worker exits: its idle streams go */

void
ngx_http_ws_proxy_deflate_exit(void)
{
    ngx_http_ws_proxy_zstream_t  *s;

    while (ngx_wsp_zcache) {
        s = ngx_wsp_zcache;
        ngx_wsp_zcache = s->next;
        ngx_http_ws_proxy_zend(s);
    }

    ngx_wsp_nzcache = 0;
}


/* zlib allocates a stream's window on first use: no session's log */

static voidpf
ngx_http_ws_proxy_zalloc(voidpf opaque, uInt items, uInt size)
{
    return ngx_alloc((size_t) items * size, ngx_cycle->log);
}


static void
ngx_http_ws_proxy_zfree(voidpf opaque, voidpf address)
{
    ngx_free(address);
}
