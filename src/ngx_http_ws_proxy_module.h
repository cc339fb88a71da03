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


/* directions, named after the peer that sends the frames */
#define NGX_WSP_DIR_CLIENT           0   /* client -> upstream */
#define NGX_WSP_DIR_UPSTREAM         1   /* upstream -> client */

/* sets of directions for ngx_http_ws_proxy_run() */
#define NGX_WSP_RUN_DIR(dir)         ((ngx_uint_t) 1 << (dir))
#define NGX_WSP_RUN_BOTH             3

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

/*
 * A direction (the frames one peer, its src, sends to the other, its dst)
 * has three states; docs/design.md has their transitions.
 *
 * What its reader may still do:
 */
#define NGX_WSP_RX_OPEN              0   /* frames are read and parsed */
#define NGX_WSP_RX_CLOSED            1   /* a close frame (or a violation)
                                            ended src's frames: the bytes
                                            after it are read and ignored */
#define NGX_WSP_RX_EOF               2   /* src sent FIN or failed: what it
                                            sent before is still parsed */
#define NGX_WSP_RX_GONE              3   /* nothing more comes from src */

/* what its writer may still do */
#define NGX_WSP_TX_OPEN              0   /* frames go to dst */
#define NGX_WSP_TX_MSG               1   /* a close of the proxy's is due
                                            once src's open message ended
                                            (a worker's drain) */
#define NGX_WSP_TX_DUE               2   /* ... at the next frame boundary */
#define NGX_WSP_TX_CLOSED            3   /* a close frame is queued to dst,
                                            nothing goes after it */
#define NGX_WSP_TX_ABORTED           4   /* dst failed, or gets nothing */

/* where its parser is */
#define NGX_WSP_IN_HEADER            0   /* at a frame boundary */
#define NGX_WSP_IN_RAW               1   /* payload forwarded in place */
#define NGX_WSP_IN_BUFFER            2   /* payload copied, unmasked, into
                                            msg (a control frame: cbuf) */
#define NGX_WSP_IN_SKIP              3   /* payload read and dropped */
#define NGX_WSP_IN_HOLD              4   /* whole in the input buffer */
#define NGX_WSP_IN_LUA               5   /* a frame waits for Lua's
                                            verdict (slot.ready) */


/* who sent the first close frame */
#define NGX_WSP_BY_NONE              0
#define NGX_WSP_BY_CLIENT            1
#define NGX_WSP_BY_UPSTREAM          2
#define NGX_WSP_BY_PROXY             3

/*
 * why a session ended ($ws_proxy_end, stats().ended_by): the first reason
 * recorded wins; ngx_http_ws_proxy_end_name[] has the words
 */
#define NGX_WSP_END_NONE             0
#define NGX_WSP_END_CLIENT_CLOSE     1
#define NGX_WSP_END_UPSTREAM_CLOSE   2
#define NGX_WSP_END_PROXY_CLOSE      3
#define NGX_WSP_END_IDLE             4
#define NGX_WSP_END_SESSION_TIMEOUT  5
#define NGX_WSP_END_PING_TIMEOUT     6
#define NGX_WSP_END_DRAIN            7
#define NGX_WSP_END_VIOLATION        8
#define NGX_WSP_END_LIMIT            9
#define NGX_WSP_END_SEND_TIMEOUT     10
#define NGX_WSP_END_HOOK_ERROR       11
#define NGX_WSP_END_RESET            12

#define ngx_wsp_end(wp, why)                                                 \
    do {                                                                     \
        if ((wp)->ended_by == NGX_WSP_END_NONE) {                            \
            (wp)->ended_by = (why);                                          \
        }                                                                    \
    } while (0)

/* what permessage-deflate does in a direction (ngx_http_ws_proxy_dir_t.z) */
#define NGX_WSP_Z_RX                 1   /* src may send compressed data */
#define NGX_WSP_Z_TX                 2   /* what goes to dst is compressed */
#define NGX_WSP_Z_PASS               4   /* both, alike: compressed frames
                                            pass through untouched */

/* verdicts from Lua, see ngx_http_ws_proxy_ffi_verdict() */
#define NGX_WSP_VERDICT_FORWARD      0
#define NGX_WSP_VERDICT_REWRITE      1
#define NGX_WSP_VERDICT_DROP         2
#define NGX_WSP_VERDICT_ERROR        3

#define NGX_WSP_ERRBUF_SIZE          256


typedef struct ngx_http_ws_proxy_s  ngx_http_ws_proxy_t;


/* a frame injected from Lua (send_frame), already encoded */
typedef struct ngx_http_ws_proxy_inject_s  ngx_http_ws_proxy_inject_t;

struct ngx_http_ws_proxy_inject_s {
    ngx_http_ws_proxy_inject_t *next;
    size_t                      len;
    u_char                      data[1];
};


/* ws_proxy_set_header name value */
typedef struct {
    ngx_str_t                   name;
    ngx_http_complex_value_t    value;            /* "": not sent */
    ngx_uint_t                  host;             /* the Host header */
} ngx_http_ws_proxy_header_t;


/* ws_proxy_limit_sessions: session caps per key (ngx_http_ws_proxy_limit.c) */
typedef struct {
    ngx_array_t                *limits;           /* of ..._limit_t; NULL:
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

    /* permessage-deflate (ngx_http_ws_proxy_deflate.c) */
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
} ngx_http_ws_proxy_msess_t;


/* per-session options set from Lua before execute() */
typedef struct {
    uint64_t                    max_frame_size[2];   /* 0: unlimited */
    ngx_uint_t                  max_fragments[2];    /* 0: unlimited */
    uint64_t                    max_payload;         /* buffering ceiling */
    ngx_msec_t                  recv_timeout;        /* 0: none */
    ngx_msec_t                  send_timeout;
    ngx_msec_t                  close_timeout;

    /* liveness (ngx_http_ws_proxy_live.c), 0: off */
    ngx_msec_t                  idle_timeout;
    ngx_msec_t                  ping_interval;
    ngx_msec_t                  ping_timeout;
    ngx_msec_t                  session_timeout;

    /* the drain (ngx_http_ws_proxy_drain.c), 0: off */
    ngx_msec_t                  drain_time;

    /* permessage-deflate (ngx_http_ws_proxy_deflate.c) */
    u_char                      deflate;          /* NGX_WSP_RUN_DIR()s of
                                                     the connections */
    u_char                      deflate_takeover[2];  /* by connection */
    u_char                      deflate_bits[2];
    u_char                      deflate_level;
    u_char                      deflate_mem_level;

    unsigned                    hook:1;
    unsigned                    aggregate:1;
    unsigned                    debug:1;
} ngx_http_ws_proxy_opts_t;


/*
 * The frame a direction holds for Lua's verdict.  Lua reads it in place
 * (FFI) once its light thread is woken, without a call into C: keep it in
 * step with the declaration in lib/resty/websocket/proxy.lua.
 */
typedef struct {
    const u_char               *data;     /* payload; a close: its reason */
    size_t                      len;
    int                         opcode;
    int                         fin;
    int                         code;     /* a close status, -1: none */
    int                         ready;    /* 1: waiting for a verdict */
    uint32_t                    seq;      /* numbers the frames handed over */
} ngx_http_ws_proxy_slot_t;


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


/* bytes still to send from memory the direction owns */
typedef struct {
    u_char                     *pos;
    u_char                     *last;
} ngx_http_ws_proxy_range_t;


/*
 * What a direction needs only around control frames, allocated the first
 * time one is met, so that an idle session does not carry it.
 */
typedef struct {
    /* a control frame being buffered: apart, as it may come in a message */
    u_char                      cbuf[NGX_WSP_MAX_CONTROL];
    size_t                      clen;

    /* a close frame of the proxy's, and its reason until it is due */
    u_char                      frame[NGX_WSP_MAX_HEADER
                                      + NGX_WSP_MAX_CONTROL];
    u_char                      reason[NGX_WSP_MAX_CONTROL];
    size_t                      reason_len;

    /* the reason of the close frame the peer sent */
    u_char                      close_reason[NGX_WSP_MAX_CONTROL];
    size_t                      close_reason_len;
} ngx_http_ws_proxy_ctl_t;


/*
 * A direction's permessage-deflate streams and output, allocated when a
 * message needs them (ngx_http_ws_proxy_deflate.c) and given back with the
 * streams when no context is kept.
 */
typedef struct ngx_http_ws_proxy_zdir_s  ngx_http_ws_proxy_zdir_t;


typedef struct {
    ngx_http_ws_proxy_t        *wp;
    ngx_uint_t                  dir;
    ngx_connection_t           *src;
    ngx_connection_t           *dst;

    /* input: [start, end) read from src; [spos, ppos) parsed, unsent raw */
    u_char                     *start;
    u_char                     *end;
    u_char                     *spos;
    u_char                     *ppos;
    u_char                     *last;

    /* the states, NGX_WSP_RX_*, NGX_WSP_TX_*, NGX_WSP_IN_* */
    u_char                      rx;
    u_char                      tx;
    u_char                      in;
    u_char                      check_utf8;     /* the open message: text */
    u_char                      parked;         /* the hook waits on sema */
    u_char                      z;              /* NGX_WSP_Z_* */
    u_char                      inflating;      /* the frame's payload */
    u_char                      recv_read;      /* src read since
                                                   recv_timer was set */

    /* the frame being parsed */
    ngx_wsp_frame_t             frame;
    uint64_t                    remaining;      /* payload bytes still due */
    uint64_t                    offset;         /* payload bytes seen */
    ngx_wsp_msg_state_t         msg_state;
    uint32_t                    utf8;

    /* data message limits: bytes and fragments of the open message */
    uint64_t                    msg_size;
    ngx_uint_t                  msg_frames;

    /* buffered data frame or message (hook, aggregation) */
    u_char                     *msg;
    size_t                      msg_len;
    size_t                      msg_cap;
    ngx_uint_t                  msg_opcode;     /* first fragment's opcode */

    /* the frame handed to Lua: slot.ready while it waits for a verdict */
    ngx_http_ws_proxy_slot_t    slot;
    size_t                      hold;           /* bytes held at ppos */

    /* output: header, then body, then the raw range, then ctl */
    u_char                      ohdr[NGX_WSP_MAX_HEADER];
    ngx_http_ws_proxy_range_t   out_hdr;
    ngx_http_ws_proxy_range_t   out_body;
    ngx_http_ws_proxy_range_t   out_ctl;
    ngx_http_ws_proxy_ctl_t    *ctl;
    uint16_t                    ctl_code;
    uint32_t                    recv_time;      /* src's last read, for
                                                   recv_timeout (in this
                                                   hole: 32 bits do) */

    /* frames injected from Lua, sent at the next frame boundary */
    ngx_http_ws_proxy_inject_t *inject;
    ngx_http_ws_proxy_inject_t *inject_cur;

    /* permessage-deflate: lazy */
    ngx_http_ws_proxy_zdir_t   *zd;

    /* Lua side */
    void                       *sema;
    ngx_event_t                 recv_timer;

    /* statistics */
    uint64_t                    frames;
    uint64_t                    bytes;
    uint64_t                    messages;
    ngx_int_t                   close_code;     /* -1: none received */
    uint64_t                    zbytes;         /* payload bytes compressed */
    uint64_t                    zplain;         /* ... and uncompressed */

    /*
     * liveness (ngx_http_ws_proxy_live.c): the time of src's last data
     * frame is the one store a frame costs; the rest is the timer's
     */
    ngx_msec_t                  data_time;
    ngx_msec_t                  ctl_time;       /* src's last control */
    ngx_msec_t                  ping_time;      /* our last ping to src */
    uint64_t                    live_bytes;     /* d->bytes then */
    uint32_t                    pings;          /* sent to src */
    u_char                      pinged;         /* not answered yet */
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
    ngx_uint_t                  kick;        /* directions to process */

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
    ngx_uint_t                  closed_by;    /* NGX_WSP_BY_* */
    u_char                      ended_by;     /* NGX_WSP_END_* */


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

    /* without Lua: ws_proxy_pass's callback instead of the semaphore */
    void                      (*notify)(ngx_http_ws_proxy_t *wp);
    void                       *notify_data;
};


extern ngx_module_t  ngx_http_ws_proxy_module;


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


/* ngx_http_ws_proxy_module.c */
ngx_http_ws_proxy_t *ngx_http_ws_proxy_create(ngx_http_request_t *r,
    ngx_uint_t hook);
ngx_http_ws_proxy_t *ngx_http_ws_proxy_lookup(uint64_t id);
void ngx_http_ws_proxy_unlink(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_conf_opts(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_set_error(ngx_http_ws_proxy_t *wp, const char *fmt,
    ...);
u_char *ngx_http_ws_proxy_log_escape(u_char *dst, u_char *last, u_char *src,
    size_t len);
void ngx_http_ws_proxy_log_error(ngx_uint_t level, ngx_log_t *log,
    ngx_err_t err, const char *fmt, ...);
void ngx_http_ws_proxy_wake(void *sema);
void ngx_http_ws_proxy_lua_log(ngx_http_ws_proxy_t *wp, ngx_uint_t level,
    const char *fmt, ...);
void ngx_http_ws_proxy_lua_log_flush(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_random(u_char *dst, size_t n);

/* ngx_http_ws_proxy_handshake.c */
ngx_int_t ngx_http_ws_proxy_client_check(ngx_http_ws_proxy_t *wp,
    ngx_str_t *key);
ngx_int_t ngx_http_ws_proxy_client_handshake(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_relay_response(ngx_http_ws_proxy_t *wp);
ngx_int_t ngx_http_ws_proxy_client_list(ngx_http_request_t *r,
    ngx_int_t list, ngx_str_t *out);
void ngx_http_ws_proxy_accept_key(ngx_str_t *key, u_char *out);

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

/* ngx_http_ws_proxy_module.c */
void ngx_http_ws_proxy_notify(ngx_http_ws_proxy_t *wp);

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
ngx_queue_t *ngx_http_ws_proxy_worker_sessions(void);
ngx_int_t ngx_http_ws_proxy_set_deadline(ngx_http_ws_proxy_t *wp,
    ngx_msec_t ms, ngx_uint_t code, u_char *reason, size_t len);

/* ngx_http_ws_proxy_pump.c */
ngx_int_t ngx_http_ws_proxy_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_run(ngx_http_ws_proxy_t *wp, ngx_uint_t dirs,
    ngx_uint_t can_read);
void ngx_http_ws_proxy_free_buffers(void);

/* ngx_http_ws_proxy_close.c */
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
ngx_http_ws_proxy_ctl_t *ngx_http_ws_proxy_get_ctl(ngx_http_ws_proxy_dir_t *d);


/* ngx_http_ws_proxy_deflate.c: permessage-deflate */
u_char *ngx_http_ws_proxy_deflate_offer(ngx_http_ws_proxy_t *wp, u_char *p);
ngx_int_t ngx_http_ws_proxy_deflate_answer(ngx_http_ws_proxy_t *wp,
    const u_char *value, size_t len);
ngx_int_t ngx_http_ws_proxy_deflate_accept(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_deflate_conf(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_loc_conf_t *wlcf);
void ngx_http_ws_proxy_deflate_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_deflate_free(ngx_http_ws_proxy_dir_t *d);
void ngx_http_ws_proxy_deflate_exit(void);
size_t ngx_http_ws_proxy_deflate_value(ngx_wsp_pmd_params_t *p, u_char *out);

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
char *ngx_http_ws_proxy_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
char *ngx_http_ws_proxy_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
ngx_int_t ngx_http_ws_proxy_metrics_init_conf(ngx_conf_t *cf);


#endif /* _NGX_HTTP_WS_PROXY_MODULE_H_INCLUDED_ */
