/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The metrics zone (ws_proxy_zone): counters per key in shared memory,
 * summed over the workers, written by ngx_http_ws_proxy_metrics.c and read
 * by ngx_http_ws_proxy_status.c.  See docs/design.md, "Metrics".
 */


#ifndef _NGX_HTTP_WS_PROXY_METRICS_H_INCLUDED_
#define _NGX_HTTP_WS_PROXY_METRICS_H_INCLUDED_


#include "ngx_http_ws_proxy_module.h"


#define NGX_WSP_M_KEY_MAX        128   /* bytes of a key, longer cut */
#define NGX_WSP_M_STATUSES       8     /* refusal statuses kept per key */
#define NGX_WSP_M_CODES          17    /* close codes 1000-1015, other */
#define NGX_WSP_M_CODE_OTHER     16
#define NGX_WSP_M_KINDS          2     /* protocol violations */
#define NGX_WSP_M_LIMITS         4
#define NGX_WSP_M_BUCKETS        11    /* finite duration buckets */

/* violation kinds, limit kinds */
#define NGX_WSP_M_PROTOCOL       0
#define NGX_WSP_M_UTF8           1
#define NGX_WSP_M_FRAME_SIZE     0
#define NGX_WSP_M_FRAGMENTS      1
#define NGX_WSP_M_BUFFER         2
#define NGX_WSP_M_RATE           3


typedef struct {
    uint64_t                    sessions_open;
    uint64_t                    sessions;
    uint64_t                    handshakes[NGX_WSP_HSO_OUTCOMES];
    uint64_t                    refused[NGX_WSP_M_STATUSES];
    uint64_t                    refused_other;
    uint16_t                    status[NGX_WSP_M_STATUSES];    /* 0: free */

    uint64_t                    frames[2];
    uint64_t                    messages[2];
    uint64_t                    bytes[2];

    /* close frames each peer sent, by code; 1006: none */
    uint64_t                    closes[2][NGX_WSP_M_CODES];
    uint64_t                    closed_by[4];      /* NGX_WSP_BY_* */
    uint64_t                    violations[2][NGX_WSP_M_KINDS];
    uint64_t                    limits[2][NGX_WSP_M_LIMITS];
    uint64_t                    hook_errors;

    /* session durations: per bucket (not cumulative), sum in ms */
    uint64_t                    duration[NGX_WSP_M_BUCKETS];
    uint64_t                    duration_count;
    uint64_t                    duration_ms;

    /*
     * permessage-deflate, per sender: the uncompressed and compressed
     * payload bytes of its messages that the module inflated or deflated
     * (ngx_http_ws_proxy_dir_t zplain, zbytes)
     */
    uint64_t                    inflated[2];
    uint64_t                    deflated[2];

    /* sessions refused by ws_proxy_limit_sessions */
    uint64_t                    sessions_refused;

    /* message rates (action=delay): messages held, per sender, and ms */
    uint64_t                    delayed[2];
    uint64_t                    delay_ms[2];
} ngx_http_ws_proxy_counters_t;


/* a key's counters; never freed, so a session may keep a pointer to it */
typedef struct {
    ngx_str_node_t              sn;          /* sn.str: data below */
    ngx_queue_t                 queue;       /* the zone's keys in order */
    ngx_http_ws_proxy_counters_t  c;
    u_char                      data[1];
} ngx_http_ws_proxy_mnode_t;


/*
 * The console's registry of sessions (ngx_http_ws_proxy_registry.c): one
 * entry per running session, kept a while after its end; in the zone.
 */
typedef struct {
    ngx_rbtree_t                rbtree;      /* entries by their seq */
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 live;        /* oldest start first */
    ngx_queue_t                 ended;       /* oldest end first */
    uint64_t                    seq;         /* the last one given */
    uint64_t                    epoch;       /* the zone's birth (unix s) */
    ngx_uint_t                  entries;     /* live and ended */
    ngx_uint_t                  unlisted;    /* running without an entry */
    ngx_atomic_t                pending;     /* close requests to pick up */
    ngx_atomic_t                tap_gen;     /* a tap came or went */
} ngx_http_ws_proxy_registry_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
    ngx_uint_t                  keys;
    ngx_uint_t                  full_keys;   /* keys when "full" was logged */
    ngx_http_ws_proxy_mnode_t  *other;       /* where keys go once full */
    ngx_http_ws_proxy_registry_t  reg;
} ngx_http_ws_proxy_msh_t;


typedef struct {
    ngx_http_ws_proxy_msh_t    *sh;
    ngx_slab_pool_t            *shpool;
    ngx_str_t                   name;
} ngx_http_ws_proxy_zone_t;


#define NGX_WSP_OUT_LINE     1024       /* a line, with its escaped key */


typedef struct {
    ngx_str_t                      key;   /* escaped for both formats */
    ngx_http_ws_proxy_counters_t   c;
} ngx_http_ws_proxy_snap_t;


/* a response being written (ngx_http_ws_proxy_print()) */
typedef struct {
    ngx_http_request_t            *r;
    ngx_chain_t                   *out;
    ngx_chain_t                  **last;
    ngx_buf_t                     *b;
    off_t                          len;
    ngx_uint_t                     failed;
    ngx_http_ws_proxy_snap_t      *s;
    ngx_uint_t                     n;
} ngx_http_ws_proxy_out_t;


/* the upper bounds of the duration buckets, in ms, and as printed */
extern const ngx_msec_t  ngx_http_ws_proxy_buckets[NGX_WSP_M_BUCKETS];
extern const char       *ngx_http_ws_proxy_bucket_names[NGX_WSP_M_BUCKETS];


ngx_int_t ngx_http_ws_proxy_status_handler(ngx_http_request_t *r);
void ngx_http_ws_proxy_print(ngx_http_ws_proxy_out_t *o, const char *fmt,
    ...);

/* ngx_http_ws_proxy_registry.c, for ngx_http_ws_proxy_metrics.c */
void ngx_http_ws_proxy_registry_init(ngx_http_ws_proxy_msh_t *sh);
void ngx_http_ws_proxy_registry_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_registry_flush(ngx_http_ws_proxy_t *wp,
    ngx_uint_t ring);
void ngx_http_ws_proxy_registry_end(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_registry_requests(ngx_queue_t *live);
void ngx_http_ws_proxy_recorder_start(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_recorder_dump(ngx_http_ws_proxy_t *wp);
ngx_queue_t *ngx_http_ws_proxy_metrics_sessions(void);


#endif /* _NGX_HTTP_WS_PROXY_METRICS_H_INCLUDED_ */
