/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Frames: a direction's parser walks the input buffer in place, from one
 * frame boundary to the next.  At a boundary it sends what the proxy has
 * queued (a frame from send_frame(), a close of its own), or parses the
 * next header, checks it (ngx_wsp_frame_check(): the protocol rules;
 * here: the limits and the close frames) and chooses what happens to the
 * payload: forwarded raw, held whole in the buffer for Lua, copied out
 * unmasked (the hook, aggregation), or skipped.  At the end of a frame it
 * forwards, hands over to Lua, or waits for the rest of the message.
 *
 * The one frame builder of the module is the core's,
 * ngx_wsp_frame_build(), which ngx_http_ws_proxy_frame() calls with a
 * fresh masking key.
 */


#include "ngx_http_ws_proxy_pump.h"


static ngx_int_t ngx_http_ws_proxy_boundary(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_payload(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_inflate_stopped(
    ngx_http_ws_proxy_dir_t *d, size_t avail);
static ngx_int_t ngx_http_ws_proxy_skip_start(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_skip_frame(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_close_payload_of(ngx_http_ws_proxy_dir_t *d,
    u_char *dst);
static void ngx_http_ws_proxy_keep_reply(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_frame_start(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_frame_limits(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_close_frame(ngx_http_ws_proxy_dir_t *d);
static ngx_int_t ngx_http_ws_proxy_frame_buffer(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_frame_done(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_raw_done(ngx_http_ws_proxy_dir_t *d);
static void ngx_http_ws_proxy_frame_out(ngx_http_ws_proxy_dir_t *d);


/* a new data message: its text is checked as UTF-8 as it passes */

#define ngx_wsp_msg_start(d, op)                                             \
    (d)->utf8 = NGX_WSP_UTF8_ACCEPT;                                         \
    (d)->check_utf8 = ((op) == NGX_WSP_OP_TEXT)

/* the payload of this frame is text to check */
#define ngx_wsp_checks_utf8(d)                                               \
    ((d)->check_utf8 && !ngx_wsp_is_control((d)->frame.opcode))


/*
 * Parses what is in d's input buffer and queues what goes out.  Returns 1
 * when it stopped for want of bytes (a header, or a frame that must be
 * whole, cut short), else 0.
 */

ngx_uint_t
ngx_http_ws_proxy_parse(ngx_http_ws_proxy_dir_t *d)
{
    ngx_int_t  rc;

    for ( ;; ) {

        if (d->in == NGX_WSP_IN_HEADER || d->in == NGX_WSP_IN_LUA
            || (d->in == NGX_WSP_IN_SKIP && d->tx == NGX_WSP_TX_DUE))
        {
            rc = ngx_http_ws_proxy_boundary(d);

            if (rc == NGX_DECLINED) {
                return 1;
            }

            if (rc == NGX_AGAIN) {
                return 0;
            }

            if (rc != NGX_OK) {
                /* NGX_DONE, NGX_ERROR: a state changed, look again */
                continue;
            }
        }

        rc = ngx_http_ws_proxy_payload(d);

        if (rc == NGX_AGAIN) {
            return 0;
        }

        if (rc == NGX_OK) {
            ngx_http_ws_proxy_frame_done(d);
        }
    }
}


/*
 * At a frame boundary of the output: a frame of the proxy's goes out, or
 * the next frame starts.  NGX_OK: a frame's payload follows; NGX_DONE: a
 * frame was queued; NGX_AGAIN: nothing more to do now; NGX_DECLINED: more
 * bytes are needed; NGX_ERROR: the frame was refused.
 */

static ngx_int_t
ngx_http_ws_proxy_boundary(ngx_http_ws_proxy_dir_t *d)
{
    if (d->inject && d->tx <= NGX_WSP_TX_DUE
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
        return NGX_DONE;
    }

    if (d->in == NGX_WSP_IN_LUA) {
        return NGX_AGAIN;
    }

    if (d->tx && ngx_wsp_close_boundary(&d->core)) {
        /* a close of the proxy's own, at a frame boundary */
        return NGX_DONE;
    }

    if (d->in == NGX_WSP_IN_SKIP) {
        return NGX_OK;
    }

    if (ngx_wsp_rx_over(d)) {
        /* after its close (or a violation) a peer's bytes are ignored */

        if (d->spos == d->ppos) {
            d->ppos = d->last;
            d->spos = d->last;
        }

        return NGX_AGAIN;
    }

    if (d->ppos == d->last) {
        return NGX_AGAIN;
    }

    if (d->tx >= NGX_WSP_TX_CLOSED) {
        return ngx_http_ws_proxy_skip_start(d);
    }

    if (d->out_hdr.pos < d->out_hdr.last
        || d->out_body.pos < d->out_body.last)
    {
        return NGX_AGAIN;
    }

    return ngx_http_ws_proxy_frame_start(d);
}


/*
 * Moves the payload bytes of the current frame that are in the buffer.
 * NGX_OK: the frame is complete; NGX_AGAIN: more is due; NGX_DONE: its
 * text is invalid, the direction was closed.
 */

static ngx_int_t
ngx_http_ws_proxy_payload(ngx_http_ws_proxy_dir_t *d)
{
    size_t     avail;
    u_char    *start, *to;
    ngx_int_t  rc;

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
                ngx_http_ws_proxy_invalid_utf8(d, 1);
                return NGX_DONE;
            }
        }

        d->ppos += avail;
        break;

    case NGX_WSP_IN_BUFFER:

        if (ngx_wsp_is_control(d->frame.opcode)) {
            to = d->ctl->cbuf + d->ctl->clen;
            d->ctl->clen += avail;

        } else if (d->inflating) {
            /* onto the message buffer, checked there as it comes out */

            rc = ngx_http_ws_proxy_inflate(d, start, avail);

            d->ppos += avail;
            d->spos = d->ppos;

            if (rc != NGX_OK) {
                return ngx_http_ws_proxy_inflate_stopped(d, avail);
            }

            break;

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

        if (ngx_wsp_checks_utf8(d)) {
            d->utf8 = ngx_wsp_utf8_validate(d->utf8, to, avail);

            if (d->utf8 == NGX_WSP_UTF8_REJECT) {
                /* fail fast: not when the frame is complete */
                ngx_http_ws_proxy_invalid_utf8(d, 0);
                return NGX_DONE;
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

    return d->remaining ? NGX_AGAIN : NGX_OK;
}


/*
 * A limit stopped an inflate in the middle of its frame: the sender's
 * reader stays open (its close reply is awaited), so the rest of the
 * frame is skipped, and the frames after it are parsed for that reply.
 * After a violation or a failure the reader is over, and nothing is.
 */

static ngx_int_t
ngx_http_ws_proxy_inflate_stopped(ngx_http_ws_proxy_dir_t *d, size_t avail)
{
    if (d->in == NGX_WSP_IN_HEADER && !ngx_wsp_rx_over(d)
        && d->remaining > avail)
    {
        d->in = NGX_WSP_IN_SKIP;
        d->remaining -= avail;
        d->offset += avail;
    }

    return NGX_DONE;
}


/*
 * Nothing more can go to dst (a close was sent, or dst is gone): frames
 * are still parsed, to find the peer's close reply, but their payloads are
 * dropped.  Unsent raw bytes before them must go first.  A header that
 * does not parse ends src's frames; no other rule is checked.
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

        return NGX_DECLINED;
    }

    if (rc == NGX_WSP_PARSE_ERROR) {
        ngx_http_ws_proxy_rx_close(d);
        return NGX_ERROR;
    }

    if (d->frame.opcode == NGX_WSP_OP_CLOSE
        && d->frame.payload_len <= NGX_WSP_MAX_CONTROL)
    {
        /* the peer's close reply is kept for the variables and stats() */

        if (ngx_http_ws_proxy_whole_frame(d) != NGX_OK) {
            return NGX_DECLINED;
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
    d->in = NGX_WSP_IN_SKIP;
    d->remaining = d->frame.payload_len;
    d->offset = 0;

    return NGX_OK;
}


/* NGX_DECLINED until the whole frame at d->ppos is in the input buffer */

ngx_int_t
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

    return NGX_DECLINED;
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

    ngx_wsp_keep_close(&d->core, code, tmp, len);
}


/*
 * A new frame at d->ppos: parse and check its header, apply the limits and
 * choose what happens to its payload.  NGX_DECLINED: more bytes are
 * needed; NGX_AGAIN: the frame must wait for output to drain; NGX_ERROR:
 * the direction was closed for a violation or a limit.
 */

static ngx_int_t
ngx_http_ws_proxy_frame_start(ngx_http_ws_proxy_dir_t *d)
{
    int                   rc;
    ngx_uint_t            opcode, control, buffered;
    const char           *reason;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;

    rc = ngx_wsp_frame_parse_header(d->ppos, d->last - d->ppos, &d->frame);

    if (rc == NGX_WSP_PARSE_AGAIN) {
        if (d->last == d->end) {
            ngx_http_ws_proxy_compact(d);
        }

        return NGX_DECLINED;
    }

    if (rc == NGX_WSP_PARSE_ERROR) {
        ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_PROTOCOL,
                                    d->frame.error, d->frame.error);
        return NGX_ERROR;
    }

    opcode = d->frame.opcode;
    control = ngx_wsp_is_control(opcode);

    buffered = wp->opts.hook
               || (wp->opts.aggregate && !control
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
                           : (d->frame.rsv & NGX_WSP_RSV_DEFLATE));

        buffered |= d->inflating || (d->z & NGX_WSP_Z_TX);
    }

    if (buffered && d->spos < d->ppos) {
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

    /* liveness: a data frame's time; a control frame's, the module's pongs */

    if (!control) {
        d->data_time = ngx_current_msec;

    } else {
        rc = ngx_http_ws_proxy_live_control(d);

        if (rc != NGX_OK) {
            return rc == NGX_DONE ? ngx_http_ws_proxy_skip_frame(d) : rc;
        }
    }

    if (!control && ngx_http_ws_proxy_frame_limits(d) != NGX_OK) {
        return NGX_ERROR;
    }

    if (opcode == NGX_WSP_OP_CLOSE) {
        rc = ngx_http_ws_proxy_close_frame(d);

        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (buffered) {
        return ngx_http_ws_proxy_frame_buffer(d);
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

    return NGX_OK;
}


/*
 * The size limit counts one frame, or the whole message when fragments
 * are aggregated; the fragment limit counts the frames of one message.
 */

static ngx_int_t
ngx_http_ws_proxy_frame_limits(ngx_http_ws_proxy_dir_t *d)
{
    uint64_t              size;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;

    /* what is inflated counts as it comes out (ngx_http_ws_proxy_inflate) */

    size = (wp->opts.aggregate ? d->msg_size : 0)
           + (d->inflating ? 0 : d->frame.payload_len);
    d->msg_size = size;
    d->msg_frames++;

    if (wp->opts.max_frame_size[d->dir]
        && size > wp->opts.max_frame_size[d->dir])
    {
        ngx_http_ws_proxy_size_limit(d, size);
        return NGX_ERROR;
    }

    if (wp->opts.max_fragments[d->dir]
        && d->msg_frames > wp->opts.max_fragments[d->dir])
    {
        ngx_http_ws_proxy_lua_log(wp, NGX_LOG_INFO,
                                  "%s frame count (%ui) exceeds limit, "
                                  "closing", ngx_wsp_src_role(d),
                                  d->msg_frames);
        ngx_http_ws_proxy_limit(d);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the frame size limit: the log line of Kong's library, then 1009 */

void
ngx_http_ws_proxy_size_limit(ngx_http_ws_proxy_dir_t *d, uint64_t size)
{
    ngx_http_ws_proxy_lua_log(d->wp, NGX_LOG_INFO,
                              "%s frame size (%uL) exceeds limit, closing",
                              ngx_wsp_src_role(d), size);
    ngx_http_ws_proxy_limit(d);
}


/* the buffering ceiling, ws_proxy_max_payload */

void
ngx_http_ws_proxy_buffer_limit(ngx_http_ws_proxy_dir_t *d, uint64_t size)
{
    ngx_log_error(NGX_LOG_INFO, d->wp->log, 0,
                  "%s message of %uL bytes exceeds the buffering limit of "
                  "%uL, closing", ngx_wsp_src_role(d), size,
                  d->wp->opts.max_payload);
    ngx_http_ws_proxy_limit(d);
}


/*
 * A close frame is checked whole before any of it moves.  From here on
 * src's frames are over, whether the frame goes out raw or waits for Lua:
 * a FIN that follows is the end of a close handshake, not a peer gone.
 * NGX_OK: it goes on as other frames do.
 */

static ngx_int_t
ngx_http_ws_proxy_close_frame(ngx_http_ws_proxy_dir_t *d)
{
    int                   rc;
    size_t                len;
    unsigned              code;
    const char           *reason;
    ngx_http_ws_proxy_t  *wp;
    u_char                tmp[NGX_WSP_MAX_CONTROL];

    wp = d->wp;
    len = (size_t) d->frame.payload_len;

    if (ngx_http_ws_proxy_whole_frame(d) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_http_ws_proxy_close_payload_of(d, tmp);

    rc = ngx_wsp_close_check(tmp, len, &code, &reason);
    if (rc) {
        ngx_http_ws_proxy_violation(d, rc, reason, reason);
        return NGX_ERROR;
    }

    if (ngx_wsp_close_accepted(&d->core, code, tmp, len) != 0) {
        ngx_http_ws_proxy_fail(wp, "out of memory");
        return NGX_ERROR;
    }

    if (!wp->opts.hook) {
        ngx_http_ws_proxy_log_close(d, code, len > 2 ? tmp + 2 : tmp,
                                    len > 2 ? len - 2 : 0);
    }

    return NGX_OK;
}


/*
 * The frame goes to Lua or into an aggregated message: held in place when
 * it is whole in the buffer, else copied out as it comes.
 */

static ngx_int_t
ngx_http_ws_proxy_frame_buffer(ngx_http_ws_proxy_dir_t *d)
{
    uint64_t              len;
    ngx_uint_t            opcode, control;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;
    opcode = d->frame.opcode;
    control = ngx_wsp_is_control(opcode);
    len = d->frame.payload_len;

    d->remaining = len;
    d->offset = 0;

    if (wp->opts.hook && opcode != NGX_WSP_OP_CLOSE
        && (!wp->opts.aggregate
            || (opcode != NGX_WSP_OP_CONT && d->frame.fin))
        && !(d->z & NGX_WSP_Z_TX) && !(d->inflating && !control)
        && len <= wp->opts.max_payload
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

        return NGX_OK;
    }

    if (control) {
        if (ngx_http_ws_proxy_get_ctl(d) == NULL) {
            ngx_http_ws_proxy_fail(wp, "out of memory");
            return NGX_ERROR;
        }

        d->ctl->clen = 0;

    } else {
        if (opcode != NGX_WSP_OP_CONT || !wp->opts.aggregate) {
            d->msg_len = 0;
        }

        if (opcode != NGX_WSP_OP_CONT) {
            d->msg_opcode = opcode;
            ngx_wsp_msg_start(d, opcode);
        }

        if (d->inflating) {
            /* the buffer grows as the payload inflates */

        } else if (d->msg_len + len > wp->opts.max_payload) {
            ngx_http_ws_proxy_buffer_limit(d, d->msg_len + len);
            return NGX_ERROR;

        } else if (ngx_http_ws_proxy_reserve(d, (size_t) len) != NGX_OK) {
            ngx_http_ws_proxy_fail(wp, "out of memory");
            return NGX_ERROR;
        }
    }

    d->in = NGX_WSP_IN_BUFFER;
    d->ppos += d->frame.header_len;
    d->spos = d->ppos;

    return NGX_OK;
}


void
ngx_http_ws_proxy_log_close(ngx_http_ws_proxy_dir_t *d, ngx_uint_t code,
    u_char *reason, size_t len)
{
    if (code == NGX_WSP_CLOSE_NO_STATUS) {
        ngx_http_ws_proxy_lua_log(d->wp, NGX_LOG_INFO,
                                  "forwarding close with code: nil, "
                                  "payload: %*s", len, reason);
        return;
    }

    ngx_http_ws_proxy_lua_log(d->wp, NGX_LOG_INFO,
                              "forwarding close with code: %ui, payload: %*s",
                              code, len, reason);
}


/* the whole payload of the current frame has been read */

static void
ngx_http_ws_proxy_frame_done(ngx_http_ws_proxy_dir_t *d)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   in, control;

    in = d->in;
    control = ngx_wsp_is_control(d->frame.opcode);

    d->in = NGX_WSP_IN_HEADER;
    d->frames++;

    if (in == NGX_WSP_IN_SKIP) {
        if (d->frame.opcode == NGX_WSP_OP_CLOSE) {
            ngx_http_ws_proxy_rx_close(d);
        }

        return;
    }

    if (!control && d->frame.fin) {
        d->messages++;
        d->msg_size = 0;
        d->msg_frames = 0;
    }

    if (in == NGX_WSP_IN_RAW) {
        ngx_http_ws_proxy_raw_done(d);
        return;
    }

    if (in == NGX_WSP_IN_HOLD) {
        /* held at d->ppos: unmasked in place for Lua */

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
        ngx_http_ws_proxy_violation(d, NGX_WSP_CLOSE_INVALID_DATA,
                                    "invalid UTF-8 text",
                                    "invalid UTF-8 in a text message");
        return;
    }

    ngx_http_ws_proxy_frame_out(d);
}


static void
ngx_http_ws_proxy_raw_done(ngx_http_ws_proxy_dir_t *d)
{
    if (ngx_wsp_checks_utf8(d) && d->frame.fin
        && d->utf8 != NGX_WSP_UTF8_ACCEPT)
    {
        /* a code point cut by the end of the message */
        ngx_http_ws_proxy_invalid_utf8(d, 1);
        return;
    }

    if (d->frame.opcode == NGX_WSP_OP_CLOSE) {
        /* forwarded as it came: the close handshake goes on through us */
        ngx_wsp_close_forwarded(&d->core);
    }
}


/* a buffered frame, or a whole aggregated message, goes out or to Lua */

static void
ngx_http_ws_proxy_frame_out(ngx_http_ws_proxy_dir_t *d)
{
    u_char               *p;
    size_t                len;
    ngx_uint_t            opcode, fin;
    ngx_http_ws_proxy_t  *wp;

    wp = d->wp;
    opcode = d->frame.opcode;
    fin = d->frame.fin;

    if (d->hold) {
        p = d->ppos + d->frame.header_len;
        len = (size_t) d->frame.payload_len;

    } else if (ngx_wsp_is_control(opcode)) {
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
        /*
         * Aggregation without a hook: forward the assembled message; or a
         * frame that was inflated, or is to be deflated.
         */
        ngx_http_ws_proxy_emit(d, fin, opcode, p, len);
        d->msg_len = 0;
        return;
    }

    ngx_http_ws_proxy_hand_over(d, p, len, opcode, fin);
}


/*
 * Queues a rebuilt frame whose unmasked payload is in our own memory
 * (d->msg or d->ctl->cbuf).  Frames towards the upstream are masked in place
 * with a fresh key.
 */

void
ngx_http_ws_proxy_emit(ngx_http_ws_proxy_dir_t *d, ngx_uint_t fin,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    size_t  hlen;

    if ((d->z & (NGX_WSP_Z_TX | NGX_WSP_Z_PASS)) == NGX_WSP_Z_TX
        && !ngx_wsp_is_control(opcode))
    {
        /*
         * Every data frame to a dst that negotiated it goes compressed
         * (none reaches dst another way: such a direction holds no frame
         * in place), RSV1 on a message's first.
         */

        if (ngx_http_ws_proxy_deflate(d, fin, &data, &len) != NGX_OK) {
            ngx_http_ws_proxy_fail(d->wp, "deflate failed");
            return;
        }

        if (opcode != NGX_WSP_OP_CONT) {
            opcode |= NGX_WSP_RSV1;
        }
    }

    hlen = ngx_http_ws_proxy_frame(d->ohdr, data, data, len, fin, opcode,
                                   d->dir == NGX_WSP_DIR_CLIENT);

    d->out_hdr.pos = d->ohdr;
    d->out_hdr.last = d->ohdr + hlen;
    d->out_body.pos = data;
    d->out_body.last = data + len;

    if (opcode == NGX_WSP_OP_CLOSE) {
        ngx_wsp_close_forwarded(&d->core);
    }
}


/*
 * A frame from the one frame builder (ngx_wsp_frame_build()), masked with
 * a fresh key when it goes to the upstream.  Returns the header's length.
 */

size_t
ngx_http_ws_proxy_frame(u_char *hdr, u_char *out, const u_char *payload,
    size_t len, ngx_uint_t fin, ngx_uint_t opcode, ngx_uint_t masked)
{
    u_char  mask[4];

    if (masked) {
        ngx_http_ws_proxy_random(mask, 4);
    }

    return ngx_wsp_frame_build(hdr, out, payload, len, fin, opcode,
                               masked ? mask : NULL);
}
