/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Lua's side of the pump: a frame handed over to the on_frame hook and
 * the verdict on it, and the controls Lua calls while the session runs
 * (send_frame(), close(), the end of a failed hook).  Each of them is the
 * top of its call: it ends with ngx_http_ws_proxy_run() or a send.
 */


#include "ngx_http_ws_proxy_pump.h"


static ngx_int_t ngx_http_ws_proxy_close_verdict(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t verdict, u_char *data, size_t len, ngx_int_t code);
static ngx_int_t ngx_http_ws_proxy_rewrite(ngx_http_ws_proxy_dir_t *d,
    u_char *data, size_t len);
static void ngx_http_ws_proxy_resume(ngx_http_ws_proxy_dir_t *d);
static ngx_uint_t ngx_http_ws_proxy_utf8(const u_char *p, size_t len);


/*
 * The frame at p goes to Lua: Lua reads the slot in place once its light
 * thread is woken (see ngx_http_ws_proxy_slot_t).
 */

void
ngx_http_ws_proxy_hand_over(ngx_wsp_sdir_t *sd, u_char *p, size_t len,
    unsigned opcode, unsigned fin)
{
    ngx_http_ws_proxy_dir_t   *d;
    ngx_http_ws_proxy_slot_t  *slot;

    d = (ngx_http_ws_proxy_dir_t *) sd;

    slot = &d->slot;
    slot->data = p;
    slot->len = len;
    slot->opcode = (int) opcode;
    slot->fin = (int) fin;
    slot->code = -1;

    if (opcode == NGX_WSP_OP_CLOSE && len >= 2) {
        slot->code = (p[0] << 8) | p[1];
        slot->data = p + 2;
        slot->len = len - 2;
    }

    slot->seq++;
    slot->ready = 1;
    d->in = NGX_WSP_IN_LUA;

    if (d->parked) {
        /* the light thread sleeps on the semaphore: this wakes it */
        d->parked = 0;
        (void) ngx_http_lua_ffi_sema_post(d->sema, 1);
    }
}


/* the frame Lua had is answered */

void
ngx_http_ws_proxy_taken(ngx_http_ws_proxy_dir_t *d)
{
    d->slot.ready = 0;
    d->in = NGX_WSP_IN_HEADER;
}


/*
 * Lua's verdict on the frame d holds: forward it, forward a rewritten
 * payload (data, len), or drop it; code rewrites a close status (-1: keep).
 * NGX_DECLINED: the rewrite is invalid (a control payload over 125 bytes,
 * a close status that may not be sent); NGX_ABORT: a rewritten text
 * message or close reason is not UTF-8.
 */

ngx_int_t
ngx_http_ws_proxy_apply_verdict(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t verdict, u_char *data, size_t len, ngx_int_t code)
{
    u_char      *p;
    ngx_int_t    rc;
    ngx_uint_t   opcode;

    opcode = (ngx_uint_t) d->slot.opcode;

    if (verdict == NGX_WSP_VERDICT_FORWARD && d->hold
        && d->tx != NGX_WSP_TX_ABORTED)
    {
        /*
         * The usual verdict, kept short: the held frame (never a close)
         * goes out as it came, masked again with the sender's key.
         */

        if (d->frame.masked) {
            p = (u_char *) d->slot.data;
            ngx_wsp_mask(p, p, d->slot.len, d->frame.mask, 0);
        }

        d->ppos += d->hold;
        d->hold = 0;
        ngx_http_ws_proxy_taken(d);

        ngx_http_ws_proxy_resume(d);

        return NGX_OK;
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        return ngx_http_ws_proxy_close_verdict(d, verdict, data, len, code);
    }

    if (d->hold) {
        /* dropped, rewritten or for a peer gone: it leaves unsent */
        d->ppos += d->hold;
        d->spos = d->ppos;
        d->hold = 0;
    }

    if (verdict == NGX_WSP_VERDICT_REWRITE) {
        rc = ngx_http_ws_proxy_rewrite(d, data, len);

        if (rc != NGX_OK) {
            return rc;
        }

    } else if (verdict == NGX_WSP_VERDICT_FORWARD
               && d->tx != NGX_WSP_TX_ABORTED)
    {
        /* a frame not held: it was copied out */
        ngx_http_ws_proxy_emit(d, d->slot.fin, opcode,
                               (u_char *) d->slot.data, d->slot.len);
    }

    if (!ngx_wsp_is_control(opcode)) {
        d->msg_len = 0;
    }

    ngx_http_ws_proxy_taken(d);

    ngx_http_ws_proxy_resume(d);

    return NGX_OK;
}


/* a rewritten payload goes out in the direction's own memory */

static ngx_int_t
ngx_http_ws_proxy_rewrite(ngx_http_ws_proxy_dir_t *d, u_char *data,
    size_t len)
{
    u_char      *p;
    ngx_uint_t   opcode;

    opcode = (ngx_uint_t) d->slot.opcode;

    if (ngx_wsp_is_control(opcode)) {
        if (len > NGX_WSP_MAX_CONTROL) {
            return NGX_DECLINED;
        }

        if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
            return NGX_ERROR;
        }

        p = d->ctl->cbuf;

    } else {
        if (opcode == NGX_WSP_OP_TEXT && d->slot.fin
            && !ngx_http_ws_proxy_utf8(data, len))
        {
            /* a whole text message (a fragment's may end mid code point) */
            return NGX_ABORT;
        }

        d->msg_len = 0;

        if (ngx_http_ws_proxy_reserve(&d->core, len) != NGX_OK) {
            return NGX_ERROR;
        }

        p = d->msg;
    }

    ngx_memcpy(p, data, len);
    ngx_http_ws_proxy_emit(d, d->slot.fin, opcode, p, len);

    return NGX_OK;
}


/*
 * A close frame's verdict: close frames cannot be dropped (the close
 * handshake needs them); what Lua returns is its reason, code its status.
 */

static ngx_int_t
ngx_http_ws_proxy_close_verdict(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t verdict, u_char *data, size_t len, ngx_int_t code)
{
    u_char  *p;

    if (verdict == NGX_WSP_VERDICT_DROP) {
        ngx_log_error(NGX_LOG_WARN, ngx_wsp_dir_wp(d)->log, 0,
                      "on_frame returned nil for a close frame from %s: "
                      "close frames cannot be dropped, forwarding it",
                      ngx_wsp_src_role(d));
        verdict = NGX_WSP_VERDICT_FORWARD;
        code = -1;
    }

    if (verdict == NGX_WSP_VERDICT_FORWARD) {
        /* the payload Lua saw is the reason, after the status */
        data = d->ctl->cbuf + (d->ctl->clen >= 2 ? 2 : 0);
        len = d->ctl->clen >= 2 ? d->ctl->clen - 2 : 0;
    }

    if (!ngx_http_ws_proxy_utf8(data, len)) {
        /* a rewritten reason; a forwarded one was checked on arrival */
        return NGX_ABORT;
    }

    if (len > NGX_WSP_MAX_CONTROL - 2) {
        /* cut to what fits, at a code point */
        len = NGX_WSP_MAX_CONTROL - 2;

        while (len && (data[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    if (code < 0 && d->close_code != NGX_WSP_CLOSE_NO_STATUS) {
        code = d->close_code;
    }

    if (code < 0 && len) {
        code = NGX_WSP_CLOSE_NORMAL;
    }

    if (code >= 0 && !ngx_wsp_close_code_valid((unsigned) code)) {
        return NGX_DECLINED;
    }

    ngx_http_ws_proxy_log_close(d, code < 0 ? NGX_WSP_CLOSE_NO_STATUS
                                            : (ngx_uint_t) code,
                                data, len);

    p = d->ctl->cbuf;
    len = code >= 0
          ? ngx_http_ws_proxy_close_payload(p, (ngx_uint_t) code, data, len)
          : 0;

    ngx_http_ws_proxy_taken(d);

    if (d->tx != NGX_WSP_TX_ABORTED) {
        ngx_http_ws_proxy_emit(d, 1, NGX_WSP_OP_CLOSE, p, len);
    }

    ngx_http_ws_proxy_run(ngx_wsp_dir_wp(d), NGX_WSP_RUN_DIR(d->dir), 0);

    return NGX_OK;
}


/*
 * After a verdict the usual case is one frame to send and nothing else to
 * do: that takes a send, not a round of the pump.  Anything else (more
 * input, a peer gone, a close, output that blocks) goes through
 * ngx_http_ws_proxy_run().
 */

static void
ngx_http_ws_proxy_resume(ngx_http_ws_proxy_dir_t *d)
{
    ngx_int_t             rc;
    ngx_event_t          *wev;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);
    wev = d->dst->write;

    if (d->ppos == d->last && ngx_wsp_steady(wp) && !wp->kick && !d->inject
        && !d->src->read->ready)
    {
        rc = ngx_http_ws_proxy_flush(d);

        if (rc != NGX_ERROR && !wp->kick
            && !ngx_http_ws_proxy_has_output(d))
        {
            /*
             * All input sent: the direction is idle and holds nothing, as
             * ngx_http_ws_proxy_idle() would find without its checks.
             */

            ngx_http_ws_proxy_release(d);

            if (d->msg && d->msg_len == 0) {
                ngx_http_ws_proxy_free_msg(d);
            }

            if (d->zd) {
                ngx_http_ws_proxy_deflate_idle(d);
            }

            if (wev->timer_set) {
                ngx_del_timer(wev);
            }

            return;
        }
    }

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_DIR(d->dir), 0);
}


/* ends the session from Lua (a failed hook): both peers get `code` */

void
ngx_http_ws_proxy_abort(ngx_http_ws_proxy_t *wp, ngx_uint_t code,
    const char *reason)
{
    ngx_uint_t  i;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    wp->closed_normally = 0;
    ngx_wsp_end(wp, NGX_WSP_END_HOOK_ERROR);

    for (i = 0; i < 2; i++) {
        ngx_http_ws_proxy_close_due(&wp->dir[i], code, reason,
                                    NGX_WSP_TX_DUE);
    }

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
}


/* proxy:close(): each peer gets its own status and reason */

ngx_int_t
ngx_http_ws_proxy_close(ngx_http_ws_proxy_t *wp, ngx_uint_t client_code,
    u_char *client_reason, size_t client_len, ngx_uint_t upstream_code,
    u_char *upstream_reason, size_t upstream_len)
{
    u_char  buf[NGX_WSP_MAX_CONTROL];

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return NGX_DECLINED;
    }

    ngx_wsp_end(wp, NGX_WSP_END_PROXY_CLOSE);

    client_len = ngx_min(client_len, NGX_WSP_MAX_CONTROL - 3);
    ngx_memcpy(buf, client_reason, client_len);
    buf[client_len] = '\0';
    ngx_http_ws_proxy_close_due(&wp->dir[NGX_WSP_DIR_UPSTREAM], client_code,
                                (char *) buf, NGX_WSP_TX_DUE);

    upstream_len = ngx_min(upstream_len, NGX_WSP_MAX_CONTROL - 3);
    ngx_memcpy(buf, upstream_reason, upstream_len);
    buf[upstream_len] = '\0';
    ngx_http_ws_proxy_close_due(&wp->dir[NGX_WSP_DIR_CLIENT], upstream_code,
                                (char *) buf, NGX_WSP_TX_DUE);

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);

    return NGX_OK;
}


/*
 * send_frame(): a data frame, a ping or a pong of Lua's, sent at the next
 * frame boundary of the direction (a close goes through close()).
 */

ngx_int_t
ngx_http_ws_proxy_inject(ngx_http_ws_proxy_t *wp, ngx_uint_t dir,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    u_char                      *p;
    ngx_http_ws_proxy_dir_t     *d;
    ngx_http_ws_proxy_inject_t  *in, **last;

    d = &wp->dir[dir];

    if (wp->state != NGX_WSP_STATE_RUNNING || d->tx >= NGX_WSP_TX_CLOSED
        || opcode == NGX_WSP_OP_CLOSE)
    {
        return NGX_DECLINED;
    }

    in = ngx_alloc(sizeof(ngx_http_ws_proxy_inject_t) + NGX_WSP_MAX_HEADER
                   + len, wp->log);
    if (in == NULL) {
        return NGX_ERROR;
    }

    p = in->data;
    p += ngx_http_ws_proxy_frame(p, NULL, data, len, 1, opcode,
                                 dir == NGX_WSP_DIR_CLIENT);

    in->len = p + len - in->data;
    in->next = NULL;

    for (last = &d->inject; *last; last = &(*last)->next) { /* void */ }
    *last = in;

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_DIR(dir), 0);

    return NGX_OK;
}


void
ngx_http_ws_proxy_free_injected(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_inject_t  *in, *next;

    for (in = d->inject; in; in = next) {
        next = in->next;
        ngx_free(in);
    }

    d->inject = NULL;

    if (d->inject_cur) {
        ngx_free(d->inject_cur);
        d->inject_cur = NULL;
    }
}


static ngx_uint_t
ngx_http_ws_proxy_utf8(const u_char *p, size_t len)
{
    return ngx_wsp_utf8_validate(NGX_WSP_UTF8_ACCEPT, p, len)
           == NGX_WSP_UTF8_ACCEPT;
}
