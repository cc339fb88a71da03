/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Liveness: why a session ended ($ws_proxy_end, stats().ended_by), the
 * idle timeout and the heartbeat.  See docs/design.md "Liveness".
 */


#include "ngx_http_ws_proxy_pump.h"


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
