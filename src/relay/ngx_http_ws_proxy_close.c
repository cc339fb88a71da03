/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The end of a session in the relay: the session core's callbacks (its
 * transitions of the close handshake, peers gone and violations are in
 * ngx_wsp_session.c; what they ask of nginx is here), and the teardown,
 * which only the top of an event handler or of a call from Lua runs:
 * ngx_http_ws_proxy_run(), the handlers of the pump, the request's pool
 * cleanup.
 */


#include "ngx_http_ws_proxy_pump.h"


static void ngx_http_ws_proxy_core_limit(ngx_http_ws_proxy_dir_t *d,
    unsigned limit, uint64_t n);
static void ngx_http_ws_proxy_observe_close(ngx_http_ws_proxy_dir_t *d);
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
 * The session core's events (ngx_wsp_session.h): its states have moved;
 * what the relay logs, counts or mirrors in nginx's state is done here.
 */

static void
ngx_http_ws_proxy_core_event(ngx_wsp_session_t *s, ngx_wsp_sdir_t *sd,
    unsigned event, unsigned code, const char *text, uint64_t n)
{
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    wp = ngx_wsp_session_wp(s);
    d = (ngx_http_ws_proxy_dir_t *) sd;

    switch (event) {

    case NGX_WSP_EV_FAILED:
        ngx_http_ws_proxy_set_error(wp, "%s", text);
        wp->closed_normally = 0;
        break;

    case NGX_WSP_EV_VIOLATION:
        ngx_http_ws_proxy_metrics_violation(d, code, 0);

        if (text == NULL) {
            break;
        }

        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: %s protocol error: %s, closing with %ui",
                      ngx_wsp_src_role(d), text, (ngx_uint_t) code);
        ngx_http_ws_proxy_set_error(wp, "%s protocol error: %s",
                                    ngx_wsp_src_role(d), text);
        wp->closed_normally = 0;
        break;

    case NGX_WSP_EV_LIMIT:
        ngx_http_ws_proxy_core_limit(d, code, n);
        ngx_http_ws_proxy_metrics_violation(d, code == NGX_WSP_LIMIT_RATE
                                               ? NGX_WSP_CLOSE_POLICY
                                               : NGX_WSP_CLOSE_TOO_BIG, 1);
        break;

    case NGX_WSP_EV_CLOSE_IN:
        ngx_http_ws_proxy_log_close(d, code, d->ctl->close_reason,
                                    d->ctl->close_reason_len);
        break;

    case NGX_WSP_EV_HALF_CLOSE:
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: %s closed the connection",
                      ngx_wsp_src_role(d));
        break;

    case NGX_WSP_EV_GONE:
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: %s closed the connection without a close "
                      "frame", ngx_wsp_src_role(d));
        break;

    case NGX_WSP_EV_GONE_MID_FRAME:
        ngx_http_ws_proxy_set_error(wp, "%s closed the connection in the "
                                    "middle of a frame",
                                    ngx_wsp_src_role(d));
        wp->closed_normally = 0;
        break;

    case NGX_WSP_EV_DST_GONE:
        d->dst->error = 1;
        break;

    case NGX_WSP_EV_CLOSE_QUEUED:
        if (code) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wp->log, 0,
                           "ws_proxy: sending close %ui to %s",
                           (ngx_uint_t) code, ngx_wsp_dst_role(d));

            if (d->observe) {
                ngx_http_ws_proxy_observe_close(d);
            }
        }

        ngx_http_ws_proxy_close_timer(wp);
        break;

    case NGX_WSP_EV_CLOSE_OUT:
        ngx_http_ws_proxy_log_close(d, code, (u_char *) text, (size_t) n);
        break;

    case NGX_WSP_EV_CLOSE_UNDROPPED:
        ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                      "on_frame returned nil for a close frame from %s: "
                      "close frames cannot be dropped, forwarding it",
                      ngx_wsp_src_role(d));
        break;

    default: /* NGX_WSP_EV_TAKEN: the core took the frame back from Lua */
        break;
    }
}


/*
 * The proxy's own close frame, in d's out_ctl (a control frame: a 2-byte
 * header, then the mask towards the upstream): for the recorder and the
 * taps, a frame the proxy put on the wire
 */

static void
ngx_http_ws_proxy_observe_close(ngx_http_ws_proxy_dir_t *d)
{
    u_char  *p, *mask;
    size_t   len;

    p = d->out_ctl.pos + 2;
    mask = NULL;

    if (d->out_ctl.pos[1] & 0x80) {
        mask = p;
        p += 4;
    }

    len = d->out_ctl.last - p;

    ngx_http_ws_proxy_observe(d, NGX_WSP_OBS_INJECTED, NGX_WSP_OP_CLOSE, 1, 0,
                              len, p, len, mask);
}


/* a limit's log line: Kong's library's for its own limits */

static void
ngx_http_ws_proxy_core_limit(ngx_http_ws_proxy_dir_t *d, unsigned limit,
    uint64_t n)
{
    switch (limit) {

    case NGX_WSP_LIMIT_SIZE:
        ngx_http_ws_proxy_lua_log(ngx_wsp_dir_wp(d), NGX_LOG_INFO,
                                  "%s frame size (%uL) exceeds limit, "
                                  "closing", ngx_wsp_src_role(d), n);
        break;

    case NGX_WSP_LIMIT_FRAGMENTS:
        ngx_http_ws_proxy_lua_log(ngx_wsp_dir_wp(d), NGX_LOG_INFO,
                                  "%s frame count (%uL) exceeds limit, "
                                  "closing", ngx_wsp_src_role(d), n);
        break;

    case NGX_WSP_LIMIT_RATE:
        /* ngx_http_ws_proxy_rate_gate() logged it */
        break;

    default: /* NGX_WSP_LIMIT_BUFFER */
        ngx_log_error(NGX_LOG_INFO, ngx_wsp_dir_wp(d)->log, 0,
                      "%s message of %uL bytes exceeds the buffering limit "
                      "of %uL, closing", ngx_wsp_src_role(d), n,
                      ngx_wsp_dir_wp(d)->opts.max_payload);
        break;
    }
}


static void *
ngx_http_ws_proxy_core_alloc(ngx_wsp_session_t *s, size_t size)
{
    return ngx_pcalloc(ngx_wsp_session_wp(s)->pool, size);
}


static void
ngx_http_ws_proxy_core_mask_key(ngx_wsp_session_t *s, u_char key[4])
{
    ngx_http_ws_proxy_random(key, 4);
}


static const ngx_wsp_session_cb_t  ngx_http_ws_proxy_core_cb = {
    ngx_http_ws_proxy_core_alloc,
    ngx_http_ws_proxy_core_mask_key,
    ngx_http_ws_proxy_core_event,
    NULL,                                  /* liveness: the core's */
    ngx_http_ws_proxy_reserve,
    ngx_http_ws_proxy_inflate,
    ngx_http_ws_proxy_deflate,
    ngx_http_ws_proxy_hand_over,
    ngx_http_ws_proxy_observe_frame,      /* the console's (registry.c) */
    ngx_http_ws_proxy_rate_gate
};


void
ngx_http_ws_proxy_core_init(ngx_http_ws_proxy_t *wp)
{
    ngx_wsp_session_init(&wp->core, &ngx_http_ws_proxy_core_cb,
                         &wp->opts.core, &ngx_current_msec, &wp->dir[NGX_WSP_DIR_CLIENT].core,
                         &wp->dir[NGX_WSP_DIR_UPSTREAM].core);
}


/* src closed its connection (recv() returned 0) or failed */

void
ngx_http_ws_proxy_src_hup(ngx_http_ws_proxy_dir_t *d)
{
    ngx_wsp_src_hup(&d->core, d->src->read->error);
}


/*
 * NGX_OK: both directions are over, the session can end; the end of the
 * 101 still in nginx's chain is output of the direction towards the client
 */

ngx_int_t
ngx_http_ws_proxy_done(ngx_http_ws_proxy_t *wp)
{
    return ngx_wsp_done(&wp->core,
                        wp->request->out
                        ? NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM) : 0)
           ? NGX_OK : NGX_AGAIN;
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
    ngx_http_ws_proxy_rate_stop(wp);

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

    ngx_http_set_ctx(wp->request, NULL, ngx_wsp_module);

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
