/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The client side of the opening handshake (RFC 6455 4.2): validation of
 * the upgrade request and the 101 response, sent by nginx's own header
 * filters so that other modules' headers and logging still apply.
 */


#include "ngx_http_ws_proxy_module.h"


#define NGX_HTTP_UPGRADE_REQUIRED  426


static ngx_int_t ngx_http_ws_proxy_reject(ngx_http_ws_proxy_t *wp,
    ngx_uint_t status);
static void ngx_http_ws_proxy_copy_headers(ngx_http_ws_proxy_t *wp,
    u_char *line, u_char *end);


/*
 * The checks of the client's upgrade request, without an answer to a good
 * one: connect() runs them before it dials the upstream, so that a request
 * the client handshake would refuse never opens an upstream session.  A
 * bad request is answered here (400, or 426 for another version) and
 * NGX_DECLINED returned.  On NGX_OK, key (if given) is the client's
 * Sec-WebSocket-Key.
 */

ngx_int_t
ngx_http_ws_proxy_client_check(ngx_http_ws_proxy_t *wp, ngx_str_t *key)
{
    int                   status;
    ngx_wsp_request_t     rq;
    ngx_http_request_t   *r;

    r = wp->request;

    if (r != r->main) {
        ngx_http_ws_proxy_set_error(wp, "websocket upgrade in a subrequest");
        return NGX_ERROR;
    }

    if (r->header_sent) {
        ngx_http_ws_proxy_set_error(wp, "response header already sent");
        return NGX_ERROR;
    }

    if (r->method != NGX_HTTP_GET) {
        ngx_http_ws_proxy_set_error(wp, "bad method: %V", &r->method_name);
        return ngx_http_ws_proxy_reject(wp, NGX_HTTP_BAD_REQUEST);
    }

#if (NGX_HTTP_V2)
    if (r->stream) {
        ngx_http_ws_proxy_set_error(wp, "websocket over HTTP/2 "
                                    "is not supported");
        return ngx_http_ws_proxy_reject(wp, NGX_HTTP_BAD_REQUEST);
    }
#endif

    if (r->http_version < NGX_HTTP_VERSION_11) {
        ngx_http_ws_proxy_set_error(wp, "bad protocol version: %V",
                                    &r->http_protocol);
        return ngx_http_ws_proxy_reject(wp, NGX_HTTP_BAD_REQUEST);
    }

    /*
     * An upgrade request has no body: bytes after its head are frames, and
     * a body would be read as frames (nginx has parsed both headers).
     */

    if (r->headers_in.transfer_encoding) {
        ngx_http_ws_proxy_set_error(wp, "bad \"transfer-encoding\" request "
                                    "header: %V (an upgrade request has no "
                                    "body)",
                                    &r->headers_in.transfer_encoding->value);
        return ngx_http_ws_proxy_reject(wp, NGX_HTTP_BAD_REQUEST);
    }

    if (r->headers_in.content_length_n > 0) {
        ngx_http_ws_proxy_set_error(wp, "bad \"content-length\" request "
                                    "header: %V (an upgrade request has no "
                                    "body)",
                                    &r->headers_in.content_length->value);
        return ngx_http_ws_proxy_reject(wp, NGX_HTTP_BAD_REQUEST);
    }

    status = ngx_http_ws_proxy_upgrade_headers(r, &rq);

    if (status != NGX_WSP_REQ_OK) {
        ngx_http_ws_proxy_set_error(wp, "%s%*s", rq.error,
                                    rq.error_arg.len, rq.error_arg.data);
        return ngx_http_ws_proxy_reject(wp, status == NGX_WSP_REQ_VERSION
                                            ? NGX_HTTP_UPGRADE_REQUIRED
                                            : NGX_HTTP_BAD_REQUEST);
    }

    if (key) {
        key->data = (u_char *) rq.key.data;
        key->len = rq.key.len;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_ws_proxy_client_handshake(ngx_http_ws_proxy_t *wp)
{
    ngx_int_t             rc;
    ngx_str_t             key, offer, *value;
    ngx_http_request_t   *r;

    r = wp->request;

    rc = ngx_http_ws_proxy_client_check(wp, &key);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_ws_proxy_accept(r, &key) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the upstream's own 101 headers (cookies, ...) reach the client too */

    if (wp->response.len && wp->upstream_status == 0) {
        u_char  *eol;

        eol = ngx_strlchr(wp->response.data,
                          wp->response.data + wp->response.len, CR);
        if (eol) {
            ngx_http_ws_proxy_copy_headers(wp, eol + 2,
                                           wp->response.data
                                           + wp->response.len);
        }
    }

    /*
     * The upstream's subprotocol is the client's only when the client
     * offered it (RFC 6455 4.2.2); a choice among protocols the "protocols"
     * option offered is the proxy's business and is not named in the 101.
     */

    value = &wp->protocol;

    if (value->len) {
        if (ngx_http_ws_proxy_client_list(r, NGX_WSP_LIST_PROTOCOL, &offer)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (!ngx_wsp_has_element(offer.data, offer.len, value->data,
                                 value->len))
        {
            ngx_http_ws_proxy_log_error(NGX_LOG_INFO, wp->log, 0,
                                        "ws_proxy: the upstream's "
                                        "subprotocol \"%V\" was not offered "
                                        "by the client: not sent to it",
                                        value);

        } else if (ngx_http_ws_proxy_add_header(r, "Sec-WebSocket-Protocol",
                                                22, value->data, value->len)
                   != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ws_proxy_deflate_accept(wp) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        ngx_http_ws_proxy_set_error(wp, "failed to send the 101 response");
        return NGX_ERROR;
    }

    /*
     * The 101 must reach the client before any frame; a flush pushes it
     * out of nginx's output chain now.  Whatever the socket could not take
     * stays in r->out and is drained by the pump before its own writes.
     */

    rc = ngx_http_send_special(r, NGX_HTTP_FLUSH);
    if (rc == NGX_ERROR) {
        ngx_http_ws_proxy_set_error(wp, "failed to send the 101 response");
        return NGX_ERROR;
    }

    wp->client_handshake = 1;

    return NGX_OK;
}


/*
 * The client's list header `list` (NGX_WSP_LIST_*) over all its lines, as
 * one list in the request pool (RFC 9110 5.3); empty when absent.
 */

ngx_int_t
ngx_http_ws_proxy_client_list(ngx_http_request_t *r, ngx_int_t list,
    ngx_str_t *out)
{
    size_t            len;
    u_char           *dst;
    ngx_uint_t        i, pass;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    ngx_str_null(out);
    dst = NULL;
    len = 0;

    /* the first pass counts, the second one writes */

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            if (len == 0) {
                return NGX_OK;
            }

            dst = ngx_pnalloc(r->pool, len);
            if (dst == NULL) {
                return NGX_ERROR;
            }

            len = 0;
        }

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */ ; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (ngx_wsp_list_header(h[i].key.data, h[i].key.len) == list) {
                len = ngx_wsp_list_append(dst, len, h[i].value.data,
                                          h[i].value.len);
            }
        }
    }

    out->data = dst;
    out->len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_reject(ngx_http_ws_proxy_t *wp, ngx_uint_t status)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = wp->request;

    ngx_http_ws_proxy_metrics_handshake(wp, NGX_WSP_HSO_BAD_REQUEST);

    if (wp->err == NULL) {
        /* no memory even for the reason */
        return NGX_ERROR;
    }

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: rejecting websocket handshake with %ui: %*s",
                  status, wp->err_len, wp->err);

    r->headers_out.status = status;
    r->keepalive = 0;

    if (status == NGX_HTTP_UPGRADE_REQUIRED) {
        ngx_str_set(&r->headers_out.status_line, "426 Upgrade Required");

        if (ngx_http_ws_proxy_add_header(r, "Sec-WebSocket-Version", 21,
                                         (u_char *) "13", 2) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = wp->err;
    b->last = wp->err + wp->err_len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_length_n = wp->err_len + 1;

    out.buf = b;
    out.next = NULL;

    /* the error text doubles as the body, with a trailing newline */
    if (wp->err_len < NGX_WSP_ERRBUF_SIZE) {
        wp->err[wp->err_len] = '\n';
        b->last++;
    } else {
        r->headers_out.content_length_n = wp->err_len;
    }

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_ERROR;
    }

    (void) ngx_http_output_filter(r, &out);

    return NGX_DECLINED;
}


/*
 * Copies the end-to-end headers of the upstream's response head (from
 * `line` to `end`) to the client's response.  The handshake's own headers
 * are the module's to write, hop-by-hop ones stop here, and the body's
 * length is that of the body relayed.
 */

static void
ngx_http_ws_proxy_copy_headers(ngx_http_ws_proxy_t *wp, u_char *line,
    u_char *end)
{
    u_char              *v;
    size_t               vlen;
    ngx_uint_t           i, skip;
    ngx_wsp_header_t     h;
    ngx_http_request_t  *r;
    const u_char        *pos;

    static ngx_str_t  hop[] = {
        ngx_string("Connection"), ngx_string("Keep-Alive"),
        ngx_string("Transfer-Encoding"), ngx_string("Upgrade"),
        ngx_string("TE"), ngx_string("Trailer"),
        ngx_string("Proxy-Authenticate"), ngx_string("Proxy-Connection"),
        ngx_string("Content-Length"), ngx_string("Date"),
        ngx_string("Server"), ngx_string("Content-Type"),
        ngx_string("Sec-WebSocket-Accept"),
        ngx_string("Sec-WebSocket-Protocol"),
        ngx_string("Sec-WebSocket-Extensions"),
        ngx_string("Sec-WebSocket-Version")
    };

    r = wp->request;

    /* the head was checked whole: the lines split as they did then */

    for (pos = line; ngx_wsp_header_next(&pos, end, &h) == 1; /* void */) {

        v = (u_char *) h.value.data;
        vlen = h.value.len;

        if (h.name.len == 12
            && ngx_strncasecmp((u_char *) h.name.data,
                               (u_char *) "Content-Type", 12) == 0
            && wp->upstream_status)
        {
            r->headers_out.content_type.data = v;
            r->headers_out.content_type.len = vlen;
            r->headers_out.content_type_len = vlen;
            continue;
        }

        skip = 0;

        for (i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
            if (h.name.len == hop[i].len
                && ngx_strncasecmp((u_char *) h.name.data, hop[i].data,
                                   hop[i].len) == 0)
            {
                skip = 1;
                break;
            }
        }

        if (!skip) {
            (void) ngx_http_ws_proxy_add_header(r, (const char *) h.name.data,
                                                h.name.len, v, vlen);
        }
    }
}


/*
 * The upstream refused the upgrade: its status, end-to-end headers and
 * body go to the client, as a transparent proxy would pass them (a 401
 * stays a 401, with its WWW-Authenticate).  The body is the one the
 * handshake read to its end (decoded, if it was chunked), or none.
 */

ngx_int_t
ngx_http_ws_proxy_relay_response(ngx_http_ws_proxy_t *wp)
{
    u_char              *p, *end, *eol;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = wp->request;

    if (wp->upstream_status == 0 || r->header_sent) {
        return NGX_DECLINED;
    }

    p = wp->response.data;
    end = p + wp->response.len;

    eol = ngx_strlchr(p, end, CR);
    if (eol == NULL || eol - p < 13) {
        return NGX_DECLINED;
    }

    r->headers_out.status = wp->upstream_status;
    r->headers_out.status_line.data = p + 9;
    r->headers_out.status_line.len = eol - p - 9;
    r->keepalive = 0;

    ngx_http_ws_proxy_copy_headers(wp, eol + 2, end);

    r->headers_out.content_length_n = wp->upstream_body.len;
    r->header_only = (wp->upstream_body.len == 0);

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = wp->upstream_body.data;
    b->last = wp->upstream_body.data + wp->upstream_body.len;
    b->memory = 1;
    b->last_buf = 1;

    out.buf = b;
    out.next = NULL;

    (void) ngx_http_output_filter(r, &out);

    return NGX_OK;
}
