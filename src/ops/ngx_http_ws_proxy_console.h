/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The operators' console: the registry of sessions in the ws_proxy_zone,
 * the flight recorder, closing a session by id from any worker
 * (ngx_http_ws_proxy_registry.c), and the JSON endpoints and Lua calls
 * that read them (ngx_http_ws_proxy_console.c).  See docs/operating.md.
 */


#ifndef _NGX_HTTP_WS_PROXY_CONSOLE_H_INCLUDED_
#define _NGX_HTTP_WS_PROXY_CONSOLE_H_INCLUDED_


#include "ngx_http_ws_proxy_metrics.h"


#define NGX_WSP_R_LOCATION       64    /* bytes of a location's name kept */
#define NGX_WSP_R_ADDR           56    /* "[ipv6]:port" */
#define NGX_WSP_R_REASON         123   /* a close reason's longest */
#define NGX_WSP_R_KEEP           60000 /* ms an ended session stays */

/* a close asked by the console (entry->req) */
#define NGX_WSP_REQ_NONE         0
#define NGX_WSP_REQ_CLOSE        1     /* for the holding worker */
#define NGX_WSP_REQ_TAKEN        2     /* it is sending the close */
#define NGX_WSP_REQ_DONE         3     /* the close frames went out */

/* the state of an entry */
#define NGX_WSP_R_OPEN           0
#define NGX_WSP_R_ENDED          1


/* the flight recorder's records and rings: the session core's, which
 * writes them (ngx_wsp_obs_record()) */
typedef ngx_wsp_obs_rec_t   ngx_http_ws_proxy_frec_t;
typedef ngx_wsp_obs_ring_t  ngx_http_ws_proxy_rdir_t;


/*
 * A session's recorder: a ring of at least n frames each way, mask + 1
 * (a power of two) of them, after the header; each direction's ctl->obs
 * points to its dir[].  The console shows the last n.  The zone's copy has
 * the same layout (its rec pointers unused); `at`: the copy's unix ms,
 * each record's t then the ms before it.
 */
typedef struct {
    ngx_http_ws_proxy_rdir_t    dir[2];
    uint32_t                    n;
    uint32_t                    mask;
    uint64_t                    at;
    ngx_http_ws_proxy_frec_t    rec[1];
} ngx_http_ws_proxy_ring_t;

#define ngx_wsp_ring_size(cap)                                               \
    (offsetof(ngx_http_ws_proxy_ring_t, rec)                                 \
     + 2 * (cap) * sizeof(ngx_http_ws_proxy_frec_t))

/* the k-th frame ever written in dir, of a ring or its copy */
#define ngx_wsp_ring_rec(ring, d, k)                                         \
    (&(ring)->rec[((d) ? (ring)->mask + 1 : 0) + ((k) & (ring)->mask)])


/* a session in the registry */
typedef struct {
    ngx_rbtree_node_t           node;        /* key: its seq */
    ngx_queue_t                 queue;       /* reg.live or reg.ended */
    ngx_http_ws_proxy_mnode_t  *mnode;       /* its key (never freed) */
    ngx_http_ws_proxy_ring_t   *ring;        /* the recorder's copy, as of
                                                the last flush; NULL */
    uint64_t                    frames[2];   /* as of the last flush */
    uint64_t                    bytes[2];
    uint64_t                    start;       /* unix ms */
    uint64_t                    end;         /* unix ms, 0: open */
    ngx_pid_t                   pid;
    int32_t                     close_code[2];  /* a peer's, -1: none */
    u_char                      state;       /* NGX_WSP_R_* */
    u_char                      ended_by;    /* NGX_WSP_END_* */
    u_char                      deflate;
    u_char                      hook;
    u_char                      taps;        /* tap[]'s in use */
    u_char                      req;         /* NGX_WSP_REQ_* */
    uint16_t                    recorder;    /* its ring's n, 0: off */
    uint16_t                    req_code;
    u_char                      req_len;
    u_char                      location_len;
    u_char                      client_len;
    u_char                      upstream_len;
    u_char                      req_reason[NGX_WSP_R_REASON];
    u_char                      location[NGX_WSP_R_LOCATION];
    u_char                      client[NGX_WSP_R_ADDR];
    u_char                      upstream[NGX_WSP_R_ADDR];
    uint32_t                    tap[NGX_WSP_TAP_MAX];  /* the taps' offsets
                                                in the zone, 0: free
                                                (ngx_http_ws_proxy_tap.c) */
} ngx_http_ws_proxy_rentry_t;


/* what the list shows of a session (and Lua's sessions()) */
typedef struct {
    ngx_http_ws_proxy_rentry_t  e;           /* node, queue, ring unused */
    ngx_str_t                   key;
} ngx_http_ws_proxy_rsnap_t;


/* a query's filter, sort and page */
typedef struct {
    ngx_str_t                   key;
    ngx_str_t                   client;
    ngx_str_t                   upstream;
    ngx_int_t                   min_age;     /* seconds, -1: none */
    ngx_int_t                   max_age;
    ngx_uint_t                  state;       /* 1 open, 2 ended, 3 all */
    ngx_uint_t                  sort;        /* NGX_WSP_SORT_* */
    ngx_uint_t                  desc;
    ngx_uint_t                  offset;
    ngx_uint_t                  limit;
} ngx_http_ws_proxy_filter_t;

#define NGX_WSP_SORT_AGE         0
#define NGX_WSP_SORT_BYTES       1
#define NGX_WSP_SORT_FRAMES      2
#define NGX_WSP_SORT_KEY         3

#define NGX_WSP_LIST_LIMIT       100
#define NGX_WSP_LIST_MAX         1000


/* the registry's entry of a session (under the lock), or NULL */
#define ngx_wsp_rentry(shpool, off)                                          \
    ((off) ? (ngx_http_ws_proxy_rentry_t *) ((u_char *) (shpool) + (off))   \
           : NULL)

/* unix ms now */
static ngx_inline uint64_t
ngx_wsp_unix_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* ngx_http_ws_proxy_registry.c */
extern const ngx_str_t  *ngx_http_ws_proxy_console_end_name;

ngx_http_ws_proxy_zone_t *ngx_http_ws_proxy_console_zone(void);
ngx_int_t ngx_http_ws_proxy_parse_id(ngx_http_ws_proxy_zone_t *zone,
    ngx_str_t *id, uint64_t *seq);
ngx_http_ws_proxy_rentry_t *ngx_http_ws_proxy_registry_find(
    ngx_http_ws_proxy_zone_t *zone, uint64_t seq);
ngx_int_t ngx_http_ws_proxy_registry_ring(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_rentry_t *e, ngx_http_ws_proxy_ring_t *out);
ngx_int_t ngx_http_ws_proxy_registry_list(ngx_http_ws_proxy_zone_t *zone,
    ngx_pool_t *pool, ngx_http_ws_proxy_filter_t *f,
    ngx_http_ws_proxy_rsnap_t **out, ngx_uint_t *n, ngx_uint_t *total,
    ngx_uint_t *unlisted);
ngx_int_t ngx_http_ws_proxy_registry_close(ngx_http_ws_proxy_zone_t *zone,
    uint64_t seq, ngx_uint_t code, u_char *reason, size_t len);
ngx_int_t ngx_http_ws_proxy_registry_closed(ngx_http_ws_proxy_zone_t *zone,
    uint64_t seq);

/* ngx_http_ws_proxy_console.c */
ngx_int_t ngx_http_ws_proxy_console_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_ws_proxy_filter_parse(ngx_str_t *args,
    ngx_http_ws_proxy_filter_t *f, ngx_pool_t *pool);
ngx_int_t ngx_http_ws_proxy_close_args(ngx_str_t *code, ngx_str_t *reason,
    ngx_uint_t *c);
ngx_int_t ngx_http_ws_proxy_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *fmt, ngx_str_t *arg);


#endif /* _NGX_HTTP_WS_PROXY_CONSOLE_H_INCLUDED_ */
