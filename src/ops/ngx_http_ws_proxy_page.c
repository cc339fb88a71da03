/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The dashboard: html/ws_proxy_status.html, compiled in as
 * ngx_http_ws_proxy_page.h (util/embed-page), so that a ws_proxy_status
 * location serves it with no file to install or configure.  Asked for with
 * ?format=html, or by a browser (Accept: text/html) that names no format
 * and none of the console's JSON answers.  The page reads the location's
 * own JSON; its headers keep it to that (no other origin, no framing).
 */


#include "ngx_http_ws_proxy_dash.h"
#include "ngx_http_ws_proxy_page.h"


static ngx_uint_t ngx_http_ws_proxy_has_arg(ngx_http_request_t *r,
    const char *name);
static ngx_uint_t ngx_http_ws_proxy_accepts_html(ngx_http_request_t *r);
static ngx_int_t ngx_http_ws_proxy_page_header(ngx_http_request_t *r,
    const char *name, const char *value);


ngx_uint_t
ngx_http_ws_proxy_page_wanted(ngx_http_request_t *r)
{
    ngx_str_t  format;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return 0;
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK) {
        return format.len == 4 && ngx_strncmp(format.data, "html", 4) == 0;
    }

    /* a browser on /status?sessions still gets the JSON it named */

    if (ngx_http_ws_proxy_has_arg(r, "sessions")
        || ngx_http_ws_proxy_has_arg(r, "session")
        || ngx_http_ws_proxy_has_arg(r, "tap"))
    {
        return 0;
    }

    return ngx_http_ws_proxy_accepts_html(r);
}


ngx_int_t
ngx_http_ws_proxy_page_handler(ngx_http_request_t *r)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_ws_proxy_page_header(r, "Cache-Control", "no-store")
           != NGX_OK
        || ngx_http_ws_proxy_page_header(r, "X-Content-Type-Options",
                                         "nosniff") != NGX_OK
        || ngx_http_ws_proxy_page_header(r, "Content-Security-Policy",
               "default-src 'none'; script-src 'unsafe-inline'; "
               "style-src 'unsafe-inline'; connect-src 'self'; "
               "img-src data:; frame-ancestors 'none'; "
               "form-action 'none'; base-uri 'none'") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "text/html; charset=utf-8");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = sizeof(ngx_http_ws_proxy_page) - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = (u_char *) ngx_http_ws_proxy_page;
    b->last = b->pos + sizeof(ngx_http_ws_proxy_page) - 1;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* name, with a value or without ("?sessions&key=..."), in the arguments */

static ngx_uint_t
ngx_http_ws_proxy_has_arg(ngx_http_request_t *r, const char *name)
{
    u_char  *p, *end;
    size_t   len;

    len = ngx_strlen(name);
    p = r->args.data;
    end = p + r->args.len;

    while (p < end) {
        if ((size_t) (end - p) >= len
            && ngx_strncmp(p, name, len) == 0
            && (p + len == end || p[len] == '=' || p[len] == '&'))
        {
            return 1;
        }

        p = ngx_strlchr(p, end, '&');
        if (p == NULL) {
            return 0;
        }

        p++;
    }

    return 0;
}


/* an Accept header that names text/html, as a browser's navigation does */

static ngx_uint_t
ngx_http_ws_proxy_accepts_html(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept", 6) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "text/html", 9 - 1) != NULL)
        {
            return 1;
        }
    }
}


static ngx_int_t
ngx_http_ws_proxy_page_header(ngx_http_request_t *r, const char *name,
    const char *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = (u_char *) value;
    h->value.len = ngx_strlen(value);

    return NGX_OK;
}
