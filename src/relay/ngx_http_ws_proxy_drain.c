/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The drain (ws_proxy_drain_time): when the worker starts exiting (nginx
 * -s reload, -s quit), its sessions are closed with 1012 "service
 * restart" spread evenly over drain_time, so that clients reconnect to
 * the new workers gradually.  See docs/design.md "Drain".
 */


#include "ngx_http_ws_proxy_pump.h"


/* how often a worker with sessions to drain looks whether it exits */
#define NGX_WSP_DRAIN_POLL       100

#define NGX_WSP_CLOSE_RESTART    1012
#define NGX_WSP_RESTART_REASON   "service restart"


static void ngx_http_ws_proxy_drain_watch(ngx_event_t *ev);
static void ngx_http_ws_proxy_drain_begin(void);
static void ngx_http_ws_proxy_drain_one(ngx_http_ws_proxy_t *wp,
    ngx_msec_t ms);


/*
 * nginx calls the handlers of a connection of an exiting worker only at
 * worker_shutdown_timeout: the start of the exit is found by a timer of
 * the worker's that looks at ngx_exiting, as lua-nginx-module's timers
 * do.  It runs only while the worker has a session with a drain_time, and
 * is cancelable: it never holds a worker that exits.
 */

static ngx_event_t  ngx_http_ws_proxy_drain_ev;
static ngx_uint_t   ngx_http_ws_proxy_drain_n;      /* sessions counted */
static ngx_msec_t   ngx_http_ws_proxy_drain_start;
static ngx_uint_t   ngx_http_ws_proxy_drain_begun;


/* a session starts: it is counted, and closed at once if the drain ran */

void
ngx_http_ws_proxy_drain_add(ngx_http_ws_proxy_t *wp)
{
    ngx_event_t     *ev;
    ngx_msec_int_t   left;

    if (wp->opts.drain_time == 0 || wp->drain_counted) {
        return;
    }

    if (ngx_http_ws_proxy_drain_begun) {
        left = (ngx_msec_int_t) (ngx_http_ws_proxy_drain_start
                                 + wp->opts.drain_time - ngx_current_msec);
        ngx_http_ws_proxy_drain_one(wp, (ngx_msec_t) ngx_max(left, 0));
        return;
    }

    wp->drain_counted = 1;
    ngx_http_ws_proxy_drain_n++;

    ev = &ngx_http_ws_proxy_drain_ev;

    if (!ev->timer_set) {
        ev->handler = ngx_http_ws_proxy_drain_watch;
        ev->log = ngx_cycle->log;
        ev->cancelable = 1;
        ngx_add_timer(ev, NGX_WSP_DRAIN_POLL);
    }
}


void
ngx_http_ws_proxy_drain_del(ngx_http_ws_proxy_t *wp)
{
    if (!wp->drain_counted) {
        return;
    }

    wp->drain_counted = 0;

    if (--ngx_http_ws_proxy_drain_n == 0
        && ngx_http_ws_proxy_drain_ev.timer_set)
    {
        ngx_del_timer(&ngx_http_ws_proxy_drain_ev);
    }
}


static void
ngx_http_ws_proxy_drain_watch(ngx_event_t *ev)
{
    if (ngx_http_ws_proxy_drain_n == 0) {
        return;
    }

    if (!ngx_exiting) {
        ngx_add_timer(ev, NGX_WSP_DRAIN_POLL);
        return;
    }

    ngx_http_ws_proxy_drain_begin();
}


/*
 * Session i of the n to drain gets its close at i * drain_time / n from
 * now, through its liveness time as a deadline of its own would: unless
 * its own deadline comes earlier.
 */

static void
ngx_http_ws_proxy_drain_begin(void)
{
    ngx_uint_t            i, n;
    ngx_queue_t          *q, *sessions;
    ngx_http_ws_proxy_t  *wp;

    ngx_http_ws_proxy_drain_begun = 1;
    ngx_http_ws_proxy_drain_start = ngx_current_msec;

    n = ngx_http_ws_proxy_drain_n;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  "ws_proxy: worker is exiting, draining %ui sessions", n);

    sessions = ngx_http_ws_proxy_worker_sessions();
    i = 0;

    for (q = ngx_queue_head(sessions);
         q != ngx_queue_sentinel(sessions) && i < n;
         q = ngx_queue_next(q))
    {
        wp = ngx_queue_data(q, ngx_http_ws_proxy_t, queue);

        if (!wp->drain_counted) {
            continue;
        }

        ngx_http_ws_proxy_drain_one(wp, wp->opts.drain_time * i / n);
        i++;
    }
}


static void
ngx_http_ws_proxy_drain_one(ngx_http_ws_proxy_t *wp, ngx_msec_t ms)
{
    if (wp->deadline_set
        && (ngx_msec_int_t) (wp->deadline - ngx_current_msec)
           <= (ngx_msec_int_t) ms)
    {
        /* its own deadline comes first */
        return;
    }

    if (ngx_http_ws_proxy_set_deadline(wp, ms, NGX_WSP_CLOSE_RESTART,
                                       (u_char *) NGX_WSP_RESTART_REASON,
                                       sizeof(NGX_WSP_RESTART_REASON) - 1)
        == NGX_OK)
    {
        wp->draining = 1;
    }
}
