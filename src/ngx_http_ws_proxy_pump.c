/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The pump: once execute() runs, the module owns the events of both
 * connections and moves frames between them.  Each direction reads into
 * its own buffer, parses frame headers in place and either forwards the
 * bytes untouched (raw), or copies the payload out unmasked (buffered) when
 * the Lua hook, fragment aggregation or a close frame needs to see it.
 *
 * Output of a direction goes to one connection, in this order: the raw
 * range of the input buffer, a rebuilt frame (header, body), then a frame
 * the proxy makes itself (a close).  A buffered frame is never parsed while
 * raw bytes before it are unsent, and no frame is parsed while a rebuilt
 * one is unsent, so the order of frames on the wire is always kept.
 */


#include "ngx_http_ws_proxy_module.h"


static ngx_int_t ngx_http_ws_proxy_preload(ngx_http_ws_proxy_dir_t *d,
    ngx_buf_t *b);
static void ngx_http_ws_proxy_client_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_upstream_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_close_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_recv_timeout_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_process(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t can_read);
static ngx_inline void ngx_http_ws_proxy_free_msg(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_idle(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_flush(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_resume(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_writev(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges);
static void ngx_http_ws_proxy_sent(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_range_t *ranges);
static ngx_int_t ngx_http_ws_proxy_send_failed(ngx_http_ws_proxy_dir_t *d);
static ngx_uint_t ngx_http_ws_proxy_parse(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_skip_start(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_keep_reply(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_whole_frame(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_close_payload_of(ngx_http_ws_proxy_dir_t *d,
    u_char *dst);
static void ngx_http_ws_proxy_keep_close(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, u_char *payload, size_t len);
static ngx_int_t ngx_http_ws_proxy_skip_frame(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_compact(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_frame_start(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_log_close(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, u_char *reason, size_t len);
static void ngx_http_ws_proxy_frame_done(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_emit(ngx_http_ws_proxy_dir_t *d, ngx_uint_t fin,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_ws_proxy_closing(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_violation(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, const char *reason, const char *log_reason);
static void ngx_http_ws_proxy_limit(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_close_later(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, const char *reason);
static void ngx_http_ws_proxy_close_at_boundary(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_invalid_utf8(ngx_http_ws_proxy_dir_t *d);
static ngx_uint_t ngx_http_ws_proxy_release_deferred(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_drop_pending(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_queue_close(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, const u_char *reason, size_t len);
static void ngx_http_ws_proxy_src_gone(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_dst_gone(ngx_http_ws_proxy_dir_t *d);
static ngx_inline ngx_int_t ngx_http_ws_proxy_has_output(
    ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_reserve(ngx_http_ws_proxy_dir_t *d,
    size_t size);
static ngx_inline ngx_int_t ngx_http_ws_proxy_get_buffer(
    ngx_http_ws_proxy_dir_t *d);
static ngx_inline void ngx_http_ws_proxy_release(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_free_injected(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_goodbye(ngx_http_ws_proxy_t *wp,
    ngx_uint_t to_client);
static void ngx_http_ws_proxy_abandoned(ngx_http_ws_proxy_t *wp);
static size_t ngx_http_ws_proxy_frame(u_char *hdr, u_char *out,
    const u_char *payload, size_t len, ngx_uint_t fin, ngx_uint_t opcode,
    ngx_uint_t masked);
static size_t ngx_http_ws_proxy_close_payload(u_char *dst, ngx_uint_t code,
    const u_char *reason, size_t len);
static void ngx_http_ws_proxy_close_now(ngx_connection_t *c,
    ngx_uint_t masked);
static void ngx_http_ws_proxy_send_timedout(ngx_http_ws_proxy_t *wp,
    ngx_event_t *wev);
static ngx_int_t ngx_http_ws_proxy_nothing_to_write(ngx_http_ws_proxy_t *wp,
    ngx_uint_t dir);
static void ngx_http_ws_proxy_shutdown(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_free_semas(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_finish(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_arm(ngx_http_ws_proxy_t *wp, ngx_uint_t dirs);
static ngx_int_t ngx_http_ws_proxy_done(ngx_http_ws_proxy_t *wp);


static const char  *ngx_wsp_role[] = { "client", "upstream" };


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

    wp = ngx_http_get_module_ctx(r, ngx_http_ws_proxy_module);

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

    return !wp->kick && !d->inject && !d->ctl_close
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
        /* the offender gets its close; its reply gets another period */
        ngx_add_timer(&wp->close_timer, wp->opts.close_timeout);
        ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: close handshake timed out");

    ngx_http_ws_proxy_finish(wp);
}


/* closes that waited for a peer's close reply are due: returns how many */

static ngx_uint_t
ngx_http_ws_proxy_release_deferred(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t  i, n;

    for (n = 0, i = 0; i < 2; i++) {
        if (wp->dir[i].ctl_wait) {
            ngx_http_ws_proxy_close_at_boundary(&wp->dir[i]);
            n++;
        }
    }

    return n;
}


/* recv_timeout: as in Kong's library, an idle peer is only logged */

static void
ngx_http_ws_proxy_recv_timeout_handler(ngx_event_t *ev)
{
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    d = ev->data;
    wp = d->wp;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return;
    }

    ngx_http_ws_proxy_lua_log(wp, NGX_LOG_INFO,
                              "timeout receiving frame from %s, reopening",
                              ngx_wsp_role[d->dir]);

    ngx_add_timer(&d->recv_timer, wp->opts.recv_timeout);
}


/*
 * Processes the directions in `dirs` (NGX_WSP_RUN_*): an event concerns one
 * direction only, so only that one is looked at.  A direction that changes
 * the other one (a close to send, a peer gone) adds it to wp->kick.
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

                if (wp->state != NGX_WSP_STATE_RUNNING) {
                    return;
                }
            }
        }

    } while (wp->kick);

    if (wp->closing && ngx_http_ws_proxy_done(wp) == NGX_OK) {
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
                && !d->hup && !d->slot.ready)
            {
                ngx_post_event(d->src->read, &ngx_posted_next_events);
            }
        }
    }

    ngx_http_ws_proxy_arm(wp, done);
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
    size_t                n;
    ssize_t               rc;
    ngx_connection_t     *src;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;
    src = d->src;

    for ( ;; ) {

        if (can_read && src->read->ready && !d->hup && !d->slot.ready) {

            if (d->start == NULL
                && ngx_http_ws_proxy_get_buffer(d) != NGX_OK)
            {
                ngx_http_ws_proxy_set_error(wp, "out of memory");
                wp->closed_normally = 0;
                ngx_http_ws_proxy_finish(wp);
                return;
            }

            if (d->last == d->end) {
                /* room for more: move what is left to the front */
                ngx_http_ws_proxy_compact(d);
            }

            n = d->end - d->last;

            if (n) {
                rc = src->recv(src, d->last, n);

                if (rc > 0) {
                    d->last += rc;
                    d->bytes += rc;

                    if (wp->opts.recv_timeout) {
                        ngx_add_timer(&d->recv_timer, wp->opts.recv_timeout);
                    }

                } else if (rc != NGX_AGAIN) {

                    /* 0 or NGX_ERROR: the peer is gone */

                    if (rc == NGX_ERROR) {
                        src->read->error = 1;
                        src->error = 1;
                    }

                    d->hup = 1;
                    wp->closing = 1;
                }
            }
        }

        /* unparsed input, or a frame of the proxy's own waiting its turn */

        if (d->ppos < d->last || d->inject || d->ctl_close) {
            (void) ngx_http_ws_proxy_parse(d);

            if (wp->state != NGX_WSP_STATE_RUNNING) {
                return;
            }
        }

        if (d->hup && !d->eof && (d->ppos == d->last || d->short_input)) {
            /*
             * The peer is gone and every whole frame it sent before is
             * parsed: now its close, or the other peer's goodbye.
             */
            d->eof = 1;
            ngx_http_ws_proxy_src_gone(d);
        }

        rc = ngx_http_ws_proxy_has_output(d) ? ngx_http_ws_proxy_flush(d) : 0;

        if (rc == NGX_ERROR || wp->state != NGX_WSP_STATE_RUNNING) {
            return;
        }

        if (rc > 0 && (d->ppos < d->last || d->inject || d->ctl_close)) {
            /* frames that waited for output to drain can go now */
            continue;
        }

        if (can_read && src->read->ready && !d->hup && !d->slot.ready
            && (d->last < d->end || d->spos > d->start))
        {
            /* the socket has more and there is room for it */
            continue;
        }

        break;
    }

    ngx_http_ws_proxy_idle(d);
}


static ngx_inline void
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

    if (d->start && !d->slot.ready && d->spos == d->last
        && d->ppos == d->last && !ngx_http_ws_proxy_has_output(d))
    {
        ngx_http_ws_proxy_release(d);
    }

    /*
     * Nor a message buffer once its message is gone: one large message
     * must not cost its size for the rest of the session.
     */

    if (d->msg && d->msg_len == 0 && !d->in_frame && !d->slot.ready
        && d->out_body.pos == d->out_body.last)
    {
        ngx_http_ws_proxy_free_msg(d);
    }
}


static ngx_inline ngx_int_t
ngx_http_ws_proxy_has_output(ngx_http_ws_proxy_dir_t *d)
{
    return d->spos < d->ppos
           || d->out_hdr.pos < d->out_hdr.last
           || d->out_body.pos < d->out_body.last
           || d->out_ctl.pos < d->out_ctl.last
           || (d->dst == d->wp->client && d->wp->request->out);
}


/* returns bytes sent (0: nothing or blocked), or NGX_ERROR */

static ngx_int_t
ngx_http_ws_proxy_flush(ngx_http_ws_proxy_dir_t *d)
{
    off_t                       sent;
    ssize_t                     n;
    ngx_int_t                   rc;
    ngx_uint_t                  i;
    ngx_buf_t                   bufs[4];
    ngx_chain_t                *cl, *next, out[4];
    ngx_connection_t           *dst;
    ngx_http_request_t         *r;
    ngx_http_ws_proxy_t        *wp;
    ngx_http_ws_proxy_range_t   ranges[4];

    wp = d->wp;
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

    if (d->aborted || !dst->write->ready) {
        return 0;
    }

    if (dst == wp->client && r->out) {
        /* the end of the 101 response is still in nginx's chain */
        rc = ngx_http_output_filter(r, NULL);

        if (rc == NGX_ERROR) {
            goto failed;
        }

        if (r->out) {
            return 0;
        }
    }

    /*
     * The common case, raw frames only: one send() of the raw range, as a
     * plain tunnel would do it, without building a chain.  Not on TLS: a
     * blocked SSL_write() must be retried the way it was made, and the
     * other cases go through send_chain(), which on the client copies
     * into nginx's TLS buffer.
     */

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
        n = dst->send(dst, d->spos, d->ppos - d->spos);

        if (n == NGX_ERROR) {
            goto failed;
        }

        if (n > 0) {
            d->spos += n;
            return n;
        }

        return 0;
    }

    /*
     * Otherwise one writev() for all the direction has to send, in order:
     * the raw range of the input buffer, a rebuilt frame, a frame of the
     * proxy's.
     */

    ranges[0].pos = d->spos;
    ranges[0].last = d->ppos;
    ranges[1] = d->out_hdr;
    ranges[2] = d->out_body;
    ranges[3] = d->out_ctl;

#if (NGX_HTTP_SSL)
    if (dst->ssl == NULL)
#endif
    {
        return ngx_http_ws_proxy_writev(d, ranges);
    }

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
        goto failed;
    }

    for (i = 0; i < 4; i++) {
        ranges[i].pos = bufs[i].pos;
    }

    ngx_http_ws_proxy_sent(d, ranges);

    sent = dst->sent - sent;

    return (ngx_int_t) (sent > 0 ? sent : 0);

failed:

    return ngx_http_ws_proxy_send_failed(d);
}


static ngx_int_t
ngx_http_ws_proxy_send_failed(ngx_http_ws_proxy_dir_t *d)
{
    ngx_log_error(NGX_LOG_INFO, d->wp->log, 0,
                  "ws_proxy: failed sending to %s", ngx_wsp_role[1 - d->dir]);

    if (!d->tx_closed) {
        ngx_http_ws_proxy_set_error(d->wp, "failed sending to %s",
                                    ngx_wsp_role[1 - d->dir]);
        d->wp->closed_normally = 0;
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
    }
}


/* returns 1 when something was parsed or consumed */

static ngx_uint_t
ngx_http_ws_proxy_parse(ngx_http_ws_proxy_dir_t *d)
{
    size_t                avail;
    u_char               *start, *to;
    ngx_int_t             rc;
    ngx_uint_t            progress;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;
    progress = 0;
    d->short_input = 0;

    for ( ;; ) {

        if (d->inject && !d->in_frame && !d->tx_closed && !d->aborted
            && d->out_hdr.pos == d->out_hdr.last
            && d->out_body.pos == d->out_body.last)
        {
            /*
             * A frame from send_frame() goes after what was forwarded and
             * before a frame still waiting for its verdict.
             */
            d->inject_cur = d->inject;
            d->inject = d->inject->next;
            d->out_body.pos = d->inject_cur->data;
            d->out_body.last = d->inject_cur->data + d->inject_cur->len;
            progress = 1;
            continue;
        }

        if (d->slot.ready) {
            return progress;
        }

        if (d->ctl_close && !d->in_frame
            && (!d->ctl_wait || d->rx_closed))
        {
            /* a close of the proxy's own waits for a frame boundary */
            d->ctl_wait = 0;
            ngx_http_ws_proxy_queue_close(d, d->ctl_code, d->ctl->reason,
                                          d->ctl->reason_len);
            progress = 1;
            continue;
        }

        if (d->rx_closed && !d->in_frame) {
            /* after its close (or a violation) a peer's bytes are ignored */

            if (d->spos == d->ppos && d->ppos < d->last) {
                d->ppos = d->last;
                d->spos = d->last;
                progress = 1;
            }

            return progress;
        }

        if (!d->in_frame) {

            if (d->ppos == d->last) {
                return progress;
            }

            if (d->tx_closed || d->aborted) {
                rc = ngx_http_ws_proxy_skip_start(d);

            } else if (d->out_hdr.pos < d->out_hdr.last
                       || d->out_body.pos < d->out_body.last)
            {
                return progress;

            } else {
                rc = ngx_http_ws_proxy_frame_start(d);
            }

            if (rc == NGX_AGAIN) {
                return progress;
            }

            progress = 1;

            if (rc == NGX_ERROR) {
                if (wp->state != NGX_WSP_STATE_RUNNING) {
                    return 0;
                }

                continue;
            }
        }

        avail = d->last - d->ppos;
        if ((uint64_t) avail > d->remaining) {
            avail = (size_t) d->remaining;
        }

        start = d->ppos;

        switch (d->payload_mode) {

        case NGX_WSP_PAYLOAD_RAW:

            if (d->check_utf8 && !(d->frame.opcode & 0x8)) {
                /* in place, before the bytes can be sent */
                d->utf8 = d->frame.masked
                          ? ngx_wsp_utf8_validate_masked(d->utf8, start,
                                                         avail, d->frame.mask,
                                                         d->offset)
                          : ngx_wsp_utf8_validate(d->utf8, start, avail);

                if (d->utf8 == NGX_WSP_UTF8_REJECT) {
                    ngx_http_ws_proxy_invalid_utf8(d);
                    progress = 1;
                    continue;
                }
            }

            d->ppos += avail;
            break;

        case NGX_WSP_PAYLOAD_BUFFER:
            if (d->frame.opcode & 0x8) {
                to = d->ctl->cbuf + d->ctl->clen;
                d->ctl->clen += avail;

            } else {
                to = d->msg + d->msg_len;
                d->msg_len += avail;
            }

            if (d->frame.masked) {
                ngx_wsp_mask(to, start, avail, d->frame.mask, d->offset);

            } else {
                ngx_memcpy(to, start, avail);
            }

            d->ppos += avail;
            d->spos = d->ppos;

            if (d->check_utf8 && !(d->frame.opcode & 0x8)) {
                d->utf8 = ngx_wsp_utf8_validate(d->utf8, to, avail);

                if (d->utf8 == NGX_WSP_UTF8_REJECT) {
                    /* fail fast: not when the frame is complete */
                    ngx_http_ws_proxy_invalid_utf8(d);
                    progress = 1;
                    continue;
                }
            }

            break;

        case NGX_WSP_PAYLOAD_HOLD:
            /* the whole frame is there, see frame_done() */
            break;

        default: /* NGX_WSP_PAYLOAD_SKIP */
            d->ppos += avail;
            d->spos = d->ppos;
            break;
        }

        d->remaining -= avail;
        d->offset += avail;

        if (avail) {
            progress = 1;
        }

        if (d->remaining) {
            return progress;
        }

        ngx_http_ws_proxy_frame_done(d);
        progress = 1;

        if (wp->state != NGX_WSP_STATE_RUNNING) {
            return 0;
        }
    }
}


/*
 * Nothing more can go to dst (a close was sent, or dst is gone): frames
 * are still parsed, to find the peer's close reply, but their payloads are
 * dropped.  Unsent raw bytes before them must go first.
 */

static ngx_int_t
ngx_http_ws_proxy_skip_start(ngx_http_ws_proxy_dir_t *d)
{
    int  rc;

    if (d->spos < d->ppos) {
        return NGX_AGAIN;
    }

    rc = ngx_wsp_frame_parse_header(d->ppos, d->last - d->ppos, &d->frame);

    if (rc == NGX_WSP_PARSE_AGAIN) {
        if (d->last == d->end && d->ppos > d->start) {
            ngx_http_ws_proxy_compact(d);
        }

        d->short_input = 1;
        return NGX_AGAIN;
    }

    if (rc == NGX_WSP_PARSE_ERROR) {
        d->rx_closed = 1;
        return NGX_ERROR;
    }

    if (d->frame.opcode == NGX_WSP_OP_CLOSE
        && d->frame.payload_len <= NGX_WSP_MAX_CONTROL)
    {
        /* the peer's close reply is kept for the variables and stats() */

        if (ngx_http_ws_proxy_whole_frame(d) != NGX_OK) {
            return NGX_AGAIN;
        }

        ngx_http_ws_proxy_keep_reply(d);
    }

    return ngx_http_ws_proxy_skip_frame(d);
}


/* the frame whose header was just parsed is read and dropped */

static ngx_int_t
ngx_http_ws_proxy_skip_frame(ngx_http_ws_proxy_dir_t *d)
{
    d->ppos += d->frame.header_len;
    d->spos = d->ppos;
    d->in_frame = 1;
    d->payload_mode = NGX_WSP_PAYLOAD_SKIP;
    d->remaining = d->frame.payload_len;
    d->offset = 0;

    return NGX_OK;
}


/* NGX_AGAIN until the whole frame at d->ppos is in the input buffer */

static ngx_int_t
ngx_http_ws_proxy_whole_frame(ngx_http_ws_proxy_dir_t *d)
{
    size_t  need;

    need = d->frame.header_len + (size_t) d->frame.payload_len;

    if ((size_t) (d->last - d->ppos) >= need) {
        return NGX_OK;
    }

    if (d->ppos + need > d->end) {
        ngx_http_ws_proxy_compact(d);
    }

    d->short_input = 1;

    return NGX_AGAIN;
}


/* the (whole, control-sized) payload of the frame at d->ppos, unmasked */

static void
ngx_http_ws_proxy_close_payload_of(ngx_http_ws_proxy_dir_t *d, u_char *dst)
{
    u_char  *p;
    size_t   len;

    p = d->ppos + d->frame.header_len;
    len = (size_t) d->frame.payload_len;

    if (d->frame.masked) {
        ngx_wsp_mask(dst, p, len, d->frame.mask, 0);

    } else {
        ngx_memcpy(dst, p, len);
    }
}


/* a peer's valid close: its status and reason for the variables, stats() */

static void
ngx_http_ws_proxy_keep_close(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    u_char *payload, size_t len)
{
    d->close_code = code;
    d->ctl->close_reason_len = len > 2 ? len - 2 : 0;
    ngx_memcpy(d->ctl->close_reason, payload + 2, d->ctl->close_reason_len);
}


/*
 * A close frame that is skipped (a reply to the proxy's own close) is
 * still recorded: its status and reason, when valid, fill the session's
 * close code and reason as a forwarded close does.
 */

static void
ngx_http_ws_proxy_keep_reply(ngx_http_ws_proxy_dir_t *d)
{
    size_t       len;
    unsigned     code;
    const char  *reason;
    u_char       tmp[NGX_WSP_MAX_CONTROL];

    len = (size_t) d->frame.payload_len;

    ngx_http_ws_proxy_close_payload_of(d, tmp);

    if (ngx_wsp_close_check(tmp, len, &code, &reason)
        || ngx_http_ws_proxy_get_ctl(d) == NULL)
    {
        return;
    }

    ngx_http_ws_proxy_keep_close(d, code, tmp, len);
}


static void
ngx_http_ws_proxy_compact(ngx_http_ws_proxy_dir_t *d)
{
    size_t  n;

    if (d->spos == d->start) {
        return;
    }

    n = d->last - d->spos;

    if (n) {
        ngx_memmove(d->start, d->spos, n);
    }

    d->ppos -= d->spos - d->start;
    d->last = d->start + n;
    d->spos = d->start;
}


/*
 * A new frame at d->ppos: parse and check its header, apply the limits and
 * choose what happens to its payload.  NGX_AGAIN: more bytes are needed or
 * the frame must wait for output to drain; NGX_ERROR: the direction was
 * closed for a violation.
 */

static ngx_int_t
ngx_http_ws_proxy_frame_start(ngx_http_ws_proxy_dir_t *d)
{
    int                   rc;
    unsigned              code;
    uint64_t              len, size;
    ngx_uint_t            opcode, control, buffered;
    const char           *reason;
    ngx_http_ws_proxy_t  *wp;
    u_char                tmp[NGX_WSP_MAX_CONTROL];

    wp = d->wp;

    rc = ngx_wsp_frame_parse_header(d->ppos, d->last - d->ppos, &d->frame);

    if (rc == NGX_WSP_PARSE_AGAIN) {
        if (d->last == d->end) {
            ngx_http_ws_proxy_compact(d);
        }

        d->short_input = 1;
        return NGX_AGAIN;
    }

    if (rc == NGX_WSP_PARSE_ERROR) {
        ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_PROTOCOL,
                                    d->frame.error, d->frame.error);
        return NGX_ERROR;
    }

    opcode = d->frame.opcode;
    len = d->frame.payload_len;
    control = opcode & 0x8;

    buffered = wp->opts.hook
               || (wp->opts.aggregate && !control
                   && (!d->frame.fin || opcode == NGX_WSP_OP_CONT));

    if ((buffered || (opcode == NGX_WSP_OP_CLOSE && d->ctl_close))
        && d->spos < d->ppos)
    {
        /*
         * Raw bytes before this frame go out first; the frame is checked
         * only then, as the check moves the fragmentation state.
         */
        return NGX_AGAIN;
    }

    rc = ngx_wsp_frame_check(&d->frame,
                             d->dir == NGX_WSP_DIR_CLIENT
                             ? NGX_WSP_ROLE_CLIENT : NGX_WSP_ROLE_UPSTREAM,
                             &d->msg_state, &reason);
    if (rc) {
        ngx_http_ws_proxy_violation(d, rc, reason, reason);
        return NGX_ERROR;
    }

    if (!control) {
        /*
         * The size limit counts one frame, or the whole message when
         * fragments are aggregated; the fragment limit counts the frames
         * of one message.
         */

        size = (wp->opts.aggregate ? d->msg_size : 0) + len;
        d->msg_size = size;
        d->msg_frames++;

        if (wp->opts.max_frame_size[d->dir]
            && size > wp->opts.max_frame_size[d->dir])
        {
            ngx_http_ws_proxy_lua_log(wp, NGX_LOG_INFO,
                                      "%s frame size (%uL) exceeds limit, "
                                      "closing",
                                      ngx_wsp_role[d->dir], size);
            ngx_http_ws_proxy_limit(d);
            return NGX_ERROR;
        }

        if (wp->opts.max_fragments[d->dir]
            && d->msg_frames > wp->opts.max_fragments[d->dir])
        {
            ngx_http_ws_proxy_lua_log(wp, NGX_LOG_INFO,
                                      "%s frame count (%ui) exceeds limit, "
                                      "closing",
                                      ngx_wsp_role[d->dir], d->msg_frames);
            ngx_http_ws_proxy_limit(d);
            return NGX_ERROR;
        }
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        /* a close frame is checked whole before any of it moves */

        if (ngx_http_ws_proxy_whole_frame(d) != NGX_OK) {
            return NGX_AGAIN;
        }

        ngx_http_ws_proxy_close_payload_of(d, tmp);

        rc = ngx_wsp_close_check(tmp, (size_t) len, &code, &reason);
        if (rc) {
            ngx_http_ws_proxy_violation(d, rc, reason, reason);
            return NGX_ERROR;
        }

        if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
            goto nomem;
        }

        /*
         * The peer's reader is closed by its close frame from here on,
         * whether the frame goes out raw or waits for Lua: a FIN that
         * follows is the end of a close handshake, not a peer gone.
         */

        d->rx_closed = 1;
        ngx_http_ws_proxy_keep_close(d, code, tmp, (size_t) len);

        if (wp->closed_by == NGX_WSP_BY_NONE) {
            wp->closed_by = d->dir == NGX_WSP_DIR_CLIENT ? NGX_WSP_BY_CLIENT
                                                         : NGX_WSP_BY_UPSTREAM;
        }

        if (d->ctl_close) {
            /*
             * The reply to the proxy's 1001 after the other peer's
             * violation: the offender gets the proxy's close instead.
             */
            return ngx_http_ws_proxy_skip_frame(d);
        }

        if (!wp->opts.hook) {
            ngx_http_ws_proxy_log_close(d, code, len > 2 ? tmp + 2 : tmp,
                                        len > 2 ? (size_t) len - 2 : 0);
        }
    }

    if (buffered) {

        if (wp->opts.hook && opcode != NGX_WSP_OP_CLOSE
            && (!wp->opts.aggregate
                || (opcode != NGX_WSP_OP_CONT && d->frame.fin))
            && len <= wp->opts.max_payload
            && (uint64_t) (d->last - d->ppos) >= d->frame.header_len + len)
        {
            /*
             * A whole frame in the buffer stays there: Lua sees it in
             * place, and one forwarded unchanged leaves as it came, with
             * neither a copy nor a new frame.
             */

            if (!control && opcode != NGX_WSP_OP_CONT) {
                d->utf8 = NGX_WSP_UTF8_ACCEPT;
                d->check_utf8 = (opcode == NGX_WSP_OP_TEXT);
            }

            d->payload_mode = NGX_WSP_PAYLOAD_HOLD;
            d->in_frame = 1;
            d->remaining = 0;
            d->offset = 0;

            return NGX_OK;
        }

        if (control) {
            if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
                goto nomem;
            }

            d->ctl->clen = 0;

        } else {
            if (opcode != NGX_WSP_OP_CONT || !wp->opts.aggregate) {
                d->msg_len = 0;
            }

            if (opcode != NGX_WSP_OP_CONT) {
                d->msg_opcode = opcode;
                d->utf8 = NGX_WSP_UTF8_ACCEPT;
                d->check_utf8 = (opcode == NGX_WSP_OP_TEXT);
            }

            if (d->msg_len + len > wp->opts.max_payload) {
                ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                              "%s message of %uL bytes exceeds the "
                              "buffering limit of %uL, closing",
                              ngx_wsp_role[d->dir],
                              (uint64_t) d->msg_len + len,
                              wp->opts.max_payload);
                ngx_http_ws_proxy_limit(d);
                return NGX_ERROR;
            }

            if (ngx_http_ws_proxy_reserve(d, (size_t) len) != NGX_OK) {
                goto nomem;
            }
        }

        d->payload_mode = NGX_WSP_PAYLOAD_BUFFER;
        d->ppos += d->frame.header_len;
        d->spos = d->ppos;

    } else {
        if (!control && opcode != NGX_WSP_OP_CONT) {
            d->utf8 = NGX_WSP_UTF8_ACCEPT;
            d->check_utf8 = (opcode == NGX_WSP_OP_TEXT);
        }

        d->payload_mode = NGX_WSP_PAYLOAD_RAW;
        d->ppos += d->frame.header_len;
        d->stream_mid = 1;
    }

    d->in_frame = 1;
    d->remaining = len;
    d->offset = 0;

    return NGX_OK;

nomem:

    ngx_http_ws_proxy_set_error(wp, "out of memory");
    wp->closed_normally = 0;
    ngx_http_ws_proxy_finish(wp);

    return NGX_ERROR;
}


static void
ngx_http_ws_proxy_log_close(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    u_char *reason, size_t len)
{
    if (code == NGX_WSP_CLOSE_NO_STATUS) {
        ngx_http_ws_proxy_lua_log(d->wp, NGX_LOG_INFO,
                                  "forwarding close with code: nil, "
                                  "payload: %*s",
                                  len, reason);
        return;
    }

    ngx_http_ws_proxy_lua_log(d->wp, NGX_LOG_INFO,
                              "forwarding close with code: %ui, payload: %*s",
                              code, len, reason);
}


static void
ngx_http_ws_proxy_frame_done(ngx_http_ws_proxy_dir_t *d)
{
    size_t                     len;
    u_char                    *p;
    ngx_uint_t                 opcode, control, fin;
    ngx_http_ws_proxy_t       *wp;
    ngx_http_ws_proxy_slot_t  *slot;

    wp = d->wp;
    opcode = d->frame.opcode;
    control = opcode & 0x8;
    p = NULL;
    len = 0;

    d->in_frame = 0;
    d->stream_mid = 0;
    d->frames++;

    if (d->payload_mode == NGX_WSP_PAYLOAD_SKIP) {
        if (opcode == NGX_WSP_OP_CLOSE) {
            d->rx_closed = 1;
        }

        return;
    }

    if (!control && d->frame.fin) {
        d->messages++;
        d->msg_size = 0;
        d->msg_frames = 0;
    }

    if (d->payload_mode == NGX_WSP_PAYLOAD_RAW) {
        if (!control && d->check_utf8 && d->frame.fin
            && d->utf8 != NGX_WSP_UTF8_ACCEPT)
        {
            /* a code point cut by the end of the message */
            ngx_http_ws_proxy_invalid_utf8(d);
            return;
        }

        if (opcode == NGX_WSP_OP_CLOSE) {
            d->rx_closed = 1;
            d->tx_closed = 1;
            ngx_http_ws_proxy_closing(wp);
        }

        return;
    }

    if (d->payload_mode == NGX_WSP_PAYLOAD_HOLD) {
        /* held at d->ppos: unmasked in place for Lua */

        p = d->ppos + d->frame.header_len;
        len = (size_t) d->frame.payload_len;

        if (d->frame.masked) {
            ngx_wsp_mask(p, p, len, d->frame.mask, 0);
        }

        if (!control && d->check_utf8) {
            d->utf8 = ngx_wsp_utf8_validate(d->utf8, p, len);
        }
    }

    /* buffered: a whole frame, or a fragment of an aggregated message */

    if (!control && d->check_utf8
        && (d->utf8 == NGX_WSP_UTF8_REJECT
            || (d->frame.fin && d->utf8 != NGX_WSP_UTF8_ACCEPT)))
    {
        ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_INVALID_DATA,
                                    "invalid UTF-8 text",
                                    "invalid UTF-8 in a text message");
        return;
    }

    fin = d->frame.fin;

    if (d->payload_mode == NGX_WSP_PAYLOAD_HOLD) {
        d->hold = d->frame.header_len + len;

    } else if (control) {
        p = d->ctl->cbuf;
        len = d->ctl->clen;
        fin = 1;

    } else if (wp->opts.aggregate) {
        if (!fin) {
            return;
        }

        p = d->msg;
        len = d->msg_len;
        opcode = d->msg_opcode;

    } else {
        p = d->msg;
        len = d->msg_len;
    }

    if (!wp->opts.hook) {
        /* aggregation without a hook: forward the assembled message */
        ngx_http_ws_proxy_emit(d, 1, opcode, p, len);
        d->msg_len = 0;
        return;
    }

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

    if (d->parked) {
        /* the light thread sleeps on the semaphore: this wakes it */
        d->parked = 0;
        (void) ngx_http_lua_ffi_sema_post(d->sema, 1);
    }
}


/*
 * Queues a rebuilt frame whose unmasked payload is in our own memory
 * (d->msg or d->ctl->cbuf).  Frames towards the upstream are masked in place
 * with a fresh key.
 */

static void
ngx_http_ws_proxy_emit(ngx_http_ws_proxy_dir_t *d, ngx_uint_t fin,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    size_t  hlen;

    hlen = ngx_http_ws_proxy_frame(d->ohdr, data, data, len, fin, opcode,
                                   d->dir == NGX_WSP_DIR_CLIENT);

    d->out_hdr.pos = d->ohdr;
    d->out_hdr.last = d->ohdr + hlen;
    d->out_body.pos = data;
    d->out_body.last = data + len;

    if (opcode == NGX_WSP_OP_CLOSE) {
        d->rx_closed = 1;
        d->tx_closed = 1;
        ngx_http_ws_proxy_closing(d->wp);
    }
}


/*
 * The one frame builder of the module: the header of a frame at hdr, its
 * payload at out (NULL: right after the header; the same memory as
 * payload: in place), masked with a fresh key when it goes to the
 * upstream.  Returns the header's length.
 */

static size_t
ngx_http_ws_proxy_frame(u_char *hdr, u_char *out, const u_char *payload,
    size_t len, ngx_uint_t fin, ngx_uint_t opcode, ngx_uint_t masked)
{
    size_t  n;
    u_char  mask[4];

    if (masked) {
        ngx_http_ws_proxy_random(mask, 4);
    }

    n = ngx_wsp_frame_write_header(hdr, (int) fin, (int) opcode, len,
                                   masked ? mask : NULL);

    if (out == NULL) {
        out = hdr + n;
    }

    if (masked) {
        ngx_wsp_mask(out, payload, len, mask, 0);

    } else if (out != payload) {
        ngx_memmove(out, payload, len);
    }

    return n;
}


/* a close payload: the status, then the reason (cut to what fits) */

static size_t
ngx_http_ws_proxy_close_payload(u_char *dst, ngx_uint_t code,
    const u_char *reason, size_t len)
{
    len = ngx_min(len, NGX_WSP_MAX_CONTROL - 2);

    ngx_memmove(dst + 2, reason, len);
    dst[0] = (u_char) (code >> 8);
    dst[1] = (u_char) (code & 0xff);

    return len + 2;
}


/* the first close frame on the wire starts the close handshake timer */

static void
ngx_http_ws_proxy_closing(ngx_http_ws_proxy_t *wp)
{
    wp->closing = 1;

    if (!wp->close_timer.timer_set) {
        ngx_add_timer(&wp->close_timer, wp->opts.close_timeout);
    }
}


/*
 * Lua's verdict on the frame d holds: forward it, forward a rewritten
 * payload (data, len), or drop it; code rewrites a close status (-1: keep).
 * NGX_DECLINED: the rewrite is invalid (a control payload over 125 bytes).
 */

ngx_int_t
ngx_http_ws_proxy_apply_verdict(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t verdict, u_char *data, size_t len, ngx_int_t code)
{
    u_char               *p;
    ngx_uint_t            opcode;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;
    opcode = (ngx_uint_t) d->slot.opcode;

    if (verdict == NGX_WSP_VERDICT_FORWARD && d->hold && !d->aborted) {
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
        d->slot.ready = 0;

        ngx_http_ws_proxy_resume(d);

        return NGX_OK;
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        /* close frames cannot be dropped: the close handshake needs them */

        if (verdict == NGX_WSP_VERDICT_DROP) {
            ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                          "on_frame returned nil for a close frame from %s: "
                          "close frames cannot be dropped, forwarding it",
                          ngx_wsp_role[d->dir]);
            verdict = NGX_WSP_VERDICT_FORWARD;
            code = -1;
        }

        if (verdict == NGX_WSP_VERDICT_FORWARD) {
            /* the payload Lua saw is the reason, after the status */
            data = d->ctl->cbuf + (d->ctl->clen >= 2 ? 2 : 0);
            len = d->ctl->clen >= 2 ? d->ctl->clen - 2 : 0;
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

        if (len > NGX_WSP_MAX_CONTROL - 2) {
            len = NGX_WSP_MAX_CONTROL - 2;
        }

        ngx_http_ws_proxy_log_close(d, code < 0 ? NGX_WSP_CLOSE_NO_STATUS
                                                : (ngx_uint_t) code,
                                    data, len);

        p = d->ctl->cbuf;

        if (code >= 0) {
            len = ngx_http_ws_proxy_close_payload(p, (ngx_uint_t) code, data,
                                                  len);

        } else {
            len = 0;
        }

        d->slot.ready = 0;
        ngx_http_ws_proxy_emit(d, 1, opcode, p, len);
        ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_DIR(d->dir), 0);

        return NGX_OK;
    }

    if (d->hold) {
        /* dropped, rewritten or for a peer gone: it leaves unsent */
        d->ppos += d->hold;
        d->spos = d->ppos;
        d->hold = 0;
    }

    switch (verdict) {

    case NGX_WSP_VERDICT_DROP:
        break;

    case NGX_WSP_VERDICT_REWRITE:

        if (opcode & 0x8) {
            if (len > NGX_WSP_MAX_CONTROL) {
                return NGX_DECLINED;
            }

            if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
                return NGX_ERROR;
            }

            p = d->ctl->cbuf;

        } else {
            d->msg_len = 0;

            if (ngx_http_ws_proxy_reserve(d, len) != NGX_OK) {
                return NGX_ERROR;
            }

            p = d->msg;
        }

        ngx_memcpy(p, data, len);
        ngx_http_ws_proxy_emit(d, d->slot.fin, opcode, p, len);
        break;

    default: /* NGX_WSP_VERDICT_FORWARD, of a frame not held */

        if (!d->aborted) {
            ngx_http_ws_proxy_emit(d, d->slot.fin, opcode,
                                   (u_char *) d->slot.data, d->slot.len);
        }

        break;
    }

    if (!(opcode & 0x8)) {
        d->msg_len = 0;
    }

    d->slot.ready = 0;

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

    wp = d->wp;
    wev = d->dst->write;

    /* a peer gone or failed, or a direction aborted, sets wp->closing */

    if (d->ppos == d->last && !wp->closing && !wp->kick && !d->inject
        && !d->ctl_close && !d->src->read->ready)
    {
        rc = ngx_http_ws_proxy_flush(d);

        if (wp->state != NGX_WSP_STATE_RUNNING) {
            return;
        }

        if (rc != NGX_ERROR && !wp->kick && !wp->closing
            && !ngx_http_ws_proxy_has_output(d))
        {
            /* all input sent: the direction is idle */

            ngx_http_ws_proxy_release(d);

            if (d->msg && d->msg_len == 0 && !d->in_frame) {
                ngx_http_ws_proxy_free_msg(d);
            }

            if (wev->timer_set) {
                ngx_del_timer(wev);
            }

            return;
        }
    }

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_DIR(d->dir), 0);
}


/*
 * A protocol violation or a limit on direction d: the peer that sent the
 * frame gets `code` (1002, 1007, 1009) and the other one 1001, as Kong's
 * library does.  Frames accepted before it are still delivered; nothing
 * after it is read from the offender.
 */

/*
 * Invalid UTF-8 in the text message d is parsing.  A frame of which nothing
 * was sent yet is taken back from the raw range: the other peer gets 1001
 * after the frames before it.  One that is partly sent cannot be followed
 * by a close: the other peer's connection is dropped.  Either way, the
 * invalid bytes are never sent.
 */

static void
ngx_http_ws_proxy_invalid_utf8(ngx_http_ws_proxy_dir_t *d)
{
    size_t      seen;
    ngx_uint_t  sent;

    sent = 0;

    if (d->payload_mode == NGX_WSP_PAYLOAD_RAW) {
        seen = d->frame.header_len + (size_t) d->offset;

        if ((size_t) (d->ppos - d->spos) >= seen) {
            d->ppos -= seen;

        } else {
            sent = 1;
        }
    }

    d->stream_mid = 0;

    ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_INVALID_DATA,
                                "invalid UTF-8 text",
                                "invalid UTF-8 in a text message");

    if (sent) {
        ngx_http_ws_proxy_dst_gone(d);
        ngx_http_ws_proxy_close_at_boundary(&d->wp->dir[1 - d->dir]);
    }
}


static void
ngx_http_ws_proxy_violation(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const char *reason, const char *log_reason)
{
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *other;

    wp = d->wp;
    other = &wp->dir[1 - d->dir];

    if (log_reason) {
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: %s protocol error: %s, closing with %ui",
                      ngx_wsp_role[d->dir], log_reason, code);
        ngx_http_ws_proxy_set_error(wp, "%s protocol error: %s",
                                    ngx_wsp_role[d->dir], log_reason);
        wp->closed_normally = 0;
    }

    d->rx_closed = 1;
    d->in_frame = 0;

    /*
     * Towards the offender, after what the other peer sends until its
     * close reply (to the 1001 below) or close_timeout: what it had sent
     * towards the offender is delivered first.
     */

    ngx_http_ws_proxy_close_later(other, code, reason);

    if (other->ctl_close && !other->rx_closed && !other->hup) {
        other->ctl_wait = 1;

    } else {
        ngx_http_ws_proxy_close_at_boundary(other);
    }

    /* towards the other peer, after the frames accepted before */

    ngx_http_ws_proxy_queue_close(d, NGX_WSP_CLOSE_GOING_AWAY,
                                  (u_char *) "", 0);
}


/*
 * A limit closes the sender with 1009 as a violation does, but its frames
 * are well formed: from the one over the limit on they are skipped, and
 * its close reply is still found and kept (see skip_start()).
 */

static void
ngx_http_ws_proxy_limit(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_TOO_BIG,
                                "Payload Too Large", NULL);
    d->rx_closed = 0;
}


/* a close from the proxy, sent when d reaches a frame boundary */

static void
ngx_http_ws_proxy_close_later(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const char *reason)
{
    if (d->ctl_wait) {
        /* a close that waited for the peer's reply is due now */
        ngx_http_ws_proxy_close_at_boundary(d);
        return;
    }

    if (d->tx_closed || d->aborted || d->ctl_close) {
        return;
    }

    if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
        /* no memory for a close frame: that peer is dropped instead */
        ngx_http_ws_proxy_dst_gone(d);
        return;
    }

    d->ctl_close = 1;
    d->wp->kick |= NGX_WSP_RUN_DIR(d->dir);
    d->ctl_code = (uint16_t) code;
    d->ctl->reason_len = ngx_min(ngx_strlen(reason), NGX_WSP_MAX_CONTROL - 2);
    ngx_memcpy(d->ctl->reason, reason, d->ctl->reason_len);
}


/*
 * The close d has due goes out at the next frame boundary: a frame being
 * buffered or held for Lua is not forwarded.
 */

static void
ngx_http_ws_proxy_close_at_boundary(ngx_http_ws_proxy_dir_t *d)
{
    if (!d->ctl_close) {
        return;
    }

    d->ctl_wait = 0;
    d->wp->kick |= NGX_WSP_RUN_DIR(d->dir);

    if (d->in_frame && !d->stream_mid) {
        /* a frame being buffered has not been forwarded: drop it */
        d->in_frame = 0;
        d->payload_mode = NGX_WSP_PAYLOAD_SKIP;
    }

    /* a frame held by Lua is dropped too */
    ngx_http_ws_proxy_drop_pending(d);
}


/* the frame Lua holds will not be forwarded: a held one is skipped */

static void
ngx_http_ws_proxy_drop_pending(ngx_http_ws_proxy_dir_t *d)
{
    if (!d->slot.ready) {
        return;
    }

    d->slot.ready = 0;
    d->ppos += d->hold;
    d->spos = d->ppos;
    d->hold = 0;
}


static void
ngx_http_ws_proxy_queue_close(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    const u_char *reason, size_t len)
{
    u_char                *p;
    ngx_http_ws_proxy_t   *wp;
    u_char                 payload[NGX_WSP_MAX_CONTROL];

    wp = d->wp;

    d->ctl_close = 0;

    if (d->tx_closed || d->aborted) {
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

    d->tx_closed = 1;

    if (wp->closed_by == NGX_WSP_BY_NONE) {
        wp->closed_by = NGX_WSP_BY_PROXY;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wp->log, 0,
                   "ws_proxy: sending close %ui to %s",
                   code, ngx_wsp_role[1 - d->dir]);

    ngx_http_ws_proxy_closing(wp);
}


/*
 * The source of d closed its connection (or failed).  At a frame boundary
 * the other peer gets a close: the reply to a close it sent, or 1001 when
 * the source just went away.  In the middle of a forwarded frame no close
 * can follow, so the other connection is dropped (1006 semantics).
 */

static void
ngx_http_ws_proxy_src_gone(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *other;

    wp = d->wp;
    other = &wp->dir[1 - d->dir];

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: %s closed the connection%s",
                  ngx_wsp_role[d->dir],
                  d->rx_closed ? "" : " without a close frame");

    if (d->rx_closed) {
        /*
         * A FIN after its close frame (or after its violation) is a
         * half-close: the peer may still read the close reply, which the
         * other direction delivers until close_timeout.
         */
        return;
    }

    /* whatever the other direction sends can no longer be delivered */

    if (!other->aborted) {
        ngx_http_ws_proxy_dst_gone(other);
    }

    if (d->in_frame && d->stream_mid) {
        ngx_http_ws_proxy_set_error(wp, "%s closed the connection in the "
                                    "middle of a frame",
                                    ngx_wsp_role[d->dir]);
        wp->closed_normally = 0;
        ngx_http_ws_proxy_dst_gone(d);
        return;
    }

    d->in_frame = 0;
    d->rx_closed = 1;
    ngx_http_ws_proxy_drop_pending(d);

    if (d->ctl_close) {
        /* the close that waited for this peer's reply goes now */
        ngx_http_ws_proxy_close_at_boundary(d);

    } else if (other->tx_closed) {
        /* we were waiting for its close reply: answer in its name */
        ngx_http_ws_proxy_queue_close(d, other->close_code >= 1000
                                         && other->close_code != 1005
                                         ? (ngx_uint_t) other->close_code
                                         : NGX_WSP_CLOSE_NORMAL,
                                      (u_char *) "", 0);

    } else {
        ngx_http_ws_proxy_queue_close(d, NGX_WSP_CLOSE_GOING_AWAY,
                                      (u_char *) "", 0);
    }
}


/* the destination of d failed: nothing more can be delivered to it */

static void
ngx_http_ws_proxy_dst_gone(ngx_http_ws_proxy_dir_t *d)
{
    d->wp->closing = 1;
    d->wp->kick |= NGX_WSP_RUN_DIR(d->dir);
    d->aborted = 1;
    d->ctl_close = 0;
    d->dst->error = 1;
    d->spos = d->ppos;
    d->out_hdr.pos = d->out_hdr.last;
    d->out_body.pos = d->out_body.last;
    d->out_ctl.pos = d->out_ctl.last;
}


static ngx_int_t
ngx_http_ws_proxy_done(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        /* output towards dst: all sent, or impossible */
        if (!d->aborted
            && (!d->tx_closed || ngx_http_ws_proxy_has_output(d)))
        {
            return NGX_AGAIN;
        }

        /*
         * input from src: its close came, it is gone, or nothing can be
         * sent to it any more, so its close will never be asked for
         */
        if (!d->rx_closed && !d->eof && !wp->dir[1 - i].aborted) {
            return NGX_AGAIN;
        }
    }

    return NGX_OK;
}


static void
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
            goto failed;
        }

        wev = d->dst->write;

        if (ngx_handle_write_event(wev, 0) != NGX_OK) {
            goto failed;
        }

        if (!wev->ready && !d->aborted && ngx_http_ws_proxy_has_output(d)) {
            if (!wev->timer_set) {
                ngx_add_timer(wev, wp->opts.send_timeout);
            }

        } else if (wev->timer_set) {
            ngx_del_timer(wev);
        }
    }

    return;

failed:

    ngx_http_ws_proxy_set_error(wp, "failed to arm events");
    wp->closed_normally = 0;
    ngx_http_ws_proxy_finish(wp);
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

    for (i = 0; i < 2; i++) {
        ngx_http_ws_proxy_close_later(&wp->dir[i], code, reason);
        ngx_http_ws_proxy_close_at_boundary(&wp->dir[i]);
    }

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
}


static void
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

    c = wp->client;

    if (wp->close_timer.timer_set) {
        ngx_del_timer(&wp->close_timer);
    }

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        if (d->recv_timer.timer_set) {
            ngx_del_timer(&d->recv_timer);
        }

        if (d->src && d->src->read->posted) {
            ngx_delete_posted_event(d->src->read);
        }

        d->slot.ready = 0;
        d->hold = 0;
        d->spos = d->ppos = d->last = NULL;
        ngx_http_ws_proxy_release(d);
        ngx_http_ws_proxy_free_injected(d);

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

    if (wp->dir[NGX_WSP_DIR_UPSTREAM].aborted
        && !wp->dir[NGX_WSP_DIR_UPSTREAM].tx_closed)
    {
        /* the client cannot get a clean close: drop it without lingering */
        c->error = 1;
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


static void
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


ngx_int_t
ngx_http_ws_proxy_inject(ngx_http_ws_proxy_t *wp, ngx_uint_t dir,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    u_char                      *p;
    ngx_http_ws_proxy_dir_t     *d;
    ngx_http_ws_proxy_inject_t  *in, **last;

    d = &wp->dir[dir];

    if (wp->state != NGX_WSP_STATE_RUNNING || d->tx_closed || d->aborted) {
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

    if (opcode == NGX_WSP_OP_CLOSE) {
        d->tx_closed = 1;
        wp->closing = 1;
    }

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_DIR(dir), 0);

    return NGX_OK;
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

    client_len = ngx_min(client_len, NGX_WSP_MAX_CONTROL - 3);
    ngx_memcpy(buf, client_reason, client_len);
    buf[client_len] = '\0';
    ngx_http_ws_proxy_close_later(&wp->dir[NGX_WSP_DIR_UPSTREAM],
                                  client_code, (char *) buf);
    ngx_http_ws_proxy_close_at_boundary(&wp->dir[NGX_WSP_DIR_UPSTREAM]);

    upstream_len = ngx_min(upstream_len, NGX_WSP_MAX_CONTROL - 3);
    ngx_memcpy(buf, upstream_reason, upstream_len);
    buf[upstream_len] = '\0';
    ngx_http_ws_proxy_close_later(&wp->dir[NGX_WSP_DIR_CLIENT],
                                  upstream_code, (char *) buf);
    ngx_http_ws_proxy_close_at_boundary(&wp->dir[NGX_WSP_DIR_CLIENT]);

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);

    return NGX_OK;
}


/* the direction's control block, allocated when first needed */

ngx_http_ws_proxy_ctl_t *
ngx_http_ws_proxy_get_ctl(ngx_http_ws_proxy_dir_t *d)
{
    if (d->ctl == NULL) {
        d->ctl = ngx_pcalloc(d->wp->pool, sizeof(ngx_http_ws_proxy_ctl_t));
    }

    return d->ctl;
}


static ngx_inline ngx_int_t
ngx_http_ws_proxy_get_buffer(ngx_http_ws_proxy_dir_t *d)
{
    size_t                         size;
    u_char                        *p;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(d->wp->request,
                                        ngx_http_ws_proxy_module);
    size = wlcf->buffer_size;

    if (ngx_wsp_nfree && ngx_wsp_free_size == size) {
        p = ngx_wsp_free[--ngx_wsp_nfree];

    } else {
        p = ngx_alloc(size, d->wp->log);
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
ngx_http_ws_proxy_release(ngx_http_ws_proxy_dir_t *d)
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

static ngx_int_t
ngx_http_ws_proxy_reserve(ngx_http_ws_proxy_dir_t *d, size_t size)
{
    size_t   cap;
    u_char  *p;

    if (d->msg_len + size <= d->msg_cap) {
        return NGX_OK;
    }

    cap = d->msg_cap ? d->msg_cap : 1024;

    while (cap < d->msg_len + size) {
        cap *= 2;
    }

    p = ngx_alloc(cap, d->wp->log);
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


/*
 * The session ends under us (the request is being freed, or nginx closes
 * the client connection): a peer that sits at a frame boundary with nothing
 * unsent gets a 1001 "going away", written once, without waiting.
 */

static void
ngx_http_ws_proxy_goodbye(ngx_http_ws_proxy_t *wp, ngx_uint_t to_client)
{
    ngx_uint_t                i;
    ngx_http_ws_proxy_dir_t  *d;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        if (d->dst == NULL || (d->dst == wp->client && !to_client)
            || d->tx_closed || d->aborted || d->stream_mid
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
        ngx_http_ws_proxy_goodbye(wp, 0);
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

        if (d->msg) {
            ngx_free(d->msg);
            d->msg = NULL;
        }

    }

    if (wp->close_timer.timer_set) {
        ngx_del_timer(&wp->close_timer);
    }

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
