/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Frames in the relay: the session core (ngx_wsp_session.c) parses,
 * checks, forwards, holds, buffers and rebuilds frames; here are Kong's
 * log line for a close that goes on, and the relay's frames from the one
 * frame builder, ngx_wsp_frame_build(), with a fresh masking key.
 */


#include "ngx_http_ws_proxy_pump.h"


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
