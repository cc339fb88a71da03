/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Lua's side of the pump: the hook woken for a frame the core hands over,
 * the verdict on it (the core's ngx_wsp_verdict()) and what follows, and
 * the controls Lua calls while the session runs (send_frame(), close(),
 * the end of a failed hook).  Each of them is the top of its call: it
 * ends with ngx_http_ws_proxy_run() or a send.
 */


#include "ngx_http_ws_proxy_pump.h"


static void ngx_http_ws_proxy_resume(ngx_http_ws_proxy_dir_t *d);


/* the core's hand_over(): a frame waits in d->slot, Lua's thread wakes */

void
ngx_http_ws_proxy_hand_over(ngx_wsp_sdir_t *sd)
{
    ngx_http_ws_proxy_dir_t  *d;

    d = (ngx_http_ws_proxy_dir_t *) sd;

    if (d->parked) {
        /* the light thread sleeps on the semaphore: this wakes it */
        d->parked = 0;
        (void) ngx_http_lua_ffi_sema_post(d->sema, 1);
    }
}


/*
 * Lua's verdict on the frame d holds (the core's ngx_wsp_verdict()),
 * then the frame goes: NGX_DECLINED, NGX_ABORT, NGX_ERROR as the core
 * says, the frame still held.
 */

ngx_int_t
ngx_http_ws_proxy_apply_verdict(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t verdict, u_char *data, size_t len, ngx_int_t code)
{
    int            rc;
    ngx_uint_t     opcode;
    const u_char  *smask;

    opcode = (ngx_uint_t) d->slot.opcode;
    smask = NULL;

    if ((d->observe & NGX_WSP_OBS_CALL)
        && verdict == NGX_WSP_VERDICT_FORWARD && d->hold
        && d->frame.masked && d->tx != NGX_WSP_TX_ABORTED)
    {
        /* for the taps: the verdict masks this held frame again in place
         * with its sender's key (ngx_wsp_verdict()) */
        smask = d->frame.mask;
    }

    rc = ngx_wsp_verdict(&d->core, verdict, data, len, code);

    if (rc != NGX_WSP_OK) {
        return rc;
    }

    if (d->observe) {
        /* the console's observation point for frames Lua had (the slot
         * keeps the frame's length and FIN after the verdict) */
        ngx_http_ws_proxy_observe(d,
            (opcode == NGX_WSP_OP_CLOSE || verdict == NGX_WSP_VERDICT_FORWARD)
            ? NGX_WSP_OBS_FORWARDED
            : (verdict == NGX_WSP_VERDICT_REWRITE) ? NGX_WSP_OBS_REWRITTEN
                                                   : NGX_WSP_OBS_DROPPED,
            opcode, (ngx_uint_t) d->slot.fin,
            d->frame.rsv & NGX_WSP_RSV_DEFLATE,
            (verdict == NGX_WSP_VERDICT_REWRITE) ? len : d->slot.len,
            /* for the taps: the payload Lua saw (inflated), or its rewrite */
            (opcode == NGX_WSP_OP_CLOSE) ? NULL
            : (verdict == NGX_WSP_VERDICT_REWRITE) ? data : d->slot.data,
            (verdict == NGX_WSP_VERDICT_REWRITE) ? len : d->slot.len,
            (verdict == NGX_WSP_VERDICT_REWRITE) ? NULL : smask);
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        ngx_http_ws_proxy_run(ngx_wsp_dir_wp(d), NGX_WSP_RUN_DIR(d->dir), 0);
        return NGX_OK;
    }

    ngx_http_ws_proxy_resume(d);

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
        && d->in != NGX_WSP_IN_DUE && !d->src->read->ready)
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

    if (d->observe) {
        ngx_http_ws_proxy_observe(d, NGX_WSP_OBS_INJECTED, opcode, 1, 0, len,
                                  data, len, NULL);
    }

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

