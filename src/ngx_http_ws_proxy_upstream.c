/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The upstream side of the opening handshake: URI parsing, non-blocking
 * name resolution and connect, TLS, the upgrade request and the check of the
 * 101 response.  Everything runs on nginx's event loop; Lua waits on the
 * session semaphore until wp->state leaves NGX_WSP_STATE_CONNECTING.
 */


#include "ngx_http_ws_proxy_module.h"


#define NGX_WSP_HS_BUFFER   8192


static ngx_int_t ngx_http_ws_proxy_parse_uri(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri, ngx_str_t *host);
static ngx_uint_t ngx_http_ws_proxy_uri_chars(u_char *p, u_char *last,
    ngx_uint_t host);
static void ngx_http_ws_proxy_connect_error(ngx_http_ws_proxy_t *wp,
    ngx_err_t err);
static void ngx_http_ws_proxy_resolve_handler(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_http_ws_proxy_connect_peer(ngx_http_ws_proxy_t *wp,
    struct sockaddr *sa, socklen_t socklen);
static void ngx_http_ws_proxy_connect_handler(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_ws_proxy_ssl_init(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_ssl_handshake(ngx_connection_t *c);
static void ngx_http_ws_proxy_ssl_info_callback(const SSL *ssl, int where,
    int ret);
#endif
static void ngx_http_ws_proxy_send_request(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_read_response(ngx_http_ws_proxy_t *wp);
static ngx_int_t ngx_http_ws_proxy_check_response(ngx_http_ws_proxy_t *wp,
    u_char *start, u_char *end);
static void ngx_http_ws_proxy_read_body(ngx_http_ws_proxy_t *wp);
static ngx_int_t ngx_http_ws_proxy_body_done(ngx_http_ws_proxy_t *wp,
    ngx_int_t closed);
static void ngx_http_ws_proxy_body_end(ngx_http_ws_proxy_t *wp,
    ngx_int_t complete);
static void ngx_http_ws_proxy_connect_done(ngx_http_ws_proxy_t *wp,
    ngx_int_t rc);


ngx_int_t
ngx_http_ws_proxy_connect(ngx_http_ws_proxy_t *wp, ngx_str_t *uri)
{
    ngx_int_t                  rc;
    ngx_str_t                  host;
    ngx_addr_t                 addr;
    ngx_resolver_ctx_t        *rctx, temp;
    ngx_http_core_loc_conf_t  *clcf;

    wp->upstream_status = 0;
    ngx_str_null(&wp->upstream_body);

    /*
     * The upstream connection logs through the request's log, whose action
     * the handshake steps set ("SSL handshaking to websocket upstream"):
     * the handler's own, restored when the handshake ends either way.
     */

    wp->log_action = wp->log->action;

    if (ngx_http_ws_proxy_parse_uri(wp, uri, &host) != NGX_OK) {
        return NGX_ERROR;
    }

    /*
     * The handshake buffer is the heap's, not the pool's: it is given back
     * as soon as the pump starts, so an idle session does not keep it.
     */

    wp->hs = ngx_calloc_buf(wp->pool);
    if (wp->hs == NULL) {
        return NGX_ERROR;
    }

    wp->hs->start = ngx_alloc(NGX_WSP_HS_BUFFER, wp->log);
    if (wp->hs->start == NULL) {
        return NGX_ERROR;
    }

    wp->hs->pos = wp->hs->start;
    wp->hs->last = wp->hs->start;
    wp->hs->end = wp->hs->start + NGX_WSP_HS_BUFFER;
    wp->hs->temporary = 1;

    if (ngx_http_ws_proxy_build_request(wp) != NGX_OK) {
        return NGX_ERROR;
    }

    wp->state = NGX_WSP_STATE_CONNECTING;

    /* a name of an upstream{} block: its balancer picks the servers */

    rc = ngx_http_ws_proxy_balancer_start(wp, uri, &host);

    if (rc != NGX_DECLINED) {
        return rc;
    }

#if (NGX_HAVE_UNIX_DOMAIN)
    if (host.len > 5 && ngx_strncmp(host.data, "unix:", 5) == 0) {
        struct sockaddr_un  *sun;

        if (host.len - 5 >= sizeof(sun->sun_path)) {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\": "
                                        "unix socket path too long", uri);
            wp->state = NGX_WSP_STATE_NEW;
            return NGX_ERROR;
        }

        sun = ngx_pcalloc(wp->pool, sizeof(struct sockaddr_un));
        if (sun == NULL) {
            return NGX_ERROR;
        }

        sun->sun_family = AF_UNIX;
        ngx_memcpy(sun->sun_path, host.data + 5, host.len - 5);

        return ngx_http_ws_proxy_connect_peer(wp, (struct sockaddr *) sun,
                                              sizeof(struct sockaddr_un));
    }
#endif

    if (ngx_parse_addr_port(wp->pool, &addr, host.data, host.len) == NGX_OK) {
        ngx_inet_set_port(addr.sockaddr, wp->port);
        return ngx_http_ws_proxy_connect_peer(wp, addr.sockaddr, addr.socklen);
    }

    clcf = ngx_http_get_module_loc_conf(wp->request, ngx_http_core_module);

    if (clcf->resolver == NULL || clcf->resolver->connections.nelts == 0) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: no resolver "
                                    "defined to resolve \"%V\"", &host);
        wp->state = NGX_WSP_STATE_NEW;
        return NGX_ERROR;
    }

    temp.name = host;

    rctx = ngx_resolve_start(clcf->resolver, &temp);
    if (rctx == NULL) {
        return NGX_ERROR;
    }

    if (rctx == NGX_NO_RESOLVER) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: no resolver "
                                    "defined to resolve \"%V\"", &host);
        wp->state = NGX_WSP_STATE_NEW;
        return NGX_ERROR;
    }

    rctx->name = host;
    rctx->handler = ngx_http_ws_proxy_resolve_handler;
    rctx->data = wp;
    rctx->timeout = clcf->resolver_timeout;

    wp->resolving = rctx;

    if (ngx_resolve_name(rctx) != NGX_OK) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: cannot resolve "
                                    "\"%V\"", &host);
        wp->state = NGX_WSP_STATE_NEW;
        return NGX_ERROR;
    }

    /* the handler may have run already (cached name) */

    return wp->state == NGX_WSP_STATE_CONNECTING ? NGX_AGAIN : wp->rc;
}


static void
ngx_http_ws_proxy_resolve_handler(ngx_resolver_ctx_t *ctx)
{
    ngx_uint_t            i;
    ngx_http_ws_proxy_t  *wp;
    struct sockaddr      *sa;
    u_char                buf[NGX_SOCKADDR_STRLEN];

    wp = ctx->data;
    wp->resolving = NULL;

    if (ctx->state) {
        ngx_http_ws_proxy_metrics_failed(wp, ctx->state == NGX_RESOLVE_TIMEDOUT
                                             ? NGX_WSP_HSO_TIMEOUT
                                             : NGX_WSP_HSO_UNREACHABLE);
        ngx_http_ws_proxy_set_error(wp, "failed to connect: \"%V\" could "
                                    "not be resolved (%i: %s)",
                                    &ctx->name, ctx->state,
                                    ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
        return;
    }

    /* the first address, as cosockets do; no balancing across addresses */

    i = 0;
    sa = ngx_pcalloc(wp->pool, ctx->addrs[i].socklen);
    if (sa == NULL) {
        ngx_resolve_name_done(ctx);
        ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
        return;
    }

    ngx_memcpy(sa, ctx->addrs[i].sockaddr, ctx->addrs[i].socklen);
    ngx_inet_set_port(sa, wp->port);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, wp->log, 0, "ws_proxy resolved: %*s",
                   ngx_sock_ntop(sa, ctx->addrs[i].socklen, buf,
                                 sizeof(buf), 1), buf);

    (void) ngx_http_ws_proxy_connect_peer(wp, sa, ctx->addrs[i].socklen);

    ngx_resolve_name_done(ctx);
}


/*
 * ws://host[:port][/path][?query], wss://..., with host an IPv4 address,
 * an [IPv6] literal or a name; "unix:/path:" as nginx writes unix sockets.
 */

static ngx_int_t
ngx_http_ws_proxy_parse_uri(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    ngx_str_t *host)
{
    u_char     *p, *q, *last, *h, *colon, *port_start;
    ngx_int_t   port;

    p = uri->data;
    last = p + uri->len;

    if (uri->len > 5 && ngx_strncasecmp(p, (u_char *) "ws://", 5) == 0) {
        p += 5;
        wp->ssl = 0;
        wp->port = 80;

    } else if (uri->len > 6
               && ngx_strncasecmp(p, (u_char *) "wss://", 6) == 0)
    {
#if (NGX_HTTP_SSL)
        p += 6;
        wp->ssl = 1;
        wp->port = 443;
#else
        ngx_http_ws_proxy_set_error(wp, "wss:// needs nginx with SSL");
        return NGX_ERROR;
#endif

    } else {
        ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"", uri);
        return NGX_ERROR;
    }

    h = p;
    colon = NULL;

    if (last - p > 5 && ngx_strncmp(p, "unix:", 5) == 0) {
        /* ws://unix:/path/to.sock:/uri, as nginx writes unix sockets */

        for (p += 5; p < last && *p != ':'; p++) {
            if (*p <= 0x20 || *p == 0x7f) {
                ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"",
                                            uri);
                return NGX_ERROR;
            }
        }

        host->data = h;
        host->len = p - h;

        if (host->len == 5 || p == last) {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"", uri);
            return NGX_ERROR;
        }

        p++;
        ngx_str_set(&wp->host, "localhost");
        wp->sni = wp->server_name.len ? wp->server_name
                                      : (ngx_str_t) ngx_string("localhost");
        goto path;
    }

    /* the authority ends at the path or the query */

    for (q = p; q < last && *q != '/' && *q != '?'; q++) {
        if (*q == '@') {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\": "
                                        "userinfo (user:password@) is not "
                                        "supported, use the \"headers\" "
                                        "option for an Authorization header",
                                        uri);
            return NGX_ERROR;
        }
    }

    if (p < last && *p == '[') {
        while (p < last && *p != ']') {
            p++;
        }

        if (p == last) {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"", uri);
            return NGX_ERROR;
        }

        host->data = h + 1;
        host->len = p - h - 1;
        p++;

    } else {
        while (p < last && *p != ':' && *p != '/' && *p != '?') {
            p++;
        }

        host->data = h;
        host->len = p - h;
    }

    if (host->len == 0 || !ngx_http_ws_proxy_uri_chars(host->data,
                                                       host->data + host->len,
                                                       1))
    {
        ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"", uri);
        return NGX_ERROR;
    }

    if (p < last && *p == ':') {
        colon = p++;
        port_start = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        port = ngx_atoi(port_start, p - port_start);
        if (port < 1 || port > 65535 || (p < last && *p != '/' && *p != '?')) {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\": "
                                        "invalid port", uri);
            return NGX_ERROR;
        }

        wp->port = (in_port_t) port;
    }

    /* the Host header carries the port only when it is not the default */

    if (colon && wp->port != (wp->ssl ? 443 : 80)) {
        wp->host.data = h;
        wp->host.len = p - h;

    } else {
        wp->host.data = h;
        wp->host.len = (colon ? colon : p) - h;
    }

    wp->sni = wp->server_name.len ? wp->server_name : *host;

path:

    /* what follows goes into the request line: RFC 3986 bytes only */

    if (!ngx_http_ws_proxy_uri_chars(p, last, 0)) {
        ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"", uri);
        return NGX_ERROR;
    }

    if (p == last) {
        ngx_str_set(&wp->path, "/");

    } else if (*p == '?') {
        wp->path.len = last - p + 1;
        wp->path.data = ngx_pnalloc(wp->pool, wp->path.len);
        if (wp->path.data == NULL) {
            return NGX_ERROR;
        }

        wp->path.data[0] = '/';
        ngx_memcpy(wp->path.data + 1, p, last - p);

    } else {
        wp->path.data = p;
        wp->path.len = last - p;
    }

    wp->uri = *uri;

    return NGX_OK;
}


/*
 * 1 when [p, last) holds only bytes RFC 3986 allows: a path and query
 * (pchar, "/" and "?"), or a host (reg-name or the inside of an IP
 * literal); "%" must start a pct-encoded byte.  No CR, LF, NUL, space or
 * other control byte can reach the request line or the Host header.
 */

static ngx_uint_t
ngx_http_ws_proxy_uri_chars(u_char *p, u_char *last, ngx_uint_t host)
{
    u_char  c;

    for ( /* void */ ; p < last; p++) {
        c = *p;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
            || (c >= '0' && c <= '9'))
        {
            continue;
        }

        switch (c) {

        /* unreserved */
        case '-': case '.': case '_': case '~':

        /* sub-delims */
        case '!': case '$': case '&': case '\'': case '(': case ')':
        case '*': case '+': case ',': case ';': case '=':

        /* in an IPv6 literal, and in pchar */
        case ':':
            continue;

        case '@': case '/': case '?':
            if (host) {
                return 0;
            }

            continue;

        case '%':
            if (last - p < 3
                || !isxdigit(p[1]) || !isxdigit(p[2]))
            {
                return 0;
            }

            p += 2;
            continue;

        default:
            return 0;
        }
    }

    return 1;
}


static ngx_int_t
ngx_http_ws_proxy_connect_peer(ngx_http_ws_proxy_t *wp, struct sockaddr *sa,
    socklen_t socklen)
{
    ngx_str_t  *name;

    name = ngx_palloc(wp->pool, sizeof(ngx_str_t));
    if (name == NULL) {
        ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
        return NGX_ERROR;
    }

    *name = wp->uri;

    wp->peer.sockaddr = sa;
    wp->peer.socklen = socklen;
    wp->peer.name = name;
    wp->peer.get = ngx_event_get_peer;
    wp->peer.log = wp->log;
    wp->peer.log_error = NGX_ERROR_ERR;
    wp->peer.tries = 1;

    return ngx_http_ws_proxy_connect_start(wp);
}


/*
 * One connect attempt to the peer wp->peer.get() gives: the one address,
 * or the next server of a group.  A failure may start the next attempt
 * (ngx_http_ws_proxy_connect_done()): NGX_AGAIN while one is in flight.
 */

ngx_int_t
ngx_http_ws_proxy_connect_start(ngx_http_ws_proxy_t *wp)
{
    ngx_err_t          err;
    ngx_int_t          rc;
    ngx_connection_t  *c;

    /* a failure of an earlier attempt is not this one's */
    wp->metrics.failed = 0;

    rc = ngx_event_connect_peer(&wp->peer);
    err = ngx_socket_errno;

    if (rc != NGX_BUSY && wp->peer.sockaddr) {
        ngx_http_ws_proxy_balancer_tried(wp);
    }

    if (rc == NGX_DECLINED) {
        /* connect() failed: ENOENT, EACCES for a unix socket, ... */
        ngx_http_ws_proxy_connect_error(wp, err);

    } else if (rc == NGX_BUSY) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: %s",
                                    wp->uscf ? "no live upstreams"
                                             : "connect() failed");

    } else if (rc == NGX_ERROR) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: connect() failed");
    }

    if (rc == NGX_ERROR || rc == NGX_DECLINED || rc == NGX_BUSY) {
        if (wp->peer.connection) {
            ngx_close_connection(wp->peer.connection);
            wp->peer.connection = NULL;
        }

        ngx_http_ws_proxy_connect_done(wp, rc == NGX_BUSY ? NGX_BUSY
                                                          : NGX_ERROR);

        return wp->state == NGX_WSP_STATE_CONNECTING ? NGX_AGAIN : NGX_ERROR;
    }

    c = wp->peer.connection;
    wp->upstream = c;

    c->data = wp;

    /* a keepalive group's cached connection (NGX_DONE) keeps its pool */

    if (c->pool == NULL) {
        c->pool = wp->pool;
    }
    c->read->handler = ngx_http_ws_proxy_connect_handler;
    c->write->handler = ngx_http_ws_proxy_connect_handler;

    wp->hs_state = NGX_WSP_HS_CONNECT;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, wp->connect_timeout);
        return NGX_AGAIN;
    }

    /* connected at once (unix sockets, loopback) */

    ngx_http_ws_proxy_connect_handler(c->write);

    return wp->state == NGX_WSP_STATE_CONNECTING ? NGX_AGAIN : wp->rc;
}


/*
 * "failed to connect: connection refused", "...: no such file or directory",
 * "...: permission denied": the system's text in lower case, as cosockets
 * report it.
 */

static void
ngx_http_ws_proxy_connect_error(ngx_http_ws_proxy_t *wp, ngx_err_t err)
{
    u_char  *p, buf[NGX_MAX_ERROR_STR];

    if (err == 0) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: connect() failed");
        return;
    }

    p = ngx_strerror(err, buf, sizeof(buf));
    ngx_strlow(buf, buf, p - buf);

    ngx_http_ws_proxy_set_error(wp, "failed to connect: %*s", p - buf, buf);
}


static void
ngx_http_ws_proxy_connect_handler(ngx_event_t *ev)
{
    int                   err;
    socklen_t             len;
    ngx_connection_t     *c;
    ngx_http_ws_proxy_t  *wp;

    c = ev->data;
    wp = c->data;

    if (ev->timedout && wp->hs_state == NGX_WSP_HS_BODY) {
        /* the refusal is relayed without the body that did not come */
        ngx_http_ws_proxy_body_end(wp, 0);
        return;
    }

    if (ev->timedout) {
        ngx_http_ws_proxy_metrics_failed(wp, NGX_WSP_HSO_TIMEOUT);
        ngx_log_error(NGX_LOG_ERR, wp->log, NGX_ETIMEDOUT,
                      "ws_proxy: upstream timed out while %s",
                      wp->hs_state == NGX_WSP_HS_CONNECT ? "connecting"
                      : wp->hs_state == NGX_WSP_HS_SEND
                        ? "sending the handshake request"
                        : "reading the handshake response");
        ngx_http_ws_proxy_set_error(wp,
                      wp->hs_state == NGX_WSP_HS_CONNECT
                      ? "failed to connect: timeout"
                      : wp->hs_state == NGX_WSP_HS_SEND
                        ? "failed to send the handshake request: timeout"
                        : "failed to receive response header: timeout");
        ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
        return;
    }

    switch (wp->hs_state) {

    case NGX_WSP_HS_CONNECT:

        if (!ev->write) {
            return;
        }

        if (c->write->timer_set) {
            ngx_del_timer(c->write);
        }

        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            c->log->action = "connecting to websocket upstream";
            (void) ngx_connection_error(c, err, "connect() failed");
            ngx_http_ws_proxy_connect_error(wp, err);
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }

#if (NGX_HTTP_SSL)
        /* c->ssl: a group's keepalive cache gave a TLS connection */

        if (wp->ssl && c->ssl == NULL) {
            wp->hs_state = NGX_WSP_HS_SSL;

            if (ngx_http_ws_proxy_ssl_init(wp) != NGX_OK) {
                ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            }

            return;
        }
#endif

        wp->hs_state = NGX_WSP_HS_SEND;
        ngx_http_ws_proxy_send_request(wp);
        return;

    case NGX_WSP_HS_SEND:
        ngx_http_ws_proxy_send_request(wp);
        return;

    case NGX_WSP_HS_READ:
        ngx_http_ws_proxy_read_response(wp);
        return;

    case NGX_WSP_HS_BODY:
        ngx_http_ws_proxy_read_body(wp);
        return;

    default:
        /* connected: the pump has not taken the connection over yet */
        return;
    }
}


#if (NGX_HTTP_SSL)

/* the worker's client context for wss:// without a trust store of its own */

static ngx_ssl_t  *default_ssl;


void
ngx_http_ws_proxy_ssl_exit(void)
{
    if (default_ssl) {
        ngx_ssl_cleanup_ctx(default_ssl);
        default_ssl = NULL;
    }
}


static ngx_int_t
ngx_http_ws_proxy_ssl_init(ngx_http_ws_proxy_t *wp)
{
    int                            i;
    u_char                        *name;
    X509                          *x509;
    ngx_int_t                      rc;
    ngx_ssl_t                     *ssl;
    ngx_connection_t              *c;
    STACK_OF(X509)                *chain;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    c = wp->upstream;

    /*
     * The location's context when ws_proxy_ssl_trusted_certificate is set,
     * else one context per worker with the system's trust store; whether
     * to verify is decided per connection.
     */

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_http_ws_proxy_module);
    ssl = wlcf->ssl ? wlcf->ssl : default_ssl;

    if (ssl == NULL) {
        ssl = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_ssl_t));
        if (ssl == NULL) {
            return NGX_ERROR;
        }

        ssl->log = ngx_cycle->log;

        if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
            != NGX_OK)
        {
            ssl = NULL;
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "cannot create SSL context");
            return NGX_ERROR;
        }

        (void) SSL_CTX_set_default_verify_paths(ssl->ctx);
        default_ssl = ssl;
    }

    wp->ssl_ctx = ssl;

    if (ngx_ssl_create_connection(ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                    "cannot create SSL connection");
        return NGX_ERROR;
    }

    /*
     * The pump sends straight from its input buffer and moves what is
     * unsent to the front when the buffer is full, so a TLS write that
     * blocked is retried with the same bytes at another address: OpenSSL
     * refuses that ("bad write retry") unless told it may happen.
     */

    SSL_set_mode(c->ssl->connection, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    /* SNI is the host without port, and never an address literal */

    if (wp->sni.len && ngx_inet_addr(wp->sni.data, wp->sni.len) == INADDR_NONE
        && ngx_strlchr(wp->sni.data, wp->sni.data + wp->sni.len, ':') == NULL)
    {
        name = ngx_pnalloc(wp->pool, wp->sni.len + 1);
        if (name == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn(name, wp->sni.data, wp->sni.len + 1);

        if (SSL_set_tlsext_host_name(c->ssl->connection, (char *) name) == 0)
        {
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "cannot set server name");
            return NGX_ERROR;
        }
    }

    /* a client certificate, as lua-resty-core's ngx.ssl parses them */

    if (wp->client_cert && wp->client_key) {
        chain = wp->client_cert;

        if (sk_X509_num(chain) < 1
            || SSL_use_certificate(c->ssl->connection,
                                   sk_X509_value(chain, 0)) == 0
            || SSL_use_PrivateKey(c->ssl->connection, wp->client_key) == 0)
        {
            ngx_ssl_error(NGX_LOG_ERR, wp->log, 0,
                          "ws_proxy: cannot use the client certificate");
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "bad client certificate or key");
            return NGX_ERROR;
        }

        for (i = 1; i < sk_X509_num(chain); i++) {
            x509 = sk_X509_value(chain, i);

            if (SSL_add1_chain_cert(c->ssl->connection, x509) == 0) {
                ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                            "bad client certificate chain");
                return NGX_ERROR;
            }
        }
    }

    /* the peer's alert, if any, is the reason a failed handshake gives */

    wp->ssl_alert = NULL;
    SSL_set_info_callback(c->ssl->connection,
                          ngx_http_ws_proxy_ssl_info_callback);

    c->log->action = "SSL handshaking to websocket upstream";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, wp->connect_timeout);
        }

        c->ssl->handler = ngx_http_ws_proxy_ssl_handshake;
        return NGX_OK;
    }

    ngx_http_ws_proxy_ssl_handshake(c);

    return NGX_OK;
}


static void
ngx_http_ws_proxy_ssl_info_callback(const SSL *ssl, int where, int ret)
{
    ngx_connection_t     *c;
    ngx_http_ws_proxy_t  *wp;

    if (!(where & SSL_CB_ALERT)) {
        return;
    }

    c = ngx_ssl_get_connection((ngx_ssl_conn_t *) ssl);

    if (c == NULL || c->data == NULL) {
        return;
    }

    wp = c->data;

    if (wp->ssl_alert == NULL || (where & SSL_CB_READ)) {
        wp->ssl_alert = SSL_alert_desc_string_long(ret);
        wp->ssl_alert_read = (where & SSL_CB_READ) ? 1 : 0;
    }
}


static void
ngx_http_ws_proxy_ssl_handshake(ngx_connection_t *c)
{
    long                  rc;
    ngx_http_ws_proxy_t  *wp;

    wp = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!c->ssl->handshaked) {
        if (c->write->timedout || c->read->timedout) {
            ngx_http_ws_proxy_metrics_failed(wp, NGX_WSP_HSO_TIMEOUT);
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: timeout");

        } else if (wp->ssl_alert) {
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "handshake failed (%s alert: %s)",
                                        wp->ssl_alert_read ? "received"
                                                           : "sent",
                                        wp->ssl_alert);

        } else {
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "handshake failed");
        }

        ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
        return;
    }

    if (wp->ssl_verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "certificate verify error: (%l:%s)",
                                        rc, X509_verify_cert_error_string(rc));
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }

        if (ngx_ssl_check_host(c, &wp->sni) != NGX_OK) {
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "certificate does not match host "
                                        "\"%V\"", &wp->sni);
            ngx_http_ws_proxy_connect_done(wp, NGX_ERROR);
            return;
        }
    }

    c->log->action = wp->log_action;

    c->read->handler = ngx_http_ws_proxy_connect_handler;
    c->write->handler = ngx_http_ws_proxy_connect_handler;

    wp->hs_state = NGX_WSP_HS_SEND;
    ngx_http_ws_proxy_send_request(wp);
}

#endif


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
          + sizeof(CRLF) - 1;

    b = wp->hs;

    if (len > (size_t) (b->end - b->start)) {
        ngx_http_ws_proxy_set_error(wp, "handshake request too large");
        return NGX_ERROR;
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

    *p++ = CR; *p++ = LF;

    b->pos = b->start;
    b->last = p;

    return NGX_OK;
}


static void
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


static void
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

static void
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


static void
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


static void
ngx_http_ws_proxy_connect_done(ngx_http_ws_proxy_t *wp, ngx_int_t rc)
{
    u_char  *p;

    if (wp->state != NGX_WSP_STATE_CONNECTING) {
        return;
    }

    /* a group's server failed: the next one, if any is left */

    if (rc != NGX_OK && wp->uscf
        && ngx_http_ws_proxy_balancer_next(wp, rc) == NGX_OK)
    {
        return;
    }

    wp->log->action = wp->log_action;

    if (rc != NGX_OK) {
        /* the last attempt's failure, noted where it happened */
        ngx_http_ws_proxy_metrics_connect_end(wp, rc);
        ngx_http_ws_proxy_close_upstream(wp);

        if (wp->response.len) {
            /* a refusal is relayed to the client after the buffer is gone */
            p = ngx_pnalloc(wp->pool, wp->response.len);
            if (p != NULL) {
                ngx_memcpy(p, wp->response.data, wp->response.len);
            }

            wp->response.data = p;
            wp->response.len = p ? wp->response.len : 0;
        }

        ngx_http_ws_proxy_free_hs(wp);
        wp->state = NGX_WSP_STATE_NEW;
        wp->rc = NGX_ERROR;

    } else {
        wp->state = NGX_WSP_STATE_CONNECTED;
        wp->hs_state = NGX_WSP_HS_DONE;
        wp->rc = NGX_OK;
    }

    ngx_http_ws_proxy_notify(wp);
}


void
ngx_http_ws_proxy_free_hs(ngx_http_ws_proxy_t *wp)
{
    if (wp->hs && wp->hs->start) {
        if (wp->response.data >= wp->hs->start
            && wp->response.data < wp->hs->end)
        {
            ngx_str_null(&wp->response);
        }

        ngx_free(wp->hs->start);
        wp->hs->start = NULL;
        wp->hs->pos = NULL;
        wp->hs->last = NULL;
        wp->hs->end = NULL;
    }
}


void
ngx_http_ws_proxy_close_upstream(ngx_http_ws_proxy_t *wp)
{
    ngx_connection_t  *c;

    /* a group's server is given back when its connection ends */

    ngx_http_ws_proxy_balancer_free(wp, 0);

    c = wp->upstream;

    if (c == NULL) {
        return;
    }

    wp->upstream = NULL;
    wp->peer.connection = NULL;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    if (c->pool != wp->pool) {
        /* the pool of a connection a keepalive cache gave */
        ngx_destroy_pool(c->pool);
    }

    ngx_close_connection(c);
}
