/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Two peers on the wire around the session core, without nginx, for the
 * unit test (wsp_session_test.c) and the byte-stream fuzzer
 * (fuzz/fuzz_session_wire.c): each peer has a stream of bytes it sends
 * (encoded frames, or any bytes), which the relay's reads move into the
 * core's input buffer in pieces; the pump is the relay's (parse, src gone,
 * send, as ngx_http_ws_proxy_process() and run() do); what the core sends
 * to a peer is parsed again by that peer, which checks it: valid frames
 * for its role, complete and valid text, a valid close, nothing after it.
 */

#ifndef _WSP_WIRE_H_INCLUDED_
#define _WSP_WIRE_H_INCLUDED_


#include "wsp_session.h"


#define W_STREAM     4096
#define W_OUT        4096


/* a peer: what it still has to send, and its parser of what it gets */
typedef struct {
    unsigned char       stream[W_STREAM];
    size_t              spos;
    size_t              slen;

    unsigned char       in[W_OUT];      /* received, not parsed yet */
    size_t              ilen;
    ngx_wsp_frame_t     f;
    unsigned            in_frame;
    uint64_t            remaining;
    uint64_t            offset;
    ngx_wsp_msg_state_t st;
    uint32_t            utf8;
    unsigned            text;
    unsigned char       cbuf[NGX_WSP_MAX_CONTROL];
    size_t              clen;

    unsigned            frames;         /* whole frames received */
    unsigned char       ops[32];        /* their opcodes, in order */
    unsigned            closed;         /* its close frame received */
    unsigned            close_code;
    unsigned            blocked;        /* sends to it do not go */
    const char         *error;          /* what broke in what it got */
} w_peer_t;


/* peer[0] is the client (it sends direction 0), peer[1] the upstream */
static w_peer_t  w_peer[2];

/* the relay's message buffers' sizes, and the frames handed to Lua */
static size_t    w_cap[2];
static unsigned  w_handed[2];


/* the relay's reserve(): room for size more bytes in d->msg */

static int
w_reserve(ngx_wsp_sdir_t *d, size_t size)
{
    size_t          cap;
    unsigned char  *p;

    if (d->msg_len + size <= w_cap[d->dir]) {
        return NGX_WSP_OK;
    }

    for (cap = 64; cap < d->msg_len + size; cap *= 2) { /* void */ }

    p = realloc(d->msg, cap);
    if (p == NULL) {
        return NGX_WSP_ERROR;
    }

    d->msg = p;
    w_cap[d->dir] = cap;

    return NGX_WSP_OK;
}


/* the relay's hand_over(): the hook would be woken */

static void
w_hand_over(ngx_wsp_sdir_t *d)
{
    w_handed[d->dir]++;
}


/*
 * the relay's gate() of a message rate (asked only where d->gate is on):
 * what w_gate_rc says for d's sender, NGX_WSP_OK (go), NGX_WSP_AGAIN
 * (held) or NGX_WSP_DECLINED (the rate broken)
 */

static int  w_gate_rc[2];

static int
w_gate(ngx_wsp_sdir_t *d)
{
    return w_gate_rc[d->dir];
}


/* the relay's callbacks with a hook and aggregation (no deflate) */
static const ngx_wsp_session_cb_t  w_cb = {
    t_alloc, t_mask_key, t_event, NULL, w_reserve, NULL, NULL, w_hand_over,
    NULL, w_gate
};


static void
w_init(t_session_t *t)
{
    t_init(t);
    ngx_wsp_session_init(&t->s, &w_cb, &t->opts, &t_clock, &t->d[0],
                         &t->d[1]);
    t->opts.max_payload = 1 << 20;
    memset(w_peer, 0, sizeof(w_peer));
    memset(w_cap, 0, sizeof(w_cap));
    memset(w_handed, 0, sizeof(w_handed));
    memset(w_gate_rc, 0, sizeof(w_gate_rc));
}


/* peer p sends a frame: encoded, masked as its role wants (or not) */

static void
w_frame(unsigned p, unsigned fin, unsigned opcode, const unsigned char *data,
    size_t len, unsigned bad_mask)
{
    w_peer_t       *w = &w_peer[p];
    unsigned        masked;
    unsigned char   key[4] = { 0x12, 0x34, 0x56, (unsigned char) len };

    if (w->slen + NGX_WSP_MAX_HEADER + len > W_STREAM) {
        return;
    }

    masked = (p == NGX_WSP_DIR_CLIENT) ^ (bad_mask != 0);

    w->slen += ngx_wsp_frame_build(w->stream + w->slen, NULL, data, len, fin,
                                   opcode, masked ? key : NULL);
    w->slen += len;
}


/* peer p sends any bytes */

static void
w_raw(unsigned p, const unsigned char *data, size_t len)
{
    w_peer_t  *w = &w_peer[p];

    if (w->slen + len > W_STREAM) {
        len = W_STREAM - w->slen;
    }

    memcpy(w->stream + w->slen, data, len);
    w->slen += len;
}


/*
 * What peer p got (from direction 1 - p) is parsed: frames of the other
 * role, text that is UTF-8, a valid close, nothing after it.  A frame cut
 * short is fine only when p's connection was dropped (final).
 */

static void
w_check(unsigned p, unsigned final, unsigned aborted)
{
    int             rc;
    size_t          n, used;
    unsigned        code;
    const char     *reason;
    w_peer_t       *w = &w_peer[p];
    unsigned char  *b;

    used = 0;

    while (w->error == NULL) {
        b = w->in + used;
        n = w->ilen - used;

        if (!w->in_frame) {
            if (n == 0) {
                break;
            }

            if (w->closed) {
                w->error = "nothing follows a close frame";
                break;
            }

            rc = ngx_wsp_frame_parse_header(b, n, &w->f);

            if (rc == NGX_WSP_PARSE_AGAIN) {
                break;
            }

            if (rc == NGX_WSP_PARSE_ERROR) {
                w->error = w->f.error;
                break;
            }

            if (ngx_wsp_frame_check(&w->f, p == NGX_WSP_DIR_CLIENT
                                           ? NGX_WSP_ROLE_UPSTREAM
                                           : NGX_WSP_ROLE_CLIENT,
                                    &w->st, &reason))
            {
                /* a frame sent is not valid for its sender's role */
                w->error = reason;
                break;
            }

            if (!ngx_wsp_is_control(w->f.opcode)
                && w->f.opcode != NGX_WSP_OP_CONT)
            {
                w->text = (w->f.opcode == NGX_WSP_OP_TEXT);
                w->utf8 = NGX_WSP_UTF8_ACCEPT;
            }

            w->in_frame = 1;
            w->remaining = w->f.payload_len;
            w->offset = 0;
            w->clen = 0;
            used += w->f.header_len;
            continue;
        }

        n = n < w->remaining ? n : (size_t) w->remaining;

        if (w->f.masked) {
            ngx_wsp_mask(b, b, n, w->f.mask, w->offset);
        }

        if (ngx_wsp_is_control(w->f.opcode)) {
            memcpy(w->cbuf + w->clen, b, n);
            w->clen += n;

        } else if (w->text) {
            w->utf8 = ngx_wsp_utf8_validate(w->utf8, b, n);

            if (w->utf8 == NGX_WSP_UTF8_REJECT) {
                w->error = "invalid UTF-8 was sent";
                break;
            }
        }

        used += n;
        w->remaining -= n;
        w->offset += n;

        if (w->remaining) {
            break;
        }

        w->in_frame = 0;

        if (w->frames < sizeof(w->ops)) {
            w->ops[w->frames] = w->f.opcode;
        }

        w->frames++;

        if (!ngx_wsp_is_control(w->f.opcode) && w->f.fin && w->text
            && w->utf8 != NGX_WSP_UTF8_ACCEPT)
        {
            w->error = "a text message sent ends in a cut code point";
            break;
        }

        if (w->f.opcode == NGX_WSP_OP_CLOSE) {
            if (ngx_wsp_close_check(w->cbuf, w->clen, &code, &reason)) {
                w->error = "a close frame sent is not valid";
                break;
            }

            w->closed = 1;
            w->close_code = code;
        }
    }

    memmove(w->in, w->in + used, w->ilen - used);
    w->ilen -= used;

    if (final && !aborted && w->error == NULL
        && (w->in_frame || w->ilen))
    {
        w->error = "a frame sent was cut short";
    }
}


/* the relay's send of up to max bytes of direction dir: to peer 1 - dir */

static size_t
w_send(t_session_t *t, unsigned dir, size_t max)
{
    size_t           sent;
    ngx_wsp_sdir_t  *d = &t->d[dir];
    w_peer_t        *w = &w_peer[1 - dir];

    if (w->blocked) {
        return 0;
    }

    max = max < W_OUT - w->ilen ? max : W_OUT - w->ilen;
    sent = t_take(t, dir, max, w->in + w->ilen);
    w->ilen += sent;

    if (d->inject_cur && d->out_body.pos == d->out_body.last) {
        /* an injected frame is sent: the relay frees it */
        free(d->inject_cur);
        d->inject_cur = NULL;

        if (d->in == NGX_WSP_IN_DUE) {
            /* a verdict's frame waited for it */
            t->s.kick |= NGX_WSP_RUN_DIR(dir);
        }
    }

    w_check(1 - dir, 0, 0);

    return sent;
}


/* all peer p sent was read, or can no longer be */
#define w_read_all(t, p)                                                     \
    (w_peer[p].spos == w_peer[p].slen || !ngx_wsp_can_recv(&(t)->d[p]))


/* the relay's read: up to n bytes of peer dir's stream into the buffer */

static void
w_read(t_session_t *t, unsigned dir, size_t n)
{
    size_t           room;
    ngx_wsp_sdir_t  *d = &t->d[dir];
    w_peer_t        *w = &w_peer[dir];

    if (!ngx_wsp_can_recv(d)) {
        return;
    }

    if (d->last == d->end) {
        ngx_wsp_compact(d);
    }

    room = d->end - d->last;
    n = n < room ? n : room;
    n = n < w->slen - w->spos ? n : w->slen - w->spos;

    memcpy(d->last, w->stream + w->spos, n);
    d->last += n;
    w->spos += n;
}


/* ngx_http_ws_proxy_process(): parse, src gone, send, while it moves */

static void
w_process(t_session_t *t, unsigned dir)
{
    unsigned         n, more;
    ngx_wsp_sdir_t  *d = &t->d[dir];

    for (n = 0; n < 64; n++) {
        more = ngx_wsp_needs_parse(d) ? ngx_wsp_parse(d) : 0;

        if (d->rx == NGX_WSP_RX_EOF && (d->ppos == d->last || more)) {
            ngx_wsp_src_gone(d);
        }

        if (w_send(t, dir, (size_t) -1) && ngx_wsp_has_work(d)) {
            continue;
        }

        break;
    }
}


/* ngx_http_ws_proxy_run(): the directions asked for and those kicked */

static void
w_run(t_session_t *t, unsigned dirs)
{
    unsigned  i, n;

    t->s.kick |= dirs;

    for (n = 0; t->s.kick && n < 16; n++) {
        dirs = (unsigned) t->s.kick;
        t->s.kick = 0;

        for (i = 0; i < 2; i++) {
            if (dirs & NGX_WSP_RUN_DIR(i)) {
                w_process(t, i);
            }
        }
    }
}


/* a frame injected from Lua (send_frame: ping, pong or data) */

static void
w_inject(t_session_t *t, unsigned dir, unsigned opcode,
    const unsigned char *data, size_t len)
{
    unsigned char      key[4] = { 1, 2, 3, 4 };
    ngx_wsp_sdir_t    *d = &t->d[dir];
    ngx_wsp_inject_t  *in, **last;

    if (d->tx >= NGX_WSP_TX_CLOSED) {
        return;
    }

    in = malloc(sizeof(ngx_wsp_inject_t) + NGX_WSP_MAX_HEADER + len);
    if (in == NULL) {
        return;
    }

    in->len = ngx_wsp_frame_build(in->data, NULL, data, len, 1, opcode,
                                  dir == NGX_WSP_DIR_CLIENT ? key : NULL)
              + len;
    in->next = NULL;

    for (last = &d->inject; *last; last = &(*last)->next) { /* void */ }
    *last = in;

    w_run(t, NGX_WSP_RUN_DIR(dir));
}


/* what the relay frees at the end: injected frames not sent */

static void
w_free(t_session_t *t)
{
    unsigned           i;
    ngx_wsp_inject_t  *in, *next;

    for (i = 0; i < 2; i++) {
        for (in = t->d[i].inject; in; in = next) {
            next = in->next;
            free(in);
        }

        free(t->d[i].inject_cur);
        t->d[i].inject = NULL;
        t->d[i].inject_cur = NULL;

        free(t->d[i].msg);
        t->d[i].msg = NULL;
    }

    t_free(t);
}


#endif /* _WSP_WIRE_H_INCLUDED_ */
