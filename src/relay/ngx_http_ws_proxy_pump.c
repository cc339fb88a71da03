/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The pump: once execute() runs, the module owns the events of both
 * connections and moves frames between them.  This file has the event
 * handlers, the pass over one direction (read, parse, send), the output
 * and the input buffers.  Frames are in ngx_http_ws_proxy_frames.c, the
 * close handshake and the end of a session in ngx_http_ws_proxy_close.c.
 *
 * Output of a direction goes to one connection, in this order: the raw
 * range of the input buffer, a rebuilt frame (header, body), then a frame
 * the proxy makes itself (a close).  A buffered frame is never parsed while
 * raw bytes before it are unsent, and no frame is parsed while a rebuilt
 * one is unsent, so the order of frames on the wire is always kept.
 *
 * One way out: nothing below an event handler (or an entry from Lua) ends
 * the session.  A failure records its reason and stops both directions
 * (ngx_http_ws_proxy_fail()); ngx_http_ws_proxy_run() sees at its end that
 * nothing is left to do and tears the session down there.
 */


#include "ngx_http_ws_proxy_pump.h"


static ngx_int_t ngx_http_ws_proxy_preload(ngx_http_ws_proxy_dir_t *d,
    ngx_buf_t *b);
static void ngx_http_ws_proxy_client_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_upstream_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_send_timedout(ngx_http_ws_proxy_t *wp,
    ngx_event_t *wev);
static ngx_int_t ngx_http_ws_proxy_nothing_to_write(ngx_http_ws_proxy_t *wp,
    ngx_uint_t dir);
static void ngx_http_ws_proxy_shutdown(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_close_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_recv_timeout_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_process(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t can_read);
static void ngx_http_ws_proxy_read(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_idle(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_send_ranges(ngx_http_ws_proxy_dir_t *d);
static ngx_inline ngx_int_t ngx_http_ws_proxy_buffer_get(
    ngx_http_ws_proxy_dir_t *d);
static ngx_inline void ngx_http_ws_proxy_buffer_put(
    ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_send_chain(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges);
static ngx_int_t ngx_http_ws_proxy_writev(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges);
static void ngx_http_ws_proxy_sent(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges);
static ngx_int_t ngx_http_ws_proxy_send_failed(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_arm(ngx_http_ws_proxy_t *wp,
    ngx_uint_t dirs);


const char  *ngx_http_ws_proxy_role[] = { "client", "upstream" };


/*
 * Input buffers of the common size are kept on a per-worker free list so
 * that idle sessions hold no buffer and busy ones do not call malloc() for
 * every burst of frames.
 */

#define NGX_WSP_FREE_MAX   64

static u_char      *ngx_wsp_free[NGX_WSP_FREE_MAX];
static ngx_uint_t   ngx_wsp_nfree;
static size_t       ngx_wsp_free_size;


/* at worker exit, before the module is unloaded with its free list */

void
ngx_http_ws_proxy_free_buffers(void)
{
    while (ngx_wsp_nfree) {
        ngx_free(ngx_wsp_free[--ngx_wsp_nfree]);
    }
}


ngx_int_t
ngx_http_ws_proxy_start(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                 i;
    ngx_connection_t          *c, *u;
    ngx_http_request_t        *r;
    ngx_http_ws_proxy_dir_t   *d;
    ngx_http_core_loc_conf_t  *clcf;

    r = wp->request;
    c = r->connection;
    u = wp->upstream;

    wp->dir[NGX_WSP_DIR_CLIENT].src = c;
    wp->dir[NGX_WSP_DIR_CLIENT].dst = u;
    wp->dir[NGX_WSP_DIR_UPSTREAM].src = u;
    wp->dir[NGX_WSP_DIR_UPSTREAM].dst = c;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];
        d->recv_timer.handler = ngx_http_ws_proxy_recv_timeout_handler;
        d->recv_timer.data = d;
        d->recv_timer.log = wp->log;
        d->recv_timer.cancelable = 1;
    }

    ngx_http_ws_proxy_deflate_start(wp);

    if (ngx_http_ws_proxy_rate_start(wp) != NGX_OK) {
        return NGX_ERROR;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay) {
        (void) ngx_tcp_nodelay(c);
        (void) ngx_tcp_nodelay(u);
    }

    /* frames pipelined after the upgrade request, or after the 101 */

    if (ngx_http_ws_proxy_preload(&wp->dir[NGX_WSP_DIR_CLIENT],
                                  r->header_in) != NGX_OK
        || ngx_http_ws_proxy_preload(&wp->dir[NGX_WSP_DIR_UPSTREAM],
                                     wp->hs) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_ws_proxy_free_hs(wp);

    wp->client_read_handler = c->read->handler;
    wp->client_write_handler = c->write->handler;
    c->read->handler = ngx_http_ws_proxy_client_handler;
    c->write->handler = ngx_http_ws_proxy_client_handler;
    wp->handlers_set = 1;

    u->read->handler = ngx_http_ws_proxy_upstream_handler;
    u->write->handler = ngx_http_ws_proxy_upstream_handler;

    /*
     * The connect registered the upstream socket for writes as well, and
     * epoll reports it writable with every read.  As nginx does for the
     * client, the write event is registered again only when a send blocks
     * (ngx_handle_write_event() in ngx_http_ws_proxy_arm()).
     */

    if ((ngx_event_flags & NGX_USE_CLEAR_EVENT) && u->write->active
        && u->write->ready)
    {
        /* the read event stays edge-triggered: epoll's MOD takes flags */

        if (ngx_del_event(u->write, NGX_WRITE_EVENT, NGX_CLEAR_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    wp->close_timer.handler = ngx_http_ws_proxy_close_handler;
    wp->close_timer.data = wp;
    wp->close_timer.log = wp->log;
    wp->close_timer.cancelable = 1;

    for (i = 0; wp->opts.recv_timeout && i < 2; i++) {
        ngx_add_timer(&wp->dir[i].recv_timer, wp->opts.recv_timeout);
    }

    wp->start_time = ngx_current_msec;
    wp->state = NGX_WSP_STATE_RUNNING;
    wp->closed_normally = 1;

    ngx_http_ws_proxy_live_start(wp);

    ngx_http_ws_proxy_metrics_start(wp);

    c->log->action = "proxying websocket frames";

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 1);

    return NGX_OK;
}


/* bytes read with a handshake that already belong to the frame stream */

static ngx_int_t
ngx_http_ws_proxy_preload(ngx_http_ws_proxy_dir_t *d, ngx_buf_t *b)
{
    size_t  n;

    n = b->last - b->pos;

    if (n == 0) {
        return NGX_OK;
    }

    if (ngx_http_ws_proxy_get_buffer(d) != NGX_OK
        || (size_t) (d->end - d->start) < n)
    {
        return NGX_ERROR;
    }

    d->last = ngx_cpymem(d->start, b->pos, n);
    b->pos = b->last;

    return NGX_OK;
}


static void
ngx_http_ws_proxy_client_handler(ngx_event_t *ev)
{
    ngx_connection_t     *c;
    ngx_http_request_t   *r;
    ngx_http_ws_proxy_t  *wp;

    c = ev->data;
    r = c->data;

    wp = ngx_http_get_module_ctx(r, ngx_wsp_module);

    if (wp == NULL || wp->state != NGX_WSP_STATE_RUNNING) {
        /* not ours any more: give the event to nginx */
        if (wp && wp->handlers_set) {
            c->read->handler = wp->client_read_handler;
            c->write->handler = wp->client_write_handler;
            wp->handlers_set = 0;
        }

        ev->handler(ev);
        return;
    }

    if (c->close) {
        ngx_http_ws_proxy_shutdown(wp);
        ev->handler(ev);
        return;
    }

    if (r->done || c->error) {
        /*
         * The request was finalized under us, or the client's connection
         * failed: the pump marks it so after a recv() or send() error, and
         * the error it recorded then says more than this one.
         */
        if (wp->err_len == 0) {
            ngx_http_ws_proxy_set_error(wp, r->done
                                        ? "client connection closed by nginx"
                                        : "client reset the connection");
        }

        wp->closed_normally = 0;
        ngx_http_ws_proxy_finish(wp);
        return;
    }

    /* a read feeds the client's direction, a write drains the other */

    if (ev->write) {
        if (ev->timedout) {
            ngx_http_ws_proxy_send_timedout(wp, ev);
            return;
        }

        if (ngx_http_ws_proxy_nothing_to_write(wp, NGX_WSP_DIR_UPSTREAM))
        {
            return;
        }
    }

    ngx_http_ws_proxy_run(wp, ev->write
                              ? NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM)
                              : NGX_WSP_RUN_DIR(NGX_WSP_DIR_CLIENT), 1);

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_ws_proxy_upstream_handler(ngx_event_t *ev)
{
    ngx_connection_t     *c;
    ngx_http_ws_proxy_t  *wp;

    c = ev->data;
    wp = c->data;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    if (c->close) {
        ngx_http_ws_proxy_shutdown(wp);
        return;
    }

    if (ev->write) {
        if (ev->timedout) {
            ngx_http_ws_proxy_send_timedout(wp, ev);
            return;
        }

        if (ngx_http_ws_proxy_nothing_to_write(wp, NGX_WSP_DIR_CLIENT)) {
            return;
        }
    }

    ngx_http_ws_proxy_run(wp, ev->write
                              ? NGX_WSP_RUN_DIR(NGX_WSP_DIR_CLIENT)
                              : NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM), 1);
}


/* the send timer of a blocked write ran out: the session ends */

static void
ngx_http_ws_proxy_send_timedout(ngx_http_ws_proxy_t *wp, ngx_event_t *wev)
{
    const char  *peer;

    wev->timedout = 0;
    peer = (wev == wp->client->write) ? "client" : "upstream";

    ngx_log_error(NGX_LOG_INFO, wp->log, NGX_ETIMEDOUT,
                  "ws_proxy: timed out sending to %s", peer);
    ngx_http_ws_proxy_set_error(wp, "timeout sending to %s", peer);
    ngx_wsp_end(wp, NGX_WSP_END_SEND_TIMEOUT);

    wp->closed_normally = 0;
    ngx_http_ws_proxy_finish(wp);
}


/*
 * The upstream connection is registered for reads and writes at once, so
 * epoll reports it writable with every read: a write event for a direction
 * with nothing queued would only go round the pump for nothing.
 */

static ngx_int_t
ngx_http_ws_proxy_nothing_to_write(ngx_http_ws_proxy_t *wp, ngx_uint_t dir)
{
    ngx_http_ws_proxy_dir_t  *d;

    d = &wp->dir[dir];

    return !wp->kick && !d->inject && !ngx_wsp_close_pending(d)
           && !ngx_http_ws_proxy_has_output(d);
}


/*
 * worker_shutdown_timeout ran out during a graceful shutdown (nginx sets
 * c->close on every connection): both peers get 1001 "going away" if they
 * are at a frame boundary, and the session ends.
 */

static void
ngx_http_ws_proxy_shutdown(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t  err;

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: worker is shutting down, closing the session");

    /* nginx marks the connections failed; the sockets are still open */

    err = wp->client->error;
    wp->client->error = 0;
    wp->upstream->error = 0;

    ngx_http_ws_proxy_goodbye(wp, 1);

    wp->client->error = err;

    ngx_http_ws_proxy_set_error(wp, "worker is shutting down");
    ngx_wsp_end(wp, NGX_WSP_END_DRAIN);
    wp->closed_normally = 0;
    ngx_http_ws_proxy_finish(wp);
}


/* the close timer ends a close handshake the peer never completes */

static void
ngx_http_ws_proxy_close_handler(ngx_event_t *ev)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ev->data;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    if (ngx_http_ws_proxy_release_deferred(wp)) {
        /* a drained peer gets its close; its reply gets another period */
        ngx_add_timer(&wp->close_timer, wp->opts.close_timeout);
        ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: close handshake timed out");

    ngx_http_ws_proxy_finish(wp);
}


/*
 * recv_timeout: as in Kong's library, an idle peer is only logged, and
 * each direction is timed from its own last read.  A read since the timer
 * was set moves it to that read's time, and at least past the present, so
 * that a peer read in the same millisecond as the other direction's timer
 * was set times out after that one, as Kong's reopened recv_frame() does.
 */

static void
ngx_http_ws_proxy_recv_timeout_handler(ngx_event_t *ev)
{
    ngx_msec_t                left;
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    d = ev->data;
    wp = ngx_wsp_dir_wp(d);

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    if (d->recv_read) {
        d->recv_read = 0;

        /* the time since that read: unsigned, up to 49 days */
        left = (uint32_t) ((uint32_t) ngx_current_msec - d->recv_time);
        left = left < wp->opts.recv_timeout ? wp->opts.recv_timeout - left
                                            : 1;

        ngx_add_timer(&d->recv_timer, left);
        return;
    }

    ngx_http_ws_proxy_lua_log(wp, NGX_LOG_INFO,
                              "timeout receiving frame from %s, reopening",
                              ngx_wsp_src_role(d));

    ngx_add_timer(&d->recv_timer, wp->opts.recv_timeout);
}


/*
 * The top of every event and of every call from Lua: processes the
 * directions in `dirs` (NGX_WSP_RUN_*; an event concerns one direction
 * only, so only that one is looked at; a direction that changes the other
 * one, a close to send or a peer gone, adds it to wp->kick), then either
 * ends the session, when nothing is left to do, or arms the events.
 */

void
ngx_http_ws_proxy_run(ngx_http_ws_proxy_t *wp, ngx_uint_t dirs,
    ngx_uint_t can_read)
{
    ngx_uint_t                i, done;
    ngx_http_ws_proxy_dir_t  *d;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    wp->kick |= dirs;
    done = 0;

    do {
        dirs = wp->kick;
        wp->kick = 0;
        done |= dirs;

        for (i = 0; i < 2; i++) {
            if (dirs & NGX_WSP_RUN_DIR(i)) {
                ngx_http_ws_proxy_process(&wp->dir[i], can_read);
            }
        }

    } while (wp->kick);

    if (!ngx_wsp_steady(wp) && ngx_http_ws_proxy_done(wp) == NGX_OK) {
        ngx_http_ws_proxy_finish(wp);
        return;
    }

    /*
     * Reads only happen in event handlers: when Lua's verdict frees room
     * while the socket still has data, the read is posted to the next
     * cycle of the event loop, so that a flood of frames cannot keep the
     * posted-event queue busy and starve epoll and timers.
     */

    if (!can_read) {
        for (i = 0; i < 2; i++) {
            d = &wp->dir[i];

            if ((done & NGX_WSP_RUN_DIR(i))
                && d->src->read->ready && !d->src->read->posted
                && ngx_wsp_can_recv(d))
            {
                ngx_post_event(d->src->read, &ngx_posted_next_events);
            }
        }
    }

    if (ngx_http_ws_proxy_arm(wp, done) != NGX_OK) {
        ngx_http_ws_proxy_set_error(wp, "failed to arm events");
        wp->closed_normally = 0;
        ngx_http_ws_proxy_finish(wp);
    }
}


/*
 * Moves what direction d can move: read while the socket has data and the
 * buffer has room, parse what was read, send what was parsed.  One pass
 * does all three, so that the usual event (one read, one frame, one send)
 * goes round once.
 */

static void
ngx_http_ws_proxy_process(ngx_http_ws_proxy_dir_t *d, ngx_uint_t can_read)
{
    ngx_int_t          rc;
    ngx_uint_t         more;
    ngx_connection_t  *src;

    src = d->src;

    for ( ;; ) {

        if (can_read && src->read->ready && ngx_wsp_can_recv(d)) {
            ngx_http_ws_proxy_read(d);
        }

        more = ngx_wsp_needs_parse(d) ? ngx_wsp_parse(&d->core) : 0;

        if (d->rx == NGX_WSP_RX_EOF && (d->ppos == d->last || more)) {
            /*
             * The peer is gone and every whole frame it sent before is
             * parsed: now its close, or the other peer's goodbye.
             */
            ngx_http_ws_proxy_src_gone(d);
        }

        rc = ngx_http_ws_proxy_has_output(d) ? ngx_http_ws_proxy_flush(d) : 0;

        if (rc == NGX_ERROR) {
            return;
        }

        if (rc > 0 && ngx_wsp_has_work(d)) {
            /* frames that waited for output to drain can go now */
            continue;
        }

        if (can_read && src->read->ready && ngx_wsp_can_recv(d)
            && (d->last < d->end || d->spos > d->start))
        {
            /* the socket has more and there is room for it */
            continue;
        }

        break;
    }

    ngx_http_ws_proxy_idle(d);
}


static void
ngx_http_ws_proxy_read(ngx_http_ws_proxy_dir_t *d)
{
    size_t                n;
    ssize_t               rc;
    ngx_connection_t     *src;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);
    src = d->src;

    if (d->start == NULL && ngx_http_ws_proxy_buffer_get(d) != NGX_OK) {
        ngx_http_ws_proxy_fail(wp, "out of memory");
        return;
    }

    if (d->last == d->end) {
        /* room for more: move what is left to the front */
        ngx_wsp_compact(&d->core);
    }

    n = d->end - d->last;

    if (n == 0) {
        return;
    }

    rc = src->recv(src, d->last, n);

    if (rc > 0) {
        d->last += rc;
        d->bytes += rc;

        if (wp->opts.recv_timeout) {
            /* the timer is set again when it comes, not per read */
            d->recv_time = (uint32_t) ngx_current_msec;
            d->recv_read = 1;
        }

        return;
    }

    if (rc == NGX_AGAIN) {
        return;
    }

    /* 0 or NGX_ERROR: the peer is gone */

    if (rc == NGX_ERROR) {
        src->read->error = 1;
        src->error = 1;
    }

    ngx_http_ws_proxy_src_hup(d);
}


void
ngx_http_ws_proxy_free_msg(ngx_http_ws_proxy_dir_t *d)
{
    ngx_free(d->msg);
    d->msg = NULL;
    d->msg_cap = 0;
}


static void
ngx_http_ws_proxy_idle(ngx_http_ws_proxy_dir_t *d)
{
    /* an idle direction holds no buffer */

    if (d->start && d->in != NGX_WSP_IN_LUA && d->spos == d->last
        && d->ppos == d->last && !ngx_http_ws_proxy_has_output(d))
    {
        ngx_http_ws_proxy_buffer_put(d);
    }

    /*
     * Nor a message buffer once its message is gone: one large message
     * must not cost its size for the rest of the session.
     */

    if (d->msg && d->msg_len == 0 && d->in == NGX_WSP_IN_HEADER
        && d->out_body.pos == d->out_body.last)
    {
        ngx_http_ws_proxy_free_msg(d);
    }

    if (d->zd && d->in == NGX_WSP_IN_HEADER) {
        ngx_http_ws_proxy_deflate_idle(d);
    }
}


/* the raw range of the input buffer with one send(), as flush() returns */

static ngx_inline ngx_int_t
ngx_http_ws_proxy_send_raw(ngx_http_ws_proxy_dir_t *d)
{
    ssize_t  n;

    n = d->dst->send(d->dst, d->spos, d->ppos - d->spos);

    if (n == NGX_ERROR) {
        return ngx_http_ws_proxy_send_failed(d);
    }

    if (n > 0) {
        d->spos += n;
        return n;
    }

    return 0;
}


/*
 * Returns bytes sent (0: nothing or blocked), or NGX_ERROR.  The common
 * case, raw frames only: one send() of the raw range, as a plain tunnel
 * would do it.  It is tested here alone, so that a frame that takes it does
 * not pay the stack frame and registers of the other cases (W1,
 * docs/performance.md); ngx_http_ws_proxy_send_ranges() takes the rest,
 * this case's tests included.  Not on TLS: a blocked SSL_write() must be
 * retried the way it was made, and the other cases go through
 * send_chain(), which on the client copies into nginx's TLS buffer.
 */

ngx_int_t
ngx_http_ws_proxy_flush(ngx_http_ws_proxy_dir_t *d)
{
    ngx_connection_t  *dst;

    dst = d->dst;

    if (d->spos < d->ppos
        && d->out_hdr.pos == d->out_hdr.last
        && d->out_body.pos == d->out_body.last
        && d->out_ctl.pos == d->out_ctl.last
        && ngx_wsp_dir_wp(d)->request->out == NULL
#if (NGX_HTTP_SSL)
        && dst->ssl == NULL
#endif
        && d->tx != NGX_WSP_TX_ABORTED && dst->write->ready)
    {
        return ngx_http_ws_proxy_send_raw(d);
    }

    return ngx_http_ws_proxy_send_ranges(d);
}


static NGX_WSP_NOINLINE ngx_int_t
ngx_http_ws_proxy_send_ranges(ngx_http_ws_proxy_dir_t *d)
{
    ngx_int_t                   rc;
    ngx_connection_t           *dst;
    ngx_http_request_t         *r;
    ngx_http_ws_proxy_t        *wp;
    ngx_http_ws_proxy_range_t   ranges[4];

    wp = ngx_wsp_dir_wp(d);
    dst = d->dst;
    r = wp->request;

    /* the common case first: nothing to send, or cannot send now */

    if (d->spos == d->ppos
        && d->out_hdr.pos == d->out_hdr.last
        && d->out_body.pos == d->out_body.last
        && d->out_ctl.pos == d->out_ctl.last
        && (dst != wp->client || r->out == NULL))
    {
        return 0;
    }

    if (d->tx == NGX_WSP_TX_ABORTED || !dst->write->ready) {
        return 0;
    }

    if (dst == wp->client && r->out) {
        /* the end of the 101 response is still in nginx's chain */
        rc = ngx_http_output_filter(r, NULL);

        if (rc == NGX_ERROR) {
            return ngx_http_ws_proxy_send_failed(d);
        }

        if (r->out) {
            return 0;
        }
    }

    /* raw frames only, as in ngx_http_ws_proxy_flush() */

    if (d->spos < d->ppos
        && d->out_hdr.pos == d->out_hdr.last
        && d->out_body.pos == d->out_body.last
        && d->out_ctl.pos == d->out_ctl.last
        && r->out == NULL
#if (NGX_HTTP_SSL)
        && dst->ssl == NULL
#endif
       )
    {
        return ngx_http_ws_proxy_send_raw(d);
    }

    /*
     * Otherwise all the direction has to send goes at once, in order: the
     * raw range of the input buffer, a rebuilt frame, a frame of the
     * proxy's.
     */

    ranges[0].pos = d->spos;
    ranges[0].last = d->ppos;
    ranges[1] = d->out_hdr;
    ranges[2] = d->out_body;
    ranges[3] = d->out_ctl;

#if (NGX_HTTP_SSL)
    if (dst->ssl) {
        return ngx_http_ws_proxy_send_chain(d, ranges);
    }
#endif

    return ngx_http_ws_proxy_writev(d, ranges);
}


/* TLS: the ranges as a chain for the connection's send_chain() */

static ngx_int_t
ngx_http_ws_proxy_send_chain(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges)
{
    off_t              sent;
    ngx_uint_t         i;
    ngx_buf_t          bufs[4];
    ngx_chain_t       *cl, *next, out[4];
    ngx_connection_t  *dst;

    dst = d->dst;
    next = NULL;

    for (i = 4; i > 0; i--) {
        if (ranges[i - 1].pos < ranges[i - 1].last) {
            ngx_memzero(&bufs[i - 1], sizeof(ngx_buf_t));
            bufs[i - 1].pos = ranges[i - 1].pos;
            bufs[i - 1].last = ranges[i - 1].last;
            bufs[i - 1].memory = 1;

            /* a TLS client connection buffers output until told to flush */
            bufs[i - 1].flush = (next == NULL);

            out[i - 1].buf = &bufs[i - 1];
            out[i - 1].next = next;
            next = &out[i - 1];

        } else {
            bufs[i - 1].pos = ranges[i - 1].last;
        }
    }

    cl = next;

    if (cl == NULL) {
        return 0;
    }

    sent = dst->sent;

    cl = dst->send_chain(dst, cl, 0);

    if (cl == NGX_CHAIN_ERROR) {
        return ngx_http_ws_proxy_send_failed(d);
    }

    for (i = 0; i < 4; i++) {
        ranges[i].pos = bufs[i].pos;
    }

    ngx_http_ws_proxy_sent(d, ranges);

    sent = dst->sent - sent;

    return (ngx_int_t) (sent > 0 ? sent : 0);
}


static ngx_int_t
ngx_http_ws_proxy_send_failed(ngx_http_ws_proxy_dir_t *d)
{
    ngx_log_error(NGX_LOG_INFO, ngx_wsp_dir_wp(d)->log, 0,
                  "ws_proxy: failed sending to %s", ngx_wsp_dst_role(d));

    if (d->tx != NGX_WSP_TX_CLOSED) {
        ngx_http_ws_proxy_set_error(ngx_wsp_dir_wp(d), "failed sending to %s",
                                    ngx_wsp_dst_role(d));
        ngx_wsp_dir_wp(d)->closed_normally = 0;
    }

    ngx_http_ws_proxy_dst_gone(d);

    return NGX_ERROR;
}


/*
 * A plain socket: the ranges go out with one writev(), without building
 * the chain and buffers that send_chain() wants.
 */

static ngx_int_t
ngx_http_ws_proxy_writev(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges)
{
    size_t             k;
    ssize_t            n, rest;
    ngx_uint_t         i;
    ngx_iovec_t        vec;
    ngx_connection_t  *dst;
    struct iovec       iovs[4];

    dst = d->dst;

    vec.iovs = iovs;
    vec.count = 0;
    vec.size = 0;
    vec.nalloc = 4;

    for (i = 0; i < 4; i++) {
        if (ranges[i].pos < ranges[i].last) {
            k = ranges[i].last - ranges[i].pos;
            iovs[vec.count].iov_base = ranges[i].pos;
            iovs[vec.count].iov_len = k;
            vec.size += k;
            vec.count++;
        }
    }

    if (vec.count == 0) {
        return 0;
    }

    n = ngx_writev(dst, &vec);

    if (n == NGX_ERROR) {
        return ngx_http_ws_proxy_send_failed(d);
    }

    if (n == NGX_AGAIN) {
        dst->write->ready = 0;
        return 0;
    }

    if ((size_t) n < vec.size) {
        /* the socket buffer is full: wait for the write event */
        dst->write->ready = 0;
    }

    dst->sent += n;

    for (rest = n, i = 0; i < 4 && rest; i++) {
        k = ngx_min((size_t) rest, (size_t) (ranges[i].last - ranges[i].pos));
        ranges[i].pos += k;
        rest -= k;
    }

    ngx_http_ws_proxy_sent(d, ranges);

    return n;
}


/* what a send left of the ranges goes back to the direction */

static void
ngx_http_ws_proxy_sent(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges)
{
    d->spos = ranges[0].pos;
    d->out_hdr.pos = ranges[1].pos;
    d->out_body.pos = ranges[2].pos;
    d->out_ctl.pos = ranges[3].pos;

    if (d->inject_cur && d->out_body.pos == d->out_body.last) {
        ngx_free(d->inject_cur);
        d->inject_cur = NULL;

        if (d->in == NGX_WSP_IN_DUE) {
            /* a verdict's frame waited for it (ngx_wsp_verdict_due()) */
            ngx_wsp_dir_wp(d)->kick |= NGX_WSP_RUN_DIR(d->dir);
        }
    }
}


static ngx_int_t
ngx_http_ws_proxy_arm(ngx_http_ws_proxy_t *wp, ngx_uint_t dirs)
{
    ngx_uint_t                i;
    ngx_event_t              *wev;
    ngx_http_ws_proxy_dir_t  *d;

    for (i = 0; i < 2; i++) {

        if (!(dirs & NGX_WSP_RUN_DIR(i))) {
            continue;
        }

        d = &wp->dir[i];

        if (ngx_handle_read_event(d->src->read, 0) != NGX_OK) {
            return NGX_ERROR;
        }

        wev = d->dst->write;

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!wev->ready && d->tx != NGX_WSP_TX_ABORTED
            && ngx_http_ws_proxy_has_output(d))
        {
            if (!wev->timer_set) {
                ngx_add_timer(wev, wp->opts.send_timeout);
            }

        } else if (wev->timer_set) {
            ngx_del_timer(wev);
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ws_proxy_get_buffer(ngx_http_ws_proxy_dir_t *d)
{
    return ngx_http_ws_proxy_buffer_get(d);
}


void
ngx_http_ws_proxy_release(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_buffer_put(d);
}


/*
 * A direction takes its buffer when it reads and gives it back when idle,
 * so once per frame of W1: inline in ngx_http_ws_proxy_read() and _idle(),
 * whose calls cost as much as the free list (docs/performance.md).
 */

static ngx_inline ngx_int_t
ngx_http_ws_proxy_buffer_get(ngx_http_ws_proxy_dir_t *d)
{
    size_t                         size;
    u_char                        *p;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(ngx_wsp_dir_wp(d)->request,
                                        ngx_wsp_module);
    size = wlcf->buffer_size;

    if (ngx_wsp_nfree && ngx_wsp_free_size == size) {
        p = ngx_wsp_free[--ngx_wsp_nfree];

    } else {
        p = ngx_alloc(size, ngx_wsp_dir_wp(d)->log);
        if (p == NULL) {
            return NGX_ERROR;
        }
    }

    d->start = p;
    d->end = p + size;
    d->spos = p;
    d->ppos = p;
    d->last = p;

    return NGX_OK;
}


static ngx_inline void
ngx_http_ws_proxy_buffer_put(ngx_http_ws_proxy_dir_t *d)
{
    size_t  size;

    if (d->start == NULL) {
        return;
    }

    size = d->end - d->start;

    if (ngx_wsp_nfree < NGX_WSP_FREE_MAX
        && (ngx_wsp_nfree == 0 || ngx_wsp_free_size == size))
    {
        ngx_wsp_free_size = size;
        ngx_wsp_free[ngx_wsp_nfree++] = d->start;

    } else {
        ngx_free(d->start);
    }

    d->start = NULL;
    d->end = NULL;
    d->spos = NULL;
    d->ppos = NULL;
    d->last = NULL;
}


/* makes room for size more bytes in d->msg after d->msg_len */

int
ngx_http_ws_proxy_reserve(ngx_wsp_sdir_t *sd, size_t size)
{
    size_t                    cap;
    u_char                   *p;
    ngx_http_ws_proxy_dir_t  *d;

    d = (ngx_http_ws_proxy_dir_t *) sd;

    if (d->msg_len + size <= d->msg_cap) {
        return NGX_OK;
    }

    cap = d->msg_cap ? d->msg_cap : 1024;

    while (cap < d->msg_len + size) {
        cap *= 2;
    }

    p = ngx_alloc(cap, ngx_wsp_dir_wp(d)->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (d->msg_len) {
        ngx_memcpy(p, d->msg, d->msg_len);
    }

    if (d->msg) {
        ngx_free(d->msg);
    }

    d->msg = p;
    d->msg_cap = cap;

    return NGX_OK;
}
