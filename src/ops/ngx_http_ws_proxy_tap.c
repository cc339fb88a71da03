/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The tap (issue 25, item 3): GET <status location>?tap=<id> with a
 * WebSocket upgrade, where `ws_proxy_status control;` allows it.  The
 * operator receives the session's frames as they pass, one JSON text
 * message each (docs/operating.md, "Watching a session").
 *
 * Across workers, through the ws_proxy_zone: each tap is a ring of bytes
 * in the zone, named by an offset in one of the 4 slots of the session's
 * registry entry.  The session's worker writes a record per frame from the
 * console's observation point (ngx_http_ws_proxy_observe()), without a
 * lock: one writer (the session's worker), one reader (the tap's worker),
 * head and tail counters with barriers between the bytes and the
 * counters.  A record that does not fit is not written and counted
 * (dropped): a slow tap never slows the session.  The tap's worker reads
 * the ring every NGX_WSP_TAP_POLL ms while its socket takes what it sends.
 *
 * Who frees a tap: the session's worker, under the lock, at its next tick
 * after the tap went (gone), or the tap's worker after the session ended
 * (ended, set under the lock when the session's entry ends): so a ring is
 * never freed while its writer may still write it.  The registry's tap
 * generation tells each worker's tick when to look (nothing to do
 * otherwise), and to set or clear the sessions' observe flags.
 */


#include "ngx_http_ws_proxy_console.h"
#include "ngx_http_ws_proxy_dash.h"
#include "ngx_wsp_frame.h"
#include "ngx_wsp_handshake.h"


/* bytes of a tap's ring: the tap is 16 pages of the slab with its fields */
#define NGX_WSP_TAP_RING       (65536 - 64)
#define NGX_WSP_TAP_POLL       50        /* ms between the tap's reads */
#define NGX_WSP_TAP_OUT        65536     /* the tap's output buffer */
#define NGX_WSP_TAP_JSON       (256 + 6 * NGX_WSP_TAP_PAYLOAD_MAX)
#define NGX_WSP_TAP_ALIGN      8


/* a tap in the zone */
typedef struct {
    ngx_atomic_t                head;       /* bytes written */
    ngx_atomic_t                tail;       /* bytes read */
    ngx_atomic_t                dropped;    /* records not written */
    uint64_t                    seq;        /* the session's */
    uint32_t                    payloads;   /* bytes of payload kept */
    u_char                      gone;       /* the tap closed */
    u_char                      ended;      /* the session ended */
    u_char                      ring[NGX_WSP_TAP_RING];
} ngx_http_ws_proxy_tap_t;


/* a record in the ring: this, then plen bytes of payload, 8-aligned */
typedef struct {
    uint64_t                    t;          /* unix ms */
    uint64_t                    len;        /* the frame's payload length */
    uint32_t                    plen;       /* payload bytes kept */
    u_char                      dir;
    u_char                      opcode;
    u_char                      flags;      /* FIN 1, RSV1 2 */
    u_char                      action;     /* NGX_WSP_OBS_* */
} ngx_http_ws_proxy_trec_t;


/* the tap's side: its request's context */
typedef struct {
    ngx_queue_t                 queue;      /* the worker's taps */
    ngx_http_request_t         *r;
    ngx_http_ws_proxy_zone_t   *zone;
    ngx_http_ws_proxy_tap_t    *tap;
    ngx_event_t                 poll;
    ngx_buf_t                  *out;
    u_char                     *json;       /* one message being made */
    uint64_t                    told;       /* drops reported */
    uint64_t                    skip;       /* the client's payload due */
    u_char                      in[16];     /* a client frame's header */
    size_t                      in_len;
    ngx_uint_t                  close;      /* our close code, 0: none */
    unsigned                    closing:1;  /* our close frame is out */
    unsigned                    finalized:1;
} ngx_http_ws_proxy_tap_ctx_t;


static ngx_int_t ngx_http_ws_proxy_tap_open(ngx_http_request_t *r,
    ngx_http_ws_proxy_zone_t *zone, ngx_str_t *id,
    ngx_http_ws_proxy_tap_t **tap, const char **why, ngx_str_t **arg);
static ngx_int_t ngx_http_ws_proxy_tap_upgrade(ngx_http_request_t *r,
    ngx_str_t *key, const char **why, ngx_str_t **arg);
static void ngx_http_ws_proxy_tap_cleanup(void *data);
static void ngx_http_ws_proxy_tap_release(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_tap_t *tap);
static void ngx_http_ws_proxy_tap_free(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_tap_t *tap);
static void ngx_http_ws_proxy_tap_poll(ngx_event_t *ev);
static void ngx_http_ws_proxy_tap_read(ngx_http_request_t *r);
static void ngx_http_ws_proxy_tap_write(ngx_http_request_t *r);
static ngx_int_t ngx_http_ws_proxy_tap_fill(ngx_http_ws_proxy_tap_ctx_t *ctx);
static ngx_int_t ngx_http_ws_proxy_tap_send(ngx_http_ws_proxy_tap_ctx_t *ctx);
static void ngx_http_ws_proxy_tap_message(ngx_http_ws_proxy_tap_ctx_t *ctx,
    u_char *json, size_t len);
static u_char *ngx_http_ws_proxy_tap_json(u_char *p,
    ngx_http_ws_proxy_trec_t *rec, u_char *payload);
static void ngx_http_ws_proxy_tap_close(ngx_http_ws_proxy_tap_ctx_t *ctx,
    ngx_uint_t code);
static void ngx_http_ws_proxy_tap_finish(ngx_http_ws_proxy_tap_ctx_t *ctx);
static ngx_http_ws_proxy_tap_ctx_t *ngx_http_ws_proxy_tap_ctx(
    ngx_http_request_t *r);
static void ngx_http_ws_proxy_ring_put(ngx_http_ws_proxy_tap_t *tap,
    uint64_t at, const void *src, size_t n);
static void ngx_http_ws_proxy_ring_get(ngx_http_ws_proxy_tap_t *tap,
    uint64_t at, void *dst, size_t n);


static const char  *ngx_wsp_tap_ops[] = {
    "continuation", "text", "binary", "op3", "op4", "op5", "op6", "op7",
    "close", "ping", "pong", "opb", "opc", "opd", "ope", "opf"
};

static const char  *ngx_wsp_tap_actions[] = {
    "forwarded", "dropped", "rewritten", "injected"
};

static const char  *ngx_wsp_tap_from[] = { "client", "upstream" };


/*
 * The worker's taps, for their request's event handlers: the module's
 * request context is the session's (its variables read it as one), so a
 * tap's is found here (a worker has few)
 */
static ngx_queue_t  ngx_http_ws_proxy_taps;


#define ngx_wsp_tap(shpool, off)                                             \
    ((ngx_http_ws_proxy_tap_t *) ((u_char *) (shpool) + (off)))

#define ngx_wsp_tap_off(shpool, tap)                                         \
    ((uint32_t) ((u_char *) (tap) - (u_char *) (shpool)))


/* ---- the session's side: its worker writes, never waits ---- */


/*
 * A frame of a tapped session (from the observation point, while the
 * entry names taps): a record in each tap's ring that has room.  payload
 * (the frame's, unmasked and inflated) may be NULL: headers only.
 */

void
ngx_http_ws_proxy_tap_frame(ngx_http_ws_proxy_t *wp, ngx_uint_t dir,
    ngx_uint_t action, ngx_uint_t opcode, ngx_uint_t fin, ngx_uint_t rsv1,
    uint64_t len, const u_char *payload, size_t plen, const u_char *mask)
{
    size_t                        size, keep;
    uint32_t                      off;
    uint64_t                      head;
    ngx_uint_t                    i;
    ngx_http_ws_proxy_tap_t      *tap;
    ngx_http_ws_proxy_zone_t     *zone;
    ngx_http_ws_proxy_trec_t      rec;
    ngx_http_ws_proxy_rentry_t   *e;

    u_char                        kept[NGX_WSP_TAP_PAYLOAD_MAX];

    if (wp->metrics.entry == 0) {
        /* no registry entry (no zone, or a full one): no tap */
        return;
    }

    zone = wp->metrics.zone;
    e = ngx_wsp_rentry(zone->shpool, wp->metrics.entry);

    if (e == NULL || e->taps == 0) {
        return;
    }

    rec.t = ngx_wsp_unix_ms();
    rec.len = len;
    rec.dir = (u_char) dir;
    rec.opcode = (u_char) opcode;
    rec.flags = (u_char) ((fin ? 1 : 0) | (rsv1 ? 2 : 0));
    rec.action = (u_char) action;

    for (i = 0; i < NGX_WSP_TAP_MAX; i++) {
        off = e->tap[i];

        if (off == 0) {
            continue;
        }

        tap = ngx_wsp_tap(zone->shpool, off);

        if (tap->gone) {
            continue;
        }

        keep = (payload == NULL || tap->payloads == (uint32_t) -1)
               ? 0 : ngx_min(plen, tap->payloads);
        rec.plen = (uint32_t) keep;
        size = ngx_align(sizeof(rec) + keep, NGX_WSP_TAP_ALIGN);

        head = tap->head;

        if (head + size - tap->tail > NGX_WSP_TAP_RING) {
            (void) ngx_atomic_fetch_add(&tap->dropped, 1);
            continue;
        }

        ngx_http_ws_proxy_ring_put(tap, head, &rec, sizeof(rec));

        if (keep) {
            if (mask) {
                /* a client's raw frame: unmasked into a copy */
                ngx_wsp_mask(kept, payload, keep, mask, 0);
                ngx_http_ws_proxy_ring_put(tap, head + sizeof(rec), kept,
                                           keep);

            } else {
                ngx_http_ws_proxy_ring_put(tap, head + sizeof(rec), payload,
                                           keep);
            }
        }

        /* the bytes, then the counter that shows them */
        ngx_memory_barrier();
        tap->head = head + size;
    }
}


/*
 * The frame the session core just parsed (its observe(), while observe is
 * set): its payload for the taps where it is whole in memory, a frame
 * passed raw and not sent yet, [ppos - len, ppos) of the input as it came
 * (masked from a client); not a compressed one (a tap gets payloads after
 * inflate, which a hook has: ngx_http_ws_proxy_apply_verdict()).
 */

void
ngx_http_ws_proxy_tap_core(ngx_wsp_sdir_t *sd, unsigned action)
{
    size_t                len;
    unsigned char        *p;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_session_wp(sd->session);
    p = NULL;
    len = (size_t) sd->frame.payload_len;

    if (action == NGX_WSP_OBS_FORWARDED
        && sd->frame.payload_len <= (uint64_t) (sd->ppos - sd->spos)
        && !(sd->frame.rsv & NGX_WSP_RSV_DEFLATE)
        && !sd->msg_state.compressed)
    {
        p = sd->ppos - len;
    }

    ngx_http_ws_proxy_tap_frame(wp, sd->dir, action, sd->frame.opcode,
                                sd->frame.fin,
                                sd->frame.rsv & NGX_WSP_RSV_DEFLATE,
                                sd->frame.payload_len, p, len,
                                sd->frame.masked ? sd->frame.mask : NULL);
}


/*
 * The worker's tick (every NGX_WSP_M_TICK ms while it has sessions): when
 * taps came or went anywhere, its sessions' taps that went are freed, new
 * ones get the session's payload setting, and each session is observed
 * while its recorder or a tap needs it.
 */

void
ngx_http_ws_proxy_tap_tick(ngx_queue_t *live)
{
    uint32_t                        off;
    ngx_uint_t                      i;
    ngx_queue_t                    *q;
    ngx_atomic_uint_t               gen;
    ngx_http_ws_proxy_t            *wp;
    ngx_http_ws_proxy_tap_t        *tap;
    ngx_http_ws_proxy_zone_t       *zone;
    ngx_http_ws_proxy_msess_t      *m;
    ngx_http_ws_proxy_rentry_t     *e;

    static ngx_atomic_uint_t        seen;

    if (ngx_queue_empty(live)) {
        return;
    }

    m = ngx_queue_data(ngx_queue_head(live), ngx_http_ws_proxy_msess_t,
                       queue);
    zone = m->zone;
    gen = zone->sh->reg.tap_gen;

    if (gen == seen) {
        return;
    }

    seen = gen;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(live);
         q != ngx_queue_sentinel(live);
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, ngx_http_ws_proxy_msess_t, queue);
        e = (m->zone == zone) ? ngx_wsp_rentry(zone->shpool, m->entry)
                              : NULL;

        if (e == NULL) {
            continue;
        }

        wp = (ngx_http_ws_proxy_t *) ((u_char *) m
                                      - offsetof(ngx_http_ws_proxy_t,
                                                 metrics));

        for (i = 0; i < NGX_WSP_TAP_MAX; i++) {
            off = e->tap[i];

            if (off == 0) {
                continue;
            }

            tap = ngx_wsp_tap(zone->shpool, off);

            if (tap->gone) {
                e->tap[i] = 0;
                e->taps--;
                ngx_slab_free_locked(zone->shpool, tap);
                continue;
            }

            if (tap->payloads == (uint32_t) -1) {
                tap->payloads = wp->opts.tap_payloads;
            }
        }

        for (i = 0; i < 2; i++) {
            wp->dir[i].observe = (wp->dir[i].observe & ~NGX_WSP_OBS_CALL)
                                 | (e->taps ? NGX_WSP_OBS_CALL : 0);
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/*
 * The session's entry ends (locked): its taps are told, and those already
 * gone freed; the others are freed by their tap's worker once drained.
 */

void
ngx_http_ws_proxy_tap_ended(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_rentry_t *e)
{
    uint32_t                  off;
    ngx_uint_t                i;
    ngx_http_ws_proxy_tap_t  *tap;

    for (i = 0; i < NGX_WSP_TAP_MAX; i++) {
        off = e->tap[i];

        if (off == 0) {
            continue;
        }

        e->tap[i] = 0;
        tap = ngx_wsp_tap(zone->shpool, off);

        if (tap->gone) {
            ngx_slab_free_locked(zone->shpool, tap);
            continue;
        }

        tap->ended = 1;
    }

    e->taps = 0;
}


/* ---- the tap's side: the operator's WebSocket ---- */


ngx_int_t
ngx_http_ws_proxy_tap_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       id, key, *arg;
    const char                     *why;
    ngx_connection_t               *c;
    ngx_pool_cleanup_t             *cln;
    ngx_http_ws_proxy_tap_t        *tap;
    ngx_http_ws_proxy_zone_t       *zone;
    ngx_http_ws_proxy_tap_ctx_t    *ctx;
    ngx_http_ws_proxy_loc_conf_t   *wlcf;

    if (r->method != NGX_HTTP_GET) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    /* a refusal answers: no body is read (an upgrade has none) */

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_wsp_module);

    if (!wlcf->status_control) {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_FORBIDDEN,
                                       "control is not allowed here", NULL);
    }

    zone = ngx_http_ws_proxy_console_zone();

    if (ngx_http_arg(r, (u_char *) "tap", 3, &id) != NGX_OK) {
        ngx_str_null(&id);
    }

    /* refused: an HTTP status, answered in JSON (the 101's fields unset) */

    tap = NULL;
    why = "the 101 could not be sent";
    arg = NULL;

    rc = ngx_http_ws_proxy_tap_upgrade(r, &key, &why, &arg);

    if (rc == NGX_OK) {
        rc = ngx_http_ws_proxy_tap_open(r, zone, &id, &tap, &why, &arg);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_ws_proxy_accept(r, &key);

        if (rc != NGX_OK) {
            ngx_http_ws_proxy_tap_release(zone, tap);
        }
    }

    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR
                                 : ngx_http_ws_proxy_error(r, rc, why, arg);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_ws_proxy_tap_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        ngx_http_ws_proxy_tap_release(zone, tap);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->r = r;
    ctx->zone = zone;
    ctx->tap = tap;

    cln->handler = ngx_http_ws_proxy_tap_cleanup;
    cln->data = ctx;

    ctx->out = ngx_create_temp_buf(r->pool, NGX_WSP_TAP_OUT);
    ctx->json = ngx_pnalloc(r->pool, NGX_WSP_TAP_JSON);

    if (ctx->out == NULL || ctx->json == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return NGX_HTTP_CLOSE;
    }

    if (ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR) {
        return NGX_HTTP_CLOSE;
    }

    c = r->connection;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "ws_proxy: tap on session %V", &id);

    r->main->count++;
    r->read_event_handler = ngx_http_ws_proxy_tap_read;
    r->write_event_handler = ngx_http_ws_proxy_tap_write;

    /* the status location's timeouts are not a tap's: it waits for frames */
    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    ctx->poll.handler = ngx_http_ws_proxy_tap_poll;
    ctx->poll.data = ctx;
    ctx->poll.log = c->log;
    ngx_add_timer(&ctx->poll, NGX_WSP_TAP_POLL);

    if (ngx_http_ws_proxy_taps.next == NULL) {
        ngx_queue_init(&ngx_http_ws_proxy_taps);
    }

    ngx_queue_insert_tail(&ngx_http_ws_proxy_taps, &ctx->queue);

    return NGX_DONE;
}


/*
 * The session's entry, a slot and the ring, under the lock; a refusal is
 * answered (404: no such open session, 429: 4 taps already, 503: the zone
 * has no room).  The id is digits and a dash once parsed, so it may be
 * quoted as is.
 */

static ngx_int_t
ngx_http_ws_proxy_tap_open(ngx_http_request_t *r,
    ngx_http_ws_proxy_zone_t *zone, ngx_str_t *id,
    ngx_http_ws_proxy_tap_t **out, const char **why, ngx_str_t **arg)
{
    uint64_t                     seq;
    ngx_uint_t                   i;
    ngx_http_ws_proxy_tap_t     *tap;
    ngx_http_ws_proxy_rentry_t  *e;

    if (zone == NULL || ngx_http_ws_proxy_parse_id(zone, id, &seq) != NGX_OK) {
        *why = "no session (a bad id)";
        *arg = NULL;
        return NGX_HTTP_NOT_FOUND;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    e = ngx_http_ws_proxy_registry_find(zone, seq);

    if (e == NULL || e->state != NGX_WSP_R_OPEN) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        *why = "no session %V";
        *arg = id;
        return NGX_HTTP_NOT_FOUND;
    }

    for (i = 0; i < NGX_WSP_TAP_MAX && e->tap[i]; i++) { /* void */ }

    if (i == NGX_WSP_TAP_MAX) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        *why = "session %V has 4 taps already";
        *arg = id;
        return 429;
    }

    tap = ngx_slab_alloc_locked(zone->shpool, sizeof(ngx_http_ws_proxy_tap_t));

    if (tap == NULL) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        *why = "the zone has no room for a tap";
        *arg = NULL;
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    tap->head = 0;
    tap->tail = 0;
    tap->dropped = 0;
    tap->seq = seq;
    tap->payloads = (uint32_t) -1;      /* the session's worker sets it */
    tap->gone = 0;
    tap->ended = 0;

    /* the tap whole before the writer can see it */
    ngx_memory_barrier();

    e->tap[i] = ngx_wsp_tap_off(zone->shpool, tap);
    e->taps++;
    zone->sh->reg.tap_gen++;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    *out = tap;

    return NGX_OK;
}


/* the checks of an upgrade request: its key */

static ngx_int_t
ngx_http_ws_proxy_tap_upgrade(ngx_http_request_t *r, ngx_str_t *key,
    const char **why, ngx_str_t **arg)
{
    ngx_wsp_request_t   rq;

    if (r != r->main || r->http_version < NGX_HTTP_VERSION_11
#if (NGX_HTTP_V2)
        || r->stream
#endif
        )
    {
        *why = "a tap is a WebSocket upgrade (HTTP/1.1)";
        *arg = NULL;
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_ws_proxy_upgrade_headers(r, &rq) != NGX_WSP_REQ_OK) {
        *why = "a tap is a WebSocket upgrade";
        *arg = NULL;
        return NGX_HTTP_BAD_REQUEST;
    }

    key->data = (u_char *) rq.key.data;
    key->len = rq.key.len;

    return NGX_OK;
}


static void
ngx_http_ws_proxy_tap_cleanup(void *data)
{
    ngx_http_ws_proxy_tap_ctx_t  *ctx = data;

    if (ctx->poll.timer_set) {
        ngx_del_timer(&ctx->poll);
    }

    if (ctx->queue.next) {
        ngx_queue_remove(&ctx->queue);
        ctx->queue.next = NULL;
    }

    if (ctx->tap) {
        ngx_http_ws_proxy_tap_release(ctx->zone, ctx->tap);
        ctx->tap = NULL;
    }
}


/* the tap goes: freed now if its session ended, else by its worker */

static void
ngx_http_ws_proxy_tap_release(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_tap_t *tap)
{
    ngx_shmtx_lock(&zone->shpool->mutex);

    if (tap->ended) {
        ngx_http_ws_proxy_tap_free(zone, tap);

    } else {
        tap->gone = 1;
        zone->sh->reg.tap_gen++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


static void
ngx_http_ws_proxy_tap_free(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_tap_t *tap)
{
    ngx_slab_free_locked(zone->shpool, tap);
}


/*
 * Every NGX_WSP_TAP_POLL ms: what the ring holds, as far as the output
 * buffer takes it; the drops since the last report once the ring is read
 * to its end; a close once the session ended and all is read.
 */

static void
ngx_http_ws_proxy_tap_poll(ngx_event_t *ev)
{
    ngx_http_ws_proxy_tap_ctx_t  *ctx = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_http_ws_proxy_tap_close(ctx, 1001);

    } else if (!ctx->closing) {
        if (ngx_http_ws_proxy_tap_fill(ctx) != NGX_OK) {
            ngx_http_ws_proxy_tap_finish(ctx);
            return;
        }
    }

    if (ngx_http_ws_proxy_tap_send(ctx) != NGX_OK) {
        ngx_http_ws_proxy_tap_finish(ctx);
        return;
    }

    if (ctx->closing && ctx->out->pos == ctx->out->last) {
        ngx_http_ws_proxy_tap_finish(ctx);
        return;
    }

    ngx_add_timer(&ctx->poll, NGX_WSP_TAP_POLL);
}


/* records out of the ring into the output buffer, as JSON messages */

static ngx_int_t
ngx_http_ws_proxy_tap_fill(ngx_http_ws_proxy_tap_ctx_t *ctx)
{
    u_char                    *p, *payload;
    size_t                     size;
    uint64_t                   head, tail, dropped;
    ngx_buf_t                 *b;
    ngx_http_ws_proxy_tap_t   *tap;
    ngx_http_ws_proxy_trec_t   rec;

    u_char                     kept[NGX_WSP_TAP_PAYLOAD_MAX];

    tap = ctx->tap;
    b = ctx->out;

    if (b->pos == b->last) {
        b->pos = b->start;
        b->last = b->start;
    }

    head = tap->head;
    ngx_memory_barrier();
    tail = tap->tail;

    while (tail < head) {

        /* room for the biggest message a record can make */
        if ((size_t) (b->end - b->last) < NGX_WSP_TAP_JSON + 16) {
            break;
        }

        ngx_http_ws_proxy_ring_get(tap, tail, &rec, sizeof(rec));

        payload = NULL;

        if (rec.plen) {
            rec.plen = ngx_min(rec.plen, NGX_WSP_TAP_PAYLOAD_MAX);
            ngx_http_ws_proxy_ring_get(tap, tail + sizeof(rec), kept,
                                       rec.plen);
            payload = kept;
        }

        size = ngx_align(sizeof(rec) + rec.plen, NGX_WSP_TAP_ALIGN);
        tail += size;

        p = ngx_http_ws_proxy_tap_json(ctx->json, &rec, payload);
        ngx_http_ws_proxy_tap_message(ctx, ctx->json, p - ctx->json);
    }

    /* the bytes read, then the counter that frees them */
    ngx_memory_barrier();
    tap->tail = tail;

    if (tail == head) {
        dropped = tap->dropped;

        if (dropped != ctx->told
            && (size_t) (b->end - b->last) >= NGX_WSP_TAP_JSON + 16)
        {
            p = ngx_sprintf(ctx->json, "{\"dropped\":%uL}",
                            dropped - ctx->told);
            ngx_http_ws_proxy_tap_message(ctx, ctx->json, p - ctx->json);
            ctx->told = dropped;
        }

        if (tap->ended && tap->head == tail) {
            ngx_http_ws_proxy_tap_close(ctx, 1000);
        }
    }

    return NGX_OK;
}


/* one text frame (server to client: unmasked) into the output buffer */

static void
ngx_http_ws_proxy_tap_message(ngx_http_ws_proxy_tap_ctx_t *ctx, u_char *json,
    size_t len)
{
    ngx_buf_t  *b;

    b = ctx->out;

    b->last += ngx_wsp_frame_write_header(b->last, 1, NGX_WSP_OP_TEXT, len,
                                          NULL);
    b->last = ngx_cpymem(b->last, json, len);
}


/*
 * A record as api25's F plus "from", and "payload" where kept: text as
 * JSON text (a character cut at the end left out), binary as base64
 * ("base64": true); "cut": true when the payload was longer.
 */

static u_char *
ngx_http_ws_proxy_tap_json(u_char *p, ngx_http_ws_proxy_trec_t *rec,
    u_char *payload)
{
    u_char      c, *s, *end;
    size_t      n;
    ngx_str_t   src, dst;
    ngx_uint_t  text;

    p = ngx_sprintf(p, "{\"t\":%uL.%03uL,\"from\":\"%s\",\"op\":\"%s\","
                    "\"len\":%uL,\"fin\":%s,\"rsv1\":%s,\"action\":\"%s\"",
                    rec->t / 1000, rec->t % 1000,
                    ngx_wsp_tap_from[rec->dir & 1],
                    ngx_wsp_tap_ops[rec->opcode & 0xf], rec->len,
                    (rec->flags & 1) ? "true" : "false",
                    (rec->flags & 2) ? "true" : "false",
                    ngx_wsp_tap_actions[ngx_min(rec->action, 3)]);

    if (payload == NULL) {
        return ngx_sprintf(p, "}");
    }

    n = rec->plen;

    /* text (a close's reason after its code too) if it is valid UTF-8 */

    s = payload;

    if (rec->opcode == NGX_WSP_OP_CLOSE && n >= 2) {
        p = ngx_sprintf(p, ",\"code\":%ui", (ngx_uint_t) (s[0] << 8 | s[1]));
        s += 2;
        n -= 2;
    }

    end = s + n;
    text = (rec->opcode != NGX_WSP_OP_BINARY);

    if (text) {
        /* a character cut at the end of what was kept is left out */
        while (end > s && end - s > (ptrdiff_t) (n >= 3 ? n - 3 : 0)
               && ngx_wsp_utf8_validate(0, s, end - s) != 0)
        {
            end--;
        }

        text = (ngx_wsp_utf8_validate(0, s, end - s) == 0);

        if (!text) {
            end = s + n;
        }
    }

    if (text) {
        p = ngx_sprintf(p, ",\"payload\":\"");

        for ( /* void */ ; s < end; s++) {
            c = *s;

            if (c == '"' || c == '\\') {
                *p++ = '\\';
                *p++ = c;

            } else if (c < 0x20 || c == 0x7f) {
                p = ngx_sprintf(p, "\\u%04xd", (ngx_uint_t) c);

            } else {
                *p++ = c;
            }
        }

        *p++ = '"';

    } else {
        p = ngx_sprintf(p, ",\"base64\":true,\"payload\":\"");
        src.data = s;
        src.len = n;
        dst.data = p;
        ngx_encode_base64(&dst, &src);
        p += dst.len;
        *p++ = '"';
    }

    if (rec->plen < rec->len) {
        p = ngx_sprintf(p, ",\"cut\":true");
    }

    return ngx_sprintf(p, "}");
}


/* our close frame after what is queued; the client's answer ends it */

static void
ngx_http_ws_proxy_tap_close(ngx_http_ws_proxy_tap_ctx_t *ctx, ngx_uint_t code)
{
    u_char     *p;
    ngx_buf_t  *b;

    if (ctx->closing) {
        return;
    }

    b = ctx->out;

    if (b->end - b->last < 8) {
        /* no room: the connection just ends */
        ctx->closing = 1;
        b->pos = b->last;
        return;
    }

    p = b->last;
    *p++ = 0x88;
    *p++ = 2;
    *p++ = (u_char) (code >> 8);
    *p++ = (u_char) (code & 0xff);
    b->last = p;

    ctx->closing = 1;
}


/* the output buffer to the socket, as far as it takes it */

static ngx_int_t
ngx_http_ws_proxy_tap_send(ngx_http_ws_proxy_tap_ctx_t *ctx)
{
    ssize_t            n;
    ngx_buf_t         *b;
    ngx_connection_t  *c;

    c = ctx->r->connection;
    b = ctx->out;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        b->pos += n;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_ws_proxy_tap_write(ngx_http_request_t *r)
{
    ngx_http_ws_proxy_tap_ctx_t  *ctx;

    ctx = ngx_http_ws_proxy_tap_ctx(r);
    if (ctx == NULL) {
        return;
    }

    if (ngx_http_ws_proxy_tap_send(ctx) != NGX_OK) {
        ngx_http_ws_proxy_tap_finish(ctx);
    }
}


/*
 * The operator's frames are read and let go, but a close: it is answered
 * (or is the answer to ours) and ends the tap.
 */

static void
ngx_http_ws_proxy_tap_read(ngx_http_request_t *r)
{
    u_char                        buf[512], *p, *last;
    size_t                        n;
    ssize_t                       got;
    ngx_wsp_frame_t               f;
    ngx_connection_t             *c;
    ngx_http_ws_proxy_tap_ctx_t  *ctx;

    ctx = ngx_http_ws_proxy_tap_ctx(r);
    if (ctx == NULL) {
        return;
    }
    c = r->connection;

    for ( ;; ) {
        got = c->recv(c, buf, sizeof(buf));

        if (got == NGX_AGAIN) {
            break;
        }

        if (got == 0 || got == NGX_ERROR) {
            ngx_http_ws_proxy_tap_finish(ctx);
            return;
        }

        p = buf;
        last = buf + got;

        while (p < last) {
            if (ctx->skip) {
                n = (size_t) ngx_min((uint64_t) (last - p), ctx->skip);
                ctx->skip -= n;
                p += n;
                continue;
            }

            n = ngx_min((size_t) (last - p), sizeof(ctx->in) - ctx->in_len);
            ngx_memcpy(ctx->in + ctx->in_len, p, n);

            switch (ngx_wsp_frame_parse_header(ctx->in, ctx->in_len + n,
                                               &f))
            {
            case NGX_WSP_PARSE_AGAIN:
                ctx->in_len += n;
                p += n;
                continue;

            case NGX_WSP_PARSE_OK:
                break;

            default:
                ngx_http_ws_proxy_tap_finish(ctx);
                return;
            }

            p += f.header_len - ctx->in_len;
            ctx->in_len = 0;
            ctx->skip = f.payload_len;

            if (f.opcode == NGX_WSP_OP_CLOSE) {
                ngx_http_ws_proxy_tap_close(ctx, 1000);

                if (ngx_http_ws_proxy_tap_send(ctx) != NGX_OK
                    || ctx->out->pos == ctx->out->last)
                {
                    ngx_http_ws_proxy_tap_finish(ctx);
                    return;
                }
            }
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_ws_proxy_tap_finish(ctx);
    }
}


static void
ngx_http_ws_proxy_tap_finish(ngx_http_ws_proxy_tap_ctx_t *ctx)
{
    if (ctx->finalized) {
        return;
    }

    ctx->finalized = 1;

    if (ctx->poll.timer_set) {
        ngx_del_timer(&ctx->poll);
    }

    ngx_http_finalize_request(ctx->r, NGX_HTTP_CLOSE);
}


static ngx_http_ws_proxy_tap_ctx_t *
ngx_http_ws_proxy_tap_ctx(ngx_http_request_t *r)
{
    ngx_queue_t                  *q;
    ngx_http_ws_proxy_tap_ctx_t  *ctx;

    for (q = ngx_queue_head(&ngx_http_ws_proxy_taps);
         q != ngx_queue_sentinel(&ngx_http_ws_proxy_taps);
         q = ngx_queue_next(q))
    {
        ctx = ngx_queue_data(q, ngx_http_ws_proxy_tap_ctx_t, queue);

        if (ctx->r == r) {
            return ctx;
        }
    }

    return NULL;
}


/* n bytes at byte `at` of the ring, wrapping */

static void
ngx_http_ws_proxy_ring_put(ngx_http_ws_proxy_tap_t *tap, uint64_t at,
    const void *src, size_t n)
{
    size_t  pos, first;

    pos = (size_t) (at % NGX_WSP_TAP_RING);
    first = ngx_min(n, NGX_WSP_TAP_RING - pos);

    ngx_memcpy(tap->ring + pos, src, first);

    if (first < n) {
        ngx_memcpy(tap->ring, (const u_char *) src + first, n - first);
    }
}


static void
ngx_http_ws_proxy_ring_get(ngx_http_ws_proxy_tap_t *tap, uint64_t at,
    void *dst, size_t n)
{
    size_t  pos, first;

    pos = (size_t) (at % NGX_WSP_TAP_RING);
    first = ngx_min(n, NGX_WSP_TAP_RING - pos);

    ngx_memcpy(dst, tap->ring + pos, first);

    if (first < n) {
        ngx_memcpy((u_char *) dst + first, tap->ring, n - first);
    }
}
