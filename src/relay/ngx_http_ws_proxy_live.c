/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Liveness in nginx: why a session ended ($ws_proxy_end,
 * stats().ended_by), the session's deadline, and the timers: the idle
 * timeout and the heartbeat are the core's rules
 * (src/session/ngx_wsp_live.c), applied when the session's time comes.
 * See docs/design.md "Liveness".
 */


#include "ngx_http_ws_proxy_pump.h"


/* the default close at a session's deadline: 1008 (policy violation) */
#define NGX_WSP_CLOSE_EXPIRED    1008


static void ngx_http_ws_proxy_live_arm(ngx_http_ws_proxy_t *wp,
    ngx_msec_t ms);
static void ngx_http_ws_proxy_live_disarm(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_live_next(void);
static void ngx_http_ws_proxy_live_expired(ngx_event_t *ev);
static void ngx_http_ws_proxy_live_handler(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_expire(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_ping(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_dead(ngx_http_ws_proxy_dir_t *d);


/*
 * The sessions' liveness times, in a tree of the worker's (ordered as
 * nginx's timers are), under one nginx timer for the earliest of them.
 * A timer per session in nginx's own tree would make it deeper, and every
 * timer set and deleted per frame elsewhere (a hook's semaphore waits, a
 * blocked write's send_timeout) would pay for that.
 */

static ngx_rbtree_t       ngx_http_ws_proxy_live_tree;
static ngx_rbtree_node_t  ngx_http_ws_proxy_live_sentinel;
static ngx_event_t        ngx_http_ws_proxy_live_ev;


/* by NGX_WSP_END_* */
const ngx_str_t  ngx_http_ws_proxy_end_name[] = {
    ngx_null_string,
    ngx_string("client_close"),
    ngx_string("upstream_close"),
    ngx_string("proxy_close"),
    ngx_string("idle"),
    ngx_string("session_timeout"),
    ngx_string("ping_timeout"),
    ngx_string("drain"),
    ngx_string("violation"),
    ngx_string("limit"),
    ngx_string("send_timeout"),
    ngx_string("hook_error"),
    ngx_string("reset"),
};


/*
 * At the teardown, a session whose end no event named: a close handshake
 * the proxy did not start is the peer's that sent the first close frame;
 * otherwise a session that ended badly lost a connection under it.
 */

void
ngx_http_ws_proxy_ended(ngx_http_ws_proxy_t *wp)
{
    if (wp->ended_by != NGX_WSP_END_NONE) {
        return;
    }

    switch (wp->closed_by) {

    case NGX_WSP_BY_CLIENT:
        wp->ended_by = NGX_WSP_END_CLIENT_CLOSE;
        break;

    case NGX_WSP_BY_UPSTREAM:
        wp->ended_by = NGX_WSP_END_UPSTREAM_CLOSE;
        break;

    default:
        wp->ended_by = wp->closed_normally ? NGX_WSP_END_PROXY_CLOSE
                                           : NGX_WSP_END_RESET;
    }
}


/*
 * One time per session, for the idle timeout, both heartbeats and the
 * deadline: a frame only records the time (the core's data_time,
 * ctl_time), and the session's time, when it comes, compares (the core's
 * ngx_wsp_live()) and is set again for what is left, as nginx's
 * proxy_read_timeout is.
 */

void
ngx_http_ws_proxy_live_start(ngx_http_ws_proxy_t *wp)
{
    ngx_msec_int_t  t, left;

    /* ws_proxy_drain_time: ngx_http_ws_proxy_drain.c */
    ngx_http_ws_proxy_drain_add(wp);

    if (wp->opts.session_timeout && !wp->deadline_set) {
        /* a set_deadline() before execute() wins */
        wp->deadline = ngx_current_msec + wp->opts.session_timeout;
        wp->deadline_set = 1;
    }

    t = (ngx_msec_int_t) ngx_wsp_live_start(&wp->core);

    if (wp->deadline_set) {
        left = (ngx_msec_int_t) (wp->deadline - ngx_current_msec);
        left = ngx_max(left, 0);
        t = (t == 0) ? left : ngx_min(t, left);

    } else if (t == 0) {
        return;
    }

    ngx_http_ws_proxy_live_arm(wp, (ngx_msec_t) t);
}


/* wp's time ms from now, in the worker's tree */

static void
ngx_http_ws_proxy_live_arm(ngx_http_ws_proxy_t *wp, ngx_msec_t ms)
{
    ngx_event_t  *ev;

    if (ngx_http_ws_proxy_live_tree.root == NULL) {
        ngx_rbtree_init(&ngx_http_ws_proxy_live_tree,
                        &ngx_http_ws_proxy_live_sentinel,
                        ngx_rbtree_insert_timer_value);

        ev = &ngx_http_ws_proxy_live_ev;
        ev->handler = ngx_http_ws_proxy_live_expired;
        ev->cancelable = 1;
    }

    ngx_http_ws_proxy_live_disarm(wp);

    wp->live_node.key = ngx_current_msec + ms;
    ngx_rbtree_insert(&ngx_http_ws_proxy_live_tree, &wp->live_node);
    wp->live_set = 1;

    ev = &ngx_http_ws_proxy_live_ev;

    if (!ev->timer_set
        || (ngx_msec_int_t) (ev->timer.key - wp->live_node.key) > 0)
    {
        ngx_http_ws_proxy_live_next();
    }
}


static void
ngx_http_ws_proxy_live_disarm(ngx_http_ws_proxy_t *wp)
{
    if (wp->live_set) {
        ngx_rbtree_delete(&ngx_http_ws_proxy_live_tree, &wp->live_node);
        wp->live_set = 0;
    }
}


/*
 * The worker's timer, set for the earliest time in the tree exactly
 * (ngx_add_timer() would keep a time up to 300 ms later), or deleted.
 */

static void
ngx_http_ws_proxy_live_next(void)
{
    ngx_event_t        *ev;
    ngx_msec_int_t      left;
    ngx_rbtree_node_t  *node;

    ev = &ngx_http_ws_proxy_live_ev;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ngx_http_ws_proxy_live_tree.root == &ngx_http_ws_proxy_live_sentinel) {
        return;
    }

    node = ngx_rbtree_min(ngx_http_ws_proxy_live_tree.root,
                          &ngx_http_ws_proxy_live_sentinel);

    left = (ngx_msec_int_t) (node->key - ngx_current_msec);

    ev->log = ngx_cycle->log;
    ngx_add_timer(ev, (ngx_msec_t) ngx_max(left, 0));
}


/* the worker's timer: every session whose time came */

static void
ngx_http_ws_proxy_live_expired(ngx_event_t *ev)
{
    ngx_rbtree_node_t    *node;
    ngx_http_ws_proxy_t  *wp;

    for ( ;; ) {
        if (ngx_http_ws_proxy_live_tree.root
            == &ngx_http_ws_proxy_live_sentinel)
        {
            return;
        }

        node = ngx_rbtree_min(ngx_http_ws_proxy_live_tree.root,
                              &ngx_http_ws_proxy_live_sentinel);

        if ((ngx_msec_int_t) (node->key - ngx_current_msec) > 0) {
            break;
        }

        wp = (ngx_http_ws_proxy_t *) ((u_char *) node
                                 - offsetof(ngx_http_ws_proxy_t, live_node));

        ngx_http_ws_proxy_live_disarm(wp);

        /* it may set its time again, or end the session */
        ngx_http_ws_proxy_live_handler(wp);
    }

    ngx_http_ws_proxy_live_next();
}


/*
 * proxy:set_deadline(): both peers get the close (by default 1008
 * "session expired") ms from now; a later call moves the deadline.
 * Before execute() it replaces session_timeout.
 */

ngx_int_t
ngx_http_ws_proxy_set_deadline(ngx_http_ws_proxy_t *wp, ngx_msec_t ms,
    ngx_uint_t code, u_char *reason, size_t len)
{
    if (wp->state == NGX_WSP_STATE_DONE) {
        return NGX_DECLINED;
    }

    len = ngx_min(len, NGX_WSP_MAX_CONTROL - 2);

    if (wp->deadline_reason == NULL) {
        wp->deadline_reason = ngx_pnalloc(wp->pool, NGX_WSP_MAX_CONTROL);
        if (wp->deadline_reason == NULL) {
            return NGX_ERROR;
        }
    }

    /* a deadline set later replaces the drain's */
    wp->draining = 0;

    ngx_memcpy(wp->deadline_reason, reason, len);
    wp->deadline_len = (uint16_t) len;
    wp->deadline_code = (uint16_t) code;
    wp->deadline = ngx_current_msec + ms;
    wp->deadline_set = 1;

    if (wp->state != NGX_WSP_STATE_RUNNING) {
        return NGX_OK;
    }

    /* the session's time is the earlier of its time and the deadline */

    if (!wp->live_set
        || (ngx_msec_int_t) (wp->live_node.key - wp->deadline) > 0)
    {
        ngx_http_ws_proxy_live_arm(wp, ms);
    }

    return NGX_OK;
}


void
ngx_http_ws_proxy_live_stop(ngx_http_ws_proxy_t *wp)
{
    ngx_http_ws_proxy_drain_del(wp);

    /* the worker's timer stays: it is cancelable, and finds what is left */
    ngx_http_ws_proxy_live_disarm(wp);
}


static void
ngx_http_ws_proxy_live_handler(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t      i, act;
    ngx_msec_int_t  left, next;

    /* a close under way has its own timer (close_timeout) */

    if (wp->state != NGX_WSP_STATE_RUNNING || !ngx_wsp_steady(wp)) {
        return;
    }

    next = NGX_MAX_INT32_VALUE;

    if (wp->deadline_set) {
        left = (ngx_msec_int_t) (wp->deadline - ngx_current_msec);

        if (left <= 0) {
            ngx_http_ws_proxy_expire(wp);
            return;
        }

        next = left;
    }

    act = ngx_wsp_live(&wp->core, &left);

    if (act & NGX_WSP_LIVE_IDLE) {
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: no data frame for %M ms, closing",
                      wp->opts.idle_timeout);
        ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
        return;
    }

    for (i = 0; i < 2; i++) {
        if (act & NGX_WSP_LIVE_DEAD(i)) {
            ngx_http_ws_proxy_dead(&wp->dir[i]);
            ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
            return;
        }
    }

    for (i = 0; i < 2; i++) {
        if (act & NGX_WSP_LIVE_PING(i)) {
            ngx_http_ws_proxy_ping(&wp->dir[i]);

            if (wp->state != NGX_WSP_STATE_RUNNING) {
                return;
            }
        }
    }

    next = ngx_min(next, left);

    ngx_http_ws_proxy_live_arm(wp, (ngx_msec_t) next);
}


/* the session's deadline: both peers get the close */

static void
ngx_http_ws_proxy_expire(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t  i, code;
    u_char      reason[NGX_WSP_MAX_CONTROL];

    if (wp->deadline_reason) {
        code = wp->deadline_code;
        *ngx_cpymem(reason, wp->deadline_reason, wp->deadline_len) = '\0';

    } else {
        code = NGX_WSP_CLOSE_EXPIRED;
        ngx_cpystrn(reason, (u_char *) "session expired", sizeof(reason));
    }

    if (wp->draining) {
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: worker is exiting, draining the session");
        ngx_wsp_end(wp, NGX_WSP_END_DRAIN);

    } else {
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: session deadline reached, closing with %ui",
                      code);
        ngx_wsp_end(wp, NGX_WSP_END_SESSION_TIMEOUT);
    }

    for (i = 0; i < 2; i++) {
        ngx_http_ws_proxy_close_due(&wp->dir[i], code, (char *) reason,
                                    wp->draining ? NGX_WSP_TX_MSG
                                                 : NGX_WSP_TX_DUE);
    }

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
}


/* a ping of the module's own to d's src, through the other direction */

static void
ngx_http_ws_proxy_ping(ngx_http_ws_proxy_dir_t *d)
{
    size_t  n;
    u_char  buf[NGX_WSP_PING_MAX];

    n = ngx_wsp_ping_payload(&d->core, buf);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_wsp_dir_wp(d)->log, 0,
                   "ws_proxy: ping to %s", ngx_wsp_src_role(d));

    /* no memory: the ping goes at the next period, the timeout runs */
    (void) ngx_http_ws_proxy_inject(ngx_wsp_dir_wp(d), 1 - d->dir,
                                    NGX_WSP_OP_PING, buf, n);
}


/*
 * d's src did not answer a ping: the core dropped it (its connection
 * closes without a close handshake, the other peer gets 1001 naming it)
 */

static void
ngx_http_ws_proxy_dead(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: %s did not answer a ping within %M ms",
                  ngx_wsp_src_role(d), wp->opts.ping_timeout);
    ngx_http_ws_proxy_set_error(wp, "%s did not answer a ping within %M ms",
                                ngx_wsp_src_role(d), wp->opts.ping_timeout);
    wp->closed_normally = 0;
}
