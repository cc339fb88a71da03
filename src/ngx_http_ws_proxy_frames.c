/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Frames: the relay's part of the parser.  The session core
 * (ngx_wsp_session.c) walks a direction's input, checks every header,
 * close frame and limit, forwards raw frames and skips the rest; here is
 * what it hands back: a frame held or buffered for Lua, aggregation or
 * deflate (buffer()), the end of such a frame or message (frame_out()),
 * and the frames the proxy rebuilds (emit()), with the core's one frame
 * builder, ngx_wsp_frame_build(), and a fresh masking key.
 */


#include "ngx_http_ws_proxy_pump.h"


/*
 * The core's buffer(): the frame goes to Lua or into an aggregated message
 * (or is inflated, or deflated): held in place when it is whole in the
 * buffer, else copied out as it comes.
 */

int
ngx_http_ws_proxy_frame_buffer(ngx_wsp_sdir_t *sd)
{
    uint64_t                  len;
    ngx_uint_t                opcode, control;
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    d = (ngx_http_ws_proxy_dir_t *) sd;
    wp = ngx_wsp_dir_wp(d);
    opcode = d->frame.opcode;
    control = ngx_wsp_is_control(opcode);
    len = d->frame.payload_len;

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
            ngx_http_ws_proxy_limit(d, NGX_WSP_LIMIT_BUFFER,
                                    d->msg_len + len);
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
        ngx_http_ws_proxy_lua_log(ngx_wsp_dir_wp(d), NGX_LOG_INFO,
                                  "forwarding close with code: nil, "
                                  "payload: %*s", len, reason);
        return;
    }

    ngx_http_ws_proxy_lua_log(ngx_wsp_dir_wp(d), NGX_LOG_INFO,
                              "forwarding close with code: %ui, payload: %*s",
                              code, len, reason);
}


/*
 * The core's frame_out(): a held or buffered frame, or a whole aggregated
 * message, goes out or to Lua
 */

void
ngx_http_ws_proxy_frame_out(ngx_wsp_sdir_t *sd)
{
    u_char                   *p;
    size_t                    len;
    ngx_uint_t                opcode, fin;
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    d = (ngx_http_ws_proxy_dir_t *) sd;
    wp = ngx_wsp_dir_wp(d);
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
            ngx_http_ws_proxy_fail(ngx_wsp_dir_wp(d), "deflate failed");
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
