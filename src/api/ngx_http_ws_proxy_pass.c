/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * ws_proxy_pass: a content handler that does what the Lua library's
 * connect() and execute() do, through the same C code: the client's
 * request checked (ngx_http_ws_proxy_client_check()), the upstream
 * connected (ngx_http_ws_proxy_connect(): an address, a name or a group),
 * its refusal relayed or the client's 101 sent, then the pump.  As
 * proxy_pass does: the URI sent (the client's, its part that matched the
 * location replaced, or what the variables give), the client's headers
 * passed on with ws_proxy_set_header's, a URI without variables checked
 * and its host resolved (or found as an upstream{} block) at configuration
 * time.  Where the
 * Lua library waits on the session's semaphore, this file is called back
 * (wp->notify), and goes on from a posted event: the pump calls back from
 * inside its own functions, which use the session after it returns.
 */


#include "ngx_http_ws_proxy_module.h"


typedef struct {
    ngx_http_ws_proxy_t        *wp;
    ngx_http_request_t         *request;
    ngx_event_t                 event;
    ngx_event_t                 keep;     /* holds a quitting worker */
    ngx_str_t                   uri;
} ngx_http_ws_proxy_pass_ctx_t;


/* as long as the Lua library's semaphore wait, whose timer does the same */
#define NGX_WSP_PASS_KEEP   60000


static ngx_int_t ngx_http_ws_proxy_pass_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_ws_proxy_pass_session(ngx_http_request_t *r,
    ngx_http_ws_proxy_pass_ctx_t *ctx);
static void ngx_http_ws_proxy_pass_notify(ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_pass_resume(ngx_event_t *ev);
static void ngx_http_ws_proxy_pass_keep(ngx_event_t *ev);
static ngx_int_t ngx_http_ws_proxy_pass_connected(
    ngx_http_ws_proxy_pass_ctx_t *ctx);
static ngx_int_t ngx_http_ws_proxy_pass_failed(
    ngx_http_ws_proxy_pass_ctx_t *ctx);
static void ngx_http_ws_proxy_pass_cleanup(void *data);
static char *ngx_http_ws_proxy_pass_static(ngx_conf_t *cf,
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_str_t *url);
static ngx_int_t ngx_http_ws_proxy_pass_uri(ngx_http_request_t *r,
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_str_t *uri);
static ngx_int_t ngx_http_ws_proxy_pass_client_uri(ngx_http_request_t *r,
    ngx_str_t *prefix, ngx_str_t *location, ngx_str_t *out);
static ngx_int_t ngx_http_ws_proxy_pass_headers(ngx_http_request_t *r,
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_http_ws_proxy_t *wp);
static ngx_uint_t ngx_http_ws_proxy_pass_header_skip(
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_table_elt_t *h);
static ngx_uint_t ngx_http_ws_proxy_header_value_ok(ngx_str_t *value);


/*
 * Never passed on from the client: hop-by-hop headers (RFC 9110 7.6.1),
 * and those of the handshake, which the module writes (with every
 * Sec-WebSocket-*), as the Lua library's forward_headers leaves them out.
 */

static ngx_str_t  ngx_http_ws_proxy_not_forwarded[] = {
    ngx_string("host"),
    ngx_string("connection"),
    ngx_string("upgrade"),
    ngx_string("keep-alive"),
    ngx_string("te"),
    ngx_string("trailer"),
    ngx_string("transfer-encoding"),
    ngx_string("proxy-connection"),
    ngx_string("proxy-authorization"),
    ngx_string("content-length"),
    ngx_null_string
};


char *
ngx_http_ws_proxy_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ws_proxy_loc_conf_t *wlcf = conf;

    char                              *rv;
    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->pass.uri) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* a fragment is not sent in a request line: never meant */

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '#')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a fragment (\"#...\") is not allowed in "
                           "upstream \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    /* a URI without variables is checked now; one with them per request */

    if (ngx_http_script_variables_count(&value[1]) == 0) {
        rv = ngx_http_ws_proxy_pass_static(cf, &wlcf->pass, &value[1]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

#if !(NGX_HTTP_SSL)
    if (ngx_strncasecmp(value[1].data, (u_char *) "wss://", 6) == 0) {
        return "wss:// needs nginx with SSL";
    }
#endif

    wlcf->pass.uri = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (wlcf->pass.uri == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = wlcf->pass.uri;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_ws_proxy_pass_handler;

    return NGX_CONF_OK;
}


/*
 * A URI without variables, as proxy_pass takes one: checked as connect()
 * checks it (scheme, port, userinfo, the bytes allowed), then its host
 * added as proxy_pass adds it (ngx_http_upstream_add()): the upstream{}
 * block of that name, or an implicit one that nginx resolves when the
 * configuration is read ("host not found in upstream ..." otherwise) and
 * whose addresses are tried in turn, without a resolver.
 */

static char *
ngx_http_ws_proxy_pass_static(ngx_conf_t *cf,
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_str_t *url)
{
    u_char                    *path;
    size_t                     add;
    ngx_url_t                  u;
    ngx_str_t                  host;
    ngx_http_ws_proxy_t       *wp;
    ngx_http_core_loc_conf_t  *clcf;

    if (ngx_strncasecmp(url->data, (u_char *) "ws://", 5) == 0) {
        add = 5;

    } else if (ngx_strncasecmp(url->data, (u_char *) "wss://", 6) == 0) {
        add = 6;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL prefix in \"%V\": ws:// or wss:// "
                           "expected", url);
        return NGX_CONF_ERROR;
    }

    /* connect()'s own checks, on a session of the configuration's */

    wp = ngx_pcalloc(cf->temp_pool, sizeof(ngx_http_ws_proxy_t));
    if (wp == NULL) {
        return NGX_CONF_ERROR;
    }

    wp->pool = cf->temp_pool;

    if (ngx_http_ws_proxy_parse_uri(wp, url, &host) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%*s", wp->err_len, wp->err);
        return NGX_CONF_ERROR;
    }

    path = ngx_http_ws_proxy_uri_path_start(url);

    pcf->base.data = url->data;
    pcf->base.len = path - url->data;
    pcf->uri_part.data = path;
    pcf->uri_part.len = url->data + url->len - path;

    if (pcf->uri_part.len && path[0] == '?') {
        pcf->uri_part.data = ngx_pnalloc(cf->pool, pcf->uri_part.len + 1);
        if (pcf->uri_part.data == NULL) {
            return NGX_CONF_ERROR;
        }

        pcf->uri_part.data[0] = '/';
        ngx_memcpy(pcf->uri_part.data + 1, path, pcf->uri_part.len++);
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = url->data + add;
    u.url.len = path - u.url.data;
    u.default_port = (add == 5) ? 80 : 443;
    u.uri_part = 1;            /* a unix socket's path ends at ':' */
    u.no_resolve = 1;

    pcf->upstream = ngx_http_upstream_add(cf, &u, 0);
    if (pcf->upstream == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    pcf->location = clcf->name;

    if (clcf->named
#if (NGX_PCRE)
        || clcf->regex
#endif
        || clcf->noname)
    {
        if (pcf->uri_part.len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_proxy_pass\" cannot have URI part in "
                               "location given by regular expression, "
                               "or inside named location, "
                               "or inside \"if\" statement, "
                               "or inside \"limit_except\" block");
            return NGX_CONF_ERROR;
        }

        pcf->location.len = 0;
    }

    return NGX_CONF_OK;
}


/*
 * ws_proxy_set_header name value: as proxy_set_header, a value with
 * variables, "" to send no such header; the handshake's own headers are
 * the module's (Host is allowed: the Host header sent)
 */

char *
ngx_http_ws_proxy_set_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ws_proxy_loc_conf_t *wlcf = conf;

    u_char                            *p;
    ngx_str_t                         *value;
    ngx_http_ws_proxy_header_t        *h;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (wlcf->pass.headers == NGX_CONF_UNSET_PTR) {
        wlcf->pass.headers = ngx_array_create(cf->pool, 4,
                                          sizeof(ngx_http_ws_proxy_header_t));
        if (wlcf->pass.headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (p = value[1].data; p < value[1].data + value[1].len; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == ':') {
            return "has an invalid header name";
        }
    }

    if (value[1].len == 0
        || (value[1].len == sizeof("Connection") - 1
            && ngx_strncasecmp(value[1].data, (u_char *) "Connection",
                               value[1].len) == 0)
        || (value[1].len == sizeof("Upgrade") - 1
            && ngx_strncasecmp(value[1].data, (u_char *) "Upgrade",
                               value[1].len) == 0)
        || (value[1].len >= sizeof("Sec-WebSocket-") - 1
            && ngx_strncasecmp(value[1].data, (u_char *) "Sec-WebSocket-",
                               sizeof("Sec-WebSocket-") - 1) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "header \"%V\" cannot be set: the module sets "
                           "the handshake's own headers", &value[1]);
        return NGX_CONF_ERROR;
    }

    h = ngx_array_push(wlcf->pass.headers);
    if (h == NULL) {
        return NGX_CONF_ERROR;
    }

    h->name = value[1];
    h->host = (value[1].len == 4
               && ngx_strncasecmp(value[1].data, (u_char *) "Host", 4) == 0);

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[2];
    ccv.complex_value = &h->value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


void
ngx_http_ws_proxy_pass_create(ngx_http_ws_proxy_pass_conf_t *conf)
{
    conf->max_frame_size = NGX_CONF_UNSET_SIZE;
    conf->side_max_frame_size[0] = NGX_CONF_UNSET_SIZE;
    conf->side_max_frame_size[1] = NGX_CONF_UNSET_SIZE;
    conf->max_fragments = NGX_CONF_UNSET_UINT;
    conf->side_max_fragments[0] = NGX_CONF_UNSET_UINT;
    conf->side_max_fragments[1] = NGX_CONF_UNSET_UINT;
    conf->recv_timeout = NGX_CONF_UNSET_MSEC;
    conf->aggregate = NGX_CONF_UNSET;
    conf->ssl_verify = NGX_CONF_UNSET;
    conf->headers = NGX_CONF_UNSET_PTR;
    conf->pass_request_headers = NGX_CONF_UNSET;
}


/*
 * A side's limit is its own directive's, else ws_proxy_max_frame_size's
 * (ws_proxy_max_fragments'), as new()'s client_/upstream_ options; 0 is
 * no limit, as it is for new().
 */

char *
ngx_http_ws_proxy_pass_merge(ngx_conf_t *cf,
    ngx_http_ws_proxy_pass_conf_t *prev, ngx_http_ws_proxy_pass_conf_t *conf)
{
    ngx_uint_t                 i;
    ngx_http_core_loc_conf_t  *clcf;

    /*
     * the header directives apply to ws_proxy_pass only: in a location
     * whose content handler is another's (content_by_lua*, proxy_pass)
     * they would do nothing, so they are refused there; at an outer
     * level, or above an "if" or a nested location, they are for the
     * ws_proxy_pass locations inside
     */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler && clcf->handler != ngx_http_ws_proxy_pass_handler
        && clcf->locations == NULL)
    {
        if (conf->headers != NGX_CONF_UNSET_PTR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_proxy_set_header\" applies to "
                               "ws_proxy_pass only, not to this location's "
                               "handler: use connect()'s \"headers\" option "
                               "in Lua");
            return NGX_CONF_ERROR;
        }

        if (conf->pass_request_headers != NGX_CONF_UNSET) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"ws_proxy_pass_request_headers\" applies "
                               "to ws_proxy_pass only, not to this "
                               "location's handler: use connect()'s "
                               "\"forward_headers\" option in Lua");
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_merge_size_value(conf->max_frame_size, prev->max_frame_size, 0);
    ngx_conf_merge_uint_value(conf->max_fragments, prev->max_fragments, 0);

    /*
     * A side's own stays unset when no level sets it: the session then
     * takes the both-sides value of the location (not the one a level
     * above merged into the side).
     */

    for (i = 0; i < 2; i++) {
        ngx_conf_merge_size_value(conf->side_max_frame_size[i],
                                  prev->side_max_frame_size[i],
                                  NGX_CONF_UNSET_SIZE);
        ngx_conf_merge_uint_value(conf->side_max_fragments[i],
                                  prev->side_max_fragments[i],
                                  NGX_CONF_UNSET_UINT);
    }

    ngx_conf_merge_msec_value(conf->recv_timeout, prev->recv_timeout, 0);
    ngx_conf_merge_value(conf->aggregate, prev->aggregate, 0);
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 0);
    ngx_conf_merge_str_value(conf->ssl_name, prev->ssl_name, "");

    /* as proxy_set_header: inherited when a level sets none */
    ngx_conf_merge_ptr_value(conf->headers, prev->headers, NULL);
    ngx_conf_merge_value(conf->pass_request_headers,
                         prev->pass_request_headers, 1);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_ws_proxy_pass_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_pool_cleanup_t            *cln;
    ngx_http_ws_proxy_t           *wp;
    ngx_http_ws_proxy_pass_ctx_t  *ctx;

    if (ngx_http_get_module_ctx(r, ngx_http_ws_proxy_module)) {
        /* a session of this request's already (an internal redirect) */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ws_proxy_pass_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wp = ngx_http_ws_proxy_create(r, 0);
    if (wp == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * Added after the session's own cleanup, so run before it (a pool runs
     * its cleanups last in, first out): the posted event goes first.
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_ws_proxy_pass_cleanup;
    cln->data = ctx;

    ctx->wp = wp;
    ctx->request = r;
    ctx->event.handler = ngx_http_ws_proxy_pass_resume;
    ctx->event.data = ctx;
    ctx->event.log = r->connection->log;
    ctx->keep.handler = ngx_http_ws_proxy_pass_keep;
    ctx->keep.data = ctx;
    ctx->keep.log = r->connection->log;

    wp->notify = ngx_http_ws_proxy_pass_notify;
    wp->notify_data = ctx;

    rc = ngx_http_ws_proxy_pass_session(r, ctx);

    if (rc != NGX_DONE) {
        return rc;
    }

    /* the request is ours until ngx_http_ws_proxy_pass_resume() ends it */

    r->main->count++;

    if (wp->state != NGX_WSP_STATE_CONNECTING && !ctx->event.posted) {
        /* refused before a connect was started: a bad URI, no resolver */
        ngx_post_event(&ctx->event, &ngx_posted_events);
    }

    return NGX_DONE;
}


/*
 * The session's options from the directives, the client's request checked
 * (a bad one is answered 400/426 here), the connect started: NGX_DONE, or
 * the status to end the request with.
 */

static ngx_int_t
ngx_http_ws_proxy_pass_session(ngx_http_request_t *r,
    ngx_http_ws_proxy_pass_ctx_t *ctx)
{
    ngx_int_t                      rc;
    ngx_http_ws_proxy_t           *wp;
    ngx_http_ws_proxy_pass_conf_t *pcf;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    /* the session's options: ngx_http_ws_proxy_create() took them */

    wp = ctx->wp;
    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_ws_proxy_module);
    pcf = &wlcf->pass;

    rc = ngx_http_ws_proxy_client_check(wp, NULL);

    if (rc == NGX_DECLINED) {
        /* answered already, with the reason */
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "ws_proxy_pass: %*s", wp->err_len, wp->err);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the session caps, before anything is done for the upstream */

    rc = ngx_http_ws_proxy_limit_conf(wp);

    if (rc == NGX_DECLINED) {
        return wlcf->limit.status;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_ws_proxy_pass_uri(r, pcf, &ctx->uri) != NGX_OK
        || ngx_http_ws_proxy_pass_headers(r, pcf, wp) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the subprotocols offered are the client's, as connect()'s default */

    if (ngx_http_ws_proxy_client_list(r, NGX_WSP_LIST_PROTOCOL, &wp->offer)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wp->err_len = 0;
    wp->escape_path = 1;
    wp->uscf = pcf->upstream;

    (void) ngx_http_ws_proxy_connect(wp, &ctx->uri,
                                     wlcf->handshake_buffer_size);

    return NGX_DONE;
}


/*
 * Called where the Lua library's main thread is woken: the connect ended
 * either way, or the session did.  From inside the upstream's handlers or
 * the pump, which still use the session: the work is done from a posted
 * event.
 */

static void
ngx_http_ws_proxy_pass_notify(ngx_http_ws_proxy_t *wp)
{
    ngx_http_ws_proxy_pass_ctx_t  *ctx;

    ctx = wp->notify_data;

    if (ctx == NULL || wp->cleaned || ctx->event.posted) {
        return;
    }

    ngx_post_event(&ctx->event, &ngx_posted_events);
}


static void
ngx_http_ws_proxy_pass_resume(ngx_event_t *ev)
{
    ngx_int_t                      rc;
    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_ws_proxy_t           *wp;
    ngx_http_ws_proxy_pass_ctx_t  *ctx;

    ctx = ev->data;
    wp = ctx->wp;
    r = ctx->request;
    c = r->connection;

    switch (wp->state) {

    case NGX_WSP_STATE_CONNECTED:
        rc = ngx_http_ws_proxy_pass_connected(ctx);

        if (rc == NGX_DONE) {
            return;
        }

        break;

    case NGX_WSP_STATE_NEW:
        rc = ngx_http_ws_proxy_pass_failed(ctx);
        break;

    case NGX_WSP_STATE_DONE:
        if (ctx->keep.timer_set) {
            ngx_del_timer(&ctx->keep);
        }

        /* the session's end: nothing of the response is left to send */
        rc = ngx_http_send_special(r, NGX_HTTP_LAST);
        rc = (rc == NGX_ERROR) ? NGX_ERROR : NGX_OK;
        break;

    default:
        /* connecting or running: a late wake-up */
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the upstream said 101: the client's 101, then the pump (execute()) */

static ngx_int_t
ngx_http_ws_proxy_pass_connected(ngx_http_ws_proxy_pass_ctx_t *ctx)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ctx->wp;

    if (ngx_http_ws_proxy_client_handshake(wp) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, wp->log, 0,
                      "ws_proxy_pass: %*s", wp->err_len, wp->err);
        return NGX_ERROR;
    }

    if (ngx_http_ws_proxy_start(wp) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, wp->log, 0,
                      "ws_proxy_pass: failed to start proxying");
        return NGX_ERROR;
    }

    /*
     * After nginx -s quit (or reload) a worker exits once no timer that
     * cannot be cancelled is left; an idle session has none of its own.
     * This one keeps the worker until the session ends, as the Lua
     * library's wait does; worker_shutdown_timeout still ends it (1001).
     */

    if (wp->state == NGX_WSP_STATE_RUNNING) {
        ngx_add_timer(&ctx->keep, NGX_WSP_PASS_KEEP);
    }

    /* the pump calls back when the session ends (it may have already) */

    return NGX_DONE;
}


static void
ngx_http_ws_proxy_pass_keep(ngx_event_t *ev)
{
    ngx_http_ws_proxy_pass_ctx_t  *ctx;

    ctx = ev->data;

    if (ctx->wp->state == NGX_WSP_STATE_RUNNING) {
        ngx_add_timer(ev, NGX_WSP_PASS_KEEP);
    }
}


/*
 * As proxy_pass answers: the upstream's refusal relayed (a 401 stays a
 * 401), 504 for a timeout, 502 for anything else.  Every message of a
 * timeout ends with "timeout" (upstream.c).
 */

static ngx_int_t
ngx_http_ws_proxy_pass_failed(ngx_http_ws_proxy_pass_ctx_t *ctx)
{
    ngx_int_t             rc;
    ngx_http_ws_proxy_t  *wp;

    wp = ctx->wp;

    if (wp->upstream_status) {
        rc = ngx_http_ws_proxy_relay_response(wp);

        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                          "ws_proxy_pass: the upstream refused the "
                          "upgrade with %ui, relayed", wp->upstream_status);
            return NGX_OK;
        }

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (wp->err_len == 0) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect");
    }

    /*
     * The URI may hold the client's bytes ($uri decoded).  A connect()
     * failure has nginx's own [error] line already, as proxy_pass has:
     * this summary is one more only at [info].
     */
    ngx_http_ws_proxy_log_error(wp->err_logged ? NGX_LOG_INFO : NGX_LOG_ERR,
                                wp->log, 0,
                                "ws_proxy_pass: %*s, upstream: \"%V\"",
                                wp->err_len, wp->err, &ctx->uri);

    if (wp->err_len >= 17
        && ngx_strncmp(wp->err, "bad websocket uri", 17) == 0)
    {
        /* the configuration's, not the upstream's fault */
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (wp->err_len >= 7
        && ngx_strncmp(wp->err + wp->err_len - 7, "timeout", 7) == 0)
    {
        return NGX_HTTP_GATEWAY_TIME_OUT;
    }

    return NGX_HTTP_BAD_GATEWAY;
}


static void
ngx_http_ws_proxy_pass_cleanup(void *data)
{
    ngx_http_ws_proxy_pass_ctx_t  *ctx = data;

    if (ctx->event.posted) {
        ngx_delete_posted_event(&ctx->event);
    }

    if (ctx->keep.timer_set) {
        ngx_del_timer(&ctx->keep);
    }

    /* the session's cleanup, which runs next, must not call back */

    ctx->wp->notify_data = NULL;
}


/*
 * The URI to connect to, as proxy_pass builds it: without variables, the
 * configured part (if any) in place of the part of the client's URI that
 * matched the location; with variables, what they give, or the client's
 * URI after an authority without a path.  Bytes RFC 3986 refuses are
 * percent-encoded later (wp->escape_path), not refused.
 */

static ngx_int_t
ngx_http_ws_proxy_pass_uri(ngx_http_request_t *r,
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_str_t *uri)
{
    u_char     *p;
    ngx_str_t   base, path, none;

    if (pcf->upstream) {
        base = pcf->base;

        if (ngx_http_ws_proxy_pass_client_uri(r, &pcf->uri_part,
                                              &pcf->location, &path)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        if (ngx_http_complex_value(r, pcf->uri, &base) != NGX_OK) {
            return NGX_ERROR;
        }

        p = ngx_http_ws_proxy_uri_path_start(&base);

        if (p == NULL || p != base.data + base.len) {
            /* a path of the variables', or a bad URI, for connect() */
            *uri = base;
            return NGX_OK;
        }

        ngx_str_null(&none);

        if (ngx_http_ws_proxy_pass_client_uri(r, &none, &none, &path)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    uri->len = base.len + path.len;
    uri->data = ngx_pnalloc(r->pool, uri->len);
    if (uri->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(uri->data, base.data, base.len);
    ngx_memcpy(p, path.data, path.len);

    return NGX_OK;
}


/*
 * The client's URI as proxy_pass passes it: unchanged (the request line's,
 * without a fragment) when there is no prefix; else the prefix (unless a
 * rewrite ... break changed the URI), then the decoded URI after the
 * location's part, escaped again, then the arguments.
 */

static ngx_int_t
ngx_http_ws_proxy_pass_client_uri(ngx_http_request_t *r, ngx_str_t *prefix,
    ngx_str_t *location, ngx_str_t *out)
{
    u_char     *p;
    size_t      loc_len, len;
    uintptr_t   escape;

    if (prefix->len == 0 && r->valid_unparsed_uri) {
        *out = r->unparsed_uri;

        /*
         * a raw '#' starts a fragment, where nginx ended $uri and $args
         * (and matched the location): escaped as %23 with what follows,
         * it would name another path ("/x#/../admin" is "/admin" once an
         * upstream removes the dot segments)
         */

        p = ngx_strlchr(out->data, out->data + out->len, '#');
        if (p) {
            out->len = p - out->data;
        }

        return NGX_OK;
    }

    loc_len = (r->valid_location && prefix->len)
              ? ngx_min(location->len, r->uri.len) : 0;

    escape = 2 * ngx_escape_uri(NULL, r->uri.data + loc_len,
                                r->uri.len - loc_len, NGX_ESCAPE_URI);

    len = prefix->len + r->uri.len - loc_len + escape
          + (r->args.len ? 1 + r->args.len : 0);

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;

    /*
     * a rewrite ... break cleared valid_location: proxy_pass then passes
     * the changed URI whole and ignores its URI part
     */

    if (r->valid_location) {
        p = ngx_cpymem(p, prefix->data, prefix->len);
    }

    if (escape) {
        p = (u_char *) ngx_escape_uri(p, r->uri.data + loc_len,
                                      r->uri.len - loc_len, NGX_ESCAPE_URI);

    } else {
        p = ngx_cpymem(p, r->uri.data + loc_len, r->uri.len - loc_len);
    }

    if (r->args.len) {
        *p++ = '?';
        p = ngx_cpymem(p, r->args.data, r->args.len);
    }

    out->len = p - out->data;

    return NGX_OK;
}


/*
 * The upgrade request's other headers, as proxy_pass sends them: the
 * client's (ws_proxy_pass_request_headers), but for hop-by-hop ones, the
 * handshake's own and those ws_proxy_set_header names, then each
 * ws_proxy_set_header with a value (Host's becomes the Host header).
 */

static ngx_int_t
ngx_http_ws_proxy_pass_headers(ngx_http_request_t *r,
    ngx_http_ws_proxy_pass_conf_t *pcf, ngx_http_ws_proxy_t *wp)
{
    u_char                      *p;
    size_t                       len;
    ngx_str_t                   *values;
    ngx_uint_t                   i, n;
    ngx_list_part_t             *part;
    ngx_table_elt_t             *h;
    ngx_http_ws_proxy_header_t  *sh;

    n = pcf->headers ? pcf->headers->nelts : 0;
    sh = n ? pcf->headers->elts : NULL;
    values = NULL;
    len = 0;

    if (n) {
        values = ngx_palloc(r->pool, n * sizeof(ngx_str_t));
        if (values == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_complex_value(r, &sh[i].value, &values[i]) != NGX_OK) {
            return NGX_ERROR;
        }

        if (values[i].len && !ngx_http_ws_proxy_header_value_ok(&values[i]))
        {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "ws_proxy_pass: the value of ws_proxy_set_header "
                          "\"%V\" has a control byte, not sent",
                          &sh[i].name);
            values[i].len = 0;
        }

        if (sh[i].host) {
            wp->host_header = values[i];
            continue;
        }

        if (values[i].len) {
            len += sh[i].name.len + 2 + values[i].len + 2;
        }
    }

    part = &r->headers_in.headers.part;

    if (!pcf->pass_request_headers) {
        part = NULL;
    }

    for ( /* void */ ; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!ngx_http_ws_proxy_pass_header_skip(pcf, &h[i])) {
                len += h[i].key.len + 2 + h[i].value.len + 2;
            }
        }
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    wp->extra_headers.data = p;
    wp->extra_headers.len = len;

    part = pcf->pass_request_headers ? &r->headers_in.headers.part : NULL;

    for ( /* void */ ; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (!ngx_http_ws_proxy_pass_header_skip(pcf, &h[i])) {
                p = ngx_sprintf(p, "%V: %V" CRLF, &h[i].key, &h[i].value);
            }
        }
    }

    for (i = 0; i < n; i++) {
        if (values[i].len && !sh[i].host) {
            p = ngx_sprintf(p, "%V: %V" CRLF, &sh[i].name, &values[i]);
        }
    }

    return NGX_OK;
}


/* 1: a client header not to pass on */

static ngx_uint_t
ngx_http_ws_proxy_pass_header_skip(ngx_http_ws_proxy_pass_conf_t *pcf,
    ngx_table_elt_t *h)
{
    ngx_str_t                   *name;
    ngx_uint_t                   i;
    ngx_http_ws_proxy_header_t  *sh;

    if (h->hash == 0) {
        /* removed */
        return 1;
    }

    if (h->key.len >= sizeof("sec-websocket-") - 1
        && ngx_strncmp(h->lowcase_key, "sec-websocket-",
                       sizeof("sec-websocket-") - 1) == 0)
    {
        return 1;
    }

    for (name = ngx_http_ws_proxy_not_forwarded; name->len; name++) {
        if (h->key.len == name->len
            && ngx_strncmp(h->lowcase_key, name->data, name->len) == 0)
        {
            return 1;
        }
    }

    if (pcf->headers == NULL) {
        return 0;
    }

    sh = pcf->headers->elts;

    for (i = 0; i < pcf->headers->nelts; i++) {
        if (h->key.len == sh[i].name.len
            && ngx_strncasecmp(h->lowcase_key, sh[i].name.data,
                               h->key.len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* RFC 9110 5.5: no control byte but HTAB in a field value */

static ngx_uint_t
ngx_http_ws_proxy_header_value_ok(ngx_str_t *value)
{
    u_char  *p, *last;

    last = value->data + value->len;

    for (p = value->data; p < last; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f) {
            return 0;
        }
    }

    return 1;
}
