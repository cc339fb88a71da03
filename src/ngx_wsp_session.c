/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The session core's state transitions: the close handshake, peers gone,
 * violations and limits, the proxy's own close frames, the end of a
 * session.  See ngx_wsp_session.h and docs/design.md.  No I/O, no nginx:
 * what the relay must do is marked in s->kick or reported as an event.
 */


#include <string.h>

#include "ngx_wsp_session.h"


static void ngx_wsp_offender(ngx_wsp_sdir_t *d, unsigned code,
    const char *reason);


#define ngx_wsp_sother(d)    ((d)->session->sd[1 - (d)->dir])

#define ngx_wsp_event(d, ev, code, text)                                     \
    (d)->session->cb->event((d)->session, (d), (ev), (code), (text))


void
ngx_wsp_session_init(ngx_wsp_session_t *s, const ngx_wsp_session_cb_t *cb,
    ngx_wsp_sdir_t *client, ngx_wsp_sdir_t *upstream)
{
    s->cb = cb;
    s->sd[NGX_WSP_DIR_CLIENT] = client;
    s->sd[NGX_WSP_DIR_UPSTREAM] = upstream;

    client->session = s;
    client->dir = NGX_WSP_DIR_CLIENT;
    client->close_code = -1;

    upstream->session = s;
    upstream->dir = NGX_WSP_DIR_UPSTREAM;
    upstream->close_code = -1;
}


ngx_wsp_ctl_t *
ngx_wsp_get_ctl(ngx_wsp_sdir_t *d)
{
    if (d->ctl == NULL) {
        d->ctl = d->session->cb->alloc(d->session, sizeof(ngx_wsp_ctl_t));
    }

    return d->ctl;
}


/*
 * A protocol violation on direction d: the peer that sent the frame gets
 * `code` (1002, 1007) and the other one 1001, as Kong's library does.
 * Frames accepted before it are still delivered; nothing after it is read
 * from the offender.  log_reason NULL: the caller has logged it.
 */

void
ngx_wsp_violation(ngx_wsp_sdir_t *d, unsigned code, const char *reason,
    const char *log_reason)
{
    ngx_wsp_session_end(d->session, NGX_WSP_END_VIOLATION);
    ngx_wsp_event(d, NGX_WSP_EV_VIOLATION, code, log_reason);

    ngx_wsp_rx_close(d);
    ngx_wsp_offender(d, code, reason);
}


/*
 * A limit closes the sender with 1009 as a violation does, but its frames
 * are well formed: its reader stays open, and from the frame over the
 * limit on they are skipped, so that its close reply is still found and
 * kept.
 */

void
ngx_wsp_limit(ngx_wsp_sdir_t *d)
{
    ngx_wsp_session_end(d->session, NGX_WSP_END_LIMIT);
    ngx_wsp_event(d, NGX_WSP_EV_LIMIT, NGX_WSP_CLOSE_TOO_BIG, NULL);

    ngx_wsp_offender(d, NGX_WSP_CLOSE_TOO_BIG, "Payload Too Large");
}


static void
ngx_wsp_offender(ngx_wsp_sdir_t *d, unsigned code, const char *reason)
{
    /* the frame it was sending is not forwarded */
    d->in = NGX_WSP_IN_HEADER;

    /*
     * Towards the offender at once, after the bytes already queued for it
     * (and the rest of a raw frame being forwarded): nothing the other
     * peer sends from now on reaches it, as in Kong's library.
     */

    ngx_wsp_close_due(ngx_wsp_sother(d), code, reason, NGX_WSP_TX_DUE);

    /* towards the other peer, after the frames accepted before */

    ngx_wsp_queue_close(d, NGX_WSP_CLOSE_GOING_AWAY,
                        (const unsigned char *) "", 0);
}


/*
 * Invalid UTF-8 in the text message d is parsing.  A raw frame of which
 * nothing was sent yet is taken back from the raw range: the other peer
 * gets 1001 after the frames before it.  One that is partly sent cannot be
 * followed by a close: the other peer's connection is dropped.  Either
 * way, the invalid bytes are never sent.
 */

void
ngx_wsp_invalid_utf8(ngx_wsp_sdir_t *d, unsigned raw)
{
    size_t    seen;
    unsigned  sent;

    sent = 0;

    if (raw) {
        seen = d->frame.header_len + (size_t) d->offset;

        if ((size_t) (d->ppos - d->spos) >= seen) {
            d->ppos -= seen;

        } else {
            sent = 1;
        }
    }

    ngx_wsp_violation(d, NGX_WSP_CLOSE_INVALID_DATA, "invalid UTF-8 text",
                      "invalid UTF-8 in a text message");

    if (sent) {
        ngx_wsp_dst_gone(d);
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
ngx_wsp_close_due(ngx_wsp_sdir_t *d, unsigned code, const char *reason,
    unsigned when)
{
    size_t  len;

    if (d->tx == NGX_WSP_TX_MSG) {
        /* a close that waited is due now */
        ngx_wsp_close_go(d);
        return;
    }

    if (d->tx != NGX_WSP_TX_OPEN) {
        return;
    }

    if (ngx_wsp_get_ctl(d) == NULL) {
        /* no memory for a close frame: that peer is dropped instead */
        ngx_wsp_dst_gone(d);
        return;
    }

    len = strlen(reason);

    d->ctl_code = (uint16_t) code;
    d->ctl->reason_len = len < NGX_WSP_MAX_CONTROL - 2
                         ? len : NGX_WSP_MAX_CONTROL - 2;
    memcpy(d->ctl->reason, reason, d->ctl->reason_len);

    d->tx = (unsigned char) when;
    d->session->kick |= NGX_WSP_RUN_DIR(d->dir);

    if (when == NGX_WSP_TX_DUE) {
        /* what is being buffered or held for Lua is dropped */
        ngx_wsp_close_go(d);
    }
}


/*
 * The close d has waiting goes out at the next frame boundary: a frame
 * being buffered or held for Lua is not forwarded (the rest of a buffered
 * one is skipped), a raw one being forwarded is finished first.
 */

void
ngx_wsp_close_go(ngx_wsp_sdir_t *d)
{
    if (!ngx_wsp_close_pending(d)) {
        return;
    }

    d->tx = NGX_WSP_TX_DUE;
    d->session->kick |= NGX_WSP_RUN_DIR(d->dir);

    if (d->in == NGX_WSP_IN_BUFFER) {
        d->in = NGX_WSP_IN_SKIP;
    }

    ngx_wsp_drop_pending(d);
}


/*
 * close_timeout: closes that waited for the end of a peer's message are
 * due: returns how many
 */

unsigned
ngx_wsp_release_deferred(ngx_wsp_session_t *s)
{
    unsigned  i, n;

    for (n = 0, i = 0; i < 2; i++) {
        if (s->sd[i]->tx == NGX_WSP_TX_MSG) {
            ngx_wsp_close_go(s->sd[i]);
            n++;
        }
    }

    return n;
}


/*
 * At a frame boundary: a close of the proxy's own goes when it is due, or
 * when it waited for src's open message and that message ended or src's
 * frames are over.
 */

unsigned
ngx_wsp_close_boundary(ngx_wsp_sdir_t *d)
{
    if (d->tx == NGX_WSP_TX_DUE
        || (d->tx == NGX_WSP_TX_MSG
            && (d->msg_state.open_opcode == 0 || ngx_wsp_rx_over(d))))
    {
        ngx_wsp_queue_close(d, d->ctl_code, d->ctl->reason,
                            d->ctl->reason_len);
        return 1;
    }

    return 0;
}


/* the proxy's close frame is queued after what d has to send */

void
ngx_wsp_queue_close(ngx_wsp_sdir_t *d, unsigned code,
    const unsigned char *reason, size_t len)
{
    unsigned char       *p;
    ngx_wsp_session_t   *s;
    unsigned char        mask[4];
    unsigned char        payload[NGX_WSP_MAX_CONTROL];

    s = d->session;

    if (d->tx >= NGX_WSP_TX_CLOSED) {
        return;
    }

    if (ngx_wsp_get_ctl(d) == NULL) {
        /* no memory for a close frame: that peer is dropped instead */
        ngx_wsp_dst_gone(d);
        return;
    }

    len = ngx_wsp_close_payload(payload, code, reason, len);

    if (d->dir == NGX_WSP_DIR_CLIENT) {
        s->cb->mask_key(s, mask);
    }

    p = d->ctl->frame;
    p += ngx_wsp_frame_build(p, NULL, payload, len, 1, NGX_WSP_OP_CLOSE,
                             d->dir == NGX_WSP_DIR_CLIENT ? mask : NULL);

    d->out_ctl.pos = d->ctl->frame;
    d->out_ctl.last = p + len;

    d->tx = NGX_WSP_TX_CLOSED;

    if (s->closed_by == NGX_WSP_BY_NONE) {
        s->closed_by = NGX_WSP_BY_PROXY;
    }

    ngx_wsp_event(d, NGX_WSP_EV_CLOSE_QUEUED, code, NULL);
}


/*
 * From src's close frame on, src's frames are over, whether it goes out
 * raw or waits for Lua: a FIN that follows is the end of a close
 * handshake, not a peer gone.
 */

int
ngx_wsp_close_accepted(ngx_wsp_sdir_t *d, unsigned code,
    const unsigned char *payload, size_t len)
{
    ngx_wsp_session_t  *s;

    s = d->session;

    if (ngx_wsp_get_ctl(d) == NULL) {
        return -1;
    }

    ngx_wsp_rx_close(d);
    ngx_wsp_keep_close(d, code, payload, len);

    if (s->closed_by == NGX_WSP_BY_NONE) {
        s->closed_by = d->dir == NGX_WSP_DIR_CLIENT ? NGX_WSP_BY_CLIENT
                                                    : NGX_WSP_BY_UPSTREAM;
    }

    ngx_wsp_session_end(s, d->dir == NGX_WSP_DIR_CLIENT
                           ? NGX_WSP_END_CLIENT_CLOSE
                           : NGX_WSP_END_UPSTREAM_CLOSE);

    return 0;
}


/* for the variables and stats(), also of a reply that is not forwarded */

void
ngx_wsp_keep_close(ngx_wsp_sdir_t *d, unsigned code,
    const unsigned char *payload, size_t len)
{
    d->close_code = code;
    d->ctl->close_reason_len = len > 2 ? len - 2 : 0;
    memcpy(d->ctl->close_reason, payload + 2, d->ctl->close_reason_len);
}


/* a close frame went out as it came or rebuilt: the close handshake goes
 * on through us */

void
ngx_wsp_close_forwarded(ngx_wsp_sdir_t *d)
{
    d->tx = NGX_WSP_TX_CLOSED;
    ngx_wsp_event(d, NGX_WSP_EV_CLOSE_QUEUED, 0, NULL);
}


/* src's frames are over: its close frame came, or a violation */

void
ngx_wsp_rx_close(ngx_wsp_sdir_t *d)
{
    if (d->rx == NGX_WSP_RX_OPEN) {
        d->rx = NGX_WSP_RX_CLOSED;

    } else if (d->rx == NGX_WSP_RX_EOF) {
        d->rx = NGX_WSP_RX_GONE;
    }
}


/* src closed its connection (recv() returned 0) or failed */

void
ngx_wsp_src_hup(ngx_wsp_sdir_t *d, unsigned reset)
{
    if (d->rx == NGX_WSP_RX_OPEN) {
        ngx_wsp_session_end(d->session,
                            reset ? NGX_WSP_END_RESET
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

    ngx_wsp_event(d, NGX_WSP_EV_HALF_CLOSE, 0, NULL);

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
ngx_wsp_src_gone(ngx_wsp_sdir_t *d)
{
    unsigned         replied, code;
    ngx_wsp_sdir_t  *other;

    other = ngx_wsp_sother(d);

    ngx_wsp_event(d, NGX_WSP_EV_GONE, 0, NULL);

    d->rx = NGX_WSP_RX_GONE;

    /* whatever the other direction sends can no longer be delivered */

    replied = (other->tx == NGX_WSP_TX_CLOSED);

    if (other->tx != NGX_WSP_TX_ABORTED) {
        ngx_wsp_dst_gone(other);
    }

    if (d->in == NGX_WSP_IN_RAW) {
        ngx_wsp_event(d, NGX_WSP_EV_GONE_MID_FRAME, 0, NULL);
        ngx_wsp_dst_gone(d);
        return;
    }

    ngx_wsp_drop_pending(d);
    d->in = NGX_WSP_IN_HEADER;

    if (ngx_wsp_close_pending(d)) {
        /* the close that waited for this peer's reply goes now */
        ngx_wsp_close_go(d);
        return;
    }

    if (replied) {
        /* we were waiting for its close reply: answer in its name */
        code = other->close_code >= 1000
               && other->close_code != NGX_WSP_CLOSE_NO_STATUS
               ? (unsigned) other->close_code : NGX_WSP_CLOSE_NORMAL;

    } else {
        code = NGX_WSP_CLOSE_GOING_AWAY;
    }

    ngx_wsp_queue_close(d, code, (const unsigned char *) "", 0);
}


/*
 * d's src did not answer a ping: its connection is dropped without a
 * close handshake, the other peer gets 1001 and `reason`.
 */

void
ngx_wsp_src_dead(ngx_wsp_sdir_t *d, const char *reason)
{
    /* nothing more goes to it, nothing more is read from it */

    ngx_wsp_dst_gone(ngx_wsp_sother(d));
    d->rx = NGX_WSP_RX_GONE;

    if (d->in == NGX_WSP_IN_RAW) {
        /* half a frame went out: no close can follow it */
        ngx_wsp_dst_gone(d);
        return;
    }

    ngx_wsp_drop_pending(d);
    d->in = NGX_WSP_IN_HEADER;

    ngx_wsp_close_due(d, NGX_WSP_CLOSE_GOING_AWAY, reason, NGX_WSP_TX_DUE);
}


/* the destination of d failed: nothing more can be delivered to it */

void
ngx_wsp_dst_gone(ngx_wsp_sdir_t *d)
{
    d->session->kick |= NGX_WSP_RUN_DIR(d->dir);
    d->tx = NGX_WSP_TX_ABORTED;
    d->spos = d->ppos;
    d->out_hdr.pos = d->out_hdr.last;
    d->out_body.pos = d->out_body.last;
    d->out_ctl.pos = d->out_ctl.last;

    ngx_wsp_event(d, NGX_WSP_EV_DST_GONE, 0, NULL);
}


/* the frame Lua holds will not be forwarded: a held one is skipped */

void
ngx_wsp_drop_pending(ngx_wsp_sdir_t *d)
{
    if (d->in != NGX_WSP_IN_LUA) {
        return;
    }

    ngx_wsp_event(d, NGX_WSP_EV_TAKEN, 0, NULL);

    d->in = NGX_WSP_IN_HEADER;
    d->ppos += d->hold;
    d->spos = d->ppos;
    d->hold = 0;
}


/*
 * A failure that ends the session at once (no memory): both directions
 * stop where they are; the relay's top finds nothing left to do.
 */

void
ngx_wsp_fail(ngx_wsp_session_t *s)
{
    unsigned         i;
    ngx_wsp_sdir_t  *d;

    for (i = 0; i < 2; i++) {
        d = s->sd[i];

        ngx_wsp_drop_pending(d);

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


unsigned
ngx_wsp_done(ngx_wsp_session_t *s, unsigned pending)
{
    unsigned         i;
    ngx_wsp_sdir_t  *d;

    for (i = 0; i < 2; i++) {
        d = s->sd[i];

        /* output towards dst: all sent, or impossible */
        if (d->tx != NGX_WSP_TX_ABORTED
            && (d->tx != NGX_WSP_TX_CLOSED || ngx_wsp_has_output(d)
                || (pending & NGX_WSP_RUN_DIR(i))))
        {
            return 0;
        }

        /*
         * input from src: its close came, it is gone, or nothing can be
         * sent to it any more, so its close will never be asked for
         */
        if (!ngx_wsp_rx_over(d) && s->sd[1 - i]->tx != NGX_WSP_TX_ABORTED) {
            return 0;
        }
    }

    return 1;
}


size_t
ngx_wsp_frame_build(unsigned char *hdr, unsigned char *out,
    const unsigned char *payload, size_t len, unsigned fin, unsigned opcode,
    const unsigned char *mask)
{
    size_t  n;

    n = ngx_wsp_frame_write_header(hdr, (int) fin, (int) opcode, len, mask);

    if (out == NULL) {
        out = hdr + n;
    }

    if (mask) {
        ngx_wsp_mask(out, payload, len, mask, 0);

    } else if (out != payload) {
        memmove(out, payload, len);
    }

    return n;
}


size_t
ngx_wsp_close_payload(unsigned char *dst, unsigned code,
    const unsigned char *reason, size_t len)
{
    if (len > NGX_WSP_MAX_CONTROL - 2) {
        len = NGX_WSP_MAX_CONTROL - 2;
    }

    memmove(dst + 2, reason, len);
    dst[0] = (unsigned char) (code >> 8);
    dst[1] = (unsigned char) (code & 0xff);

    return len + 2;
}
