/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The session core's liveness rules: the idle timeout (no data frame
 * either way), the proxy's own pings to each peer and their timeout, read
 * from the time the relay keeps in *s->clock.  The relay keeps one timer
 * per session and asks ngx_wsp_live() when it fires: the core moves the
 * states (the closes due, a peer dropped) and answers with what the relay
 * does (NGX_WSP_LIVE_*) and the time of the next call.  A session's
 * deadline (session_timeout, set_deadline(), the drain) is the relay's.
 * No I/O, no nginx.  See docs/design.md "Liveness".
 */


#include <string.h>

#include "ngx_wsp_session.h"


/* the payload of the proxy's pings: this prefix and a counter */
#define NGX_WSP_PING_PREFIX      "ngx_ws_proxy ping "
#define NGX_WSP_PING_PREFIX_LEN  (sizeof(NGX_WSP_PING_PREFIX) - 1)

/* the later of two times, whatever their wrap */
#define ngx_wsp_later(a, b)      ((intptr_t) ((a) - (b)) > 0 ? (a) : (b))


static intptr_t ngx_wsp_ping_left(ngx_wsp_sdir_t *d, uintptr_t now);


/*
 * When the session starts: every peer was heard now.  The time of the
 * first call of ngx_wsp_live(), 0: none is needed.
 */

uintptr_t
ngx_wsp_live_start(ngx_wsp_session_t *s)
{
    uintptr_t              t, now;
    unsigned               i;
    const ngx_wsp_opts_t  *conf;

    now = *s->clock;
    conf = s->conf;

    for (i = 0; i < 2; i++) {
        s->sd[i]->data_time = now;
        s->sd[i]->ctl_time = now;
    }

    t = conf->idle_timeout;

    if (conf->ping_interval && (t == 0 || conf->ping_interval < t)) {
        t = conf->ping_interval;
    }

    return t;
}


/*
 * The session's liveness at *s->clock: NGX_WSP_LIVE_IDLE (the closes are
 * due, the relay runs both directions), NGX_WSP_LIVE_DEAD(dir) (dir's src
 * is dropped, the other peer gets 1001), or the NGX_WSP_LIVE_PING(dir)s
 * to send (ngx_wsp_ping_payload()), and in *next the ms until the next
 * call (NGX_WSP_LIVE_NEVER: none of its own).  Call it only while the
 * session runs, with no close under way.
 */

unsigned
ngx_wsp_live(ngx_wsp_session_t *s, intptr_t *next)
{
    unsigned               i, act;
    intptr_t               left[2], t;
    uintptr_t              now, last;
    ngx_wsp_sdir_t        *d;
    const ngx_wsp_opts_t  *conf;

    now = *s->clock;
    conf = s->conf;

    *next = NGX_WSP_LIVE_NEVER;

    if (conf->idle_timeout) {
        last = ngx_wsp_later(s->sd[0]->data_time, s->sd[1]->data_time);

        if (ngx_wsp_held(s->sd[0]) || ngx_wsp_held(s->sd[1])) {
            /* a message held back by a rate is data that came */
            last = now;
        }

        t = (intptr_t) (last + conf->idle_timeout - now);

        if (t <= 0) {
            ngx_wsp_session_end(s, NGX_WSP_END_IDLE);

            for (i = 0; i < 2; i++) {
                ngx_wsp_close_due(s->sd[i], NGX_WSP_CLOSE_GOING_AWAY,
                                  "idle timeout", NGX_WSP_TX_DUE);
            }

            return NGX_WSP_LIVE_IDLE;
        }

        *next = t;
    }

    if (conf->ping_interval == 0) {
        return 0;
    }

    for (i = 0; i < 2; i++) {
        left[i] = ngx_wsp_ping_left(s->sd[i], now);
    }

    for (i = 0; i < 2; i++) {
        if (left[i] < 0) {
            ngx_wsp_live_dead(s->sd[i]);
            return NGX_WSP_LIVE_DEAD(i);
        }
    }

    act = 0;

    for (i = 0; i < 2; i++) {
        t = left[i];

        if (t == 0) {
            d = s->sd[i];
            d->pings++;
            d->pinged = 1;
            d->ping_time = now;
            act |= NGX_WSP_LIVE_PING(i);

            t = conf->ping_timeout ? (intptr_t) conf->ping_timeout
                                   : (intptr_t) conf->ping_interval;
        }

        if (t < *next) {
            *next = t;
        }
    }

    return act;
}


/*
 * The heartbeat of d's src: the time left until it is pinged, 0: ping it
 * now, < 0: it did not answer.  Any frame answers, and so do the bytes of
 * a frame that is still coming (its payload parsed since the last look,
 * which counts as a control frame's time: the relay's live.c forgot it at
 * the next look, and pinged such a peer one look early).
 */

static intptr_t
ngx_wsp_ping_left(ngx_wsp_sdir_t *d, uintptr_t now)
{
    intptr_t               left;
    uintptr_t              heard;
    const ngx_wsp_opts_t  *conf;

    conf = d->session->conf;

    if ((d->in != NGX_WSP_IN_HEADER && d->offset != d->live_offset)
        || ngx_wsp_held(d))
    {
        /*
         * heard now, and still at the next look (not the idle timeout);
         * so is a sender whose message a rate holds back: it is not read,
         * its pong may wait behind that message
         */
        d->ctl_time = now;
    }

    d->live_offset = d->offset;
    heard = ngx_wsp_later(d->data_time, d->ctl_time);

    if (d->pinged) {
        if ((intptr_t) (heard - d->ping_time) >= 0) {
            d->pinged = 0;

        } else if (conf->ping_timeout) {
            left = (intptr_t) (d->ping_time + conf->ping_timeout - now);
            return left > 0 ? left : -1;
        }

        /* without ping_timeout, a ping is sent every ping_interval */
        heard = ngx_wsp_later(heard, d->ping_time);
    }

    left = (intptr_t) (heard + conf->ping_interval - now);

    return left > 0 ? left : 0;
}


/*
 * d's src did not answer a ping: its connection is dropped without a
 * close handshake, the other peer gets 1001 naming it
 */

void
ngx_wsp_live_dead(ngx_wsp_sdir_t *d)
{
    ngx_wsp_session_end(d->session, NGX_WSP_END_PING_TIMEOUT);

    ngx_wsp_src_dead(d, d->dir == NGX_WSP_DIR_CLIENT
                        ? "client did not answer a ping"
                        : "upstream did not answer a ping");
}


/* the payload of the ping due to d's src: the prefix and its number */

size_t
ngx_wsp_ping_payload(ngx_wsp_sdir_t *d, unsigned char *buf)
{
    size_t         n;
    uint32_t       v;
    unsigned char  *p, digits[10];

    p = buf;
    memcpy(p, NGX_WSP_PING_PREFIX, NGX_WSP_PING_PREFIX_LEN);
    p += NGX_WSP_PING_PREFIX_LEN;

    v = d->pings;
    n = 0;

    do {
        digits[n++] = (unsigned char) ('0' + v % 10);
        v /= 10;
    } while (v);

    while (n) {
        *p++ = digits[--n];
    }

    return (size_t) (p - buf);
}


/*
 * A control frame's header from d's src (checked): its time, and a pong
 * that answers one of the proxy's pings is not forwarded (NGX_WSP_DONE:
 * skip it).  NGX_WSP_DECLINED: more bytes are needed, NGX_WSP_AGAIN:
 * output before it must drain first.
 */

int
ngx_wsp_live_control(ngx_wsp_sdir_t *d)
{
    size_t          len;
    unsigned char  *p;
    unsigned char   buf[NGX_WSP_PING_MAX];

    d->ctl_time = *d->session->clock;

    len = (size_t) d->frame.payload_len;

    if (d->frame.opcode != NGX_WSP_OP_PONG || d->pings == 0
        || len <= NGX_WSP_PING_PREFIX_LEN || len > NGX_WSP_PING_MAX)
    {
        return NGX_WSP_OK;
    }

    if (ngx_wsp_whole_frame(d) != NGX_WSP_OK) {
        return NGX_WSP_DECLINED;
    }

    p = d->ppos + d->frame.header_len;

    if (d->frame.masked) {
        ngx_wsp_mask(buf, p, len, d->frame.mask, 0);
        p = buf;
    }

    if (memcmp(p, NGX_WSP_PING_PREFIX, NGX_WSP_PING_PREFIX_LEN) != 0) {
        return NGX_WSP_OK;
    }

    if (d->spos < d->ppos) {
        /* raw bytes before it go out first: it is skipped only then */
        return NGX_WSP_AGAIN;
    }

    return NGX_WSP_DONE;
}
