/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The close handshake and the end of a session: the closes the proxy
 * sends itself (after a violation, a limit, a peer gone, a call from Lua),
 * the transitions of a direction's reader and writer that they make (see
 * docs/design.md), and the teardown, which only the top of an event
 * handler or of a call from Lua runs: ngx_http_ws_proxy_run(), the
 * handlers of the pump, the request's pool cleanup.
 */


#include "ngx_http_ws_proxy_pump.h"


static void ngx_http_ws_proxy_offender(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, const char *reason);
static void ngx_http_ws_proxy_abandoned(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_close_now(ngx_connection_t *c,
    ngx_uint_t masked);
static void ngx_http_ws_proxy_free_semas(ngx_http_ws_proxy_t *wp);


/* the first close frame on the wire starts the close handshake timer */

void
ngx_http_ws_proxy_close_timer(ngx_http_ws_proxy_t *wp)
{
    if (!wp->close_timer.timer_set) {
        ngx_add_timer(&wp->close_timer, wp->opts.close_timeout);
    }
}


/*
 * A protocol violation on direction d: the peer that sent the frame gets
 * `code` (1002, 1007) and the other one 1001, as Kong's library does.
 * Frames accepted before it are still delivered; nothing after it is read
 * from the offender.  log_reason NULL: the caller has logged it.
 */

void
ngx_http_ws_proxy_violation(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const char *reason, const char *log_reason)
{
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;

    ngx_wsp_end(wp, NGX_WSP_END_VIOLATION);
    ngx_http_ws_proxy_metrics_violation(d, code, 0);

    if (log_reason) {
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: %s protocol error: %s, closing with %ui",
                      ngx_wsp_src_role(d), log_reason, code);
        ngx_http_ws_proxy_set_error(wp, "%s protocol error: %s",
                                    ngx_wsp_src_role(d), log_reason);
        wp->closed_normally = 0;
    }

    ngx_http_ws_proxy_rx_close(d);
    ngx_http_ws_proxy_offender(d, code, reason);
}


/*
 * A limit closes the sender with 1009 as a violation does, but its frames
 * are well formed: its reader stays open, and from the frame over the
 * limit on they are skipped, so that its close reply is still found and
 * kept (see skip_start()).
 */

void
ngx_http_ws_proxy_limit(ngx_http_ws_proxy_dir_t *d)
{
    ngx_wsp_end(d->wp, NGX_WSP_END_LIMIT);
    ngx_http_ws_proxy_metrics_violation(d, NGX_WSP_CLOSE_TOO_BIG, 1);
    ngx_http_ws_proxy_offender(d, NGX_WSP_CLOSE_TOO_BIG,
                               "Payload Too Large");
}


static void
ngx_http_ws_proxy_offender(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const char *reason)
{
    ngx_http_ws_proxy_dir_t  *other;

    other = ngx_wsp_other(d);

    /* the frame it was sending is not forwarded */
    d->in = NGX_WSP_IN_HEADER;

    /*
     * Towards the offender at once, after the bytes already queued for it
     * (and the rest of a raw frame being forwarded): nothing the other
     * peer sends from now on reaches it, as in Kong's library.
     */

    ngx_http_ws_proxy_close_due(other, code, reason, NGX_WSP_TX_DUE);

    /* towards the other peer, after the frames accepted before */

    ngx_http_ws_proxy_queue_close(d, NGX_WSP_CLOSE_GOING_AWAY,
                                  (u_char *) "", 0);
}


/*
 * Invalid UTF-8 in the text message d is parsing.  A raw frame of which
 * nothing was sent yet is taken back from the raw range: the other peer
 * gets 1001 after the frames before it.  One that is partly sent cannot be
 * followed by a close: the other peer's connection is dropped.  Either
 * way, the invalid bytes are never sent.
 */

void
ngx_http_ws_proxy_invalid_utf8(ngx_http_ws_proxy_dir_t *d, ngx_uint_t raw)
{
    size_t      seen;
    ngx_uint_t  sent;

    sent = 0;

    if (raw) {
        seen = d->frame.header_len + (size_t) d->offset;

        if ((size_t) (d->ppos - d->spos) >= seen) {
            d->ppos -= seen;

        } else {
            sent = 1;
        }
    }

    ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_INVALID_DATA,
                                "invalid UTF-8 text",
                                "invalid UTF-8 in a text message");

    if (sent) {
        ngx_http_ws_proxy_dst_gone(d);
    }
}


/*
 * A close from the proxy towards d's dst, when `when` says: at the next
 * frame boundary (NGX_WSP_TX_DUE), or once src's open message ended
 * (NGX_WSP_TX_MSG), src is gone, or close_timeout ran out.  A close
 * already waiting goes at the next frame boundary; one due, sent, or
 * impossible is kept.
 */

void
ngx_http_ws_proxy_close_due(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const char *reason, ngx_uint_t when)
{
    if (d->tx == NGX_WSP_TX_MSG) {
        /* a close that waited is due now */
        ngx_http_ws_proxy_close_go(d);
        return;
    }

    if (d->tx != NGX_WSP_TX_OPEN) {
        return;
    }

    if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
        /* no memory for a close frame: that peer is dropped instead */
        ngx_http_ws_proxy_dst_gone(d);
        return;
    }

    d->ctl_code = (uint16_t) code;
    d->ctl->reason_len = ngx_min(ngx_strlen(reason), NGX_WSP_MAX_CONTROL - 2);
    ngx_memcpy(d->ctl->reason, reason, d->ctl->reason_len);

    d->tx = (u_char) when;
    d->wp->kick |= NGX_WSP_RUN_DIR(d->dir);

    if (when == NGX_WSP_TX_DUE) {
        /* what is being buffered or held for Lua is dropped */
        ngx_http_ws_proxy_close_go(d);
    }
}


/*
 * The close d has waiting goes out at the next frame boundary: a frame
 * being buffered or held for Lua is not forwarded (the rest of a buffered
 * one is skipped), a raw one being forwarded is finished first.
 */

void
ngx_http_ws_proxy_close_go(ngx_http_ws_proxy_dir_t *d)
{
    if (!ngx_wsp_close_pending(d)) {
        return;
    }

    d->tx = NGX_WSP_TX_DUE;
    d->wp->kick |= NGX_WSP_RUN_DIR(d->dir);

    if (d->in == NGX_WSP_IN_BUFFER) {
        d->in = NGX_WSP_IN_SKIP;
    }

    ngx_http_ws_proxy_drop_pending(d);
}


/*
 * close_timeout: closes that waited for the end of a peer's message are
 * due: returns how many
 */

ngx_uint_t
ngx_http_ws_proxy_release_deferred(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t  i, n;

    for (n = 0, i = 0; i < 2; i++) {
        if (wp->dir[i].tx == NGX_WSP_TX_MSG) {
            ngx_http_ws_proxy_close_go(&wp->dir[i]);
            n++;
        }
    }

    return n;
}


/* the proxy's close frame is queued after what d has to send */

void
ngx_http_ws_proxy_queue_close(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const u_char *reason, size_t len)
{
    u_char                *p;
    ngx_http_ws_proxy_t   *wp;
    u_char                 payload[NGX_WSP_MAX_CONTROL];

    wp = d->wp;

    if (d->tx >= NGX_WSP_TX_CLOSED) {
        return;
    }

    if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
        /* no memory for a close frame: that peer is dropped instead */
        ngx_http_ws_proxy_dst_gone(d);
        return;
    }

    len = ngx_http_ws_proxy_close_payload(payload, code, reason, len);
    p = d->ctl->frame;
    p += ngx_http_ws_proxy_frame(p, NULL, payload, len, 1, NGX_WSP_OP_CLOSE,
                                 d->dir == NGX_WSP_DIR_CLIENT);

    d->out_ctl.pos = d->ctl->frame;
    d->out_ctl.last = p + len;

    d->tx = NGX_WSP_TX_CLOSED;

    if (wp->closed_by == NGX_WSP_BY_NONE) {
        wp->closed_by = NGX_WSP_BY_PROXY;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wp->log, 0,
                   "ws_proxy: sending close %ui to %s",
                   code, ngx_wsp_dst_role(d));

    ngx_http_ws_proxy_close_timer(wp);
}


/* src's frames are over: its close frame came, or a violation */

void
ngx_http_ws_proxy_rx_close(ngx_http_ws_proxy_dir_t *d)
{
    if (d->rx == NGX_WSP_RX_OPEN) {
        d->rx = NGX_WSP_RX_CLOSED;

    } else if (d->rx == NGX_WSP_RX_EOF) {
        d->rx = NGX_WSP_RX_GONE;
    }
}


/* src closed its connection (recv() returned 0) or failed */

void
ngx_http_ws_proxy_src_hup(ngx_http_ws_proxy_dir_t *d)
{
    if (d->rx == NGX_WSP_RX_OPEN) {
        ngx_wsp_end(d->wp, d->src->read->error
                           ? NGX_WSP_END_RESET
                           : d->dir == NGX_WSP_DIR_CLIENT
                             ? NGX_WSP_END_CLIENT_CLOSE
                             : NGX_WSP_END_UPSTREAM_CLOSE);

        /* what it sent before is parsed first, see src_gone() */
        d->rx = NGX_WSP_RX_EOF;
        return;
    }

    /*
     * A FIN after its close frame (or after its violation) is a
     * half-close: the peer may still read the close reply, which the
     * other direction delivers until close_timeout.
     */

    ngx_log_error(NGX_LOG_INFO, d->wp->log, 0,
                  "ws_proxy: %s closed the connection", ngx_wsp_src_role(d));

    d->rx = NGX_WSP_RX_GONE;
}


/*
 * The source of d is gone without a close frame, and what it sent before
 * is parsed.  At a frame boundary the other peer gets a close: the reply
 * to a close it sent, or 1001 when the source just went away.  In the
 * middle of a forwarded frame no close can follow, so the other
 * connection is dropped (1006 semantics).
 */

void
ngx_http_ws_proxy_src_gone(ngx_http_ws_proxy_dir_t *d)
{
    ngx_uint_t                replied;
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *other;

    wp = d->wp;
    other = ngx_wsp_other(d);

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: %s closed the connection without a close frame",
                  ngx_wsp_src_role(d));

    d->rx = NGX_WSP_RX_GONE;

    /* whatever the other direction sends can no longer be delivered */

    replied = (other->tx == NGX_WSP_TX_CLOSED);

    if (other->tx != NGX_WSP_TX_ABORTED) {
        ngx_http_ws_proxy_dst_gone(other);
    }

    if (d->in == NGX_WSP_IN_RAW) {
        ngx_http_ws_proxy_set_error(wp, "%s closed the connection in the "
                                    "middle of a frame",
                                    ngx_wsp_src_role(d));
        wp->closed_normally = 0;
        ngx_http_ws_proxy_dst_gone(d);
        return;
    }

    ngx_http_ws_proxy_drop_pending(d);
    d->in = NGX_WSP_IN_HEADER;

    if (ngx_wsp_close_pending(d)) {
        /* the close that waited for this peer's reply goes now */
        ngx_http_ws_proxy_close_go(d);

    } else if (replied) {
        /* we were waiting for its close reply: answer in its name */
        ngx_http_ws_proxy_queue_close(d, other->close_code >= 1000
                                         && other->close_code
                                            != NGX_WSP_CLOSE_NO_STATUS
                                         ? (ngx_uint_t) other->close_code
                                         : NGX_WSP_CLOSE_NORMAL,
                                      (u_char *) "", 0);

    } else {
        ngx_http_ws_proxy_queue_close(d, NGX_WSP_CLOSE_GOING_AWAY,
                                      (u_char *) "", 0);
    }
}


/* the destination of d failed: nothing more can be delivered to it */

void
ngx_http_ws_proxy_dst_gone(ngx_http_ws_proxy_dir_t *d)
{
    d->wp->kick |= NGX_WSP_RUN_DIR(d->dir);
    d->tx = NGX_WSP_TX_ABORTED;
    d->dst->error = 1;
    d->spos = d->ppos;
    d->out_hdr.pos = d->out_hdr.last;
    d->out_body.pos = d->out_body.last;
    d->out_ctl.pos = d->out_ctl.last;
}


/*
 * A failure that ends the session at once (no memory): its reason is
 * recorded and both directions stop where they are; the top of the event
 * (ngx_http_ws_proxy_run()) finds nothing left to do and tears it down.
 */

void
ngx_http_ws_proxy_fail(ngx_http_ws_proxy_t *wp, const char *reason)
{
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;

    ngx_http_ws_proxy_set_error(wp, "%s", reason);
    wp->closed_normally = 0;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        ngx_http_ws_proxy_drop_pending(d);

        d->rx = NGX_WSP_RX_GONE;
        d->tx = NGX_WSP_TX_ABORTED;
        d->in = NGX_WSP_IN_HEADER;
        d->spos = d->last;
        d->ppos = d->last;
        d->out_hdr.pos = d->out_hdr.last;
        d->out_body.pos = d->out_body.last;
        d->out_ctl.pos = d->out_ctl.last;
    }
}


/* NGX_OK: both directions are over, the session can end */

ngx_int_t
ngx_http_ws_proxy_done(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        /* output towards dst: all sent, or impossible */
        if (d->tx != NGX_WSP_TX_ABORTED
            && (d->tx != NGX_WSP_TX_CLOSED
                || ngx_http_ws_proxy_has_output(d)))
        {
            return NGX_AGAIN;
        }

        /*
         * input from src: its close came, it is gone, or nothing can be
         * sent to it any more, so its close will never be asked for
         */
        if (!ngx_wsp_rx_over(d)
            && wp->dir[1 - i].tx != NGX_WSP_TX_ABORTED)
        {
            return NGX_AGAIN;
        }
    }

    return NGX_OK;
}


/* the teardown: only at the top of an event handler or of a Lua call */

void
ngx_http_ws_proxy_finish(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                i;
    ngx_connection_t         *c;
    ngx_http_ws_proxy_dir_t  *d;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    wp->state = NGX_WSP_STATE_DONE;
    wp->end_time = ngx_current_msec;

    ngx_http_ws_proxy_ended(wp);
    ngx_http_ws_proxy_metrics_end(wp);
    ngx_http_ws_proxy_limit_release(wp);

    c = wp->client;

    if (wp->close_timer.timer_set) {
        ngx_del_timer(&wp->close_timer);
    }

    ngx_http_ws_proxy_live_stop(wp);

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        if (d->recv_timer.timer_set) {
            ngx_del_timer(&d->recv_timer);
        }

        if (d->src && d->src->read->posted) {
            ngx_delete_posted_event(d->src->read);
        }

        ngx_http_ws_proxy_drop_pending(d);
        d->spos = d->ppos = d->last = NULL;
        ngx_http_ws_proxy_release(d);
        ngx_http_ws_proxy_free_injected(d);
        ngx_http_ws_proxy_deflate_free(d);

        if (d->msg) {
            ngx_http_ws_proxy_free_msg(d);
        }
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    c->log->action = NULL;

    if (wp->handlers_set) {
        c->read->handler = wp->client_read_handler;
        c->write->handler = wp->client_write_handler;
        wp->handlers_set = 0;
    }

    ngx_http_ws_proxy_close_upstream(wp);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, wp->log, 0,
                   "ws_proxy: session done, normal:%ud",
                   (unsigned) wp->closed_normally);

    wp->rc = wp->closed_normally ? NGX_OK : NGX_ERROR;

    ngx_http_ws_proxy_notify(wp);
    ngx_http_ws_proxy_wake(wp->dir[0].sema);
    ngx_http_ws_proxy_wake(wp->dir[1].sema);
}


/*
 * The session ends under us (the request is being freed, or nginx closes
 * the client connection): a peer that sits at a frame boundary with nothing
 * unsent gets a 1001 "going away", written once, without waiting.
 */

void
ngx_http_ws_proxy_goodbye(ngx_http_ws_proxy_t *wp, ngx_uint_t to_client)
{
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        if (d->dst == NULL || (d->dst == wp->client && !to_client)
            || d->tx >= NGX_WSP_TX_CLOSED || d->in == NGX_WSP_IN_RAW
            || ngx_http_ws_proxy_has_output(d) || d->dst->error)
        {
            continue;
        }

        ngx_http_ws_proxy_queue_close(d, NGX_WSP_CLOSE_GOING_AWAY,
                                      (u_char *) "", 0);

        (void) d->dst->send(d->dst, d->out_ctl.pos,
                            d->out_ctl.last - d->out_ctl.pos);

        d->out_ctl.pos = d->out_ctl.last;
    }
}


/*
 * The handler ended after an opening handshake without execute() (a Lua
 * error, ngx.exit()): each peer whose handshake completed gets a 1011
 * close rather than a silent TCP close, written once, without waiting.
 */

static void
ngx_http_ws_proxy_abandoned(ngx_http_ws_proxy_t *wp)
{
    ngx_connection_t  *c;

    c = wp->client;

    if (wp->client_handshake && wp->request->out == NULL && !c->buffered
        && !c->error)
    {
        ngx_http_ws_proxy_close_now(c, 0);
    }

    c = wp->upstream;

    if (wp->state == NGX_WSP_STATE_CONNECTED && c && !c->error) {
        ngx_http_ws_proxy_close_now(c, 1);
    }
}


static void
ngx_http_ws_proxy_close_now(ngx_connection_t *c, ngx_uint_t masked)
{
    size_t  n;
    u_char  payload[2 + sizeof("Internal Error") - 1];
    u_char  frame[NGX_WSP_MAX_HEADER + sizeof(payload)];

    n = ngx_http_ws_proxy_close_payload(payload, NGX_WSP_CLOSE_INTERNAL,
                                        (u_char *) "Internal Error",
                                        sizeof("Internal Error") - 1);
    n += ngx_http_ws_proxy_frame(frame, NULL, payload, n, 1,
                                 NGX_WSP_OP_CLOSE, masked);

    (void) c->send(c, frame, n);
}


/*
 * The request's pool cleanup: whatever way the request ends (normal end,
 * Lua error, ngx.exit(), client abort), the upstream connection and every
 * buffer go with it, and the semaphores are freed after lua-nginx-module
 * dropped its waiters.  Idempotent.
 */

void
ngx_http_ws_proxy_cleanup(void *data)
{
    ngx_http_ws_proxy_t  *wp = data;

    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;

    if (wp->cleaned) {
        return;
    }

    wp->cleaned = 1;

    ngx_http_ws_proxy_unlink(wp);

    if (wp->state == NGX_WSP_STATE_RUNNING) {
        /*
         * The request ends under a running session: ngx.exit() (or an
         * error) from on_frame ended the Lua handler.  Both peers are told,
         * the client too: nginx closes its connection only after this.
         */
        ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                      "ws_proxy: the request ended while the session was "
                      "running (ngx.exit() in on_frame?), closing both peers "
                      "with 1001");
        ngx_http_ws_proxy_goodbye(wp, 1);
        wp->closed_normally = 0;
        ngx_http_ws_proxy_finish(wp);

    } else if (wp->state != NGX_WSP_STATE_DONE) {
        ngx_http_ws_proxy_abandoned(wp);
    }

    ngx_http_ws_proxy_close_upstream(wp);
    ngx_http_ws_proxy_free_hs(wp);

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        if (d->recv_timer.timer_set) {
            ngx_del_timer(&d->recv_timer);
        }

        ngx_http_ws_proxy_release(d);
        ngx_http_ws_proxy_free_injected(d);
        ngx_http_ws_proxy_deflate_free(d);

        if (d->msg) {
            ngx_http_ws_proxy_free_msg(d);
        }
    }

    if (wp->close_timer.timer_set) {
        ngx_del_timer(&wp->close_timer);
    }

    ngx_http_ws_proxy_live_stop(wp);

    if (wp->resolving) {
        /* the request ends during a name lookup: its answer is not ours */
        ngx_resolve_name_done(wp->resolving);
        wp->resolving = NULL;
    }

    ngx_http_ws_proxy_free_semas(wp);
    ngx_http_ws_proxy_lua_log_flush(wp);

    ngx_http_set_ctx(wp->request, NULL, ngx_http_ws_proxy_module);

    if (wp->heap) {
        ngx_free(wp);
    }
}


/*
 * The semaphores are freed from a posted event, never from the cleanup
 * itself: the cleanup may run inside lua-nginx-module's semaphore handler
 * (the resumed coroutine ends the request), which reads the semaphore
 * again after the resume; freeing it there is a use-after-free that shows
 * when many sessions end at once.
 */

typedef struct {
    ngx_event_t                 event;
    void                       *sema[3];
} ngx_http_ws_proxy_sema_gc_t;


static void
ngx_http_ws_proxy_sema_gc_handler(ngx_event_t *ev)
{
    ngx_uint_t                    i;
    ngx_http_ws_proxy_sema_gc_t  *gc;

    gc = ev->data;

    for (i = 0; i < 3; i++) {
        if (gc->sema[i]) {
            ngx_http_lua_ffi_sema_gc(gc->sema[i]);
        }
    }

    ngx_free(gc);
}


static void
ngx_http_ws_proxy_free_semas(ngx_http_ws_proxy_t *wp)
{
    ngx_http_ws_proxy_sema_gc_t  *gc;

    if (wp->sema == NULL && wp->dir[0].sema == NULL
        && wp->dir[1].sema == NULL)
    {
        return;
    }

    gc = ngx_calloc(sizeof(ngx_http_ws_proxy_sema_gc_t), ngx_cycle->log);

    if (gc == NULL) {
        /* leaking three semaphores beats a use-after-free */
        return;
    }

    gc->sema[0] = wp->sema;
    gc->sema[1] = wp->dir[0].sema;
    gc->sema[2] = wp->dir[1].sema;

    wp->sema = NULL;
    wp->dir[0].sema = NULL;
    wp->dir[1].sema = NULL;

    gc->event.handler = ngx_http_ws_proxy_sema_gc_handler;
    gc->event.data = gc;
    gc->event.log = ngx_cycle->log;

    ngx_post_event(&gc->event, &ngx_posted_events);
}
