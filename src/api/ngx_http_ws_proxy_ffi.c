/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The FFI surface for lib/resty/websocket/proxy.lua, in lua-resty-core's
 * style: every function takes the request, returns NGX_OK, NGX_AGAIN (the
 * caller must coroutine._yield(): a semaphore wait is registered), NGX_DONE
 * or NGX_ERROR with a message in err/errlen.
 *
 * Waiting always goes through lua-nginx-module's semaphore: C posts it from
 * event handlers, the resume happens later from the posted-event queue, and
 * a waiter re-checks the session state after every wake-up.
 */


#include "ngx_http_ws_proxy_module.h"
#include "ops/ngx_http_ws_proxy_console.h"


#define NGX_WSP_WAIT_MS   60000


typedef struct {
    double                      client_max_frame_size;
    double                      upstream_max_frame_size;
    double                      max_payload;
    int                         client_max_fragments;
    int                         upstream_max_fragments;
    int                         recv_timeout;
    int                         send_timeout;
    int                         close_timeout;
    int                         idle_timeout;
    int                         ping_interval;
    int                         ping_timeout;
    int                         session_timeout;
    int                         hook;
    int                         aggregate;
    int                         debug;
    int                         drain_time;
    int                         flight_recorder;   /* -1: the location's */
    int                         tap_payloads;      /* -1: the location's */
} ngx_http_ws_proxy_ffi_opts_t;


/* a session of ws_proxy.sessions() (ngx_http_ws_proxy_console.h's list) */
typedef struct {
    double                      seq;
    double                      epoch;
    double                      start;       /* unix s */
    double                      age;
    double                      frames[2];
    double                      bytes[2];
    int                         worker;
    int                         state;       /* 0 open, 1 ended */
    int                         ended_by;    /* NGX_WSP_END_* */
    int                         close_code[2];  /* -1: none */
    int                         deflate;
    int                         hook;
    int                         recorder;
    int                         taps;
    int                         key_len;
    const u_char               *key;
    int                         location_len;
    int                         client_len;
    int                         upstream_len;
    u_char                      location[NGX_WSP_R_LOCATION];
    u_char                      client[NGX_WSP_R_ADDR];
    u_char                      upstream[NGX_WSP_R_ADDR];
} ngx_http_ws_proxy_ffi_session_t;


typedef struct {
    const u_char               *uri;
    size_t                      uri_len;
    const u_char               *headers;     /* "Name: value\r\n"... */
    size_t                      headers_len;
    const u_char               *server_name;
    size_t                      server_name_len;
    int                         connect_timeout;
    int                         send_timeout;
    int                         read_timeout;
    int                         ssl_verify;
    void                       *client_cert;
    void                       *client_priv_key;
    const u_char               *host;
    size_t                      host_len;
    const u_char               *key;
    size_t                      key_len;
    const u_char               *protocols;   /* "a, b": the offer */
    size_t                      protocols_len;
    int                         forward_protocols;
    int                         handshake_buffer_size;  /* 0: directive's */
} ngx_http_ws_proxy_ffi_connect_t;


typedef struct {
    double                      frames[2];
    double                      bytes[2];
    double                      messages[2];
    int                         close_code[2];
    int                         state;
    int                         closed_by;
    int                         ended_by;        /* NGX_WSP_END_* */
    double                      duration;
    const u_char               *upstream_addr;   /* the server chosen */
    size_t                      upstream_addr_len;
    double                      zbytes[2];       /* permessage-deflate */
    double                      zplain[2];
} ngx_http_ws_proxy_ffi_stats_t;


/* one cap of the limit_sessions option (ngx_http_ws_proxy_limit.c) */
typedef struct {
    const u_char               *zone;
    size_t                      zone_len;
    const u_char               *key;        /* NULL: the zone's key */
    size_t                      key_len;
    int                         n;
} ngx_http_ws_proxy_ffi_limit_t;


int ngx_http_ws_proxy_ffi_stats(uint64_t id,
    ngx_http_ws_proxy_ffi_stats_t *st);
int ngx_http_ws_proxy_ffi_close(uint64_t id, int client_code,
    const u_char *client_reason, size_t client_len, int upstream_code,
    const u_char *upstream_reason, size_t upstream_len);
int ngx_http_ws_proxy_ffi_send_frame(uint64_t id, int dir, int opcode,
    const u_char *data, size_t len);
int ngx_http_ws_proxy_ffi_set_deadline(uint64_t id, double ms, int code,
    const u_char *reason, size_t len);
int ngx_http_ws_proxy_ffi_set_rate(uint64_t id, int dirs, double rate,
    double burst, int close, const u_char *zone, size_t zone_len,
    const u_char *key, size_t key_len, u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_set_limits(uint64_t id, int dir,
    double max_frame_size, int max_fragments);
int ngx_http_ws_proxy_ffi_new(ngx_http_request_t *r, int hook, uint64_t *id,
    u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_set_opts(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_opts_t *o, u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_connect(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_connect_t *o, u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_connect_result(ngx_http_request_t *r, uint64_t id,
    const u_char **resp, size_t *resp_len, u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_client_check(ngx_http_request_t *r, uint64_t id,
    u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_client_handshake(ngx_http_request_t *r, uint64_t id,
    u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_execute(ngx_http_request_t *r, uint64_t id,
    u_char *err, size_t *errlen);
ngx_http_ws_proxy_slot_t *ngx_http_ws_proxy_ffi_slot(ngx_http_request_t *r,
    uint64_t id, int dir);
ngx_http_ws_proxy_lua_log_t *ngx_http_ws_proxy_ffi_logs(ngx_http_request_t *r,
    uint64_t id);
int ngx_http_ws_proxy_ffi_wait(ngx_http_request_t *r, uint64_t id, int dir,
    u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_verdict(ngx_http_request_t *r, uint64_t id, int dir,
    uint32_t seq, int verdict, const u_char *data, size_t len, int code,
    u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_abort(ngx_http_request_t *r, uint64_t id, int code,
    const u_char *reason, size_t len);
int ngx_http_ws_proxy_ffi_result(ngx_http_request_t *r, uint64_t id,
    u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_relay_response(ngx_http_request_t *r, uint64_t id);
int ngx_http_ws_proxy_ffi_abi(void);
int ngx_http_ws_proxy_ffi_sessions(const u_char *args, size_t len,
    ngx_http_ws_proxy_ffi_session_t *out, int n, int *total, int *unlisted);
int ngx_http_ws_proxy_ffi_close_session(const u_char *id, size_t len,
    int code, const u_char *reason, size_t reason_len);
int ngx_http_ws_proxy_ffi_limit(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_limit_t *l, int n, u_char *err, size_t *errlen);
int ngx_http_ws_proxy_ffi_deflate(ngx_http_request_t *r, uint64_t id,
    int sides, int *takeover, int *bits, int level, int mem_level);


/*
 * The version of the functions below and of their structures, checked by
 * lib/resty/websocket/proxy.lua when it loads: bump it with any change of
 * a signature or a structure the library declares.  The library also calls
 * ngx_wsp_utf8_validate() (src/protocol/ngx_wsp_frame.h) to check the
 * frames it asks the module to send: its signature is part of this ABI.
 */

#define NGX_WSP_FFI_ABI   14


static ngx_inline ngx_http_ws_proxy_t *ngx_http_ws_proxy_ffi_get(
    ngx_http_request_t *r, uint64_t id, u_char *err, size_t *errlen);
static ngx_inline ngx_http_ws_proxy_t *ngx_http_ws_proxy_ffi_own(
    ngx_http_request_t *r, uint64_t id);
static ngx_int_t ngx_http_ws_proxy_ffi_copy(ngx_http_request_t *r,
    ngx_str_t *dst, const u_char *data, size_t len);
static int ngx_http_ws_proxy_ffi_error(u_char *err, size_t *errlen,
    u_char *msg, size_t len);


#define ngx_http_ws_proxy_ffi_err(err, errlen, s)                            \
    ngx_http_ws_proxy_ffi_error(err, errlen, (u_char *) s, sizeof(s) - 1)


static int
ngx_http_ws_proxy_ffi_error(u_char *err, size_t *errlen, u_char *msg,
    size_t len)
{
    *errlen = ngx_min(len, *errlen);
    ngx_memcpy(err, msg, *errlen);

    return NGX_ERROR;
}


/*
 * A Lua handle names its session by the session's id, never by its
 * address: an id is not reused, memory is.  The session of the current
 * request, when the handle is its own; a stale or foreign one is refused.
 */

static ngx_inline ngx_http_ws_proxy_t *
ngx_http_ws_proxy_ffi_own(ngx_http_request_t *r, uint64_t id)
{
    ngx_http_ws_proxy_t  *wp;

    if (r == NULL) {
        return NULL;
    }

    wp = ngx_http_get_module_ctx(r, ngx_http_ws_proxy_module);

    if (wp == NULL || wp->id != id) {
        return NULL;
    }

    return wp;
}


static ngx_inline ngx_http_ws_proxy_t *
ngx_http_ws_proxy_ffi_get(ngx_http_request_t *r, uint64_t id, u_char *err,
    size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    if (r == NULL) {
        (void) ngx_http_ws_proxy_ffi_err(err, errlen, "no request found");
        return NULL;
    }

    wp = ngx_http_ws_proxy_ffi_own(r, id);

    if (wp == NULL) {
        (void) ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "proxy does not belong to the "
                                         "current request");
        return NULL;
    }

    return wp;
}


int
ngx_http_ws_proxy_ffi_new(ngx_http_request_t *r, int hook, uint64_t *id,
    u_char *err, size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    if (r == NULL) {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "no request found");
    }

    if (r->connection->fd == (ngx_socket_t) -1) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "no client connection in this "
                                         "context");
    }

    if (ngx_http_ws_proxy_lua_resolve() != NGX_OK) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "lua-nginx-module's semaphore "
                                         "functions not found");
    }

    wp = ngx_http_get_module_ctx(r, ngx_http_ws_proxy_module);

    if (wp == NULL) {
        wp = ngx_http_ws_proxy_create(r, hook);
        if (wp == NULL) {
            return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
        }
    }

    if (wp->notify) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "the request is ws_proxy_pass's");
    }

    /* the main thread's: connect done, session done */

    if (wp->sema == NULL
        && ngx_http_lua_ffi_sema_new(&wp->sema, 0, NULL) != NGX_OK)
    {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
    }

    *id = wp->id;

    return NGX_OK;
}


int
ngx_http_ws_proxy_ffi_set_opts(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_opts_t *o, u_char *err, size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->state == NGX_WSP_STATE_RUNNING) {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "proxy is running");
    }

    /*
     * Every option not given (0; aggregate -1) is the directive's: the
     * location's values first (again: an earlier object may have left
     * this session with its own options), then the options over them.
     */

    ngx_http_ws_proxy_conf_opts(wp);

    if (o->client_max_frame_size > 0) {
        wp->opts.max_frame_size[NGX_WSP_DIR_CLIENT] =
            (uint64_t) o->client_max_frame_size;
    }

    if (o->upstream_max_frame_size > 0) {
        wp->opts.max_frame_size[NGX_WSP_DIR_UPSTREAM] =
            (uint64_t) o->upstream_max_frame_size;
    }

    if (o->client_max_fragments > 0) {
        wp->opts.max_fragments[NGX_WSP_DIR_CLIENT] =
            (ngx_uint_t) o->client_max_fragments;
    }

    if (o->upstream_max_fragments > 0) {
        wp->opts.max_fragments[NGX_WSP_DIR_UPSTREAM] =
            (ngx_uint_t) o->upstream_max_fragments;
    }

    if (o->max_payload > 0) {
        wp->opts.max_payload = (uint64_t) o->max_payload;
    }

    if (o->recv_timeout > 0) {
        wp->opts.recv_timeout = o->recv_timeout;
    }

    if (o->send_timeout > 0) {
        wp->opts.send_timeout = o->send_timeout;
    }

    if (o->close_timeout > 0) {
        wp->opts.close_timeout = o->close_timeout;
    }

    if (o->idle_timeout > 0) {
        wp->opts.idle_timeout = o->idle_timeout;
    }

    if (o->ping_interval > 0) {
        wp->opts.ping_interval = o->ping_interval;
    }

    if (o->ping_timeout > 0) {
        wp->opts.ping_timeout = o->ping_timeout;
    }

    if (o->session_timeout > 0) {
        wp->opts.session_timeout = o->session_timeout;
    }

    if (o->drain_time > 0) {
        wp->opts.drain_time = o->drain_time;
    }

    if (o->flight_recorder >= 0
        && ngx_http_ws_proxy_recorder_set(wp, (ngx_uint_t) ngx_min(
                                   o->flight_recorder, NGX_WSP_RECORDER_MAX))
           != NGX_OK)
    {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
    }

    if (o->tap_payloads >= 0) {
        wp->opts.tap_payloads = (uint16_t) ngx_min(o->tap_payloads,
                                                   NGX_WSP_TAP_PAYLOAD_MAX);
    }

    wp->opts.hook = o->hook ? 1 : 0;

    if (o->aggregate >= 0) {
        wp->opts.aggregate = o->aggregate ? 1 : 0;
    }
    wp->opts.debug = o->debug ? 1 : 0;

    return NGX_OK;
}


/* a copy of a string from Lua in the request's pool (empty: NULL) */

static ngx_int_t
ngx_http_ws_proxy_ffi_copy(ngx_http_request_t *r, ngx_str_t *dst,
    const u_char *data, size_t len)
{
    dst->len = len;
    dst->data = NULL;

    if (len == 0) {
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(r->pool, len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, data, len);

    return NGX_OK;
}


int
ngx_http_ws_proxy_ffi_connect(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_connect_t *o, u_char *err, size_t *errlen)
{
    ngx_int_t                      rc;
    ngx_str_t                      uri, server_name;
    ngx_http_ws_proxy_t           *wp;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->state != NGX_WSP_STATE_NEW) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "upstream connection already "
                                         "in progress or established");
    }

    ngx_str_null(&wp->key);

    if (ngx_http_ws_proxy_ffi_copy(r, &uri, o->uri, o->uri_len) != NGX_OK
        || ngx_http_ws_proxy_ffi_copy(r, &wp->extra_headers, o->headers,
                                      o->headers_len) != NGX_OK
        || ngx_http_ws_proxy_ffi_copy(r, &wp->host_header, o->host,
                                      o->host_len) != NGX_OK
        || ngx_http_ws_proxy_ffi_copy(r, &wp->offer, o->protocols,
                                      o->protocols_len) != NGX_OK
        || ngx_http_ws_proxy_ffi_copy(r, &server_name, o->server_name,
                                      o->server_name_len) != NGX_OK)
    {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
    }

    /* not given: ws_proxy_ssl_name's, ws_proxy_ssl_verify's (-1) */

    if (server_name.len) {
        wp->server_name = server_name;
    }

    if (o->ssl_verify >= 0) {
        wp->ssl_verify = o->ssl_verify ? 1 : 0;
    }

    if (o->connect_timeout > 0) {
        wp->connect_timeout = o->connect_timeout;
    }

    if (o->send_timeout > 0) {
        wp->send_timeout = o->send_timeout;
    }

    if (o->read_timeout > 0) {
        wp->read_timeout = o->read_timeout;
    }

#if (NGX_HTTP_SSL)
    wp->client_cert = o->client_cert;
    wp->client_key = o->client_priv_key;
#endif
    wp->err_len = 0;

    if (o->key_len) {
        u_char     buf[32];
        ngx_str_t  in, out;

        in.data = (u_char *) o->key;
        in.len = o->key_len;
        out.data = buf;

        if (o->key_len != 24 || ngx_decode_base64(&out, &in) != NGX_OK
            || out.len != 16)
        {
            return ngx_http_ws_proxy_ffi_err(err, errlen,
                                             "bad key: a Sec-WebSocket-Key "
                                             "is 16 bytes in base64");
        }

        wp->key.len = 24;
        wp->key.data = ngx_pnalloc(r->pool, 24);
        if (wp->key.data == NULL) {
            return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
        }

        ngx_memcpy(wp->key.data, o->key, 24);
    }

    /* the subprotocols offered: the option's, or the client's offer */

    if (o->protocols_len == 0 && o->forward_protocols
        && ngx_http_ws_proxy_client_list(r, NGX_WSP_LIST_PROTOCOL,
                                         &wp->offer)
           != NGX_OK)
    {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_ws_proxy_module);

    rc = ngx_http_ws_proxy_connect(wp, &uri, o->handshake_buffer_size > 0
                                             ? (size_t) o->handshake_buffer_size
                                             : wlcf->handshake_buffer_size);

    if (rc == NGX_ERROR) {
        ngx_http_ws_proxy_metrics_connect_end(wp, NGX_ERROR);

        if (wp->err_len == 0) {
            ngx_http_ws_proxy_set_error(wp, "failed to connect");
        }

        return ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);
    }

    return (int) rc;
}


int
ngx_http_ws_proxy_ffi_connect_result(ngx_http_request_t *r, uint64_t id,
    const u_char **resp, size_t *resp_len, u_char *err, size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    *resp = wp->response.data;
    *resp_len = wp->response.len;

    if (wp->state == NGX_WSP_STATE_CONNECTED) {
        return NGX_OK;
    }

    if (wp->err_len == 0) {
        ngx_http_ws_proxy_set_error(wp, "failed to connect");
    }

    return ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);
}


/* connect(): the client's request is checked before the upstream is dialed */

int
ngx_http_ws_proxy_ffi_client_check(ngx_http_request_t *r, uint64_t id,
    u_char *err, size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->client_handshake) {
        return NGX_OK;
    }

    wp->err_len = 0;

    if (ngx_http_ws_proxy_client_check(wp, NULL) != NGX_OK) {
        if (wp->err_len == 0) {
            ngx_http_ws_proxy_set_error(wp, "client handshake failed");
        }

        return ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);
    }

    return NGX_OK;
}


int
ngx_http_ws_proxy_ffi_client_handshake(ngx_http_request_t *r, uint64_t id,
    u_char *err, size_t *errlen)
{
    ngx_int_t             rc;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->client_handshake) {
        return NGX_DECLINED;
    }

    wp->err_len = 0;

    rc = ngx_http_ws_proxy_client_handshake(wp);

    if (rc != NGX_OK) {
        if (wp->err_len == 0) {
            ngx_http_ws_proxy_set_error(wp, "client handshake failed");
        }

        return ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);
    }

    return NGX_OK;
}


int
ngx_http_ws_proxy_ffi_execute(ngx_http_request_t *r, uint64_t id, u_char *err,
    size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (!wp->client_handshake) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "client handshake not complete");
    }

    if (wp->state != NGX_WSP_STATE_CONNECTED) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "upstream connection not "
                                         "established");
    }

    wp->err_len = 0;

    /* the hook's two light threads wait on semaphores of their own */

    if (wp->opts.hook && wp->dir[0].sema == NULL
        && (ngx_http_lua_ffi_sema_new(&wp->dir[0].sema, 0, NULL) != NGX_OK
            || ngx_http_lua_ffi_sema_new(&wp->dir[1].sema, 0, NULL)
               != NGX_OK))
    {
        return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
    }

    if (ngx_http_ws_proxy_start(wp) != NGX_OK) {
        return ngx_http_ws_proxy_ffi_err(err, errlen,
                                         "failed to start proxying");
    }

    return NGX_OK;
}


/*
 * Where Lua reads the frame a direction holds (ngx_http_ws_proxy_slot_t):
 * a light thread woken with slot->ready set goes straight to its hook.
 */

ngx_http_ws_proxy_slot_t *
ngx_http_ws_proxy_ffi_slot(ngx_http_request_t *r, uint64_t id, int dir)
{
    size_t                errlen;
    u_char                err[1];
    ngx_http_ws_proxy_t  *wp;

    errlen = 0;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, &errlen);
    if (wp == NULL) {
        return NULL;
    }

    return &wp->dir[dir & 1].slot;
}


/*
 * Where Lua reads the log lines C kept for it (ngx_http_ws_proxy_lua_log_t)
 * and empties them (len = 0) once written.
 */

ngx_http_ws_proxy_lua_log_t *
ngx_http_ws_proxy_ffi_logs(ngx_http_request_t *r, uint64_t id)
{
    size_t                errlen;
    u_char                err[1];
    ngx_http_ws_proxy_t  *wp;

    errlen = 0;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, &errlen);
    if (wp == NULL) {
        return NULL;
    }

    return &wp->lua_log;
}


/*
 * The next frame of direction d for its hook: NGX_OK when one is in the
 * slot, NGX_AGAIN when the light thread must yield on the direction's
 * semaphore, NGX_DONE when the session is over.
 */

static ngx_inline int
ngx_http_ws_proxy_ffi_next(ngx_http_request_t *r, ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_dir_t *d, u_char *err, size_t *errlen)
{
    int  rc;

    for ( ;; ) {

        if (wp->state != NGX_WSP_STATE_RUNNING) {
            return NGX_DONE;
        }

        if (d->in == NGX_WSP_IN_LUA) {
            return NGX_OK;
        }

        if (d->sema == NULL) {
            /* the session was started without a hook */
            return NGX_DONE;
        }

        rc = ngx_http_lua_ffi_sema_wait(r, d->sema, NGX_WSP_WAIT_MS, err,
                                        errlen);

        if (rc == NGX_AGAIN) {
            /* the next frame posts the semaphore, see frame_done() */
            d->parked = 1;
            return rc;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        /* a wake-up was pending: look again */
    }
}


/*
 * dir >= 0: the next frame of that direction, see
 * ngx_http_ws_proxy_ffi_next().  dir < 0: waits until the upstream connect
 * finishes or the session ends (NGX_DONE).
 */

int
ngx_http_ws_proxy_ffi_wait(ngx_http_request_t *r, uint64_t id, int dir,
    u_char *err, size_t *errlen)
{
    int                   rc;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (dir >= 0) {
        return ngx_http_ws_proxy_ffi_next(r, wp, &wp->dir[dir & 1], err,
                                          errlen);
    }

    for ( ;; ) {

        if (wp->state != NGX_WSP_STATE_CONNECTING
            && wp->state != NGX_WSP_STATE_RUNNING)
        {
            return NGX_DONE;
        }

        rc = ngx_http_lua_ffi_sema_wait(r, wp->sema, NGX_WSP_WAIT_MS, err,
                                        errlen);

        if (rc != NGX_OK) {
            return rc;
        }
    }
}


/*
 * The verdict on frame `seq` of direction dir, then the wait for the next
 * frame.  A verdict on a frame the session has dropped meanwhile (a peer
 * gone, a violation) is ignored.
 */

int
ngx_http_ws_proxy_ffi_verdict(ngx_http_request_t *r, uint64_t id, int dir,
    uint32_t seq, int verdict, const u_char *data, size_t len, int code,
    u_char *err, size_t *errlen)
{
    ngx_int_t                 rc;
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    d = &wp->dir[dir & 1];

    if (wp->state == NGX_WSP_STATE_RUNNING && d->in == NGX_WSP_IN_LUA
        && d->slot.seq == seq)
    {
        rc = ngx_http_ws_proxy_apply_verdict(d, (ngx_uint_t) verdict,
                                             (u_char *) data, len, code);

        if (rc == NGX_DECLINED) {
            return ngx_http_ws_proxy_ffi_err(err, errlen,
                                             "invalid frame from on_frame: "
                                             "a control frame payload is "
                                             "limited to 125 bytes and a "
                                             "close status to valid codes");
        }

        if (rc == NGX_ABORT) {
            return ngx_http_ws_proxy_ffi_err(err, errlen,
                                             "invalid frame from on_frame: "
                                             "text that is not UTF-8");
        }

        if (rc != NGX_OK) {
            return ngx_http_ws_proxy_ffi_err(err, errlen, "no memory");
        }
    }

    return ngx_http_ws_proxy_ffi_next(r, wp, d, err, errlen);
}


int
ngx_http_ws_proxy_ffi_abort(ngx_http_request_t *r, uint64_t id, int code,
    const u_char *reason, size_t len)
{
    ngx_http_ws_proxy_t  *wp;
    u_char                buf[NGX_WSP_MAX_CONTROL];

    wp = ngx_http_ws_proxy_ffi_own(r, id);

    if (wp == NULL) {
        return NGX_ERROR;
    }

    len = ngx_min(len, sizeof(buf) - 3);
    ngx_memcpy(buf, reason, len);
    buf[len] = '\0';

    if (wp->err_len == 0) {
        ngx_http_ws_proxy_set_error(wp, "%s", buf);
    }

    /* the library calls this for a failed on_frame hook only */
    ngx_http_ws_proxy_metrics_hook_error(wp);

    ngx_http_ws_proxy_abort(wp, (ngx_uint_t) code, (char *) buf);

    return NGX_OK;
}


int
ngx_http_ws_proxy_ffi_result(ngx_http_request_t *r, uint64_t id, u_char *err,
    size_t *errlen)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->state != NGX_WSP_STATE_DONE) {
        return NGX_AGAIN;
    }

    if (wp->rc == NGX_OK) {
        return NGX_OK;
    }

    if (wp->err_len == 0) {
        ngx_http_ws_proxy_set_error(wp, "proxying failed");
    }

    return ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);
}


/*
 * The functions below take no request: they may be called from a timer or
 * another request of the same worker, and find the session in the live
 * list first.  NGX_DECLINED: the session is not running (any more).
 */

int
ngx_http_ws_proxy_ffi_stats(uint64_t id, ngx_http_ws_proxy_ffi_stats_t *st)
{
    ngx_uint_t            i;
    ngx_msec_t            end;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_lookup(id);
    if (wp == NULL) {
        return NGX_DECLINED;
    }

    for (i = 0; i < 2; i++) {
        st->frames[i] = (double) wp->dir[i].frames;
        st->bytes[i] = (double) wp->dir[i].bytes;
        st->messages[i] = (double) wp->dir[i].messages;
        st->close_code[i] = (int) wp->dir[i].close_code;
    }

    st->state = (int) wp->state;
    st->closed_by = (int) wp->closed_by;
    st->ended_by = (int) wp->ended_by;

    end = wp->end_time ? wp->end_time : ngx_current_msec;
    st->duration = wp->start_time ? (double) (end - wp->start_time) / 1000
                                  : 0;

    st->upstream_addr = wp->upstream_peer.data;
    st->upstream_addr_len = wp->upstream_peer.len;

    for (i = 0; i < 2; i++) {
        st->zbytes[i] = (double) wp->dir[i].zbytes;
        st->zplain[i] = (double) wp->dir[i].zplain;
    }

    return NGX_OK;
}


int
ngx_http_ws_proxy_ffi_close(uint64_t id, int client_code,
    const u_char *client_reason, size_t client_len, int upstream_code,
    const u_char *upstream_reason, size_t upstream_len)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_lookup(id);
    if (wp == NULL) {
        return NGX_DECLINED;
    }

    return (int) ngx_http_ws_proxy_close(wp, client_code,
                                         (u_char *) client_reason, client_len,
                                         upstream_code,
                                         (u_char *) upstream_reason,
                                         upstream_len);
}


/* proxy:set_deadline(): ms from now, the close then sent to both peers */

int
ngx_http_ws_proxy_ffi_set_deadline(uint64_t id, double ms, int code,
    const u_char *reason, size_t len)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_lookup(id);
    if (wp == NULL) {
        return NGX_DECLINED;
    }

    return (int) ngx_http_ws_proxy_set_deadline(wp, (ngx_msec_t) ms,
                                                (ngx_uint_t) code,
                                                (u_char *) reason, len);
}


int
ngx_http_ws_proxy_ffi_send_frame(uint64_t id, int dir, int opcode,
    const u_char *data, size_t len)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_lookup(id);
    if (wp == NULL) {
        return NGX_DECLINED;
    }

    return (int) ngx_http_ws_proxy_inject(wp, dir & 1, opcode,
                                          (u_char *) data, len);
}


int
ngx_http_ws_proxy_ffi_set_limits(uint64_t id, int dir, double max_frame_size,
    int max_fragments)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_lookup(id);
    if (wp == NULL || wp->state == NGX_WSP_STATE_DONE) {
        /* before the session the library keeps the limit for execute() */
        return NGX_DECLINED;
    }

    if (max_frame_size >= 0) {
        wp->opts.max_frame_size[dir & 1] = (uint64_t) max_frame_size;
    }

    if (max_fragments >= 0) {
        wp->opts.max_fragments[dir & 1] = (ngx_uint_t) max_fragments;
    }

    return NGX_OK;
}


/*
 * The limit_messages option (execute()) and set_rate(), after connect():
 * the message rate of the senders in dirs (NGX_WSP_RUN_DIR()s), a
 * session's own (rate, burst: messages per second, and over it; rate 0:
 * none) or a zone's by name, with Lua's key (NULL: the zone's).  It
 * replaces the location's ws_proxy_limit_messages.  The library checked
 * the values.
 */

int
ngx_http_ws_proxy_ffi_set_rate(uint64_t id, int dirs, double rate,
    double burst, int close, const u_char *zone, size_t zone_len,
    const u_char *key, size_t key_len, u_char *err, size_t *errlen)
{
    ngx_str_t                   z, k;
    ngx_http_ws_proxy_t        *wp;
    ngx_http_ws_proxy_mlimit_t  ml;

    wp = ngx_http_ws_proxy_lookup(id);
    if (wp == NULL || wp->state == NGX_WSP_STATE_DONE) {
        return NGX_DECLINED;
    }

    ml.shm_zone = NULL;
    ml.rate = (ngx_uint_t) (rate * 1000);
    ml.burst = (ngx_uint_t) (burst * 1000);
    ml.dirs = (ngx_uint_t) dirs & NGX_WSP_RUN_BOTH;
    ml.close = close ? 1 : 0;

    if (rate > 0 && ml.rate == 0) {
        /* under a thousandth of a message per second: the least */
        ml.rate = 1;
    }

    z.data = (u_char *) zone;
    z.len = zone_len;
    k.data = (u_char *) key;
    k.len = key_len;

    wp->err_len = 0;

    if (ngx_http_ws_proxy_rate_set(wp, &ml, zone ? &z : NULL,
                                   key ? &k : NULL)
        != NGX_OK)
    {
        if (wp->err_len == 0) {
            ngx_http_ws_proxy_set_error(wp, "no memory");
        }

        (void) ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* connect(): the upstream's refusal becomes the answer to the client */

int
ngx_http_ws_proxy_ffi_relay_response(ngx_http_request_t *r, uint64_t id)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_own(r, id);

    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->limit_status == NGX_WSP_LIMIT_REJECTED) {
        /* refused by a session cap: the location's status */
        return (int) ngx_http_ws_proxy_limit_refuse(wp);
    }

    return (int) ngx_http_ws_proxy_relay_response(wp);
}


/*
 * connect(), connect_upstream(): the session caps, before the upstream is
 * dialled, once per session.  n < 0: the location's (ws_proxy_limit_sessions),
 * else the limit_sessions option's n caps.  NGX_OK, NGX_DECLINED (refused)
 * or NGX_ERROR, with err.
 */

int
ngx_http_ws_proxy_ffi_limit(ngx_http_request_t *r, uint64_t id,
    ngx_http_ws_proxy_ffi_limit_t *l, int n, u_char *err, size_t *errlen)
{
    int                   i;
    ngx_int_t             rc;
    ngx_str_t             zone, key;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_get(r, id, err, errlen);
    if (wp == NULL) {
        return NGX_ERROR;
    }

    if (wp->limit_checked) {
        if (wp->limit_status != NGX_WSP_LIMIT_REJECTED) {
            return NGX_OK;
        }

        (void) ngx_http_ws_proxy_ffi_err(err, errlen, "session refused by "
                                         "ws_proxy_limit_sessions");
        return NGX_DECLINED;
    }

    wp->err_len = 0;
    rc = NGX_OK;

    if (n < 0) {
        rc = ngx_http_ws_proxy_limit_conf(wp);
    }

    for (i = 0; i < n && rc == NGX_OK; i++) {
        zone.data = (u_char *) l[i].zone;
        zone.len = l[i].zone_len;
        key.data = (u_char *) l[i].key;
        key.len = l[i].key_len;

        rc = ngx_http_ws_proxy_limit_named(wp, &zone, (ngx_uint_t) l[i].n,
                                           l[i].key ? &key : NULL);
    }

    if (rc == NGX_OK || rc == NGX_DECLINED) {
        wp->limit_checked = 1;
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        /* the caps already taken go back: the next call starts again */
        ngx_http_ws_proxy_limit_release(wp);
        wp->limit_status = NGX_WSP_LIMIT_NONE;
    }

    if (wp->err_len == 0) {
        ngx_http_ws_proxy_set_error(wp, "no memory");
    }

    (void) ngx_http_ws_proxy_ffi_error(err, errlen, wp->err, wp->err_len);

    return (int) rc;
}


/*
 * ws_proxy.sessions(filter): the filter as the console's query string
 * (the library builds it); out gets at most n sessions.  Returns how many,
 * NGX_DECLINED: no ws_proxy_zone, NGX_ERROR: a bad filter or no memory.
 */

int
ngx_http_ws_proxy_ffi_sessions(const u_char *args, size_t len,
    ngx_http_ws_proxy_ffi_session_t *out, int n, int *total, int *unlisted)
{
    uint64_t                     now;
    ngx_str_t                    q;
    ngx_uint_t                   i, k, t, u;
    ngx_pool_t                  *pool;
    ngx_http_ws_proxy_zone_t    *zone;
    ngx_http_ws_proxy_rsnap_t   *s;
    ngx_http_ws_proxy_rentry_t  *e;
    ngx_http_ws_proxy_filter_t   f;
    ngx_http_ws_proxy_ffi_session_t  *o;

    zone = ngx_http_ws_proxy_console_zone();
    if (zone == NULL) {
        return NGX_DECLINED;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    q.data = (u_char *) args;
    q.len = len;

    if (ngx_http_ws_proxy_filter_parse(&q, &f, pool) != NGX_OK
        || ngx_http_ws_proxy_registry_list(zone, pool, &f, &s, &k, &t, &u)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    now = ngx_wsp_unix_ms();
    k = ngx_min(k, (ngx_uint_t) n);

    for (i = 0; i < k; i++) {
        e = &s[i].e;
        o = &out[i];

        o->seq = (double) e->node.key;
        o->epoch = (double) zone->sh->reg.epoch;
        o->start = (double) e->start / 1000;
        o->age = (double) (now > e->start ? now - e->start : 0) / 1000;
        o->frames[0] = (double) e->frames[0];
        o->frames[1] = (double) e->frames[1];
        o->bytes[0] = (double) e->bytes[0];
        o->bytes[1] = (double) e->bytes[1];
        o->worker = (int) e->pid;
        o->state = e->state;
        o->ended_by = e->ended_by;
        o->close_code[0] = e->close_code[0];
        o->close_code[1] = e->close_code[1];
        o->deflate = e->deflate;
        o->hook = e->hook;
        o->recorder = e->recorder;
        o->taps = e->taps;
        o->key = s[i].key.data;     /* in the zone, never freed */
        o->key_len = (int) s[i].key.len;
        o->location_len = e->location_len;
        ngx_memcpy(o->location, e->location, e->location_len);
        o->client_len = e->client_len;
        ngx_memcpy(o->client, e->client, e->client_len);
        o->upstream_len = e->upstream_len;
        ngx_memcpy(o->upstream, e->upstream, e->upstream_len);
    }

    *total = (int) t;
    *unlisted = (int) u;

    ngx_destroy_pool(pool);

    return (int) k;
}


/*
 * ws_proxy.close_session(id, code, reason): asked of the worker that
 * holds the session, which sends the close frames at its next tick.
 * NGX_OK; NGX_DECLINED: no such open session; NGX_ERROR: a bad code or
 * reason; NGX_ABORT: no ws_proxy_zone.
 */

int
ngx_http_ws_proxy_ffi_close_session(const u_char *id, size_t len, int code,
    const u_char *reason, size_t reason_len)
{
    uint64_t                   seq;
    ngx_str_t                  s, c, rs;
    ngx_uint_t                 n;
    ngx_http_ws_proxy_zone_t  *zone;
    u_char                     buf[NGX_INT_T_LEN];

    zone = ngx_http_ws_proxy_console_zone();
    if (zone == NULL) {
        return NGX_ABORT;
    }

    c.data = buf;
    c.len = (code < 0) ? 0 : ngx_sprintf(buf, "%d", code) - buf;
    rs.data = (u_char *) reason;
    rs.len = reason_len;

    if (ngx_http_ws_proxy_close_args(&c, &rs, &n) != NGX_OK) {
        return NGX_ERROR;
    }

    s.data = (u_char *) id;
    s.len = len;

    if (ngx_http_ws_proxy_parse_id(zone, &s, &seq) != NGX_OK) {
        return NGX_DECLINED;
    }

    return ngx_http_ws_proxy_registry_close(zone, seq, n, rs.data, rs.len);
}


int
ngx_http_ws_proxy_ffi_abi(void)
{
    /* the library is being required: lua-nginx-module is loaded */
    (void) ngx_http_ws_proxy_lua_resolve();

    return NGX_WSP_FFI_ABI;
}


/*
 * new()'s permessage-deflate options, before either handshake, on the
 * location's choices: -1 keeps the directive's value (a second proxy
 * object of the request may reuse a session its first one left new, with
 * that one's options).  takeover and bits are by connection
 * (NGX_WSP_DIR_*).  The library checked the ranges.
 */

int
ngx_http_ws_proxy_ffi_deflate(ngx_http_request_t *r, uint64_t id, int sides,
    int *takeover, int *bits, int level, int mem_level)
{
    ngx_uint_t            i;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_ws_proxy_ffi_own(r, id);
    if (wp == NULL || wp->state != NGX_WSP_STATE_NEW) {
        return NGX_ERROR;
    }

    ngx_http_ws_proxy_deflate_conf(wp,
        ngx_http_get_module_loc_conf(r, ngx_http_ws_proxy_module));

    if (sides >= 0) {
        wp->opts.deflate = (u_char) (sides & NGX_WSP_RUN_BOTH);
    }

    for (i = 0; i < 2; i++) {
        if (takeover[i] >= 0) {
            wp->opts.deflate_takeover[i] = takeover[i] ? 1 : 0;
        }

        if (bits[i] >= 8 && bits[i] <= 15) {
            wp->opts.deflate_bits[i] = (u_char) bits[i];
        }
    }

    if (level >= 0 && level <= 9) {
        wp->opts.deflate_level = (u_char) level;
    }

    if (mem_level >= 1 && mem_level <= 9) {
        wp->opts.deflate_mem_level = (u_char) mem_level;
    }

    return NGX_OK;
}
