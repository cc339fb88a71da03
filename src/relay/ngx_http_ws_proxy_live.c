/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Liveness: why a session ended ($ws_proxy_end, stats().ended_by), the
 * idle timeout and the heartbeat.  See docs/design.md "Liveness".
 */


#include "ngx_http_ws_proxy_pump.h"


/* the payload of the module's pings: this prefix and a counter */
#define NGX_WSP_PING_PREFIX      "ngx_ws_proxy ping "
#define NGX_WSP_PING_PREFIX_LEN  (sizeof(NGX_WSP_PING_PREFIX) - 1)
#define NGX_WSP_PING_MAX         (NGX_WSP_PING_PREFIX_LEN + NGX_INT32_LEN)

/* the default close at a session's deadline: 1008 (policy violation) */
#define NGX_WSP_CLOSE_EXPIRED    1008

/* the later of two times, whatever their wrap */
#define ngx_wsp_later(a, b)      ((ngx_msec_int_t) ((a) - (b)) > 0 ? (a) : (b))


static void ngx_http_ws_proxy_live_arm(ngx_http_ws_proxy_t *wp,
    ngx_msec_t ms);
static void ngx_http_ws_proxy_live_disarm(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_live_next(void);
static void ngx_http_ws_proxy_live_expired(ngx_event_t *ev);
static void ngx_http_ws_proxy_live_handler(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_expire(ngx_http_ws_proxy_t *wp);
static ngx_msec_int_t ngx_http_ws_proxy_idle_left(ngx_http_ws_proxy_t *wp);
static ngx_msec_int_t ngx_http_ws_proxy_ping_left(ngx_http_ws_proxy_dir_t *d);
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
 * deadline: a frame only records the time (d->data_time, d->ctl_time),
 * and the session's time, when it comes, compares and is set again for
 * what is left, as nginx's proxy_read_timeout is.
 */

void
ngx_http_ws_proxy_live_start(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t      i;
    ngx_msec_int_t  t, left;

    /* ws_proxy_drain_time: ngx_http_ws_proxy_drain.c */
    ngx_http_ws_proxy_drain_add(wp);

    for (i = 0; i < 2; i++) {
        wp->dir[i].data_time = ngx_current_msec;
        wp->dir[i].ctl_time = ngx_current_msec;
    }

    if (wp->opts.session_timeout && !wp->deadline_set) {
        /* a set_deadline() before execute() wins */
        wp->deadline = ngx_current_msec + wp->opts.session_timeout;
        wp->deadline_set = 1;
    }

    t = wp->opts.idle_timeout;

    if (wp->opts.ping_interval
        && (t == 0 || (ngx_msec_int_t) wp->opts.ping_interval < t))
    {
        t = wp->opts.ping_interval;
    }

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
    ngx_uint_t      i;
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

    if (wp->opts.idle_timeout) {
        left = ngx_http_ws_proxy_idle_left(wp);

        if (left <= 0) {
            ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                          "ws_proxy: no data frame for %M ms, closing",
                          wp->opts.idle_timeout);

            ngx_wsp_end(wp, NGX_WSP_END_IDLE);

            for (i = 0; i < 2; i++) {
                ngx_http_ws_proxy_close_due(&wp->dir[i],
                                            NGX_WSP_CLOSE_GOING_AWAY,
                                            "idle timeout", NGX_WSP_TX_DUE);
            }

            ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
            return;
        }

        next = ngx_min(next, left);
    }

    for (i = 0; wp->opts.ping_interval && i < 2; i++) {
        left = ngx_http_ws_proxy_ping_left(&wp->dir[i]);

        if (left < 0) {
            ngx_http_ws_proxy_dead(&wp->dir[i]);
            ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_BOTH, 0);
            return;
        }

        if (left == 0) {
            ngx_http_ws_proxy_ping(&wp->dir[i]);

            if (wp->state != NGX_WSP_STATE_RUNNING) {
                return;
            }

            left = wp->opts.ping_timeout ? wp->opts.ping_timeout
                                         : wp->opts.ping_interval;
        }

        next = ngx_min(next, left);
    }

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


/* what is left of the idle timeout: no data frame either way */

static ngx_msec_int_t
ngx_http_ws_proxy_idle_left(ngx_http_ws_proxy_t *wp)
{
    ngx_msec_t  last;

    if (ngx_wsp_held(&wp->dir[0]) || ngx_wsp_held(&wp->dir[1])) {
        /* a message held back by a rate is data that came */
        return wp->opts.idle_timeout;
    }

    last = ngx_wsp_later(wp->dir[0].data_time, wp->dir[1].data_time);

    return (ngx_msec_int_t) (last + wp->opts.idle_timeout - ngx_current_msec);
}


/*
 * The heartbeat of d's src: the time left until it is pinged, 0: ping it
 * now, < 0: it did not answer.  Any frame answers, and so do the bytes of
 * a frame that is still coming.
 */

static ngx_msec_int_t
ngx_http_ws_proxy_ping_left(ngx_http_ws_proxy_dir_t *d)
{
    ngx_msec_t            heard;
    ngx_msec_int_t        left;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);
    heard = ngx_wsp_later(d->data_time, d->ctl_time);

    if ((d->in != NGX_WSP_IN_HEADER && d->bytes != d->live_bytes)
        || ngx_wsp_held(d))
    {
        /*
         * A frame still coming answers; so does a message held back by a
         * rate: its sender is not read, its pong may wait behind it
         */
        heard = ngx_current_msec;
    }

    d->live_bytes = d->bytes;

    if (d->pinged) {
        if ((ngx_msec_int_t) (heard - d->ping_time) >= 0) {
            d->pinged = 0;

        } else if (wp->opts.ping_timeout) {
            left = (ngx_msec_int_t) (d->ping_time + wp->opts.ping_timeout
                                     - ngx_current_msec);
            return left > 0 ? left : -1;
        }

        /* without ping_timeout, a ping is sent every ping_interval */
        heard = ngx_wsp_later(heard, d->ping_time);
    }

    left = (ngx_msec_int_t) (heard + wp->opts.ping_interval
                             - ngx_current_msec);

    return left > 0 ? left : 0;
}


/* a ping of the module's own to d's src, through the other direction */

static void
ngx_http_ws_proxy_ping(ngx_http_ws_proxy_dir_t *d)
{
    u_char  *p;
    u_char   buf[NGX_WSP_PING_MAX];

    d->pings++;
    d->pinged = 1;
    d->ping_time = ngx_current_msec;

    p = ngx_sprintf(buf, NGX_WSP_PING_PREFIX "%uD", d->pings);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_wsp_dir_wp(d)->log, 0,
                   "ws_proxy: ping to %s", ngx_wsp_src_role(d));

    /* no memory: the ping goes at the next period, the timeout runs */
    (void) ngx_http_ws_proxy_inject(ngx_wsp_dir_wp(d), 1 - d->dir,
                                    NGX_WSP_OP_PING, buf, p - buf);
}


/*
 * d's src did not answer a ping: its connection is dropped without a
 * close handshake, the other peer gets 1001 naming it.
 */

static void
ngx_http_ws_proxy_dead(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_t  *wp;
    u_char                reason[NGX_WSP_MAX_CONTROL];

    wp = ngx_wsp_dir_wp(d);

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: %s did not answer a ping within %M ms",
                  ngx_wsp_src_role(d), wp->opts.ping_timeout);
    ngx_http_ws_proxy_set_error(wp, "%s did not answer a ping within %M ms",
                                ngx_wsp_src_role(d), wp->opts.ping_timeout);
    wp->closed_normally = 0;
    ngx_wsp_end(wp, NGX_WSP_END_PING_TIMEOUT);

    *ngx_sprintf(reason, "%s did not answer a ping", ngx_wsp_src_role(d))
        = '\0';

    /* nothing more goes to it or is read from it; the other peer: 1001 */
    ngx_wsp_src_dead(&d->core, (char *) reason);
}


/*
 * A control frame from d's src: its time, and a pong that answers one of
 * the module's pings is not forwarded (NGX_DONE: skip it).  NGX_DECLINED:
 * more bytes are needed, NGX_AGAIN: output before it must drain first.
 */

int
ngx_http_ws_proxy_live_control(ngx_wsp_sdir_t *sd)
{
    size_t                    len;
    u_char                   *p;
    ngx_http_ws_proxy_dir_t  *d;
    u_char                    buf[NGX_WSP_PING_MAX];

    d = (ngx_http_ws_proxy_dir_t *) sd;
    d->ctl_time = ngx_current_msec;

    len = (size_t) d->frame.payload_len;

    if (d->frame.opcode != NGX_WSP_OP_PONG || d->pings == 0
        || len <= NGX_WSP_PING_PREFIX_LEN || len > NGX_WSP_PING_MAX)
    {
        return NGX_OK;
    }

    if (ngx_wsp_whole_frame(sd) != NGX_WSP_OK) {
        return NGX_DECLINED;
    }

    p = d->ppos + d->frame.header_len;

    if (d->frame.masked) {
        ngx_wsp_mask(buf, p, len, d->frame.mask, 0);
        p = buf;
    }

    if (ngx_strncmp(p, NGX_WSP_PING_PREFIX, NGX_WSP_PING_PREFIX_LEN) != 0) {
        return NGX_OK;
    }

    if (d->spos < d->ppos) {
        /* raw bytes before it go out first: it is skipped only then */
        return NGX_AGAIN;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_wsp_dir_wp(d)->log, 0,
                   "ws_proxy: pong from %s", ngx_wsp_src_role(d));

    return NGX_DONE;
}
