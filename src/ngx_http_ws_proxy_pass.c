/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * ws_proxy_pass: a content handler that does what the Lua library's
 * connect() and execute() do, through the same C code: the client's
 * request checked (ngx_http_ws_proxy_client_check()), the upstream
 * connected (ngx_http_ws_proxy_connect(): an address, a name or a group),
 * its refusal relayed or the client's 101 sent, then the pump.  Where the
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


char *
ngx_http_ws_proxy_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ws_proxy_loc_conf_t *wlcf = conf;

    ngx_str_t                         *value;
    ngx_http_core_loc_conf_t          *clcf;
    ngx_http_compile_complex_value_t   ccv;

    if (wlcf->pass.uri) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* a URI without variables is checked now; one with them per request */

    if (ngx_http_script_variables_count(&value[1]) == 0
        && ngx_strncasecmp(value[1].data, (u_char *) "ws://", 5) != 0
        && ngx_strncasecmp(value[1].data, (u_char *) "wss://", 6) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid URL prefix in \"%V\": ws:// or wss:// "
                           "expected", &value[1]);
        return NGX_CONF_ERROR;
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
    ngx_uint_t  i;

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

    if (ngx_http_complex_value(r, pcf->uri, &ctx->uri) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the subprotocols offered are the client's, as connect()'s default */

    if (ngx_http_ws_proxy_client_list(r, NGX_WSP_LIST_PROTOCOL, &wp->offer)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    wp->err_len = 0;

    (void) ngx_http_ws_proxy_connect(wp, &ctx->uri);

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

    /* the URI may hold the client's bytes ($uri decoded) */
    ngx_http_ws_proxy_log_error(NGX_LOG_ERR, wp->log, 0,
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
