/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The operators' dashboard page (ngx_http_ws_proxy_page.c), served by a
 * ws_proxy_status location (docs/operating.md, "The dashboard").
 */


#ifndef _NGX_HTTP_WS_PROXY_DASH_H_INCLUDED_
#define _NGX_HTTP_WS_PROXY_DASH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_uint_t ngx_http_ws_proxy_page_wanted(ngx_http_request_t *r);
ngx_int_t ngx_http_ws_proxy_page_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_WS_PROXY_DASH_H_INCLUDED_ */
