/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * A scripted session around the session core, without nginx, for the
 * unit test (wsp_session_test.c) and the fuzzer (fuzz/fuzz_session.c):
 * two directions with input buffers, callbacks that record what the core
 * asks for, memory that is counted and given back, and the one check of
 * a direction's invariants both use.
 */

#ifndef _WSP_SESSION_SCRIPT_H_INCLUDED_
#define _WSP_SESSION_SCRIPT_H_INCLUDED_


#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_session.h"


#define T_BUF         256
#define T_EVENTS      64
#define T_ALLOCS      8


typedef struct {
    unsigned            event;
    unsigned            dir;        /* 2: the session's */
    unsigned            code;
} t_event_t;


typedef struct {
    ngx_wsp_session_t   s;
    ngx_wsp_opts_t      opts;
    ngx_wsp_sdir_t      d[2];
    unsigned char       buf[2][T_BUF];

    t_event_t           ev[T_EVENTS];
    unsigned            nev;
    unsigned            closes[2];  /* EV_CLOSE_QUEUED per direction */
    unsigned            taken[2];
    unsigned            held_close[2];  /* the frame held for Lua: a close */

    void               *mem[T_ALLOCS];
    unsigned            nmem;
    unsigned            no_memory;  /* alloc() fails */
    unsigned char       key;        /* the next masking key's byte */
} t_session_t;


#define t_of(s)  ((t_session_t *) (s))


/* the scripted session's time */
static uintptr_t  t_clock;


static void *
t_alloc(ngx_wsp_session_t *s, size_t size)
{
    t_session_t  *t = t_of(s);

    if (t->no_memory || t->nmem == T_ALLOCS) {
        return NULL;
    }

    t->mem[t->nmem] = calloc(1, size);

    return t->mem[t->nmem++];
}


static void
t_mask_key(ngx_wsp_session_t *s, unsigned char key[4])
{
    t_session_t  *t = t_of(s);

    key[0] = t->key++;
    key[1] = t->key++;
    key[2] = t->key++;
    key[3] = t->key++;
}


static void
t_event(ngx_wsp_session_t *s, ngx_wsp_sdir_t *d, unsigned event,
    unsigned code, const char *text, uint64_t n)
{
    t_session_t  *t = t_of(s);

    (void) text;
    (void) n;

    if (t->nev < T_EVENTS) {
        t->ev[t->nev].event = event;
        t->ev[t->nev].dir = d ? (unsigned) d->dir : 2;
        t->ev[t->nev].code = code;
        t->nev++;
    }

    if (event == NGX_WSP_EV_CLOSE_QUEUED) {
        t->closes[d->dir]++;
    }

    if (event == NGX_WSP_EV_TAKEN) {
        t->taken[d->dir]++;
        t->held_close[d->dir] = 0;
    }
}


/* every frame is forwarded as it comes: no buffer(), inflate(), ... */
static const ngx_wsp_session_cb_t  t_cb = {
    t_alloc, t_mask_key, t_event, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};


static void
t_init(t_session_t *t)
{
    unsigned  i;

    memset(t, 0, sizeof(t_session_t));

    ngx_wsp_session_init(&t->s, &t_cb, &t->opts, &t_clock, &t->d[0],
                         &t->d[1]);

    for (i = 0; i < 2; i++) {
        t->d[i].start = t->buf[i];
        t->d[i].end = t->buf[i] + T_BUF;
        t->d[i].spos = t->buf[i];
        t->d[i].ppos = t->buf[i];
        t->d[i].last = t->buf[i];
    }
}


static void
t_free(t_session_t *t)
{
    while (t->nmem) {
        free(t->mem[--t->nmem]);
    }
}


/* n bytes read from src (at most what the buffer has room for) */

static size_t
t_read(t_session_t *t, unsigned dir, size_t n)
{
    ngx_wsp_sdir_t  *d = &t->d[dir];

    if (n > (size_t) (d->end - d->last)) {
        n = d->end - d->last;
    }

    memset(d->last, 'a', n);
    d->last += n;

    return n;
}


/* n parsed bytes join the raw range, as a frame forwarded in place */

static size_t
t_forward(t_session_t *t, unsigned dir, size_t n)
{
    ngx_wsp_sdir_t  *d = &t->d[dir];

    if (n > (size_t) (d->last - d->ppos)) {
        n = d->last - d->ppos;
    }

    d->ppos += n;

    return n;
}


/*
 * A send of up to n bytes of d's output, in its order (the raw range,
 * out_hdr, out_body, out_ctl), copied to out when it is not NULL; what
 * was sent
 */

static size_t
t_take(t_session_t *t, unsigned dir, size_t n, unsigned char *out)
{
    size_t            k, sent;
    ngx_wsp_sdir_t   *d = &t->d[dir];
    ngx_wsp_range_t  *r, raw;
    ngx_wsp_range_t  *ranges[4];
    unsigned          i;

    if (d->tx == NGX_WSP_TX_ABORTED) {
        return 0;
    }

    raw.pos = d->spos;
    raw.last = d->ppos;
    ranges[0] = &raw;
    ranges[1] = &d->out_hdr;
    ranges[2] = &d->out_body;
    ranges[3] = &d->out_ctl;

    for (sent = 0, i = 0; i < 4 && n; i++) {
        r = ranges[i];
        k = r->last - r->pos;
        k = k < n ? k : n;

        if (k == 0) {
            /* an empty range may be NULL: no arithmetic on it */
            continue;
        }

        if (out) {
            memcpy(out + sent, r->pos, k);
        }

        r->pos += k;
        n -= k;
        sent += k;
    }

    d->spos = raw.pos;

    return sent;
}


#define t_send(t, dir, n)  t_take(t, dir, n, NULL)


/*
 * A close frame of the proxy's in out_ctl: it parses, is masked by role,
 * carries a valid status.  The status, or 0 when the frame is not valid.
 */

static unsigned
t_close_sent(ngx_wsp_sdir_t *d)
{
    size_t           n;
    unsigned         code;
    const char      *reason;
    unsigned char    payload[NGX_WSP_MAX_CONTROL];
    ngx_wsp_frame_t  f;

    if (d->ctl == NULL) {
        return 0;
    }

    n = d->out_ctl.last - d->ctl->frame;

    if (ngx_wsp_frame_parse_header(d->ctl->frame, n, &f) != NGX_WSP_PARSE_OK
        || f.opcode != NGX_WSP_OP_CLOSE || !f.fin
        || f.masked != (d->dir == NGX_WSP_DIR_CLIENT)
        || f.header_len + f.payload_len != n)
    {
        return 0;
    }

    if (f.masked) {
        ngx_wsp_mask(payload, d->ctl->frame + f.header_len,
                     (size_t) f.payload_len, f.mask, 0);

    } else {
        memcpy(payload, d->ctl->frame + f.header_len,
               (size_t) f.payload_len);
    }

    if (ngx_wsp_close_check(payload, (size_t) f.payload_len, &code, &reason)
        || code == NGX_WSP_CLOSE_NO_STATUS)
    {
        return 0;
    }

    return code;
}


/* what holds for a direction whatever happened: NULL, or what broke */

static const char *
t_check(t_session_t *t, unsigned dir)
{
    ngx_wsp_sdir_t  *d = &t->d[dir];

    if (!(d->start <= d->spos && d->spos <= d->ppos && d->ppos <= d->last
          && d->last <= d->end))
    {
        return "spos <= ppos <= last inside the buffer";
    }

    if (d->rx > NGX_WSP_RX_GONE || d->tx > NGX_WSP_TX_ABORTED
        || d->in > NGX_WSP_IN_DUE)
    {
        return "states in range";
    }

    if (t->closes[dir] > 1) {
        return "nothing follows a close frame";
    }

    if (t->closes[dir] && d->tx < NGX_WSP_TX_CLOSED) {
        return "after a close frame the writer is CLOSED or ABORTED";
    }

    if (d->out_ctl.pos != d->out_ctl.last) {
        if (d->tx != NGX_WSP_TX_CLOSED) {
            return "a close in out_ctl: the writer is CLOSED";
        }

        if (t_close_sent(d) == 0) {
            return "the proxy's close frame re-parses as a valid close";
        }
    }

    if (ngx_wsp_close_pending(d) && d->ctl == NULL) {
        return "a close due has its reason";
    }

    if (d->in == NGX_WSP_IN_LUA && d->ppos + d->hold > d->last) {
        return "a held frame is in the buffer";
    }

    return NULL;
}


#endif /* _WSP_SESSION_SCRIPT_H_INCLUDED_ */
