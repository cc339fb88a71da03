/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Shared declarations of the WebSocket frame proxy: one session per request,
 * two directions per session, one upstream connection.  See docs/design.md.
 */


#ifndef _NGX_HTTP_WS_PROXY_MODULE_H_INCLUDED_
#define _NGX_HTTP_WS_PROXY_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_wsp_frame.h"
#include "ngx_wsp_handshake.h"
#include "ngx_wsp_deflate.h"
#include "ngx_wsp_session.h"


/* directions (NGX_WSP_DIR_*) and sets of them (NGX_WSP_RUN_*) for
 * ngx_http_ws_proxy_run(): ngx_wsp_session.h */

/* session states */
#define NGX_WSP_STATE_NEW            0
#define NGX_WSP_STATE_CONNECTING     1   /* upstream connect in progress */
#define NGX_WSP_STATE_CONNECTED      2   /* upstream 101 received */
#define NGX_WSP_STATE_RUNNING        3   /* pump owns both connections */
#define NGX_WSP_STATE_DONE           4

/* upstream handshake steps */
#define NGX_WSP_HS_CONNECT           0
#define NGX_WSP_HS_SSL               1
#define NGX_WSP_HS_SEND              2
#define NGX_WSP_HS_READ              3
#define NGX_WSP_HS_DONE              4
#define NGX_WSP_HS_BODY              5   /* a refusal's body, to relay it */

/* the handshake buffer's first size; it grows to hs_limit */
#define NGX_WSP_HS_START             1024

/* a direction's states (NGX_WSP_RX_*, _TX_*, _IN_*): ngx_wsp_session.h */


/* who closed first (NGX_WSP_BY_*), why a session ended (NGX_WSP_END_*):
 * ngx_wsp_session.h */

#define ngx_wsp_end(wp, why)  ngx_wsp_session_end(&(wp)->core, why)

/* what permessage-deflate does in a direction (NGX_WSP_Z_*), limits
 * (NGX_WSP_LIMIT_*): ngx_wsp_session.h */

/* verdicts from Lua (NGX_WSP_VERDICT_*), see ngx_http_ws_proxy_ffi_verdict():
 * ngx_wsp_session.h */

#define NGX_WSP_ERRBUF_SIZE          256


typedef struct ngx_http_ws_proxy_s  ngx_http_ws_proxy_t;


/* a frame injected from Lua (send_frame), already encoded: the core's */
typedef ngx_wsp_inject_t  ngx_http_ws_proxy_inject_t;


/* ws_proxy_set_header name value */
typedef struct {
    ngx_str_t                   name;
    ngx_http_complex_value_t    value;            /* "": not sent */
    ngx_uint_t                  host;             /* the Host header */
} ngx_http_ws_proxy_header_t;


/*
 * ws_proxy_limit_messages, the limit_messages option, set_rate(): a
 * message rate of one or both senders (ngx_http_ws_proxy_limit.c), as
 * limit_req counts requests: in thousandths of a message
 */
typedef struct {
    ngx_shm_zone_t             *shm_zone;         /* NULL: the session's
                                                     own bucket */
    ngx_uint_t                  rate;             /* per 1000 s */
    ngx_uint_t                  burst;            /* x 1000 */
    ngx_uint_t                  dirs;             /* NGX_WSP_RUN_DIR()s */
    ngx_uint_t                  close;            /* else delay */
} ngx_http_ws_proxy_mlimit_t;


/*
 * A leaky bucket's state in one word, updated with a compare-and-swap (no
 * lock): the time of its last message (ms, 32 bits) and its excess over
 * the rate (thousandths of a message, 32 bits).  Without 64-bit atomics,
 * the zone's lock guards it.
 */
#define ngx_wsp_bucket(last, excess)                                         \
    (((uint64_t) (uint32_t) (last) << 32) | (uint32_t) (excess))


/* a sender's bucket in a running session (ngx_http_ws_proxy_rate.c) */
typedef struct {
    volatile uint64_t          *word;             /* the key's node's, or
                                                     own: ngx_wsp_bucket() */
    volatile uint64_t           own;              /* rate= alone */
    ngx_shm_zone_t             *shm_zone;         /* the node's zone */
    ngx_slab_pool_t            *shpool;           /* its lock (32 bits) */
    ngx_uint_t                  rate;             /* 0: no limit */
    ngx_uint_t                  burst;
    ngx_uint_t                  pass;             /* the excess a message
                                                     goes at once with */
    ngx_uint_t                  batch;            /* messages counted at
                                                     once, at most */
    ngx_uint_t                  credit;           /* messages counted
                                                     already: they go */
    ngx_msec_t                  held_at;          /* a message held since */
    ngx_event_t                 timer;            /* ... until then */
    unsigned                    close:1;
} ngx_http_ws_proxy_bucket_t;


typedef struct {
    ngx_http_ws_proxy_bucket_t  b[2];             /* by NGX_WSP_DIR_* */
} ngx_http_ws_proxy_rate_t;


/* ws_proxy_limit_sessions: session caps per key (ngx_http_ws_proxy_limit.c) */
typedef struct {
    ngx_array_t                *limits;           /* of ..._limit_t; NULL:
                                                     none */
    ngx_array_t                *messages;         /* of ..._mlimit_t; NULL:
                                                     none */
    ngx_uint_t                  status;           /* of a refusal */
    ngx_uint_t                  log_level;
} ngx_http_ws_proxy_limit_conf_t;


/* ws_proxy_pass: the options of new() and connect() as directives */
typedef struct {
    ngx_http_complex_value_t   *uri;              /* NULL: no ws_proxy_pass */

    /* a URI without variables: its group (or implicit upstream), parts */
    ngx_http_upstream_srv_conf_t *upstream;
    ngx_str_t                   base;             /* "ws://authority" */
    ngx_str_t                   uri_part;         /* "": none */
    ngx_str_t                   location;         /* what uri_part replaces */

    ngx_array_t                *headers;          /* of ..._header_t */
    ngx_flag_t                  pass_request_headers;

    size_t                      max_frame_size;   /* both sides */
    size_t                      side_max_frame_size[2];
    ngx_uint_t                  max_fragments;
    ngx_uint_t                  side_max_fragments[2];
    ngx_msec_t                  recv_timeout;
    ngx_flag_t                  aggregate;
    ngx_flag_t                  ssl_verify;
    ngx_str_t                   ssl_name;
    ngx_str_t                   ssl_certificate;      /* also for Lua's */
    ngx_str_t                   ssl_certificate_key;
} ngx_http_ws_proxy_pass_conf_t;


typedef struct {
    size_t                      buffer_size;      /* ws_proxy_buffer_size */
    size_t                      handshake_buffer_size;
    size_t                      max_payload;      /* ws_proxy_max_payload */
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  send_timeout;
    ngx_msec_t                  read_timeout;     /* handshake response */
    ngx_msec_t                  close_timeout;

    /* liveness (ngx_http_ws_proxy_live.c), 0: off */
    ngx_msec_t                  idle_timeout;
    ngx_msec_t                  ping_interval;
    ngx_msec_t                  ping_timeout;
    ngx_msec_t                  session_timeout;

    /* the drain (ngx_http_ws_proxy_drain.c), 0: off */
    ngx_msec_t                  drain_time;

    /* permessage-deflate (ngx_http_ws_proxy_negotiate.c) */
    ngx_uint_t                  deflate;          /* NGX_WSP_RUN_DIR()s */
    ngx_flag_t                  deflate_takeover; /* both connections */
    ngx_uint_t                  deflate_bits;
    ngx_flag_t                  side_deflate_takeover[2];  /* unset: the */
    ngx_uint_t                  side_deflate_bits[2];      /* both's */
    ngx_uint_t                  deflate_level;
    ngx_uint_t                  deflate_mem_level;

#if (NGX_HTTP_SSL)
    ngx_str_t                   ssl_trusted_certificate;
    ngx_ssl_t                  *ssl;          /* NULL: the worker's one */

    /* ngx_http_ws_proxy_ssl_conf.c: unset (0, NULL) when no level sets them */
    ngx_uint_t                  ssl_protocols;
    ngx_str_t                   ssl_ciphers;
    ngx_uint_t                  ssl_verify_depth;
#endif

    /* metrics: ws_proxy_zone_key (NULL: the location's name) */
    ngx_http_complex_value_t   *zone_key;

    /* the console (ngx_http_ws_proxy_console.c): ws_proxy_status control,
     * ws_proxy_flight_recorder (0: off) */
    ngx_flag_t                  status_control;
    ngx_uint_t                  flight_recorder;

    /* the tap (ngx_http_ws_proxy_tap.c): payload bytes a tap gets */
    size_t                      tap_payloads;

    /* upstream groups (ngx_http_ws_proxy_balancer.c) */
    ngx_uint_t                  next_upstream_tries;    /* 0: every server */
    ngx_msec_t                  next_upstream_timeout;  /* 0: none */

    /* ws_proxy_pass and its options (ngx_http_ws_proxy_pass.c) */
    ngx_http_ws_proxy_pass_conf_t  pass;

    /* session caps per key (ngx_http_ws_proxy_limit.c) */
    ngx_http_ws_proxy_limit_conf_t  limit;
} ngx_http_ws_proxy_loc_conf_t;


/* metrics: the zone of ws_proxy_zone, see ngx_http_ws_proxy_metrics.c */
typedef struct {
    ngx_shm_zone_t             *zone;             /* NULL: none */
    ngx_uint_t                  status;           /* ws_proxy_status used */
    ngx_uint_t                  zone_key;         /* ws_proxy_zone_key used */
} ngx_http_ws_proxy_main_conf_t;


/*
 * metrics: what a session has added to its zone so far; the counters
 * themselves are the session's (ngx_http_ws_proxy_dir_t statistics)
 */
typedef struct {
    void                       *node;        /* its key's counters, lazy */
    void                       *zone;        /* ngx_http_ws_proxy_zone_t */
    ngx_queue_t                 queue;       /* in the worker's flush list */
    uint64_t                    frames[2];
    uint64_t                    bytes[2];
    uint64_t                    messages[2];
    uint64_t                    zbytes[2];
    uint64_t                    zplain[2];
    unsigned                    none:1;      /* no zone configured */
    unsigned                    handshake:1; /* its outcome counted */
    unsigned                    failed:3;    /* the failed attempt's
                                                NGX_WSP_HSO_* + 1, or 0 */
    unsigned                    running:1;   /* counted as open */

    /*
     * the console (ngx_http_ws_proxy_registry.c), in what was padding:
     * no registry entry (the zone was full), the recorder turned off by
     * Lua, its ring (a slot in the worker's table + 1, 0: none), its
     * registry entry (an offset in the zone, 0: none)
     */
    unsigned                    unlisted:1;
    unsigned                    norec:1;
    unsigned                    ring:23;
    uint32_t                    entry;
} ngx_http_ws_proxy_msess_t;


/* per-session options set from Lua before execute() */
typedef struct {
    /*
     * what the session core applies (ngx_wsp_session.h): max_frame_size[],
     * max_fragments[] (0: unlimited), max_payload (the buffering
     * ceiling), hook, aggregate, idle_timeout, ping_interval, ping_timeout
     */
    union {
        ngx_wsp_opts_t          core;
        struct {
            NGX_WSP_OPTS_FIELDS
        };
    };

    ngx_msec_t                  recv_timeout;        /* 0: none */
    ngx_msec_t                  send_timeout;
    ngx_msec_t                  close_timeout;

    /* the deadline (ngx_http_ws_proxy_live.c), 0: off; idle_timeout,
     * ping_interval and ping_timeout are the core's */
    ngx_msec_t                  session_timeout;

    /* the drain (ngx_http_ws_proxy_drain.c), 0: off */
    ngx_msec_t                  drain_time;

    /* permessage-deflate (ngx_http_ws_proxy_negotiate.c) */
    u_char                      deflate;          /* NGX_WSP_RUN_DIR()s of
                                                     the connections */
    u_char                      deflate_takeover[2];  /* by connection */
    u_char                      deflate_bits[2];
    u_char                      deflate_level;
    u_char                      deflate_mem_level;

    /* the payload bytes a tap gets (ws_proxy_tap_payloads, or new()'s
     * tap_payloads), 0-NGX_WSP_TAP_PAYLOAD_MAX */
    uint16_t                    tap_payloads;

    unsigned                    debug:1;
} ngx_http_ws_proxy_opts_t;


/*
 * The frame a direction holds for Lua's verdict, read in place by Lua
 * (FFI): the core's (ngx_wsp_session.h), in step with the declaration in
 * lib/resty/websocket/proxy.lua.
 */
typedef ngx_wsp_slot_t  ngx_http_ws_proxy_slot_t;


/*
 * The log lines of Kong's library (forwarding close, limits, recv_timeout)
 * are written by the Lua library through ngx.log, as Kong's are: C keeps
 * them here, as records of a level byte, a 2-byte length and the text, and
 * wakes Lua, which logs and empties them when it next runs (after a
 * verdict, or woken).  Lua reads the structure in place: keep it in step
 * with lib/resty/websocket/proxy.lua.
 */
typedef struct {
    u_char                     *data;     /* NGX_WSP_LUA_LOG_SIZE, lazy */
    size_t                      len;
} ngx_http_ws_proxy_lua_log_t;

#define NGX_WSP_LUA_LOG_SIZE         1024


typedef ngx_wsp_range_t  ngx_http_ws_proxy_range_t;


typedef ngx_wsp_ctl_t  ngx_http_ws_proxy_ctl_t;


/*
 * A direction's permessage-deflate streams and output, allocated when a
 * message needs them (ngx_http_ws_proxy_deflate.c) and given back with the
 * streams when no context is kept.
 */
typedef struct ngx_http_ws_proxy_zdir_s  ngx_http_ws_proxy_zdir_t;


typedef struct {
    /*
     * the session core's part (ngx_wsp_session.h): input positions, the
     * states, the frame being parsed, the output ranges, the control
     * block; `core` for the core's calls, the fields by name for the rest
     */
    union {
        ngx_wsp_sdir_t          core;
        struct {
            NGX_WSP_SDIR_FIELDS
        };
    };

    ngx_connection_t           *src;
    ngx_connection_t           *dst;

    u_char                      parked;         /* the hook waits on sema */
    u_char                      recv_read;      /* src read since
                                                   recv_timer was set */
    uint32_t                    recv_time;      /* src's last read, for
                                                   recv_timeout (in this
                                                   hole: 32 bits do) */

    /* the buffered data frame or message's memory (msg: the core's) */
    size_t                      msg_cap;


    /* permessage-deflate: lazy */
    ngx_http_ws_proxy_zdir_t   *zd;

    /* Lua side */
    void                       *sema;
    ngx_event_t                 recv_timer;

    /* statistics (frames, messages, zbytes: the core's) */
    uint64_t                    bytes;
    uint64_t                    zplain;         /* payload bytes
                                                   uncompressed */
} ngx_http_ws_proxy_dir_t;


struct ngx_http_ws_proxy_s {
    ngx_queue_t                 queue;       /* live sessions of the worker */
    uint64_t                    id;          /* the worker's, never reused */
    ngx_http_request_t         *request;
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_uint_t                  state;
    ngx_http_ws_proxy_opts_t    opts;

    /* client side */
    ngx_connection_t           *client;
    ngx_event_handler_pt        client_read_handler;
    ngx_event_handler_pt        client_write_handler;
    unsigned                    client_handshake:1;
    unsigned                    handlers_set:1;
    unsigned                    cleaned:1;
    unsigned                    closed_normally:1;
    unsigned                    heap:1;      /* not in the request pool */

    /* upstream side */
    ngx_peer_connection_t       peer;
    ngx_resolver_ctx_t         *resolving;  /* a name lookup in flight */
    ngx_uint_t                  hs_state;
    ngx_connection_t           *upstream;
    ngx_str_t                   uri;
    ngx_str_t                   host;        /* Host header value */
    ngx_str_t                   host_header; /* the "host" option */
    ngx_str_t                   path;        /* path and query */
    ngx_str_t                   sni;         /* host, for SNI/verify */
    ngx_str_t                   server_name; /* explicit SNI, if any */
    in_port_t                   port;
    unsigned                    ssl:1;
    unsigned                    ssl_verify:1;
    unsigned                    escape_path:1;  /* ws_proxy_pass's URI */
    unsigned                    err_logged:1;   /* nginx logged err's cause */
    ngx_str_t                   key;         /* our Sec-WebSocket-Key */
    ngx_str_t                   extra_headers;
    ngx_str_t                   offer;       /* Sec-WebSocket-Protocol sent */
    ngx_buf_t                  *hs;          /* handshake request/response */
    size_t                      hs_limit;    /* the response head's bound */
    ngx_str_t                   response;    /* upstream response head */
    ngx_uint_t                  upstream_status;  /* a non-101 answer */
    ngx_uint_t                  body_framing;     /* its NGX_WSP_BODY_* */
    uint64_t                    body_length;      /* its Content-Length */
    ngx_str_t                   upstream_body;
    ngx_str_t                   protocol;    /* selected subprotocol */
    ngx_wsp_pmd_params_t        pmd[2];      /* permessage-deflate on the
                                                client's, the upstream's
                                                connection */
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  read_timeout;
    ngx_msec_t                  send_timeout;
    char                       *log_action;  /* the request's, restored */
#if (NGX_HTTP_SSL)
    ngx_ssl_t                  *ssl_ctx;
    void                       *client_cert;     /* STACK_OF(X509) * */
    void                       *client_key;      /* EVP_PKEY * */
    const char                 *ssl_alert;       /* OpenSSL's text */
    unsigned                    ssl_alert_read:1;
#endif

    ngx_http_ws_proxy_dir_t     dir[2];

    /*
     * the session core's part (ngx_wsp_session.h): the directions to
     * process (kick), who closed first (closed_by), why it ended (ended_by)
     */
    union {
        ngx_wsp_session_t       core;
        struct {
            NGX_WSP_SESSION_FIELDS
        };
    };

    /* Lua wake-ups: connect and the end of a session without hook */
    void                       *sema;

    ngx_event_t                 close_timer;
    /* liveness: ngx_http_ws_proxy_live.c */
    ngx_rbtree_node_t           live_node;    /* in the worker's tree */
    ngx_msec_t                  deadline;     /* session_timeout, deadline() */
    u_char                     *deadline_reason;  /* NULL: the default */
    uint16_t                    deadline_code;
    uint16_t                    deadline_len;
    unsigned                    deadline_set:1;
    unsigned                    live_set:1;   /* live_node in the tree */
    /* the drain: ngx_http_ws_proxy_drain.c */
    unsigned                    drain_counted:1;  /* in the worker's count */
    unsigned                    draining:1;       /* the deadline is its */
    ngx_msec_t                  start_time;
    ngx_msec_t                  end_time;


    ngx_http_ws_proxy_lua_log_t lua_log;      /* lines Lua writes */

    ngx_int_t                   rc;           /* result of connect/execute */
    u_char                     *err;          /* NGX_WSP_ERRBUF_SIZE, lazy */
    size_t                      err_len;

    ngx_http_ws_proxy_msess_t   metrics;      /* ngx_http_ws_proxy_metrics.c */

    /* upstream groups: ngx_http_ws_proxy_balancer.c */
    ngx_http_upstream_srv_conf_t *uscf;       /* the group, or NULL */
    ngx_str_t                   upstream_addr; /* "a, b": every one tried */
    ngx_str_t                   upstream_peer; /* the last one tried */
    unsigned                    peer_held:1;  /* got, not yet freed */

    /* session caps: NGX_WSP_LIMIT_*, $ws_proxy_limit_sessions_status */
    unsigned                    limit_status:2;
    unsigned                    limit_checked:1;  /* Lua: once */

    /* message rates: ngx_http_ws_proxy_rate.c; NULL: none */
    ngx_http_ws_proxy_rate_t   *rate;

    /* without Lua: ws_proxy_pass's callback instead of the semaphore */
    void                      (*notify)(ngx_http_ws_proxy_t *wp);
    void                       *notify_data;
};


/* api's (ngx_http_ws_proxy_module.c); the layers below: ngx_wsp_module */
extern ngx_module_t  ngx_http_ws_proxy_module;


/* the session of a session core (embedded in it, see ngx_wsp_session.h) */
#define ngx_wsp_session_wp(s)                                                \
    ((ngx_http_ws_proxy_t *) ((u_char *) (s)                                 \
                              - offsetof(ngx_http_ws_proxy_t, core)))

/* the session of a direction */
#define ngx_wsp_dir_wp(d)    ngx_wsp_session_wp((d)->session)


/*
 * lua-nginx-module's exported semaphore API (public FFI symbols), found at
 * run time (ngx_http_ws_proxy_lua.c) when the Lua library first asks for
 * the module, so that the module loads without lua-nginx-module when only
 * ws_proxy_pass is used.  The calls keep their names.
 */

typedef struct {
    int   (*sema_new)(void **psem, int n, char **errmsg);
    int   (*sema_post)(void *sem, int n);
    int   (*sema_count)(void *sem);
    int   (*sema_wait)(ngx_http_request_t *r, void *sem, int wait_ms,
                       u_char *err, size_t *errlen);
    void  (*sema_gc)(void *sem);
} ngx_http_ws_proxy_lua_api_t;

extern ngx_http_ws_proxy_lua_api_t  ngx_http_ws_proxy_lua_api;

#define ngx_http_lua_ffi_sema_new    ngx_http_ws_proxy_lua_api.sema_new
#define ngx_http_lua_ffi_sema_post   ngx_http_ws_proxy_lua_api.sema_post
#define ngx_http_lua_ffi_sema_count  ngx_http_ws_proxy_lua_api.sema_count
#define ngx_http_lua_ffi_sema_wait   ngx_http_ws_proxy_lua_api.sema_wait
#define ngx_http_lua_ffi_sema_gc     ngx_http_ws_proxy_lua_api.sema_gc

/* ngx_http_ws_proxy_lua.c */
ngx_int_t ngx_http_ws_proxy_lua_resolve(void);

/*
 * ngx_http_ws_proxy_base.c: the base of the nginx layers.  The layers
 * under api name the module ngx_wsp_module, not ngx_http_ws_proxy_module,
 * whose definition is api's: api sets ngx_http_ws_proxy_self when nginx
 * creates the module's configuration, before it reads any directive.
 */
extern ngx_module_t  *ngx_http_ws_proxy_self;

#define ngx_wsp_module  (*ngx_http_ws_proxy_self)

ngx_queue_t *ngx_http_ws_proxy_worker_sessions(void);
ngx_http_ws_proxy_t *ngx_http_ws_proxy_lookup(uint64_t id);
void ngx_http_ws_proxy_unlink(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_set_error(ngx_http_ws_proxy_t *wp, const char *fmt,
    ...);
u_char *ngx_http_ws_proxy_log_escape(u_char *dst, u_char *last, u_char *src,
    size_t len);
void ngx_http_ws_proxy_log_error(ngx_uint_t level, ngx_log_t *log,
    ngx_err_t err, const char *fmt, ...);
void ngx_http_ws_proxy_lua_log(ngx_http_ws_proxy_t *wp, ngx_uint_t level,
    const char *fmt, ...);
void ngx_http_ws_proxy_lua_log_flush(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_notify(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_wake(void *sema);
void ngx_http_ws_proxy_random(u_char *dst, size_t n);


/* ngx_http_ws_proxy_module.c */
ngx_http_ws_proxy_t *ngx_http_ws_proxy_create(ngx_http_request_t *r,
    ngx_uint_t hook);
void ngx_http_ws_proxy_conf_opts(ngx_http_ws_proxy_t *wp);

/* ngx_http_ws_proxy_handshake.c */
ngx_int_t ngx_http_ws_proxy_client_check(ngx_http_ws_proxy_t *wp,
    ngx_str_t *key);
ngx_int_t ngx_http_ws_proxy_client_handshake(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_relay_response(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_client_list(ngx_http_request_t *r,
    ngx_int_t list, ngx_str_t *out);
int ngx_http_ws_proxy_upgrade_headers(ngx_http_request_t *r,
    ngx_wsp_request_t *rq);
void ngx_http_ws_proxy_accept_key(ngx_str_t *key, u_char *out);
ngx_int_t ngx_http_ws_proxy_accept(ngx_http_request_t *r, ngx_str_t *key);

/* ngx_http_ws_proxy_uri.c */
ngx_int_t ngx_http_ws_proxy_parse_uri(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    ngx_str_t *host);
u_char *ngx_http_ws_proxy_uri_path_start(ngx_str_t *uri);

/* ngx_http_ws_proxy_upgrade.c */
ngx_int_t ngx_http_ws_proxy_build_request(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_send_request(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_read_response(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_read_body(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_body_end(ngx_http_ws_proxy_t *wp,
    ngx_int_t complete);

/* ngx_http_ws_proxy_upstream.c */
ngx_int_t ngx_http_ws_proxy_connect(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    size_t hs_size);
void ngx_http_ws_proxy_connect_done(ngx_http_ws_proxy_t *wp, ngx_int_t rc);
void ngx_http_ws_proxy_close_upstream(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_free_hs(ngx_http_ws_proxy_t *wp);
#if (NGX_HTTP_SSL)
void ngx_http_ws_proxy_ssl_exit(void);
#endif

/* ngx_http_ws_proxy_ssl_conf.c */
#if (NGX_HTTP_SSL)
char *ngx_http_ws_proxy_merge_ssl(ngx_conf_t *cf,
    ngx_http_ws_proxy_loc_conf_t *prev, ngx_http_ws_proxy_loc_conf_t *conf);
#endif

/* ngx_http_ws_proxy_upstream.c, for the balancer */
ngx_int_t ngx_http_ws_proxy_connect_start(ngx_http_ws_proxy_t *wp);

/* ngx_http_ws_proxy_balancer.c */
ngx_int_t ngx_http_ws_proxy_balancer_start(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri, ngx_str_t *host);
ngx_int_t ngx_http_ws_proxy_balancer_next(ngx_http_ws_proxy_t *wp,
    ngx_int_t rc);
void ngx_http_ws_proxy_balancer_free(ngx_http_ws_proxy_t *wp,
    ngx_uint_t state);
void ngx_http_ws_proxy_balancer_tried(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_balancer_add_variables(ngx_conf_t *cf);

/* ngx_http_ws_proxy_pass.c */
char *ngx_http_ws_proxy_pass(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_ws_proxy_set_header(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_ws_proxy_pass_create(ngx_http_ws_proxy_pass_conf_t *conf);
char *ngx_http_ws_proxy_pass_merge(ngx_conf_t *cf,
    ngx_http_ws_proxy_pass_conf_t *prev, ngx_http_ws_proxy_pass_conf_t *conf);

/* ngx_http_ws_proxy_live.c: why a session ended, idle, heartbeats */
extern const ngx_str_t  ngx_http_ws_proxy_end_name[];

void ngx_http_ws_proxy_ended(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_live_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_live_stop(ngx_http_ws_proxy_t *wp);
/* the drain: ngx_http_ws_proxy_drain.c */
void ngx_http_ws_proxy_drain_add(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_drain_del(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_set_deadline(ngx_http_ws_proxy_t *wp,
    ngx_msec_t ms, ngx_uint_t code, u_char *reason, size_t len);

/* ngx_http_ws_proxy_pump.c */
ngx_int_t ngx_http_ws_proxy_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_run(ngx_http_ws_proxy_t *wp, ngx_uint_t dirs,
    ngx_uint_t can_read);
void ngx_http_ws_proxy_free_buffers(void);

/* ngx_http_ws_proxy_close.c */
void ngx_http_ws_proxy_core_init(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_cleanup(void *data);

/* ngx_http_ws_proxy_verdict.c */
ngx_int_t ngx_http_ws_proxy_apply_verdict(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t verdict, u_char *data, size_t len, ngx_int_t code);
void ngx_http_ws_proxy_abort(ngx_http_ws_proxy_t *wp, ngx_uint_t code,
    const char *reason);
ngx_int_t ngx_http_ws_proxy_close(ngx_http_ws_proxy_t *wp,
    ngx_uint_t client_code, u_char *client_reason, size_t client_len,
    ngx_uint_t upstream_code, u_char *upstream_reason, size_t upstream_len);
ngx_int_t ngx_http_ws_proxy_inject(ngx_http_ws_proxy_t *wp, ngx_uint_t dir,
    ngx_uint_t opcode, u_char *data, size_t len);


/* ngx_http_ws_proxy_negotiate.c: permessage-deflate's negotiation */
u_char *ngx_http_ws_proxy_deflate_offer(ngx_http_ws_proxy_t *wp, u_char *p);
ngx_int_t ngx_http_ws_proxy_deflate_answer(ngx_http_ws_proxy_t *wp,
    const u_char *value, size_t len);
ngx_int_t ngx_http_ws_proxy_deflate_accept(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_deflate_conf(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_loc_conf_t *wlcf);
size_t ngx_http_ws_proxy_deflate_value(ngx_wsp_pmd_params_t *p, u_char *out);

/* ngx_http_ws_proxy_deflate.c: permessage-deflate's data path */
void ngx_http_ws_proxy_deflate_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_deflate_free(ngx_http_ws_proxy_dir_t *d);
void ngx_http_ws_proxy_deflate_exit(void);

/* ngx_http_ws_proxy_handshake.c */
ngx_int_t ngx_http_ws_proxy_add_header(ngx_http_request_t *r,
    const char *name, size_t len, u_char *value, size_t vlen);


/* ngx_http_ws_proxy_limit.c: session caps per key */
#define NGX_WSP_LIMIT_NONE           0   /* no cap applied (yet) */
#define NGX_WSP_LIMIT_PASSED         1
#define NGX_WSP_LIMIT_REJECTED       2

char *ngx_http_ws_proxy_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_ws_proxy_limit_sessions(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
void ngx_http_ws_proxy_limit_create(ngx_http_ws_proxy_limit_conf_t *conf);
char *ngx_http_ws_proxy_limit_merge(ngx_conf_t *cf,
    ngx_http_ws_proxy_limit_conf_t *prev,
    ngx_http_ws_proxy_limit_conf_t *conf);
ngx_int_t ngx_http_ws_proxy_limit_add_variables(ngx_conf_t *cf);
ngx_int_t ngx_http_ws_proxy_limit_conf(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_limit_named(ngx_http_ws_proxy_t *wp,
    ngx_str_t *zone, ngx_uint_t n, ngx_str_t *key);
ngx_int_t ngx_http_ws_proxy_limit_refuse(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_limit_release(ngx_http_ws_proxy_t *wp);
char *ngx_http_ws_proxy_limit_messages(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_ws_proxy_limit_bucket(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_bucket_t *b, ngx_http_ws_proxy_mlimit_t *ml,
    ngx_str_t *zone, ngx_str_t *key);

/* ngx_http_ws_proxy_rate.c: message rates in a running session */
ngx_int_t ngx_http_ws_proxy_rate_start(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_rate_set(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_mlimit_t *ml, ngx_str_t *zone, ngx_str_t *key);
void ngx_http_ws_proxy_rate_stop(ngx_http_ws_proxy_t *wp);
int ngx_http_ws_proxy_rate_gate(ngx_wsp_sdir_t *sd);

/* ngx_http_ws_proxy_metrics.c: see ngx_http_ws_proxy_metrics.h */
#define NGX_WSP_HSO_ACCEPTED         0   /* handshake outcomes */
#define NGX_WSP_HSO_REFUSED          1
#define NGX_WSP_HSO_BAD_REQUEST      2
#define NGX_WSP_HSO_UNREACHABLE      3
#define NGX_WSP_HSO_TIMEOUT          4
#define NGX_WSP_HSO_INVALID          5
#define NGX_WSP_HSO_OUTCOMES         6

void ngx_http_ws_proxy_metrics_handshake(ngx_http_ws_proxy_t *wp,
    ngx_uint_t outcome);
void ngx_http_ws_proxy_metrics_failed(ngx_http_ws_proxy_t *wp,
    ngx_uint_t outcome);
void ngx_http_ws_proxy_metrics_connect_end(ngx_http_ws_proxy_t *wp,
    ngx_int_t rc);
void ngx_http_ws_proxy_metrics_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_metrics_end(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_metrics_violation(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, ngx_uint_t limit);
void ngx_http_ws_proxy_metrics_hook_error(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_metrics_limited(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_metrics_delayed(ngx_http_ws_proxy_t *wp,
    ngx_uint_t dir, ngx_msec_t ms);
char *ngx_http_ws_proxy_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* ngx_http_ws_proxy_registry.c: the console's sessions, flight recorder */
#define NGX_WSP_RECORDER_MAX         1024

/* ngx_http_ws_proxy_tap.c: taps per session, payload bytes per frame */
#define NGX_WSP_TAP_MAX              4
#define NGX_WSP_TAP_PAYLOAD_MAX      4096

void ngx_http_ws_proxy_observe(ngx_http_ws_proxy_dir_t *d, ngx_uint_t action,
    ngx_uint_t opcode, ngx_uint_t fin, ngx_uint_t rsv1, uint64_t len,
    const u_char *payload, size_t plen, const u_char *mask);
typedef ngx_int_t (*ngx_http_ws_proxy_close_pt)(ngx_http_ws_proxy_t *wp,
    ngx_uint_t client_code, u_char *client_reason, size_t client_len,
    ngx_uint_t upstream_code, u_char *upstream_reason, size_t upstream_len);

void ngx_http_ws_proxy_console_init(ngx_http_ws_proxy_close_pt close,
    const ngx_str_t *end_name);
void ngx_http_ws_proxy_console_exit(void);
void ngx_http_ws_proxy_observe_frame(ngx_wsp_sdir_t *sd, unsigned action);
ngx_int_t ngx_http_ws_proxy_recorder_set(ngx_http_ws_proxy_t *wp,
    ngx_uint_t n);
char *ngx_http_ws_proxy_flight_recorder(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
char *ngx_http_ws_proxy_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_ws_proxy_metrics_init_conf(ngx_conf_t *cf);


#endif /* _NGX_HTTP_WS_PROXY_MODULE_H_INCLUDED_ */
