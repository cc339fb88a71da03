/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The session core: its state transitions (the close handshake, peers
 * gone, violations and limits, the proxy's own close frames, the end of a
 * session), the parser, rebuilt frames and Lua's verdicts.  See
 * ngx_wsp_session.h and docs/design.md.  No I/O, no nginx: what the relay
 * must do is marked in s->kick, reported as an event, or asked through a
 * callback.
 */


#include <string.h>

#include "ngx_wsp_session.h"


static void ngx_wsp_offender(ngx_wsp_sdir_t *d, unsigned code,
    const char *reason);
static void ngx_wsp_frame_unsent(ngx_wsp_sdir_t *d);


#define ngx_wsp_sother(d)    ((d)->session->sd[1 - (d)->dir])

/* the recorder or a tap watches d's frames: one test when not */
#define ngx_wsp_observe(d, action)                                           \
    if ((d)->observe) {                                                      \
        ngx_wsp_obs_record((d), (action));                                   \
    }
/* a frame is in d's output after the raw range (an injected one) */
#define ngx_wsp_out_busy(d)                                                  \
    ((d)->out_hdr.pos < (d)->out_hdr.last                                    \
     || (d)->out_body.pos < (d)->out_body.last)

#define ngx_wsp_event(d, ev, code, text)                                     \
    (d)->session->cb->event((d)->session, (d), (ev), (code), (text), 0)


void
ngx_wsp_session_init(ngx_wsp_session_t *s, const ngx_wsp_session_cb_t *cb,
    const ngx_wsp_opts_t *opts, const volatile uintptr_t *clock,
    ngx_wsp_sdir_t *client, ngx_wsp_sdir_t *upstream)
{
    s->cb = cb;
    s->conf = opts;
    s->clock = clock;
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
ngx_wsp_limit(ngx_wsp_sdir_t *d, unsigned limit, uint64_t n)
{
    ngx_wsp_session_end(d->session, NGX_WSP_END_LIMIT);
    d->session->cb->event(d->session, d, NGX_WSP_EV_LIMIT, limit, NULL, n);

    if (limit == NGX_WSP_LIMIT_RATE) {
        /* RFC 6455 7.4.1: 1008, a policy; the frames are not too big */
        ngx_wsp_offender(d, NGX_WSP_CLOSE_POLICY, "message rate limit");
        return;
    }

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
        ngx_wsp_frame_unsent(d);
    }

    ngx_wsp_drop_pending(d);
}


/*
 * The data frame being parsed will not go out (a close is due, src is
 * gone): the message stays in dst's output as it was before that frame,
 * open when the frame was a continuation, so that no injected data frame
 * goes before the close (ngx_wsp_injectable()).  No frame is checked any
 * more before the close, which is what the state is also for.
 */

static void
ngx_wsp_frame_unsent(ngx_wsp_sdir_t *d)
{
    if (ngx_wsp_is_control(d->frame.opcode)) {
        return;
    }

    d->msg_state.open_opcode = d->frame.opcode != NGX_WSP_OP_CONT ? 0
                               : d->check_utf8 ? NGX_WSP_OP_TEXT
                                               : NGX_WSP_OP_BINARY;
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

    if (d->in == NGX_WSP_IN_DUE) {
        /*
         * A verdict's frame waits for an injected frame to leave the
         * output (ngx_wsp_verdict_due()): the close is due after it, at
         * the next boundary, where it would have been in the output.
         */
        len = len < NGX_WSP_MAX_CONTROL - 2 ? len : NGX_WSP_MAX_CONTROL - 2;
        memmove(d->ctl->reason, reason, len);
        d->ctl->reason_len = len;
        d->ctl_code = (uint16_t) code;
        d->tx = NGX_WSP_TX_DUE;
        s->kick |= NGX_WSP_RUN_DIR(d->dir);
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

    if (d->in != NGX_WSP_IN_DUE) {
        /* a verdict's frame due still goes, before the close */
        d->in = NGX_WSP_IN_HEADER;
    }

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

    if (d->in != NGX_WSP_IN_DUE) {
        /* a verdict's frame due still goes, before the close */
        d->in = NGX_WSP_IN_HEADER;
    }

    ngx_wsp_close_due(d, NGX_WSP_CLOSE_GOING_AWAY, reason, NGX_WSP_TX_DUE);
}


/* the destination of d failed: nothing more can be delivered to it */

void
ngx_wsp_dst_gone(ngx_wsp_sdir_t *d)
{
    d->session->kick |= NGX_WSP_RUN_DIR(d->dir);
    d->tx = NGX_WSP_TX_ABORTED;
    d->spos = d->ppos;

    if (d->in == NGX_WSP_IN_RAW) {
        /*
         * the rest of a frame being forwarded is read and dropped: left
         * in the raw range, it would hold the parser at this frame's end
         * (and src's FIN unseen) until close_timeout
         */
        d->in = NGX_WSP_IN_SKIP;
    }

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
    ngx_wsp_frame_unsent(d);

    d->slot.ready = 0;
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
ngx_wsp_fail(ngx_wsp_session_t *s, const char *reason)
{
    unsigned         i;
    ngx_wsp_sdir_t  *d;

    s->cb->event(s, NULL, NGX_WSP_EV_FAILED, 0, reason, 0);

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
                || d->in == NGX_WSP_IN_DUE
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


/*
 * The parser.  A direction's input buffer is walked in place, from one
 * frame boundary to the next.  At a boundary what the proxy has queued
 * goes out first (a frame injected from Lua, a close of its own); then
 * the next header is parsed and checked (ngx_wsp_frame_check(): the
 * protocol rules; here: the limits and the close frames), and its payload
 * is forwarded raw, skipped, or handed to the relay to hold or buffer
 * (Lua, aggregation, deflate).  At the end of a frame it is forwarded, or
 * handed to the relay.
 */

static int ngx_wsp_boundary(ngx_wsp_sdir_t *d);
static int ngx_wsp_verdict_due(ngx_wsp_sdir_t *d);
static ngx_wsp_inject_t **ngx_wsp_injectable(ngx_wsp_sdir_t *d);
static int ngx_wsp_payload(ngx_wsp_sdir_t *d);
static int ngx_wsp_inflate_stopped(ngx_wsp_sdir_t *d, size_t avail);
static int ngx_wsp_skip_start(ngx_wsp_sdir_t *d);
static int ngx_wsp_skip_frame(ngx_wsp_sdir_t *d);
static void ngx_wsp_close_payload_of(ngx_wsp_sdir_t *d, unsigned char *dst);
static void ngx_wsp_keep_reply(ngx_wsp_sdir_t *d);
static int ngx_wsp_frame_start(ngx_wsp_sdir_t *d);
static int ngx_wsp_gate(ngx_wsp_sdir_t *d);
static int ngx_wsp_frame_limits(ngx_wsp_sdir_t *d);
static int ngx_wsp_close_frame(ngx_wsp_sdir_t *d);
static int ngx_wsp_frame_buffer(ngx_wsp_sdir_t *d);
static void ngx_wsp_frame_done(ngx_wsp_sdir_t *d);
static void ngx_wsp_raw_done(ngx_wsp_sdir_t *d);
static void ngx_wsp_frame_out(ngx_wsp_sdir_t *d);


unsigned
ngx_wsp_parse(ngx_wsp_sdir_t *d)
{
    int  rc;

    for ( ;; ) {

        /* IN_DUE last: rare, and a range test costs the others more */

        if (d->in == NGX_WSP_IN_HEADER || d->in == NGX_WSP_IN_LUA
            || (d->in == NGX_WSP_IN_SKIP && d->tx == NGX_WSP_TX_DUE)
            || d->in == NGX_WSP_IN_DUE)
        {
            rc = ngx_wsp_boundary(d);

            if (rc == NGX_WSP_DECLINED) {
                return 1;
            }

            if (rc == NGX_WSP_AGAIN) {
                return 0;
            }

            if (rc != NGX_WSP_OK) {
                /* NGX_WSP_DONE, NGX_WSP_ERROR: a state changed, look again */
                continue;
            }
        }

        rc = ngx_wsp_payload(d);

        if (rc == NGX_WSP_AGAIN) {
            return 0;
        }

        if (rc == NGX_WSP_OK) {
            ngx_wsp_frame_done(d);
        }
    }
}


/*
 * At a frame boundary of the output: a frame of the proxy's goes out, or
 * the next frame starts.  OK: a frame's payload follows; DONE: a frame was
 * queued; AGAIN: nothing more to do now; DECLINED: more bytes are needed;
 * ERROR: the frame was refused.
 */

static int
ngx_wsp_boundary(ngx_wsp_sdir_t *d)
{
    ngx_wsp_inject_t  **pp;

    if (d->inject && d->tx <= NGX_WSP_TX_DUE && d->in != NGX_WSP_IN_DUE
        && d->out_hdr.pos == d->out_hdr.last
        && d->out_body.pos == d->out_body.last
        && (pp = ngx_wsp_injectable(d)) != NULL)
    {
        /*
         * A frame from send_frame() goes after what was forwarded and
         * before a frame still waiting for its verdict; the relay frees
         * it once it is sent.
         */
        d->inject_cur = *pp;
        *pp = d->inject_cur->next;
        d->out_body.pos = d->inject_cur->data;
        d->out_body.last = d->inject_cur->data + d->inject_cur->len;
        return NGX_WSP_DONE;
    }

    if (d->in >= NGX_WSP_IN_LUA) {
        /* a verdict's frame goes after the injected frame before it */
        return d->in == NGX_WSP_IN_LUA ? NGX_WSP_AGAIN
                                       : ngx_wsp_verdict_due(d);
    }

    if (d->tx && ngx_wsp_close_boundary(d)) {
        /* a close of the proxy's own, at a frame boundary */
        return NGX_WSP_DONE;
    }

    if (d->in == NGX_WSP_IN_SKIP) {
        return NGX_WSP_OK;
    }

    if (ngx_wsp_rx_over(d)) {
        /* after its close (or a violation) a peer's bytes are ignored */

        if (d->spos == d->ppos) {
            d->ppos = d->last;
            d->spos = d->last;
        }

        return NGX_WSP_AGAIN;
    }

    if (d->ppos == d->last) {
        return NGX_WSP_AGAIN;
    }

    if (d->tx >= NGX_WSP_TX_CLOSED) {
        return ngx_wsp_skip_start(d);
    }

    if (d->out_hdr.pos < d->out_hdr.last
        || d->out_body.pos < d->out_body.last)
    {
        return NGX_WSP_AGAIN;
    }

    return ngx_wsp_frame_start(d);
}


/*
 * The first injected frame that may go now.  RFC 6455 5.4: no data frame
 * may come between the fragments of a message, so while one of src's
 * messages is open in dst's output (its first frame went out, its last
 * not yet) an injected text or binary frame waits for its end; control
 * frames injected after it go before it.  Only a message whose frames go
 * out one by one can be open (not aggregated, not dropped by the hook).
 * Between two frames it is open as src's is (see frame_unsent() for
 * frames that do not go out); with a data frame held for Lua, when that
 * frame is a continuation, or a first frame that is not a whole message:
 * forwarded while an injected frame is still being sent, the held frame
 * goes before it (the raw range first).
 */

static ngx_wsp_inject_t **
ngx_wsp_injectable(ngx_wsp_sdir_t *d)
{
    unsigned            open;
    ngx_wsp_inject_t  **pp;

    if (d->in == NGX_WSP_IN_LUA && !ngx_wsp_is_control(d->frame.opcode)) {
        open = d->frame.opcode == NGX_WSP_OP_CONT || !d->frame.fin;

    } else {
        open = d->msg_state.open_opcode != 0;
    }

    open = open && !d->session->conf->aggregate && !d->msg_drop;

    for (pp = &d->inject; *pp; pp = &(*pp)->next) {
        if (!open || ngx_wsp_is_control((*pp)->data[0] & 0x0f)) {
            return pp;
        }
    }

    return NULL;
}


/*
 * Moves the payload bytes of the current frame that are in the buffer.
 * OK: the frame is complete; AGAIN: more is due; DONE: its text is
 * invalid, the direction was closed.
 */

static int
ngx_wsp_payload(ngx_wsp_sdir_t *d)
{
    int             rc;
    size_t          avail;
    unsigned char  *start, *to;

    avail = d->last - d->ppos;
    if ((uint64_t) avail > d->remaining) {
        avail = (size_t) d->remaining;
    }

    start = d->ppos;

    switch (d->in) {

    case NGX_WSP_IN_RAW:

        if (ngx_wsp_checks_utf8(d)) {
            /* in place, before the bytes can be sent */
            d->utf8 = d->frame.masked
                      ? ngx_wsp_utf8_validate_masked(d->utf8, start, avail,
                                                     d->frame.mask,
                                                     d->offset)
                      : ngx_wsp_utf8_validate(d->utf8, start, avail);

            if (d->utf8 == NGX_WSP_UTF8_REJECT) {
                ngx_wsp_invalid_utf8(d, 1);
                return NGX_WSP_DONE;
            }
        }

        d->ppos += avail;
        break;

    case NGX_WSP_IN_BUFFER:

        if (avail == 0 && !d->inflating) {
            /* an empty frame: nothing to copy (msg may not exist yet) */
            break;
        }

        if (ngx_wsp_is_control(d->frame.opcode)) {
            to = d->ctl->cbuf + d->ctl->clen;
            d->ctl->clen += avail;

        } else if (d->inflating) {
            /* onto the message buffer, checked there as it comes out */

            rc = d->session->cb->inflate(d, start, avail);

            d->ppos += avail;
            d->spos = d->ppos;

            if (rc != NGX_WSP_OK) {
                return ngx_wsp_inflate_stopped(d, avail);
            }

            break;

        } else {
            to = d->msg + d->msg_len;
            d->msg_len += avail;
        }

        if (d->frame.masked) {
            ngx_wsp_mask(to, start, avail, d->frame.mask, d->offset);

        } else if (avail) {
            memcpy(to, start, avail);
        }

        d->ppos += avail;
        d->spos = d->ppos;

        if (ngx_wsp_checks_utf8(d)) {
            d->utf8 = ngx_wsp_utf8_validate(d->utf8, to, avail);

            if (d->utf8 == NGX_WSP_UTF8_REJECT) {
                /* fail fast: not when the frame is complete */
                ngx_wsp_invalid_utf8(d, 0);
                return NGX_WSP_DONE;
            }
        }

        break;

    case NGX_WSP_IN_HOLD:
        /* the whole frame is there, see frame_done() */
        break;

    default: /* NGX_WSP_IN_SKIP */
        d->ppos += avail;
        d->spos = d->ppos;
        break;
    }

    d->remaining -= avail;
    d->offset += avail;

    return d->remaining ? NGX_WSP_AGAIN : NGX_WSP_OK;
}


/*
 * A limit stopped an inflate in the middle of its frame: the sender's
 * reader stays open (its close reply is awaited), so the rest of the
 * frame is skipped, and the frames after it are parsed for that reply.
 * After a violation or a failure the reader is over, and nothing is.
 */

static int
ngx_wsp_inflate_stopped(ngx_wsp_sdir_t *d, size_t avail)
{
    if (d->in == NGX_WSP_IN_HEADER && !ngx_wsp_rx_over(d)
        && d->remaining > avail)
    {
        d->in = NGX_WSP_IN_SKIP;
        d->remaining -= avail;
        d->offset += avail;
    }

    return NGX_WSP_DONE;
}


/*
 * Nothing more can go to dst (a close was sent, or dst is gone): frames
 * are still parsed, to find the peer's close reply, but their payloads are
 * dropped.  Unsent raw bytes before them must go first.  A header that
 * does not parse ends src's frames; no other rule is checked.
 */

static int
ngx_wsp_skip_start(ngx_wsp_sdir_t *d)
{
    int  rc;

    if (d->spos < d->ppos) {
        return NGX_WSP_AGAIN;
    }

    rc = ngx_wsp_frame_parse_header(d->ppos, d->last - d->ppos, &d->frame);

    if (rc == NGX_WSP_PARSE_AGAIN) {
        if (d->last == d->end && d->ppos > d->start) {
            ngx_wsp_compact(d);
        }

        return NGX_WSP_DECLINED;
    }

    if (rc == NGX_WSP_PARSE_ERROR) {
        ngx_wsp_rx_close(d);
        return NGX_WSP_ERROR;
    }

    if (d->frame.opcode == NGX_WSP_OP_CLOSE
        && d->frame.payload_len <= NGX_WSP_MAX_CONTROL)
    {
        /* the peer's close reply is kept for the variables and stats() */

        if (ngx_wsp_whole_frame(d) != NGX_WSP_OK) {
            return NGX_WSP_DECLINED;
        }

        ngx_wsp_keep_reply(d);
    }

    return ngx_wsp_skip_frame(d);
}


/* the frame whose header was just parsed is read and dropped */

static int
ngx_wsp_skip_frame(ngx_wsp_sdir_t *d)
{
    d->ppos += d->frame.header_len;
    d->spos = d->ppos;
    d->in = NGX_WSP_IN_SKIP;
    d->remaining = d->frame.payload_len;
    d->offset = 0;

    return NGX_WSP_OK;
}


int
ngx_wsp_whole_frame(ngx_wsp_sdir_t *d)
{
    size_t  need;

    need = d->frame.header_len + (size_t) d->frame.payload_len;

    if ((size_t) (d->last - d->ppos) >= need) {
        return NGX_WSP_OK;
    }

    if ((size_t) (d->end - d->ppos) < need) {
        ngx_wsp_compact(d);
    }

    return NGX_WSP_DECLINED;
}


void
ngx_wsp_compact(ngx_wsp_sdir_t *d)
{
    size_t  n;

    if (d->spos == d->start) {
        return;
    }

    n = d->last - d->spos;

    if (n) {
        memmove(d->start, d->spos, n);
    }

    d->ppos -= d->spos - d->start;
    d->last = d->start + n;
    d->spos = d->start;
}


/* the (whole, control-sized) payload of the frame at ppos, unmasked */

static void
ngx_wsp_close_payload_of(ngx_wsp_sdir_t *d, unsigned char *dst)
{
    size_t          len;
    unsigned char  *p;

    p = d->ppos + d->frame.header_len;
    len = (size_t) d->frame.payload_len;

    if (d->frame.masked) {
        ngx_wsp_mask(dst, p, len, d->frame.mask, 0);

    } else if (len) {
        memcpy(dst, p, len);
    }
}


/*
 * A close frame that is skipped (a reply to the proxy's own close) is
 * still recorded: its status and reason, when valid, fill the session's
 * close code and reason as a forwarded close does.
 */

static void
ngx_wsp_keep_reply(ngx_wsp_sdir_t *d)
{
    size_t          len;
    unsigned        code;
    const char     *reason;
    unsigned char   tmp[NGX_WSP_MAX_CONTROL];

    len = (size_t) d->frame.payload_len;

    ngx_wsp_close_payload_of(d, tmp);

    if (ngx_wsp_close_check(tmp, len, &code, &reason)
        || ngx_wsp_get_ctl(d) == NULL)
    {
        return;
    }

    ngx_wsp_keep_close(d, code, tmp, len);
}


/*
 * A new frame at ppos: parse and check its header, apply the limits and
 * choose what happens to its payload.  DECLINED: more bytes are needed;
 * AGAIN: the frame must wait for output to drain; ERROR: the direction was
 * closed for a violation or a limit.
 */

static int
ngx_wsp_frame_start(ngx_wsp_sdir_t *d)
{
    int                    rc;
    unsigned               opcode, control, buffered;
    const char            *reason;
    ngx_wsp_session_t     *s;
    const ngx_wsp_opts_t  *opts;

    s = d->session;
    opts = s->conf;

    rc = ngx_wsp_frame_parse_header(d->ppos, d->last - d->ppos, &d->frame);

    if (rc == NGX_WSP_PARSE_AGAIN) {
        if (d->last == d->end) {
            ngx_wsp_compact(d);
        }

        return NGX_WSP_DECLINED;
    }

    if (rc == NGX_WSP_PARSE_ERROR) {
        ngx_wsp_violation(d, NGX_WSP_CLOSE_PROTOCOL, d->frame.error,
                          d->frame.error);
        return NGX_WSP_ERROR;
    }

    opcode = d->frame.opcode;
    control = ngx_wsp_is_control(opcode);

    buffered = opts->hook
               || (opts->aggregate && !control
                   && (!d->frame.fin || opcode == NGX_WSP_OP_CONT));

    /*
     * permessage-deflate, unless frames pass as they are: what src
     * compressed is inflated, what goes to a dst that takes compressed
     * data is deflated; the frame's rule is checked below.
     */

    if (d->z && !control && !(d->z & NGX_WSP_Z_PASS)) {
        d->inflating = (d->z & NGX_WSP_Z_RX)
                       && (opcode == NGX_WSP_OP_CONT
                           ? d->msg_state.compressed
                           : (d->frame.rsv & NGX_WSP_RSV_DEFLATE) != 0);

        buffered |= d->inflating || (d->z & NGX_WSP_Z_TX);
    }

    if (buffered && d->spos < d->ppos) {
        /*
         * Raw bytes before this frame go out first; the frame is checked
         * only then, as the check moves the fragmentation state.
         */
        return NGX_WSP_AGAIN;
    }

    if (d->gate && (rc = ngx_wsp_gate(d)) != NGX_WSP_OK) {
        return rc;
    }

    rc = ngx_wsp_frame_check(&d->frame,
                             d->dir == NGX_WSP_DIR_CLIENT
                             ? NGX_WSP_ROLE_CLIENT : NGX_WSP_ROLE_UPSTREAM,
                             &d->msg_state, &reason);
    if (rc) {
        ngx_wsp_violation(d, (unsigned) rc, reason, reason);
        return NGX_WSP_ERROR;
    }

    /* liveness: a data frame's time; a control frame's, and pongs */

    if (!control) {
        d->data_time = *s->clock;

        if (ngx_wsp_frame_limits(d) != NGX_WSP_OK) {
            return NGX_WSP_ERROR;
        }

    } else {
        rc = ngx_wsp_live_control(d);

        if (rc == NGX_WSP_OK && s->cb->control) {
            rc = s->cb->control(d);
        }

        if (rc != NGX_WSP_OK) {
            return rc == NGX_WSP_DONE ? ngx_wsp_skip_frame(d) : rc;
        }
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        rc = ngx_wsp_close_frame(d);

        if (rc != NGX_WSP_OK) {
            return rc;
        }
    }

    if (buffered) {
        return ngx_wsp_frame_buffer(d);
    }

    if (!control && opcode != NGX_WSP_OP_CONT) {
        ngx_wsp_msg_start(d, opcode);
    }

    if (d->z && !control && d->msg_state.compressed) {
        /* compressed text passing through is checked by its dst */
        d->check_utf8 = 0;
        d->zbytes += d->frame.payload_len;
    }

    d->in = NGX_WSP_IN_RAW;
    d->ppos += d->frame.header_len;
    d->remaining = d->frame.payload_len;
    d->offset = 0;

    return NGX_WSP_OK;
}


/*
 * A message rate (d->gate): asked once per data message, at its first
 * frame, before the check moves the fragmentation state, so that a frame
 * held here is met again as new; asked again only once the relay let it
 * go (NGX_WSP_GATE_HELD cleared).  Held (AGAIN): src is not read until
 * then.  The sender broke its rate (DECLINED): closed with 1008, as a
 * limit (ERROR).  Out of line, so that the parser of a direction without
 * a rate pays the test of d->gate alone.
 */

static NGX_WSP_NOINLINE int
ngx_wsp_gate(ngx_wsp_sdir_t *d)
{
    int  rc;

    if (ngx_wsp_is_control(d->frame.opcode)
        || d->frame.opcode == NGX_WSP_OP_CONT)
    {
        return NGX_WSP_OK;
    }

    if (d->gate & NGX_WSP_GATE_HELD) {
        return NGX_WSP_AGAIN;
    }

    rc = d->session->cb->gate(d);

    if (rc == NGX_WSP_OK) {
        return NGX_WSP_OK;
    }

    if (rc == NGX_WSP_AGAIN) {
        d->gate |= NGX_WSP_GATE_HELD;
        return NGX_WSP_AGAIN;
    }

    ngx_wsp_limit(d, NGX_WSP_LIMIT_RATE, d->messages);

    return NGX_WSP_ERROR;
}


/*
 * The size limit counts one frame, or the whole message when fragments
 * are aggregated; the fragment limit counts the frames of one message.
 */

static int
ngx_wsp_frame_limits(ngx_wsp_sdir_t *d)
{
    uint64_t               size;
    const ngx_wsp_opts_t  *opts;

    opts = d->session->conf;

    /* what is inflated counts as it comes out (the relay's inflate) */

    size = (opts->aggregate ? d->msg_size : 0)
           + (d->inflating ? 0 : d->frame.payload_len);
    d->msg_size = size;
    d->msg_frames++;

    if (opts->max_frame_size[d->dir] && size > opts->max_frame_size[d->dir])
    {
        ngx_wsp_limit(d, NGX_WSP_LIMIT_SIZE, size);
        return NGX_WSP_ERROR;
    }

    if (opts->max_fragments[d->dir]
        && d->msg_frames > opts->max_fragments[d->dir])
    {
        ngx_wsp_limit(d, NGX_WSP_LIMIT_FRAGMENTS, d->msg_frames);
        return NGX_WSP_ERROR;
    }

    return NGX_WSP_OK;
}


/*
 * A close frame is checked whole before any of it moves.  From here on
 * src's frames are over, whether the frame goes out raw or waits for Lua:
 * a FIN that follows is the end of a close handshake, not a peer gone.
 * OK: it goes on as other frames do.
 */

static int
ngx_wsp_close_frame(ngx_wsp_sdir_t *d)
{
    int             rc;
    size_t          len;
    unsigned        code;
    const char     *reason;
    unsigned char   tmp[NGX_WSP_MAX_CONTROL];

    len = (size_t) d->frame.payload_len;

    if (ngx_wsp_whole_frame(d) != NGX_WSP_OK) {
        return NGX_WSP_DECLINED;
    }

    ngx_wsp_close_payload_of(d, tmp);

    rc = ngx_wsp_close_check(tmp, len, &code, &reason);
    if (rc) {
        ngx_wsp_violation(d, (unsigned) rc, reason, reason);
        return NGX_WSP_ERROR;
    }

    if (ngx_wsp_close_accepted(d, code, tmp, len) != 0) {
        ngx_wsp_fail(d->session, "out of memory");
        return NGX_WSP_ERROR;
    }

    if (!d->session->conf->hook) {
        ngx_wsp_event(d, NGX_WSP_EV_CLOSE_IN, code, NULL);
    }

    return NGX_WSP_OK;
}


/*
 * The frame goes to Lua or into an aggregated message (or is inflated, or
 * deflated): held in place when it is whole in the buffer, else copied
 * out as it comes.
 */

static int
ngx_wsp_frame_buffer(ngx_wsp_sdir_t *d)
{
    uint64_t               len;
    unsigned               opcode, control;
    ngx_wsp_session_t     *s;
    const ngx_wsp_opts_t  *opts;

    s = d->session;
    opts = s->conf;
    opcode = d->frame.opcode;
    control = ngx_wsp_is_control(opcode);
    len = d->frame.payload_len;

    d->remaining = len;
    d->offset = 0;

    if (opts->hook && opcode != NGX_WSP_OP_CLOSE
        && (!opts->aggregate || (opcode != NGX_WSP_OP_CONT && d->frame.fin))
        && !(d->z & NGX_WSP_Z_TX) && !(d->inflating && !control)
        && len <= opts->max_payload
        && (uint64_t) (d->last - d->ppos) >= d->frame.header_len + len)
    {
        /*
         * A whole frame in the buffer stays there: Lua sees it in place,
         * and one forwarded unchanged leaves as it came, with neither a
         * copy nor a new frame.
         */

        if (!control && opcode != NGX_WSP_OP_CONT) {
            ngx_wsp_msg_start(d, opcode);
        }

        d->in = NGX_WSP_IN_HOLD;
        d->remaining = 0;

        return NGX_WSP_OK;
    }

    if (control) {
        if (ngx_wsp_get_ctl(d) == NULL) {
            ngx_wsp_fail(s, "out of memory");
            return NGX_WSP_ERROR;
        }

        d->ctl->clen = 0;

    } else {
        if (opcode != NGX_WSP_OP_CONT || !opts->aggregate) {
            d->msg_len = 0;
        }

        if (opcode != NGX_WSP_OP_CONT) {
            d->msg_opcode = opcode;
            ngx_wsp_msg_start(d, opcode);
        }

        if (d->inflating) {
            /* the buffer grows as the payload inflates */

        } else if (d->msg_len + len > opts->max_payload) {
            ngx_wsp_limit(d, NGX_WSP_LIMIT_BUFFER, d->msg_len + len);
            return NGX_WSP_ERROR;

        } else if (s->cb->reserve(d, (size_t) len) != NGX_WSP_OK) {
            ngx_wsp_fail(s, "out of memory");
            return NGX_WSP_ERROR;
        }
    }

    d->in = NGX_WSP_IN_BUFFER;
    d->ppos += d->frame.header_len;
    d->spos = d->ppos;

    return NGX_WSP_OK;
}


/* the whole payload of the current frame has been read */

static void
ngx_wsp_frame_done(ngx_wsp_sdir_t *d)
{
    size_t          len;
    unsigned        in, control;
    unsigned char  *p;

    in = d->in;
    control = ngx_wsp_is_control(d->frame.opcode);

    d->in = NGX_WSP_IN_HEADER;
    d->frames++;

    if (in == NGX_WSP_IN_SKIP) {
        ngx_wsp_observe(d, NGX_WSP_OBS_DROPPED);

        if (d->frame.opcode == NGX_WSP_OP_CLOSE) {
            ngx_wsp_rx_close(d);
        }

        return;
    }

    if (!control && d->frame.fin) {
        d->messages++;
        d->msg_size = 0;
        d->msg_frames = 0;
    }

    if (in == NGX_WSP_IN_RAW) {
        ngx_wsp_observe(d, NGX_WSP_OBS_FORWARDED);
        ngx_wsp_raw_done(d);
        return;
    }

    if (in == NGX_WSP_IN_HOLD) {
        /* held at ppos: unmasked in place for Lua */

        p = d->ppos + d->frame.header_len;
        len = (size_t) d->frame.payload_len;

        if (d->frame.masked) {
            ngx_wsp_mask(p, p, len, d->frame.mask, 0);
        }

        if (ngx_wsp_checks_utf8(d)) {
            d->utf8 = ngx_wsp_utf8_validate(d->utf8, p, len);
        }

        d->hold = d->frame.header_len + len;
    }

    /* buffered: a whole frame, or a fragment of an aggregated message */

    if (ngx_wsp_checks_utf8(d)
        && (d->utf8 == NGX_WSP_UTF8_REJECT
            || (d->frame.fin && d->utf8 != NGX_WSP_UTF8_ACCEPT)))
    {
        d->hold = 0;
        ngx_wsp_observe(d, NGX_WSP_OBS_DROPPED);
        ngx_wsp_violation(d, NGX_WSP_CLOSE_INVALID_DATA, "invalid UTF-8 text",
                          "invalid UTF-8 in a text message");
        return;
    }

    if (d->observe && (!d->session->conf->hook
                       || (d->msg_drop && !control)))
    {
        /* a frame handed to Lua is reported with its verdict (relay) */
        ngx_wsp_obs_record(d, d->session->conf->hook ? NGX_WSP_OBS_DROPPED
                                                     : NGX_WSP_OBS_FORWARDED);
    }

    ngx_wsp_frame_out(d);
}


static void
ngx_wsp_raw_done(ngx_wsp_sdir_t *d)
{
    if (ngx_wsp_checks_utf8(d) && d->frame.fin
        && d->utf8 != NGX_WSP_UTF8_ACCEPT)
    {
        /* a code point cut by the end of the message */
        ngx_wsp_invalid_utf8(d, 1);
        return;
    }

    if (d->frame.opcode == NGX_WSP_OP_CLOSE) {
        /* forwarded as it came: the close handshake goes on through us */
        ngx_wsp_close_forwarded(d);
    }
}


/* a held or buffered frame, or a whole aggregated message, goes out or to
 * Lua */

static void
ngx_wsp_frame_out(ngx_wsp_sdir_t *d)
{
    size_t                 len;
    unsigned               opcode, fin;
    unsigned char         *p;
    const ngx_wsp_opts_t  *opts;

    opts = d->session->conf;
    opcode = d->frame.opcode;
    fin = d->frame.fin;

    if (d->hold) {
        p = d->ppos + d->frame.header_len;
        len = (size_t) d->frame.payload_len;

    } else if (ngx_wsp_is_control(opcode)) {
        p = d->ctl->cbuf;
        len = d->ctl->clen;
        fin = 1;

    } else if (opts->aggregate) {
        if (!fin) {
            return;
        }

        p = d->msg;
        len = d->msg_len;
        opcode = (unsigned) d->msg_opcode;

    } else {
        p = d->msg;
        len = d->msg_len;
    }

    if (!opts->hook) {
        /*
         * Aggregation without a hook: forward the assembled message; or a
         * frame that was inflated, or is to be deflated.
         */
        ngx_wsp_emit(d, fin, opcode, p, len);
        d->msg_len = 0;
        return;
    }

    if (d->msg_drop && !ngx_wsp_is_control(opcode)) {
        /*
         * A frame of a message whose first frame Lua dropped: dropped
         * too, without waking the hook (it was inflated and checked as
         * every frame is, so what comes after it stays readable).
         */

        d->msg_drop = !fin;
        d->ppos += d->hold;
        d->spos = d->ppos;
        d->hold = 0;
        d->msg_len = 0;
        return;
    }

    /* Lua reads the slot in place once its thread is woken */

    d->slot.data = p;
    d->slot.len = len;
    d->slot.opcode = (int) opcode;
    d->slot.fin = (int) fin;
    d->slot.code = -1;

    if (opcode == NGX_WSP_OP_CLOSE && len >= 2) {
        d->slot.code = (p[0] << 8) | p[1];
        d->slot.data = p + 2;
        d->slot.len = len - 2;
    }

    d->slot.seq++;
    d->slot.ready = 1;
    d->in = NGX_WSP_IN_LUA;

    d->session->cb->hand_over(d);
}


void
ngx_wsp_emit(ngx_wsp_sdir_t *d, unsigned fin, unsigned opcode,
    unsigned char *data, size_t len)
{
    size_t              hlen;
    ngx_wsp_session_t  *s;
    unsigned char       key[4];

    s = d->session;

    if (d->inject_cur && ngx_wsp_out_busy(d)) {
        /*
         * A verdict while a frame injected from Lua is in the output: this
         * frame goes once that one is all sent (ngx_wsp_verdict_due()),
         * not over its rest.  Lua has answered: the slot names it.
         */
        d->slot.fin = (int) fin;
        d->slot.opcode = (int) opcode;
        d->slot.data = data;
        d->slot.len = len;
        d->hold = 0;
        d->in = NGX_WSP_IN_DUE;
        return;
    }

    if (data == NULL) {
        /* an empty payload without memory of its own */
        data = d->ohdr;
    }

    if ((d->z & (NGX_WSP_Z_TX | NGX_WSP_Z_PASS)) == NGX_WSP_Z_TX
        && !ngx_wsp_is_control(opcode))
    {
        /*
         * Every data frame to a dst that negotiated it goes compressed
         * (none reaches dst another way: such a direction holds no frame
         * in place), RSV1 on a message's first.
         */

        if (s->cb->deflate(d, fin, &data, &len) != NGX_WSP_OK) {
            ngx_wsp_fail(s, "deflate failed");
            return;
        }

        if (opcode != NGX_WSP_OP_CONT) {
            opcode |= NGX_WSP_RSV1;
        }
    }

    if (d->dir == NGX_WSP_DIR_CLIENT) {
        s->cb->mask_key(s, key);
    }

    hlen = ngx_wsp_frame_build(d->ohdr, data, data, len, fin, opcode,
                               d->dir == NGX_WSP_DIR_CLIENT ? key : NULL);

    d->out_hdr.pos = d->ohdr;
    d->out_hdr.last = d->ohdr + hlen;
    d->out_body.pos = data;
    d->out_body.last = data + len;

    if (opcode == NGX_WSP_OP_CLOSE) {
        ngx_wsp_close_forwarded(d);
    }
}


/* Lua's verdicts */

static int ngx_wsp_fragment(ngx_wsp_sdir_t *d, unsigned *verdict,
    unsigned char *data, size_t *len);
static int ngx_wsp_rewrite(ngx_wsp_sdir_t *d, unsigned char *data,
    size_t len);
static int ngx_wsp_close_verdict(ngx_wsp_sdir_t *d, unsigned verdict,
    unsigned char *data, size_t len, intptr_t code);


#define ngx_wsp_utf8(p, len)                                                 \
    (ngx_wsp_utf8_validate(NGX_WSP_UTF8_ACCEPT, p, len)                      \
     == NGX_WSP_UTF8_ACCEPT)

/* the frame Lua had is answered */
#define ngx_wsp_taken(d)                                                     \
    (d)->slot.ready = 0;                                                     \
    (d)->in = NGX_WSP_IN_HEADER


int
ngx_wsp_verdict(ngx_wsp_sdir_t *d, unsigned verdict, unsigned char *data,
    size_t len, intptr_t code)
{
    int             rc;
    unsigned        opcode;
    unsigned char  *p;

    opcode = (unsigned) d->slot.opcode;

    if (!ngx_wsp_is_control(opcode)
        && (!d->slot.fin || opcode == NGX_WSP_OP_CONT))
    {
        rc = ngx_wsp_fragment(d, &verdict, data, &len);

        if (rc != NGX_WSP_OK) {
            return rc;
        }
    }

    if (verdict == NGX_WSP_VERDICT_FORWARD && d->hold
        && d->tx != NGX_WSP_TX_ABORTED)
    {
        /*
         * The usual verdict, kept short: the held frame (never a close)
         * goes out as it came, masked again with the sender's key.
         */

        if (d->frame.masked) {
            p = (unsigned char *) d->slot.data;
            ngx_wsp_mask(p, p, d->slot.len, d->frame.mask, 0);
        }

        ngx_wsp_taken(d);

        if (d->inject_cur && ngx_wsp_out_busy(d)) {
            /* after the injected frame in the output (verdict_due()) */
            d->in = NGX_WSP_IN_DUE;
            return NGX_WSP_OK;
        }

        d->ppos += d->hold;
        d->hold = 0;

        return NGX_WSP_OK;
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        return ngx_wsp_close_verdict(d, verdict, data, len, code);
    }

    if (d->hold) {
        /* dropped, rewritten or for a peer gone: it leaves unsent */
        d->ppos += d->hold;
        d->spos = d->ppos;
        d->hold = 0;
    }

    if (verdict == NGX_WSP_VERDICT_REWRITE) {
        rc = ngx_wsp_rewrite(d, data, len);

        if (rc != NGX_WSP_OK) {
            return rc;
        }

    } else if (verdict == NGX_WSP_VERDICT_FORWARD
               && d->tx != NGX_WSP_TX_ABORTED)
    {
        /* a frame not held: it was copied out */
        ngx_wsp_emit(d, (unsigned) d->slot.fin, opcode,
                     (unsigned char *) d->slot.data, d->slot.len);
    }

    if (!ngx_wsp_is_control(opcode)) {
        d->msg_len = 0;
    }

    /* answered; its rebuilt frame may wait for an injected one (IN_DUE) */

    d->slot.ready = 0;

    if (d->in == NGX_WSP_IN_LUA) {
        d->in = NGX_WSP_IN_HEADER;
    }

    return NGX_WSP_OK;
}


/*
 * A fragment of a message that is not aggregated: what dst gets of the
 * message must stay one valid message (RFC 6455 5.4) whatever Lua does
 * with each of its frames.  The first one dropped drops the whole message
 * (its other frames are dropped without being handed to Lua, see
 * frame_out()); a middle one dropped sends nothing; the last one dropped
 * becomes an empty last frame, which ends the message.
 *
 * Text: the frames that go out (forwarded, rewritten, the empty last one)
 * are checked as one UTF-8 stream, from the text already sent of the
 * message (out_utf8).  A drop or a rewrite can leave a character cut (a
 * dropped fragment that ended or began inside one, a rewrite that does
 * not finish what went before it, or that ends inside one at the end of
 * the message).  The proxy could send the cut character's bytes anyway,
 * but that would rewrite what Lua chose and still fail when Lua rewrites
 * the next frame; as for a whole text message rewritten to bytes that are
 * not UTF-8, the verdict is refused (NGX_WSP_ABORT: the frame stays held,
 * the relay ends the session as for a failed hook): invalid text never
 * reaches a peer, and the session never sends it a message cut short.
 */

static int
ngx_wsp_fragment(ngx_wsp_sdir_t *d, unsigned *verdict, unsigned char *data,
    size_t *len)
{
    size_t    n;
    uint32_t  state;
    unsigned  first;

    first = (d->slot.opcode != NGX_WSP_OP_CONT);

    if (first && *verdict == NGX_WSP_VERDICT_DROP) {
        d->msg_drop = 1;
        return NGX_WSP_OK;
    }

    if (d->tx == NGX_WSP_TX_ABORTED) {
        /* nothing goes out any more */
        return NGX_WSP_OK;
    }

    state = first ? NGX_WSP_UTF8_ACCEPT : d->out_utf8;

    if (*verdict == NGX_WSP_VERDICT_DROP) {
        if (!d->slot.fin) {
            return NGX_WSP_OK;
        }

        /* the last frame dropped: an empty one ends the message */

        if (d->check_utf8 && state != NGX_WSP_UTF8_ACCEPT) {
            return NGX_WSP_ABORT;
        }

        *verdict = NGX_WSP_VERDICT_REWRITE;
        *len = 0;
        return NGX_WSP_OK;
    }

    if (!d->check_utf8) {
        return NGX_WSP_OK;
    }

    n = *len;

    if (*verdict == NGX_WSP_VERDICT_FORWARD) {
        data = (unsigned char *) d->slot.data;
        n = d->slot.len;
    }

    if (n) {
        state = ngx_wsp_utf8_validate(state, data, n);
    }

    if (state == NGX_WSP_UTF8_REJECT
        || (d->slot.fin && state != NGX_WSP_UTF8_ACCEPT))
    {
        return NGX_WSP_ABORT;
    }

    d->out_utf8 = state;

    return NGX_WSP_OK;
}


/* a rewritten payload goes out in the direction's own memory */

static int
ngx_wsp_rewrite(ngx_wsp_sdir_t *d, unsigned char *data, size_t len)
{
    unsigned        opcode;
    unsigned char  *p;

    opcode = (unsigned) d->slot.opcode;

    if (ngx_wsp_is_control(opcode)) {
        if (len > NGX_WSP_MAX_CONTROL) {
            return NGX_WSP_DECLINED;
        }

        if (ngx_wsp_get_ctl(d) == NULL) {
            return NGX_WSP_ERROR;
        }

        p = d->ctl->cbuf;

    } else {
        if (opcode == NGX_WSP_OP_TEXT && d->slot.fin
            && !ngx_wsp_utf8(data, len))
        {
            /* a whole text message (a fragment's may end mid code point) */
            return NGX_WSP_ABORT;
        }

        d->msg_len = 0;

        if (d->session->cb->reserve(d, len) != NGX_WSP_OK) {
            return NGX_WSP_ERROR;
        }

        p = d->msg;
    }

    if (len) {
        memcpy(p, data, len);
    }

    ngx_wsp_emit(d, (unsigned) d->slot.fin, opcode, p, len);

    return NGX_WSP_OK;
}


/*
 * At the boundary after a verdict whose frame waited for an injected
 * frame in the output: once that is all sent, the frame goes (as it
 * came, or rebuilt), or leaves unsent when dst is gone.
 */

static int
ngx_wsp_verdict_due(ngx_wsp_sdir_t *d)
{
    if (ngx_wsp_out_busy(d)) {
        return NGX_WSP_AGAIN;
    }

    d->in = NGX_WSP_IN_HEADER;

    if (d->hold) {
        d->ppos += d->hold;
        d->hold = 0;

        if (d->tx == NGX_WSP_TX_ABORTED) {
            d->spos = d->ppos;
        }

        return NGX_WSP_DONE;
    }

    if (d->tx != NGX_WSP_TX_ABORTED) {
        ngx_wsp_emit(d, (unsigned) d->slot.fin, (unsigned) d->slot.opcode,
                     (unsigned char *) d->slot.data, d->slot.len);
    }

    return NGX_WSP_DONE;
}


/*
 * A close frame's verdict: close frames cannot be dropped (the close
 * handshake needs them); what Lua returns is its reason, code its status.
 */

static int
ngx_wsp_close_verdict(ngx_wsp_sdir_t *d, unsigned verdict,
    unsigned char *data, size_t len, intptr_t code)
{
    ngx_wsp_session_t  *s;
    unsigned char      *p;

    s = d->session;

    if (verdict == NGX_WSP_VERDICT_DROP) {
        ngx_wsp_event(d, NGX_WSP_EV_CLOSE_UNDROPPED, 0, NULL);
        verdict = NGX_WSP_VERDICT_FORWARD;
        code = -1;
    }

    if (verdict == NGX_WSP_VERDICT_FORWARD) {
        /* the payload Lua saw is the reason, after the status */
        data = d->ctl->cbuf + (d->ctl->clen >= 2 ? 2 : 0);
        len = d->ctl->clen >= 2 ? d->ctl->clen - 2 : 0;
    }

    if (!ngx_wsp_utf8(data, len)) {
        /* a rewritten reason; a forwarded one was checked on arrival */
        return NGX_WSP_ABORT;
    }

    if (len > NGX_WSP_MAX_CONTROL - 2) {
        /* cut to what fits, at a code point */
        len = NGX_WSP_MAX_CONTROL - 2;

        while (len && (data[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    if (code < 0 && d->close_code != NGX_WSP_CLOSE_NO_STATUS) {
        code = d->close_code;
    }

    if (code < 0 && len) {
        code = NGX_WSP_CLOSE_NORMAL;
    }

    if (code >= 0 && !ngx_wsp_close_code_valid((unsigned) code)) {
        return NGX_WSP_DECLINED;
    }

    s->cb->event(s, d, NGX_WSP_EV_CLOSE_OUT,
                 code < 0 ? NGX_WSP_CLOSE_NO_STATUS : (unsigned) code,
                 (const char *) data, len);

    p = d->ctl->cbuf;
    len = code >= 0 ? ngx_wsp_close_payload(p, (unsigned) code, data, len)
                    : 0;

    ngx_wsp_taken(d);

    if (d->tx != NGX_WSP_TX_ABORTED) {
        ngx_wsp_emit(d, 1, NGX_WSP_OP_CLOSE, p, len);
    }

    return NGX_WSP_OK;
}
