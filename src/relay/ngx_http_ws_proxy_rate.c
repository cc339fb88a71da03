/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Message rates in a running session (ws_proxy_limit_messages, the
 * limit_messages option, set_rate()): the session core's input gate.  A
 * limited sender's direction has d->gate set; the core asks here at the
 * first frame of each of its data messages (never for a continuation, a
 * control frame or the module's own pings), and the sender's bucket
 * (ngx_http_ws_proxy_limit.c) answers: the message goes, or (action=delay)
 * it waits at that frame boundary while nothing more is read from its
 * sender, so that TCP pushes back, until a timer lets it go, or
 * (action=close) the sender gets 1008.  The other direction is not
 * touched.  Nothing of this runs in a session without a limit.  See
 * docs/api.md, "Message rates", and docs/design.md.
 */


#include "ngx_http_ws_proxy_pump.h"


static ngx_int_t ngx_http_ws_proxy_rate_alloc(ngx_http_ws_proxy_t *wp);
static int ngx_http_ws_proxy_rate_count(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_bucket_t *b);
static int ngx_http_ws_proxy_rate_slow(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_bucket_t *b);
static ngx_msec_int_t ngx_http_ws_proxy_rate_take(
    ngx_http_ws_proxy_bucket_t *b);
static void ngx_http_ws_proxy_rate_resume(ngx_event_t *ev);


/*
 * The pump starts: the location's limits (ws_proxy_limit_messages) for
 * the senders that Lua did not set (limit_messages, set_rate() before
 * execute()), and the core's gates.
 */

ngx_int_t
ngx_http_ws_proxy_rate_start(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                     i, dir;
    ngx_http_ws_proxy_mlimit_t    *ml;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_wsp_module);

    if (wlcf->limit.messages && wp->rate == NULL) {
        ml = wlcf->limit.messages->elts;

        for (i = 0; i < wlcf->limit.messages->nelts; i++) {
            if (ngx_http_ws_proxy_rate_set(wp, &ml[i], NULL, NULL)
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    if (wp->rate == NULL) {
        return NGX_OK;
    }

    for (dir = 0; dir < 2; dir++) {
        wp->dir[dir].gate = wp->rate->b[dir].rate ? NGX_WSP_GATE_ON : 0;
    }

    return NGX_OK;
}


/*
 * A limit for the senders ml->dirs names: from the location, or from Lua
 * (zone and key by name; ml->rate 0: no limit any more).  In a running
 * session it applies from the next message on; a message held now goes
 * at once when its sender is no longer limited.
 */

ngx_int_t
ngx_http_ws_proxy_rate_set(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_mlimit_t *ml, ngx_str_t *zone, ngx_str_t *key)
{
    ngx_uint_t                   dir;
    ngx_http_ws_proxy_bucket_t  *b;

    if (wp->rate == NULL && ngx_http_ws_proxy_rate_alloc(wp) != NGX_OK) {
        return NGX_ERROR;
    }

    for (dir = 0; dir < 2; dir++) {
        if (!(ml->dirs & NGX_WSP_RUN_DIR(dir))) {
            continue;
        }

        b = &wp->rate->b[dir];

        if (ngx_http_ws_proxy_limit_bucket(wp, b, ml, zone, key) != NGX_OK) {
            return NGX_ERROR;
        }

        if (wp->state != NGX_WSP_STATE_RUNNING) {
            continue;
        }

        wp->dir[dir].gate = ngx_wsp_held(&wp->dir[dir])
                            | (b->rate ? NGX_WSP_GATE_ON : 0);

        if (b->rate == 0 && b->timer.timer_set) {
            ngx_del_timer(&b->timer);
            ngx_http_ws_proxy_rate_resume(&b->timer);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_rate_alloc(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                   dir;
    ngx_http_ws_proxy_bucket_t  *b;

    wp->rate = ngx_pcalloc(wp->pool, sizeof(ngx_http_ws_proxy_rate_t));
    if (wp->rate == NULL) {
        ngx_http_ws_proxy_set_error(wp, "no memory");
        return NGX_ERROR;
    }

    for (dir = 0; dir < 2; dir++) {
        b = &wp->rate->b[dir];
        b->timer.handler = ngx_http_ws_proxy_rate_resume;
        b->timer.data = &wp->dir[dir];
        b->timer.log = wp->log;
        b->timer.cancelable = 1;
    }

    return NGX_OK;
}


/*
 * The core's gate: the first frame of one of d's data messages.  A
 * message counted already goes at once (a dozen instructions); the
 * usual other one, within its sender's burst, is counted with one swap
 * of its bucket's word (ngx_http_ws_proxy_rate_count()); the rest is
 * ngx_http_ws_proxy_rate_slow().
 */

int
ngx_http_ws_proxy_rate_gate(ngx_wsp_sdir_t *sd)
{
    ngx_http_ws_proxy_bucket_t  *b;

    b = &ngx_wsp_session_wp(sd->session)->rate->b[sd->dir];

    if (b->credit) {
        /* counted already: the timer's message, or a batch's */
        b->credit--;
        return NGX_WSP_OK;
    }

    return ngx_http_ws_proxy_rate_count((ngx_http_ws_proxy_dir_t *) sd, b);
}


/* a message not counted yet: one swap when it is within the burst */

static NGX_WSP_NOINLINE int
ngx_http_ws_proxy_rate_count(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_bucket_t *b)
{
#if (NGX_PTR_SIZE == 8)
    uint32_t    now;
    uint64_t    old;
    ngx_int_t   excess, ms;
    ngx_uint_t  extra;

    now = (uint32_t) ngx_current_msec;
    old = *b->word;
    ms = (int32_t) (now - (uint32_t) (old >> 32));
    excess = (ngx_int_t) (uint32_t) old + 1000;

    if (ms > 0) {
        excess -= (ngx_int_t) (b->rate * ms / 1000);

        if (excess < 0) {
            excess = 0;
        }
    }

    if ((ngx_uint_t) excess <= b->pass) {
        extra = 0;

        if (b->batch) {
            extra = ngx_min((b->pass - excess) / 1000, b->batch);
            excess += extra * 1000;
        }

        if (ngx_atomic_cmp_set((ngx_atomic_t *) b->word,
                               (ngx_atomic_uint_t) old,
                               (ngx_atomic_uint_t) ngx_wsp_bucket(now, excess)))
        {
            b->credit = extra;
            return NGX_WSP_OK;
        }
    }

#endif

    return ngx_http_ws_proxy_rate_slow(d, b);
}


/*
 * A message over its sender's burst (or one the timer let go, or another
 * worker's swap came first): counted and held (NGX_WSP_AGAIN, the timer
 * armed), refused (NGX_WSP_DECLINED, action=close), or it goes.
 */

static NGX_WSP_NOINLINE int
ngx_http_ws_proxy_rate_slow(ngx_http_ws_proxy_dir_t *d,
    ngx_http_ws_proxy_bucket_t *b)
{
    ngx_msec_int_t        delay;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);

    delay = ngx_http_ws_proxy_rate_take(b);

    if (delay == 0) {
        return NGX_WSP_OK;
    }

    if (delay < 0) {
        if (b->shm_zone) {
            ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                          "ws_proxy: %s over the message rate of zone "
                          "\"%V\", closing with 1008",
                          ngx_wsp_src_role(d), &b->shm_zone->shm.name);

        } else {
            ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                          "ws_proxy: %s over its message rate of "
                          "%ui.%03ui per second, closing with 1008",
                          ngx_wsp_src_role(d), b->rate / 1000,
                          b->rate % 1000);
        }

        return NGX_WSP_DECLINED;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wp->log, 0,
                   "ws_proxy: %s message held for %M ms",
                   ngx_wsp_src_role(d), (ngx_msec_t) delay);

    b->held_at = ngx_current_msec;
    ngx_add_timer(&b->timer, (ngx_msec_t) delay);

    return NGX_WSP_AGAIN;
}


/*
 * A message at its sender's bucket, as limit_req's leaky bucket: the
 * excess over the rate, in thousandths of a message, drained at the rate
 * since the last message.  Returns 0: it goes now (a delay under a ms
 * too, as limit_req); > 0: it is counted and waits that many ms
 * (action=delay); -1: it is over the burst (action=close), not counted.
 * A zone's bucket is one word of its key's node, swapped whole: no lock
 * (with 64-bit atomics), and a message costs a few dozen instructions.
 */

static ngx_msec_int_t
ngx_http_ws_proxy_rate_take(ngx_http_ws_proxy_bucket_t *b)
{
    uint32_t         now;
    int64_t          excess, ms;
    uint64_t         old, new;
    ngx_msec_int_t   delay;

    now = (uint32_t) ngx_current_msec;

#if (NGX_PTR_SIZE < 8)
    if (b->shpool) {
        ngx_shmtx_lock(&b->shpool->mutex);
    }
#endif

    do {
        old = *b->word;

        ms = (int32_t) (now - (uint32_t) (old >> 32));

        if (ms < 0) {
            ms = 0;
        }

        excess = (int64_t) (uint32_t) old - (int64_t) (b->rate * ms / 1000)
                 + 1000;

        if (excess < 0) {
            excess = 0;
        }

        delay = 0;

        if ((uint64_t) excess > b->burst) {
            if (b->close) {
                delay = -1;
                break;
            }

            delay = (ngx_msec_int_t) ((excess - b->burst) * 1000 / b->rate);

            if (excess > 0xffffffff) {
                excess = 0xffffffff;
            }
        }

        new = ngx_wsp_bucket(now, excess);

#if (NGX_PTR_SIZE < 8)
        *b->word = new;
    } while (0);

    if (b->shpool) {
        ngx_shmtx_unlock(&b->shpool->mutex);
    }
#else
    } while (!ngx_atomic_cmp_set((ngx_atomic_t *) b->word,
                                 (ngx_atomic_uint_t) old,
                                 (ngx_atomic_uint_t) new));
#endif

    return delay;
}


/*
 * The held message's time came: it goes, and its sender is read again
 * (posted, as after a verdict), while the core sees the frame as new.
 */

static void
ngx_http_ws_proxy_rate_resume(ngx_event_t *ev)
{
    ngx_http_ws_proxy_t         *wp;
    ngx_http_ws_proxy_dir_t     *d;
    ngx_http_ws_proxy_bucket_t  *b;

    d = ev->data;
    wp = ngx_wsp_dir_wp(d);
    b = &wp->rate->b[d->dir];

    if (!ngx_wsp_held(d)) {
        return;
    }

    d->gate &= ~NGX_WSP_GATE_HELD;

    /* counted when it came: it goes without a second look */
    b->credit = (b->rate != 0);

    ngx_http_ws_proxy_metrics_delayed(wp, d->dir,
                                      ngx_current_msec - b->held_at);

    ngx_http_ws_proxy_run(wp, NGX_WSP_RUN_DIR(d->dir), 0);
}


/* the session ends: no timer outlives it */

void
ngx_http_ws_proxy_rate_stop(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t  dir;

    if (wp->rate == NULL) {
        return;
    }

    for (dir = 0; dir < 2; dir++) {
        if (wp->rate->b[dir].timer.timer_set) {
            ngx_del_timer(&wp->rate->b[dir].timer);
        }
    }
}
