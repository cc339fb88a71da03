/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The base of the nginx layers (docs/design.md, "Layers"): what every
 * layer above it calls and none owns alone.  The module as the layers see
 * it (api defines it and hands it down when nginx creates its
 * configuration), lua-nginx-module's semaphore table (api's lua.c fills
 * it), the worker's list of sessions, a session's error string, the log
 * lines that hold a peer's bytes, Lua's wake-ups and the masking keys.
 * It calls nothing of the module's.
 */


#include "ngx_http_ws_proxy_module.h"
#include <ngx_sha1.h>

#if (NGX_HTTP_SSL)
#include <openssl/rand.h>
#endif


/*
 * ngx_http_ws_proxy_module, whose definition (directives, handlers) is
 * api's: the layers under it find their configuration and the request's
 * session through this pointer (ngx_wsp_module), which api sets before
 * nginx reads a directive of the module
 * (ngx_http_ws_proxy_create_main_conf()).
 */

ngx_module_t  *ngx_http_ws_proxy_self;

ngx_http_ws_proxy_lua_api_t  ngx_http_ws_proxy_lua_api;


/*
 * The worker's live sessions: Lua may hold a proxy object in a timer or
 * another request after its session ended, and the memory of that session
 * may hold another one by then.  A handle carries the session's id, drawn
 * from a 64-bit counter that never wraps in practice, and a session is
 * only reached once it is found here under that id.
 */

static ngx_queue_t  ngx_http_ws_proxy_sessions;


ngx_http_ws_proxy_t *
ngx_http_ws_proxy_lookup(uint64_t id)
{
    ngx_queue_t          *q;
    ngx_http_ws_proxy_t  *wp;

    if (ngx_http_ws_proxy_sessions.next == NULL) {
        return NULL;
    }

    for (q = ngx_queue_head(&ngx_http_ws_proxy_sessions);
         q != ngx_queue_sentinel(&ngx_http_ws_proxy_sessions);
         q = ngx_queue_next(q))
    {
        wp = ngx_queue_data(q, ngx_http_ws_proxy_t, queue);

        if (wp->id == id) {
            return wp;
        }
    }

    return NULL;
}


/* the drain walks them: ngx_http_ws_proxy_drain.c */

ngx_queue_t *
ngx_http_ws_proxy_worker_sessions(void)
{
    if (ngx_http_ws_proxy_sessions.next == NULL) {
        ngx_queue_init(&ngx_http_ws_proxy_sessions);
    }

    return &ngx_http_ws_proxy_sessions;
}


void
ngx_http_ws_proxy_unlink(ngx_http_ws_proxy_t *wp)
{
    if (wp->queue.next) {
        ngx_queue_remove(&wp->queue);
        wp->queue.next = NULL;
    }
}


void
ngx_http_ws_proxy_set_error(ngx_http_ws_proxy_t *wp, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    line[NGX_WSP_ERRBUF_SIZE];

    if (wp->err == NULL) {
        /* errors are rare: a session gets the buffer with its first one */
        wp->err = ngx_pnalloc(wp->pool, NGX_WSP_ERRBUF_SIZE);
        if (wp->err == NULL) {
            wp->err_len = 0;
            return;
        }
    }

    va_start(args, fmt);
    p = ngx_vslprintf(line, line + sizeof(line), fmt, args);
    va_end(args);

    /* it is logged, by C or by Lua, and Lua's callers log it again */

    p = ngx_http_ws_proxy_log_escape(wp->err, wp->err + NGX_WSP_ERRBUF_SIZE,
                                     line, p - line);

    wp->err_len = p - wp->err;
}


/*
 * Bytes of a client or an upstream in a log line (a URI, a header value, a
 * close reason, an error string): every byte below 0x20, and 0x7f, as
 * \xNN, so that no peer can end the line and write one of its own into
 * error.log, which nginx writes as it is given.  A backslash is left as
 * it is: escaping twice changes nothing.  Stops at last, never in the
 * middle of an escape.
 */

u_char *
ngx_http_ws_proxy_log_escape(u_char *dst, u_char *last, u_char *src,
    size_t len)
{
    u_char         c;
    u_char        *end;
    static u_char  hex[] = "0123456789abcdef";

    end = src + len;

    while (src < end && dst < last) {
        c = *src++;

        if (c >= 0x20 && c != 0x7f) {
            *dst++ = c;
            continue;
        }

        if (last - dst < 4) {
            break;
        }

        *dst++ = '\\';
        *dst++ = 'x';
        *dst++ = hex[c >> 4];
        *dst++ = hex[c & 0xf];
    }

    return dst;
}


/*
 * ngx_log_error() for a line that holds a peer's bytes: formatted, then
 * escaped by ngx_http_ws_proxy_log_escape() (the format's own text has no
 * control bytes, so the whole line can be)
 */

void
ngx_http_ws_proxy_log_error(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;
    u_char    line[NGX_MAX_ERROR_STR], safe[NGX_MAX_ERROR_STR];

    if (log->log_level < level) {
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(line, line + sizeof(line), fmt, args);
    va_end(args);

    p = ngx_http_ws_proxy_log_escape(safe, safe + sizeof(safe), line,
                                     p - line);

    ngx_log_error(level, log, err, "%*s", p - safe, safe);
}


/*
 * A log line of Kong's library (see ngx_http_ws_proxy_lua_log_t): kept for
 * the Lua library, which is woken to write it.  When it cannot be kept (no
 * memory, the buffer full because Lua has not run) it is logged here.
 */

void
ngx_http_ws_proxy_lua_log(ngx_http_ws_proxy_t *wp, ngx_uint_t level,
    const char *fmt, ...)
{
    u_char                   *p;
    size_t                    len;
    va_list                   args;
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;
    u_char                    raw[NGX_WSP_ERRBUF_SIZE];
    u_char                    line[NGX_WSP_ERRBUF_SIZE];

    if (wp->log->log_level < level) {
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(raw, raw + sizeof(raw), fmt, args);
    va_end(args);

    /* a close reason: a peer's bytes */

    p = ngx_http_ws_proxy_log_escape(line, line + sizeof(line), raw, p - raw);

    len = p - line;

    if (wp->notify) {
        /* ws_proxy_pass: no Lua to write it */
        ngx_log_error(level, wp->log, 0, "%*s", len, line);
        return;
    }

    if (wp->lua_log.data == NULL) {
        wp->lua_log.data = ngx_pnalloc(wp->pool, NGX_WSP_LUA_LOG_SIZE);
    }

    if (wp->lua_log.data == NULL
        || wp->lua_log.len + 3 + len > NGX_WSP_LUA_LOG_SIZE)
    {
        ngx_log_error(level, wp->log, 0, "%*s", len, line);
        return;
    }

    p = wp->lua_log.data + wp->lua_log.len;
    *p++ = (u_char) level;
    *p++ = (u_char) (len >> 8);
    *p++ = (u_char) (len & 0xff);
    ngx_memcpy(p, line, len);
    wp->lua_log.len += 3 + len;

    /* whichever Lua thread sleeps now writes it */

    if (!wp->opts.hook) {
        ngx_http_ws_proxy_wake(wp->sema);
        return;
    }

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        if (d->parked) {
            d->parked = 0;
            (void) ngx_http_lua_ffi_sema_post(d->sema, 1);
            return;
        }
    }
}


/* the lines Lua could not write any more (the request is ending) */

void
ngx_http_ws_proxy_lua_log_flush(ngx_http_ws_proxy_t *wp)
{
    u_char  *p, *last;
    size_t   len;

    p = wp->lua_log.data;
    last = p + wp->lua_log.len;

    while (p + 3 <= last) {
        len = (p[1] << 8) | p[2];
        ngx_log_error((ngx_uint_t) p[0], wp->log, 0, "%*s", len, p + 3);
        p += 3 + len;
    }

    wp->lua_log.len = 0;
}


/*
 * The connect finished or the session ended: Lua's main thread is woken,
 * or ws_proxy_pass's handler called (it has no Lua thread to wake).
 */

void
ngx_http_ws_proxy_notify(ngx_http_ws_proxy_t *wp)
{
    if (wp->notify) {
        wp->notify(wp);
        return;
    }

    ngx_http_ws_proxy_wake(wp->sema);
}


/*
 * Posting only when the count is below one coalesces wake-ups: a waiter
 * always re-checks the session state, so one pending post is enough.
 */

void
ngx_http_ws_proxy_wake(void *sema)
{
    if (sema != NULL && ngx_http_lua_ffi_sema_count(sema) < 1) {
        (void) ngx_http_lua_ffi_sema_post(sema, 1);
    }
}


/*
 * Masking keys must be unpredictable (RFC 6455 5.3); they come from the
 * OpenSSL CSPRNG, drawn in blocks that serve a thousand frames, since one
 * RAND_bytes() call costs as much as forwarding a frame.  The pool is the
 * worker's: it is first filled after the fork, so workers never share it.
 */

#define NGX_WSP_RANDOM_POOL  4096

static u_char      ngx_wsp_rnd[NGX_WSP_RANDOM_POOL];
static ngx_uint_t  ngx_wsp_rnd_pos = NGX_WSP_RANDOM_POOL;


void
ngx_http_ws_proxy_random(u_char *dst, size_t n)
{
    ngx_uint_t  i;

    if (ngx_wsp_rnd_pos + n > NGX_WSP_RANDOM_POOL) {
#if (NGX_HTTP_SSL)
        if (RAND_bytes(ngx_wsp_rnd, NGX_WSP_RANDOM_POOL) != 1)
#endif
        {
            /*
             * no CSPRNG: the keys stay random, if not unpredictable; said
             * once a pool
             */
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "ws_proxy: RAND_bytes() failed, masking keys "
                          "come from random()");

            for (i = 0; i < NGX_WSP_RANDOM_POOL; i++) {
                ngx_wsp_rnd[i] = (u_char) ngx_random();
            }
        }

        ngx_wsp_rnd_pos = 0;
    }

    ngx_memcpy(dst, ngx_wsp_rnd + ngx_wsp_rnd_pos, n);
    ngx_wsp_rnd_pos += n;
}


/*
 * The WebSocket headers of r's upgrade request, checked (the checks are
 * in ngx_wsp_handshake.c, to be fuzzed), for the client's handshake in
 * upstream and the tap in ops, without a session: NGX_WSP_REQ_OK with
 * rq->key, else rq->error and rq->error_arg
 */

int
ngx_http_ws_proxy_upgrade_headers(ngx_http_request_t *r,
    ngx_wsp_request_t *rq)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_memzero(rq, sizeof(ngx_wsp_request_t));

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        ngx_wsp_request_header(rq, h[i].key.data, h[i].key.len,
                               h[i].value.data, h[i].value.len);
    }

    return ngx_wsp_request_check(rq);
}


/*
 * What a 101 needs (the client's handshake in upstream, the tap in ops):
 * the Sec-WebSocket-Accept value for a key, the status and fields, a
 * header of the response.
 */

#define NGX_WSP_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void
ngx_http_ws_proxy_accept_key(ngx_str_t *key, u_char *out)
{
    u_char      digest[20];
    ngx_str_t   src, dst;
    ngx_sha1_t  sha1;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->data, key->len);
    ngx_sha1_update(&sha1, NGX_WSP_GUID, sizeof(NGX_WSP_GUID) - 1);
    ngx_sha1_final(digest, &sha1);

    src.data = digest;
    src.len = sizeof(digest);
    dst.data = out;

    ngx_encode_base64(&dst, &src);
}


/* the 101's status and fields for the client's key */

ngx_int_t
ngx_http_ws_proxy_accept(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char  *accept;

    accept = ngx_pnalloc(r->pool, 28);
    if (accept == NULL) {
        return NGX_ERROR;
    }

    ngx_http_ws_proxy_accept_key(key, accept);

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;
    r->lingering_close = 0;

    if (ngx_http_ws_proxy_add_header(r, "Upgrade", 7,
                                     (u_char *) "websocket", 9) != NGX_OK
        || ngx_http_ws_proxy_add_header(r, "Sec-WebSocket-Accept", 20,
                                        accept, 28) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ws_proxy_add_header(ngx_http_request_t *r, const char *name,
    size_t len, u_char *value, size_t vlen)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = len;
    h->value.data = value;
    h->value.len = vlen;

    return NGX_OK;
}
