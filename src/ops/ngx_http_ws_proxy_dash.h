/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The operators' dashboard page (ngx_http_ws_proxy_page.c) and the tap
 * (ngx_http_ws_proxy_tap.c), served by a ws_proxy_status location
 * (docs/operating.md, "The dashboard", "Watching a session").
 */


#ifndef _NGX_HTTP_WS_PROXY_DASH_H_INCLUDED_
#define _NGX_HTTP_WS_PROXY_DASH_H_INCLUDED_


#include "ngx_http_ws_proxy_console.h"


ngx_uint_t ngx_http_ws_proxy_page_wanted(ngx_http_request_t *r);
ngx_int_t ngx_http_ws_proxy_page_handler(ngx_http_request_t *r);

/* the tap's side */
ngx_int_t ngx_http_ws_proxy_tap_handler(ngx_http_request_t *r);

/* the session's side: its frames, its worker's tick, its end (locked) */
void ngx_http_ws_proxy_tap_frame(ngx_http_ws_proxy_t *wp, ngx_uint_t dir,
    ngx_uint_t action, ngx_uint_t opcode, ngx_uint_t fin, ngx_uint_t rsv1,
    uint64_t len, const u_char *payload, size_t plen, const u_char *mask);
void ngx_http_ws_proxy_tap_core(ngx_wsp_sdir_t *sd, unsigned action);
void ngx_http_ws_proxy_tap_tick(ngx_queue_t *live);
void ngx_http_ws_proxy_tap_ended(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_rentry_t *e);


#endif /* _NGX_HTTP_WS_PROXY_DASH_H_INCLUDED_ */
