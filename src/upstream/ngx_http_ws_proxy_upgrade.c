/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The upgrade request to the upstream and its answer: the request written
 * into the handshake buffer and sent, the response head read into the same
 * buffer and checked (ngx_wsp_response_parse()), and a refusal's body read
 * to its end for the relay.  The connect ends in
 * ngx_http_ws_proxy_connect_done().
 */


#include "ngx_http_ws_proxy_module.h"


static ngx_int_t ngx_http_ws_proxy_grow_hs(ngx_http_ws_proxy_t *wp);
static ngx_int_t ngx_http_ws_proxy_check_response(ngx_http_ws_proxy_t *wp,
    u_char *start, u_char *end);
static ngx_int_t ngx_http_ws_proxy_body_done(ngx_http_ws_proxy_t *wp,
    ngx_int_t closed);


ngx_int_t
ngx_http_ws_proxy_build_request(ngx_http_ws_proxy_t *wp)
{
    size_t      len;
    u_char     *p;
    ngx_buf_t  *b;
    ngx_str_t   src;
    u_char      raw[16];

    if (wp->host_header.len) {
        wp->host = wp->host_header;
    }

    if (wp->key.len == 0) {
        ngx_http_ws_proxy_random(raw, sizeof(raw));

        wp->key.data = ngx_pnalloc(wp->pool, 24);
        if (wp->key.data == NULL) {
            return NGX_ERROR;
        }

        src.data = raw;
        src.len = sizeof(raw);
        ngx_encode_base64(&wp->key, &src);
    }

    len = sizeof("GET  HTTP/1.1" CRLF) - 1 + wp->path.len
          + sizeof("Host: " CRLF) - 1 + wp->host.len
          + sizeof("Upgrade: websocket" CRLF) - 1
          + sizeof("Connection: Upgrade" CRLF) - 1
          + sizeof("Sec-WebSocket-Key: " CRLF) - 1 + wp->key.len
          + sizeof("Sec-WebSocket-Version: 13" CRLF) - 1
          + wp->extra_headers.len
          + (wp->offer.len ? sizeof("Sec-WebSocket-Protocol: " CRLF) - 1
                             + wp->offer.len
                           : 0)
          + sizeof("Sec-WebSocket-Extensions: " CRLF) - 1
          + NGX_WSP_PMD_MAX_VALUE
          + sizeof(CRLF) - 1;

    b = wp->hs;

    /*
     * As proxy_pass sizes its request to fit: the client's headers are
     * bounded by large_client_header_buffers already, and a large Cookie
     * is no reason for a 502.  The buffer then receives the response head,
     * which ws_proxy_handshake_buffer_size bounds (proxy_buffer_size's
     * role): grown here past it, the buffer bounds it at its own size.
     */

    if (len > (size_t) (b->end - b->start)) {
        p = ngx_alloc(len, wp->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_free(b->start);

        b->start = p;
        b->end = p + len;
    }

    p = b->start;
    p = ngx_sprintf(p, "GET %V HTTP/1.1" CRLF "Host: %V" CRLF,
                    &wp->path, &wp->host);
    p = ngx_cpymem(p, "Upgrade: websocket" CRLF "Connection: Upgrade" CRLF,
                   sizeof("Upgrade: websocket" CRLF "Connection: Upgrade" CRLF)
                   - 1);
    p = ngx_sprintf(p, "Sec-WebSocket-Key: %V" CRLF
                    "Sec-WebSocket-Version: 13" CRLF, &wp->key);
    p = ngx_cpymem(p, wp->extra_headers.data, wp->extra_headers.len);

    if (wp->offer.len) {
        p = ngx_sprintf(p, "Sec-WebSocket-Protocol: %V" CRLF, &wp->offer);
    }

    p = ngx_http_ws_proxy_deflate_offer(wp, p);

    *p++ = CR; *p++ = LF;

    b->pos = b->start;
    b->last = p;

    return NGX_OK;
}


void
ngx_http_ws_proxy_send_request(ngx_http_ws_proxy_t *wp)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = wp->upstream;
    b = wp->hs;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_ERROR) {
            ngx_http_ws_proxy_set_error(wp, "failed to send the handshake "
                                        "request: %s", "send() failed");
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
                return;
            }

            if (!c->write->timer_set) {
                ngx_add_timer(c->write, wp->send_timeout);
            }

            return;
        }

        b->pos += n;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    /* the buffer now receives the response */

    b->pos = b->start;
    b->last = b->start;
    wp->hs_state = NGX_WSP_HS_READ;

    ngx_http_ws_proxy_read_response(wp);
}


void
ngx_http_ws_proxy_read_response(ngx_http_ws_proxy_t *wp)
{
    size_t             len, scanned;
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = wp->upstream;
    b = wp->hs;

    for ( ;; ) {

        if (b->last == b->end
            && ngx_http_ws_proxy_grow_hs(wp) != NGX_OK)
        {
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }

        if (b->last == b->end) {
            ngx_http_ws_proxy_metrics_failed(wp, NGX_WSP_HSO_INVALID);
            ngx_http_ws_proxy_set_error(wp, "failed to receive response "
                                        "header: too large");
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
                return;
            }

            if (!c->read->timer_set) {
                ngx_add_timer(c->read, wp->read_timeout);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_ws_proxy_set_error(wp, "failed to receive response "
                                        "header: %s",
                                        n == 0 ? "closed" : "recv() failed");
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }

        /* every earlier read was searched already */

        scanned = b->last - b->start;
        b->last += n;

        len = ngx_wsp_head_end(b->start, b->last - b->start, &scanned);

        if (len) {
            b->pos = b->start + len;

            rc = ngx_http_ws_proxy_check_response(wp, b->start, b->pos);

            if (rc == NGX_DECLINED) {
                /* a refusal: its body, under the same read_timeout */
                wp->hs_state = NGX_WSP_HS_BODY;
                ngx_http_ws_proxy_read_body(wp);
                return;
            }

            if (c->read->timer_set) {
                ngx_del_timer(c->read);
            }

            ngx_http_ws_proxy_connect_done(wp, rc);
            return;
        }
    }
}


/*
 * A head that fills the buffer: twice the room, up to hs_limit
 * (ws_proxy_handshake_buffer_size).  Nothing points into the buffer
 * before the head is whole.
 */

static ngx_int_t
ngx_http_ws_proxy_grow_hs(ngx_http_ws_proxy_t *wp)
{
    size_t      size;
    u_char     *p;
    ngx_buf_t  *b;

    b = wp->hs;
    size = b->end - b->start;

    if (size >= wp->hs_limit) {
        return NGX_OK;
    }

    size = ngx_min(2 * size, wp->hs_limit);

    p = ngx_alloc(size, wp->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, b->start, b->last - b->start);

    b->pos = p + (b->pos - b->start);
    b->last = p + (b->last - b->start);

    ngx_free(b->start);

    b->start = p;
    b->end = p + size;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_check_response(ngx_http_ws_proxy_t *wp, u_char *start,
    u_char *end)
{
    int                 rc;
    size_t              len;
    ngx_wsp_response_t  resp;
    u_char              expected[NGX_WSP_ACCEPT_LEN];

    /*
     * The head stays in the handshake buffer, where connect() and the
     * client's handshake read it, until the pump starts and gives the
     * buffer back; only the subprotocol, which the session's variables
     * show, is copied.  wp->response leaves out the empty line that ends
     * the head.
     */

    len = end - start;

    wp->response.data = start;
    wp->response.len = len - (len >= 2 && start[len - 2] == CR ? 2 : 1);

    ngx_http_ws_proxy_accept_key(&wp->key, expected);

    rc = ngx_wsp_response_parse(wp->response.data, len, expected, &resp);

    if (rc != NGX_WSP_HEAD_OK) {
        ngx_http_ws_proxy_set_error(wp, "%s%*s", resp.error,
                                    resp.error_arg.len, resp.error_arg.data);
    }

    if (rc == NGX_WSP_HEAD_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_WSP_HEAD_STATUS) {

        /*
         * Kept for connect(), which answers the client with it: a gateway
         * must not turn the upstream's 401 into anything else.  Its body
         * is read next (ngx_http_ws_proxy_read_body()).
         */

        wp->upstream_status = resp.status;
        wp->body_framing = resp.body;
        wp->body_length = resp.length;

        return NGX_DECLINED;
    }

    /* RFC 6455 4.1: the choice must be one of the subprotocols offered */

    if (resp.protocol.len
        && !ngx_wsp_has_element(wp->offer.data, wp->offer.len,
                                resp.protocol.data, resp.protocol.len))
    {
        ngx_http_ws_proxy_set_error(wp, "upstream selected a subprotocol "
                                    "that was not offered: %*s",
                                    resp.protocol.len, resp.protocol.data);
        return NGX_ERROR;
    }

    if (ngx_http_ws_proxy_deflate_answer(wp, resp.extensions.data,
                                         resp.extensions.len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (resp.protocol.len) {
        wp->protocol.data = ngx_pnalloc(wp->pool, resp.protocol.len);
        if (wp->protocol.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(wp->protocol.data, resp.protocol.data, resp.protocol.len);
        wp->protocol.len = resp.protocol.len;
    }

    return NGX_OK;
}


/*
 * The body of a refusal, for connect() to relay: read to its end (its
 * Content-Length, the end of a chunked body, or the close) within the
 * handshake buffer and the read_timeout that bounds the head too.  A body
 * that does not end there is not relayed (the status and headers are).
 */

void
ngx_http_ws_proxy_read_body(ngx_http_ws_proxy_t *wp)
{
    ssize_t            n;
    ngx_int_t          rc;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = wp->upstream;
    b = wp->hs;

    for ( ;; ) {

        rc = ngx_http_ws_proxy_body_done(wp, 0);

        if (rc != NGX_AGAIN) {
            ngx_http_ws_proxy_body_end(wp, rc == NGX_OK);
            return;
        }

        if (b->last == b->end) {
            ngx_http_ws_proxy_body_end(wp, 0);
            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
                ngx_http_ws_proxy_body_end(wp, 0);
                return;
            }

            if (!c->read->timer_set) {
                ngx_add_timer(c->read, wp->read_timeout);
            }

            return;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_ws_proxy_body_end(wp, n == 0
                                  && ngx_http_ws_proxy_body_done(wp, 1)
                                     == NGX_OK);
            return;
        }

        b->last += n;
    }
}


/*
 * NGX_OK: the body in [hs->pos, hs->last) is whole (a chunked one is then
 * decoded in place and hs->last moved to the end of its data); NGX_AGAIN:
 * more is due; NGX_DECLINED: it cannot be relayed.  closed: the upstream
 * closed the connection, which ends a body without a length.
 */

static ngx_int_t
ngx_http_ws_proxy_body_done(ngx_http_ws_proxy_t *wp, ngx_int_t closed)
{
    int         rc;
    size_t      len;
    uint64_t    clen;
    ngx_buf_t  *b;

    b = wp->hs;
    clen = wp->body_length;

    /* as the head said, see ngx_http_ws_proxy_check_response() */

    switch (wp->body_framing) {

    case NGX_WSP_BODY_NONE:
        b->last = b->pos;
        return NGX_OK;

    case NGX_WSP_BODY_LENGTH:
        if (clen > (uint64_t) (b->end - b->pos)) {
            return NGX_DECLINED;
        }

        if ((uint64_t) (b->last - b->pos) < clen) {
            return NGX_AGAIN;
        }

        b->last = b->pos + clen;
        return NGX_OK;

    case NGX_WSP_BODY_CHUNKED:
        rc = ngx_wsp_chunked(b->pos, b->last - b->pos, NULL, &len);

        if (rc == 0) {
            return NGX_AGAIN;
        }

        if (rc < 0) {
            return NGX_DECLINED;
        }

        (void) ngx_wsp_chunked(b->pos, b->last - b->pos, b->pos, &len);
        b->last = b->pos + len;
        return NGX_OK;

    case NGX_WSP_BODY_CLOSE:
        return closed ? NGX_OK : NGX_AGAIN;

    default: /* NGX_WSP_BODY_ERROR */
        return NGX_DECLINED;
    }
}


void
ngx_http_ws_proxy_body_end(ngx_http_ws_proxy_t *wp, ngx_int_t complete)
{
    size_t      len;
    ngx_buf_t  *b;

    b = wp->hs;

    if (wp->upstream && wp->upstream->read->timer_set) {
        ngx_del_timer(wp->upstream->read);
    }

    len = complete ? (size_t) (b->last - b->pos) : 0;

    if (!complete) {
        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: the body of the upstream's %ui response "
                      "did not end within the handshake buffer and "
                      "read_timeout: relayed without it",
                      wp->upstream_status);
    }

    ngx_str_null(&wp->upstream_body);

    if (len) {
        wp->upstream_body.data = ngx_pnalloc(wp->pool, len);

        if (wp->upstream_body.data) {
            ngx_memcpy(wp->upstream_body.data, b->pos, len);
            wp->upstream_body.len = len;
        }
    }

    ngx_http_ws_proxy_connect_done(wp, NGX_DECLINED);
}
