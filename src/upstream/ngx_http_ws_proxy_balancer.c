/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Upstream groups: ws://backend/... where backend names an upstream {}
 * block.  The block's own balancer (round robin with weights, least_conn,
 * hash, ip_hash, random, keepalive, whatever the block configures) picks
 * every server through nginx's peer-selection interface: uscf->peer.init()
 * once per session, then peer.get() (inside ngx_event_connect_peer()) and
 * peer.free() per attempt, NGX_PEER_FAILED for a server that did not work,
 * so that max_fails / fail_timeout, backup and down mean what they mean for
 * proxy_pass.  A failed attempt before the client has its 101 moves to the
 * next server (ngx_http_ws_proxy_balancer_next(), called by connect_done());
 * nothing else of ngx_http_upstream runs.
 */


#include "ngx_http_ws_proxy_module.h"


static ngx_http_upstream_srv_conf_t *ngx_http_ws_proxy_balancer_find(
    ngx_http_ws_proxy_t *wp, ngx_str_t *uri, ngx_str_t *host);
static ngx_int_t ngx_http_ws_proxy_balancer_init(ngx_http_ws_proxy_t *wp,
    ngx_http_upstream_srv_conf_t *uscf);
static ngx_uint_t ngx_http_ws_proxy_balancer_retry(ngx_http_ws_proxy_t *wp,
    ngx_int_t rc);
static ngx_int_t ngx_http_ws_proxy_upstream_addr_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);


static ngx_str_t  ngx_http_ws_proxy_upstream_addr_name =
    ngx_string("ws_proxy_upstream_addr");

static ngx_http_upstream_t  ngx_http_ws_proxy_balancer_scratch;


/*
 * NGX_DECLINED: host does not name a group (it is connected to as
 * today); else the result of the first attempt, as connect() returns it.
 */

ngx_int_t
ngx_http_ws_proxy_balancer_start(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    ngx_str_t *host)
{
    ngx_http_upstream_srv_conf_t  *uscf;

    /* ws_proxy_pass with a URI without variables gives its group */

    uscf = wp->uscf;

    wp->uscf = NULL;
    wp->peer_held = 0;

    if (uscf == NULL) {
        uscf = ngx_http_ws_proxy_balancer_find(wp, uri, host);
    }

    if (uscf == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_ws_proxy_balancer_init(wp, uscf) != NGX_OK) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect: cannot "
                                    "initialize upstream \"%V\"", host);
        wp->state = NGX_WSP_STATE_NEW;
        return NGX_ERROR;
    }

    return ngx_http_ws_proxy_connect_start(wp);
}


/*
 * As ngx_http_upstream_init_request() finds a group for a proxy_pass with
 * variables: the block's name, and no port in the URI (a block has none).
 * Only upstream {} blocks: the implicit entries proxy_pass adds for its
 * literal addresses are not groups of servers.
 */

static ngx_http_upstream_srv_conf_t *
ngx_http_ws_proxy_balancer_find(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    ngx_str_t *host)
{
    u_char                         *end;
    ngx_uint_t                      i;
    ngx_http_upstream_srv_conf_t  **uscfp, *uscf;
    ngx_http_upstream_main_conf_t  *umcf;

    end = host->data + host->len;

    if (end < uri->data + uri->len && *end == ':') {
        return NULL;
    }

    umcf = ngx_http_get_module_main_conf(wp->request, ngx_http_upstream_module);

    if (umcf == NULL) {
        return NULL;
    }

    uscfp = umcf->upstreams.elts;

    for (i = 0; i < umcf->upstreams.nelts; i++) {
        uscf = uscfp[i];

        if ((uscf->flags & NGX_HTTP_UPSTREAM_CREATE)
            && uscf->port == 0
            && uscf->host.len == host->len
            && uscf->peer.init
            && ngx_strncasecmp(uscf->host.data, host->data, host->len) == 0)
        {
            return uscf;
        }
    }

    return NULL;
}


/*
 * peer.init() writes into r->upstream->peer (round robin, and every
 * balancer built on it) and some read the request (hash's key, ip_hash's
 * client address).  It gets an ngx_http_upstream_t of the session's, not
 * made by ngx_http_upstream_create(), which would end an upstream the
 * request may have; r->upstream is put back at once, so that nothing of
 * ngx_http_upstream ever sees it.  The balancer's get/free only use the
 * data they are given.
 */

static ngx_int_t
ngx_http_ws_proxy_balancer_init(ngx_http_ws_proxy_t *wp,
    ngx_http_upstream_srv_conf_t *uscf)
{
    ngx_int_t                      rc;
    ngx_http_request_t            *r;
    ngx_http_upstream_t           *u, *saved;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    r = wp->request;

    /*
     * Round robin (every group without a balancer directive, and each
     * host of ws_proxy_pass) keeps no pointer to it: a worker's one scratch
     * copy spares every session the 1 KB struct, and the 4 KB pool block
     * it opened (bench W7).  Other balancers may keep it (keepalive does):
     * they get the session's own.
     */

    if (uscf->peer.init == ngx_http_upstream_init_round_robin_peer) {
        u = &ngx_http_ws_proxy_balancer_scratch;
        ngx_memzero(u, sizeof(ngx_http_upstream_t));

    } else {
        u = ngx_pcalloc(wp->pool, sizeof(ngx_http_upstream_t));
        if (u == NULL) {
            return NGX_ERROR;
        }
    }

    u->peer.log = wp->log;
    u->peer.log_error = NGX_ERROR_ERR;
    u->upstream = uscf;
    u->headers_in.content_length_n = -1;
    u->headers_in.last_modified_time = -1;

    saved = r->upstream;
    r->upstream = u;

    rc = uscf->peer.init(r, uscf);

    r->upstream = saved;

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    wp->peer = u->peer;
    wp->peer.log = wp->log;
    wp->peer.log_error = NGX_ERROR_ERR;
    wp->peer.start_time = ngx_current_msec;
    wp->peer.sockaddr = NULL;

    /* the session's TLS context has no client session cache */
#if (NGX_SSL)
    wp->peer.set_session = NULL;
    wp->peer.save_session = NULL;
#endif

    wlcf = ngx_http_get_module_loc_conf(r, ngx_wsp_module);

    if (wlcf->next_upstream_tries
        && wp->peer.tries > wlcf->next_upstream_tries)
    {
        wp->peer.tries = wlcf->next_upstream_tries;
    }

    wp->uscf = uscf;

    return NGX_OK;
}


/*
 * After a failed attempt: NGX_OK when the next server is being tried (or
 * was, and that attempt has ended the connect already), NGX_DECLINED when
 * connect() fails with this attempt's error or relays its answer.
 */

ngx_int_t
ngx_http_ws_proxy_balancer_next(ngx_http_ws_proxy_t *wp, ngx_int_t rc)
{
    ngx_msec_t                     timeout;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    if (!ngx_http_ws_proxy_balancer_retry(wp, rc)) {
        /* a refusal (401, 403, ...) or a bad 101: this server answered */
        ngx_http_ws_proxy_balancer_free(wp, rc == NGX_DECLINED
                                            ? 0 : NGX_PEER_FAILED);
        return NGX_DECLINED;
    }

    ngx_http_ws_proxy_balancer_free(wp, NGX_PEER_FAILED);

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_wsp_module);
    timeout = wlcf->next_upstream_timeout;

    if (wp->peer.tries == 0
        || wp->client_handshake          /* connect_client() came first */
        || wp->client->error
        || (timeout && ngx_current_msec - wp->peer.start_time >= timeout))
    {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                  "ws_proxy: upstream server %V of \"%V\" failed (%*s), "
                  "trying the next one",
                  &wp->upstream_peer, &wp->uscf->host,
                  wp->err_len, wp->err);

    /* the attempt's connection, answer and state go; the request stays */

    ngx_http_ws_proxy_close_upstream(wp);

    wp->upstream_status = 0;
    ngx_str_null(&wp->upstream_body);
    ngx_str_null(&wp->response);
    ngx_str_null(&wp->protocol);
#if (NGX_HTTP_SSL)
    wp->ssl_alert = NULL;
#endif

    if (ngx_http_ws_proxy_build_request(wp) != NGX_OK) {
        return NGX_DECLINED;
    }

    (void) ngx_http_ws_proxy_connect_start(wp);

    return NGX_OK;
}


/*
 * What moves on to the next server: no connection, no TLS, no complete
 * answer (an error or a timeout before the end of the head), or a 502, 503
 * or 504 to the upgrade.  Any other answer is relayed as it is.
 */

static ngx_uint_t
ngx_http_ws_proxy_balancer_retry(ngx_http_ws_proxy_t *wp, ngx_int_t rc)
{
    if (rc == NGX_BUSY) {
        /* no server left to ask */
        return 0;
    }

    if (rc == NGX_DECLINED) {
        return wp->upstream_status == NGX_HTTP_BAD_GATEWAY
               || wp->upstream_status == NGX_HTTP_SERVICE_UNAVAILABLE
               || wp->upstream_status == NGX_HTTP_GATEWAY_TIME_OUT;
    }

    return wp->hs_state < NGX_WSP_HS_READ
           || (wp->hs_state == NGX_WSP_HS_READ && wp->response.len == 0);
}


/* the server of the attempt goes back to its balancer, once */

void
ngx_http_ws_proxy_balancer_free(ngx_http_ws_proxy_t *wp, ngx_uint_t state)
{
    if (!wp->peer_held) {
        return;
    }

    wp->peer_held = 0;

    if (wp->peer.free) {
        wp->peer.free(&wp->peer, wp->peer.data, state);
    }

    wp->peer.sockaddr = NULL;
}


/*
 * An attempt got a server: its address is added to the ones tried (",
 * "-separated, as $upstream_addr lists them), and a group's server is
 * held until it is given back.
 */

void
ngx_http_ws_proxy_balancer_tried(ngx_http_ws_proxy_t *wp)
{
    u_char  *p, *start;
    size_t   len, old;
    u_char   addr[NGX_SOCKADDR_STRLEN];

    if (wp->uscf) {
        wp->peer_held = 1;
    }

    len = ngx_sock_ntop(wp->peer.sockaddr, wp->peer.socklen, addr,
                        NGX_SOCKADDR_STRLEN, 1);
    old = wp->upstream_addr.len;

    start = ngx_pnalloc(wp->pool, old + 2 + len);
    if (start == NULL) {
        return;
    }

    p = start;

    if (old) {
        p = ngx_cpymem(p, wp->upstream_addr.data, old);
        *p++ = ','; *p++ = ' ';
    }

    wp->upstream_peer.data = p;
    wp->upstream_peer.len = len;

    p = ngx_cpymem(p, addr, len);

    wp->upstream_addr.data = start;
    wp->upstream_addr.len = p - start;
}


ngx_int_t
ngx_http_ws_proxy_balancer_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_ws_proxy_upstream_addr_name,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_ws_proxy_upstream_addr_variable;

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_upstream_addr_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_get_module_ctx(r, ngx_wsp_module);

    if (wp == NULL || wp->upstream_addr.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = wp->upstream_addr.data;
    v->len = wp->upstream_addr.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
