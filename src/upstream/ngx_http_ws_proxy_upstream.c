/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The upstream side of the opening handshake: non-blocking name
 * resolution and connect (one address, or a group's servers in turn),
 * TLS, and the end of the connect.  The URI is parsed in
 * ngx_http_ws_proxy_uri.c, the upgrade request and the response in
 * ngx_http_ws_proxy_upgrade.c.  Everything runs on nginx's event loop; Lua
 * (or ws_proxy_pass) waits until wp->state leaves
 * NGX_WSP_STATE_CONNECTING.
 */


#include "ngx_http_ws_proxy_module.h"


static void ngx_http_ws_proxy_connect_error(ngx_http_ws_proxy_t *wp,
    ngx_err_t err);
static ngx_int_t ngx_http_ws_proxy_resolve(ngx_http_ws_proxy_t *wp,
    ngx_str_t *host);
static void ngx_http_ws_proxy_resolve_handler(ngx_resolver_ctx_t *ctx);
static ngx_int_t ngx_http_ws_proxy_connect_peer(ngx_http_ws_proxy_t *wp,
    struct sockaddr *sa, socklen_t socklen);
static void ngx_http_ws_proxy_connect_handler(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static ngx_ssl_t *ngx_http_ws_proxy_ssl_context(ngx_http_ws_proxy_t *wp);
static ngx_int_t ngx_http_ws_proxy_ssl_client_cert(ngx_http_ws_proxy_t *wp,
    ngx_connection_t *c);
static ngx_int_t ngx_http_ws_proxy_ssl_init(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_ssl_handshake(ngx_connection_t *c);
static void ngx_http_ws_proxy_ssl_info_callback(const SSL *ssl, int where,
    int ret);
#endif


/*
 * hs_size: the handshake buffer (ws_proxy_handshake_buffer_size, the
 * handshake_buffer_size option), which holds the upgrade request and then
 * the upstream's response head
 */

ngx_int_t
ngx_http_ws_proxy_connect(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    size_t hs_size)
{
    size_t       size;
    ngx_int_t    rc;
    ngx_str_t    host;
    ngx_addr_t   addr;

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

    /*
     * It starts small and grows: most requests and 101 heads take a few
     * hundred bytes, and a freed 8 KB block between the pool blocks of
     * sessions that stay left a hole per session (bench W7).
     */

    wp->hs_limit = hs_size;
    size = ngx_min(hs_size, NGX_WSP_HS_START);

    wp->hs->start = ngx_alloc(size, wp->log);
    if (wp->hs->start == NULL) {
        return NGX_ERROR;
    }

    wp->hs->pos = wp->hs->start;
    wp->hs->last = wp->hs->start;
    wp->hs->end = wp->hs->start + size;
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

    return ngx_http_ws_proxy_resolve(wp, &host);
}


/* a name: nginx's resolver, never a blocking lookup */

static ngx_int_t
ngx_http_ws_proxy_resolve(ngx_http_ws_proxy_t *wp, ngx_str_t *host)
{
    ngx_resolver_ctx_t        *rctx, temp;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(wp->request, ngx_http_core_module);

    if (clcf->resolver == NULL || clcf->resolver->connections.nelts == 0) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: no resolver "
                                    "defined to resolve \"%V\"", host);
        wp->state = NGX_WSP_STATE_NEW;
        return NGX_ERROR;
    }

    temp.name = *host;

    rctx = ngx_resolve_start(clcf->resolver, &temp);
    if (rctx == NULL) {
        return NGX_ERROR;
    }

    if (rctx == NGX_NO_RESOLVER) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: no resolver "
                                    "defined to resolve \"%V\"", host);
        wp->state = NGX_WSP_STATE_NEW;
        return NGX_ERROR;
    }

    rctx->name = *host;
    rctx->handler = ngx_http_ws_proxy_resolve_handler;
    rctx->data = wp;
    rctx->timeout = clcf->resolver_timeout;

    wp->resolving = rctx;

    if (ngx_resolve_name(rctx) != NGX_OK) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: cannot resolve "
                                    "\"%V\"", host);
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
#if (NGX_DEBUG)
    u_char                buf[NGX_SOCKADDR_STRLEN];   /* the debug log's */
#endif

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
    wp->err_logged = 0;

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

    /* ngx_event_connect_peer() or ngx_connection_error() logged it */
    wp->err_logged = 1;

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


/*
 * The location's context when a ws_proxy_ssl_* directive that shapes one is
 * set (ngx_http_ws_proxy_ssl_conf.c), else one context per worker with the
 * system's trust store; whether to verify is decided per connection.
 */

static ngx_ssl_t *
ngx_http_ws_proxy_ssl_context(ngx_http_ws_proxy_t *wp)
{
    ngx_ssl_t                     *ssl;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_wsp_module);

    if (wlcf->ssl) {
        return wlcf->ssl;
    }

    if (default_ssl) {
        return default_ssl;
    }

    ssl = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NULL;
    }

    ssl->log = ngx_cycle->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL) != NGX_OK)
    {
        ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                    "cannot create SSL context");
        return NULL;
    }

    (void) SSL_CTX_set_default_verify_paths(ssl->ctx);
    default_ssl = ssl;

    return ssl;
}


/* a client certificate, as lua-resty-core's ngx.ssl parses them */

static ngx_int_t
ngx_http_ws_proxy_ssl_client_cert(ngx_http_ws_proxy_t *wp,
    ngx_connection_t *c)
{
    int              i;
    STACK_OF(X509)  *chain;

    chain = wp->client_cert;

    if (sk_X509_num(chain) < 1
        || SSL_use_certificate(c->ssl->connection, sk_X509_value(chain, 0))
           == 0
        || SSL_use_PrivateKey(c->ssl->connection, wp->client_key) == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, wp->log, 0,
                      "ws_proxy: cannot use the client certificate");
        ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                    "bad client certificate or key");
        return NGX_ERROR;
    }

    for (i = 1; i < sk_X509_num(chain); i++) {
        if (SSL_add1_chain_cert(c->ssl->connection, sk_X509_value(chain, i))
            == 0)
        {
            ngx_http_ws_proxy_set_error(wp, "ssl handshake failed: "
                                        "bad client certificate chain");
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_ssl_init(ngx_http_ws_proxy_t *wp)
{
    u_char            *name;
    ngx_int_t          rc;
    ngx_ssl_t         *ssl;
    ngx_connection_t  *c;

    c = wp->upstream;

    ssl = ngx_http_ws_proxy_ssl_context(wp);
    if (ssl == NULL) {
        return NGX_ERROR;
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

    if (wp->client_cert && wp->client_key
        && ngx_http_ws_proxy_ssl_client_cert(wp, c) != NGX_OK)
    {
        return NGX_ERROR;
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


void
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
