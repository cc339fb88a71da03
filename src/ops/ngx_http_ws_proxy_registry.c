/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The console's registry and flight recorder.  The registry keeps one
 * entry per running session in the ws_proxy_zone, written at the session's
 * start and end and by the worker's flush timer (never per frame), and
 * kept NGX_WSP_R_KEEP ms after the end, or until a new session needs the
 * memory.  A session that finds the zone full runs all the same: the
 * registry counts it as unlisted.
 *
 * The flight recorder is a ring of the last n frame headers each way, in
 * the worker's memory, written where a frame's fate is known: by the
 * session core as it decides (ngx_wsp_obs_record(), into the ring each
 * direction's ctl->obs points to), by ngx_http_ws_proxy_observe() for
 * Lua's verdicts and injected frames; the flush copies it into the zone
 * (once a second, and at the end) so that any worker can show it.
 *
 * Closing a session by id: the asking worker marks the entry; the worker
 * that holds the session finds the mark at its next tick (every
 * NGX_WSP_M_TICK ms while it has sessions), sends the close frames and
 * marks the entry done.
 */


#include "ngx_http_ws_proxy_console.h"
#include "ngx_http_ws_proxy_dash.h"


#define NGX_WSP_R_BATCH      32          /* closes taken per tick */
#define NGX_WSP_R_DUMP       16          /* frames each way in a dump */


static void ngx_http_ws_proxy_registry_free(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_rentry_t *e);
static void ngx_http_ws_proxy_registry_reap(ngx_http_ws_proxy_zone_t *zone,
    uint64_t now);
static ngx_http_ws_proxy_rentry_t *ngx_http_ws_proxy_registry_alloc(
    ngx_http_ws_proxy_zone_t *zone, size_t ring);
static void ngx_http_ws_proxy_ring_copy(ngx_http_ws_proxy_ring_t *dst,
    ngx_http_ws_proxy_ring_t *src);
static void ngx_http_ws_proxy_addr(struct sockaddr *sa, socklen_t socklen,
    u_char *buf, u_char *len);
static u_char *ngx_http_ws_proxy_dump_dir(u_char *p, u_char *last,
    ngx_http_ws_proxy_ring_t *ring, ngx_uint_t dir);
static int ngx_http_ws_proxy_rentry_cmp(const void *one, const void *two);


static const char  *ngx_wsp_actions[] = {
    "forwarded", "dropped", "rewritten", "injected"
};

/*
 * What the console needs of the relay (proxy:close(), $ws_proxy_end's
 * words), handed down by the module at configuration: ops calls no layer
 * above it
 */
static ngx_http_ws_proxy_close_pt  ngx_wsp_close;
const ngx_str_t                   *ngx_http_ws_proxy_console_end_name;

/* the sort of the list (qsort has no argument for it) */
static ngx_uint_t  ngx_wsp_sort;
static ngx_uint_t  ngx_wsp_desc;

/*
 * The worker's rings, by slot: a session keeps its slot + 1 in 23 bits of
 * what was padding (msess.ring), not a pointer, so that a session without
 * the recorder is no larger.  A free slot holds the next free one + 1,
 * shifted, with bit 0 set.
 */
static ngx_http_ws_proxy_ring_t  **ngx_wsp_rings;
static ngx_uint_t                  ngx_wsp_nrings;      /* slots used */
static ngx_uint_t                  ngx_wsp_rings_cap;   /* and allocated */
static ngx_uint_t                  ngx_wsp_free_ring;   /* slot + 1 */

#define NGX_WSP_RINGS_MAX    ((1 << 23) - 1)

#define ngx_wsp_ring_of(wp)                                                  \
    ((wp)->metrics.ring ? ngx_wsp_rings[(wp)->metrics.ring - 1] : NULL)


void
ngx_http_ws_proxy_console_init(ngx_http_ws_proxy_close_pt close,
    const ngx_str_t *end_name)
{
    ngx_wsp_close = close;
    ngx_http_ws_proxy_console_end_name = end_name;
}


/* the worker exits: the table of rings (the rings are the sessions') */

void
ngx_http_ws_proxy_console_exit(void)
{
    if (ngx_wsp_rings) {
        ngx_free(ngx_wsp_rings);
        ngx_wsp_rings = NULL;
    }

    ngx_wsp_nrings = 0;
    ngx_wsp_rings_cap = 0;
    ngx_wsp_free_ring = 0;
}


/* a new zone's registry */

void
ngx_http_ws_proxy_registry_init(ngx_http_ws_proxy_msh_t *sh)
{
    ngx_http_ws_proxy_registry_t  *reg;

    reg = &sh->reg;

    ngx_rbtree_init(&reg->rbtree, &reg->sentinel, ngx_rbtree_insert_value);
    ngx_queue_init(&reg->live);
    ngx_queue_init(&reg->ended);
    reg->seq = 0;
    reg->epoch = (uint64_t) ngx_time();
    reg->entries = 0;
    reg->unlisted = 0;
    reg->pending = 0;
}


/* the zone of the running cycle, NULL: none (Lua's calls) */

ngx_http_ws_proxy_zone_t *
ngx_http_ws_proxy_console_zone(void)
{
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    wmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_wsp_module);

    if (wmcf == NULL || wmcf->zone == NULL) {
        return NULL;
    }

    return wmcf->zone->data;
}


/* ws_proxy_flight_recorder <n> | off; */

char *
ngx_http_ws_proxy_flight_recorder(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ws_proxy_loc_conf_t  *wlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (wlcf->flight_recorder != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        wlcf->flight_recorder = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n < 1 || n > NGX_WSP_RECORDER_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid ws_proxy_flight_recorder \"%V\": frames "
                           "each way from 1 to %d, or off", &value[1],
                           NGX_WSP_RECORDER_MAX);
        return NGX_CONF_ERROR;
    }

    wlcf->flight_recorder = (ngx_uint_t) n;

    return NGX_CONF_OK;
}


/* the ring's slot is given back with the session's memory */

static void
ngx_http_ws_proxy_ring_free(void *data)
{
    ngx_http_ws_proxy_t  *wp = data;

    ngx_uint_t  slot;

    slot = wp->metrics.ring;

    if (slot == 0 || ngx_wsp_rings == NULL) {
        /* none, or after the worker's exit freed the table */
        return;
    }

    ngx_wsp_rings[slot - 1] = (ngx_http_ws_proxy_ring_t *)
                              ((ngx_wsp_free_ring << 1) | 1);
    ngx_wsp_free_ring = slot;
    wp->metrics.ring = 0;
}


/*
 * The recorder of n frames each way (the new() option; 0: off, whatever
 * the location says): its ring in the session's memory, in a slot
 */

ngx_int_t
ngx_http_ws_proxy_recorder_set(ngx_http_ws_proxy_t *wp, ngx_uint_t n)
{
    ngx_uint_t                  slot, size, cap;
    ngx_pool_cleanup_t         *cln;
    ngx_http_ws_proxy_ring_t   *ring, **rings;

    wp->metrics.norec = (n == 0);

    if (n == 0) {
        return NGX_OK;
    }

    ring = ngx_wsp_ring_of(wp);

    if (ring && ring->n == n) {
        return NGX_OK;
    }

    /* a power of two: the frame path masks, it does not divide */
    for (cap = 1; cap < n; cap <<= 1) { /* void */ }

    ring = ngx_pcalloc(wp->pool, ngx_wsp_ring_size(cap));
    if (ring == NULL) {
        return NGX_ERROR;
    }

    ring->n = (uint32_t) n;
    ring->mask = (uint32_t) (cap - 1);
    ring->dir[0].rec = ring->rec;
    ring->dir[0].mask = cap - 1;
    ring->dir[1].rec = ring->rec + cap;
    ring->dir[1].mask = cap - 1;

    if (wp->metrics.ring) {
        /* a second proxy object of the request: its own size */
        ngx_wsp_rings[wp->metrics.ring - 1] = ring;
        return NGX_OK;
    }

    if (ngx_wsp_free_ring) {
        slot = ngx_wsp_free_ring - 1;
        ngx_wsp_free_ring = (uintptr_t) ngx_wsp_rings[slot] >> 1;

    } else {
        if (ngx_wsp_nrings == NGX_WSP_RINGS_MAX) {
            return NGX_ERROR;
        }

        if (ngx_wsp_nrings == ngx_wsp_rings_cap) {
            /* the table doubles */
            size = ngx_wsp_rings_cap ? 2 * ngx_wsp_rings_cap : 16;

            rings = ngx_alloc(size * sizeof(void *), ngx_cycle->log);
            if (rings == NULL) {
                return NGX_ERROR;
            }

            if (ngx_wsp_rings) {
                ngx_memcpy(rings, ngx_wsp_rings,
                           ngx_wsp_nrings * sizeof(void *));
                ngx_free(ngx_wsp_rings);
            }

            ngx_wsp_rings = rings;
            ngx_wsp_rings_cap = size;
        }

        slot = ngx_wsp_nrings++;
    }

    cln = ngx_pool_cleanup_add(wp->pool, 0);
    if (cln == NULL) {
        ngx_wsp_rings[slot] = (ngx_http_ws_proxy_ring_t *)
                              ((ngx_wsp_free_ring << 1) | 1);
        ngx_wsp_free_ring = slot + 1;
        return NGX_ERROR;
    }

    cln->handler = ngx_http_ws_proxy_ring_free;
    cln->data = wp;

    ngx_wsp_rings[slot] = ring;
    wp->metrics.ring = slot + 1;

    return NGX_OK;
}


/*
 * The pump starts: the location's recorder unless Lua chose; with a
 * ring, both directions are watched
 */

void
ngx_http_ws_proxy_recorder_start(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                     i;
    ngx_wsp_ctl_t                 *ctl;
    ngx_http_ws_proxy_ring_t      *ring;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    if (wp->metrics.ring == 0 && !wp->metrics.norec) {
        wlcf = ngx_http_get_module_loc_conf(wp->request,
                                            ngx_wsp_module);

        if (wlcf->flight_recorder == 0
            || ngx_http_ws_proxy_recorder_set(wp, wlcf->flight_recorder)
               != NGX_OK)
        {
            return;
        }
    }

    if (wp->metrics.ring == 0 || wp->metrics.norec) {
        return;
    }

    ring = ngx_wsp_rings[wp->metrics.ring - 1];

    /* the core writes each direction's records into its ring */

    for (i = 0; i < 2; i++) {
        ctl = ngx_wsp_get_ctl(&wp->dir[i].core);
        if (ctl == NULL) {
            return;
        }

        ctl->obs = &ring->dir[i];
    }

    wp->dir[NGX_WSP_DIR_CLIENT].observe |= NGX_WSP_OBS_RECORD;
    wp->dir[NGX_WSP_DIR_UPSTREAM].observe |= NGX_WSP_OBS_RECORD;
}


/*
 * The observation point of the relay, for what the session core does not
 * see: Lua's verdict on a frame it held, a frame Lua injected towards
 * dst.  The core records the frames it decides on itself
 * (ngx_wsp_obs_record()).  Called only while d->observe is set.
 */

void
ngx_http_ws_proxy_observe(ngx_http_ws_proxy_dir_t *d, ngx_uint_t action,
    ngx_uint_t opcode, ngx_uint_t fin, ngx_uint_t rsv1, uint64_t len,
    const u_char *payload, size_t plen, const u_char *mask)
{
    ngx_http_ws_proxy_frec_t  *rec;
    ngx_http_ws_proxy_rdir_t  *rd;

    if (d->observe & NGX_WSP_OBS_RECORD) {
        rd = d->ctl->obs;
        rec = &rd->rec[rd->written++ & rd->mask];

        rec->len = len;
        rec->t = (uint32_t) ngx_current_msec;
        rec->fin = (u_char) fin;
        rec->rsv = rsv1 ? NGX_WSP_RSV_DEFLATE : 0;
        rec->opcode = (u_char) opcode;
        rec->action = (u_char) action;
    }

    if (d->observe & NGX_WSP_OBS_CALL) {
        /* the taps (ngx_http_ws_proxy_tap.c): payload (plen bytes, masked
         * with mask unless NULL) where the caller has it, else NULL */
        ngx_http_ws_proxy_tap_frame(ngx_wsp_dir_wp(d), d->dir, action,
                                    opcode, fin, rsv1, len, payload, plen,
                                    mask);
    }
}


/*
 * The session core's observe(), while a direction has NGX_WSP_OBS_CALL:
 * the frame in sd->frame went as `action` says.  Nothing sets it yet: the
 * place for a tap.
 */

void
ngx_http_ws_proxy_observe_frame(ngx_wsp_sdir_t *sd, unsigned action)
{
    ngx_http_ws_proxy_tap_core(sd, action);
}


/* "addr:port" into buf, its length in *len */

static void
ngx_http_ws_proxy_addr(struct sockaddr *sa, socklen_t socklen, u_char *buf,
    u_char *len)
{
    *len = sa ? (u_char) ngx_sock_ntop(sa, socklen, buf, NGX_WSP_R_ADDR, 1)
              : 0;
}


/*
 * The session starts (the pump runs, its key is known): its entry, or
 * counted as unlisted when the zone has no room even after the oldest
 * ended entries made way.
 */

void
ngx_http_ws_proxy_registry_start(ngx_http_ws_proxy_t *wp)
{
    size_t                        rsize;
    uint64_t                      now;
    ngx_http_ws_proxy_ring_t     *ring;
    ngx_http_ws_proxy_zone_t     *zone;
    ngx_http_ws_proxy_rentry_t   *e;
    ngx_http_core_loc_conf_t     *clcf;
    ngx_http_ws_proxy_rentry_t    tmp;

    zone = wp->metrics.zone;

    if (zone == NULL || wp->metrics.entry || wp->metrics.unlisted) {
        return;
    }

    /* what is copied in, prepared without the lock */

    clcf = ngx_http_get_module_loc_conf(wp->request, ngx_http_core_module);

    tmp.location_len = (u_char) ngx_min(clcf->name.len, NGX_WSP_R_LOCATION);
    ngx_memcpy(tmp.location, clcf->name.data, tmp.location_len);

    ngx_http_ws_proxy_addr(wp->client->sockaddr, wp->client->socklen,
                           tmp.client, &tmp.client_len);
    ngx_http_ws_proxy_addr(wp->peer.sockaddr, wp->peer.socklen,
                           tmp.upstream, &tmp.upstream_len);

    now = ngx_wsp_unix_ms();
    ring = (wp->metrics.norec) ? NULL : ngx_wsp_ring_of(wp);
    rsize = ring ? ngx_wsp_ring_size(ring->mask + 1) : 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_http_ws_proxy_registry_reap(zone, now);

    e = ngx_http_ws_proxy_registry_alloc(zone, rsize);

    if (e == NULL) {
        zone->sh->reg.unlisted++;
        ngx_shmtx_unlock(&zone->shpool->mutex);
        wp->metrics.unlisted = 1;
        return;
    }

    e->mnode = wp->metrics.node;
    e->start = now - (ngx_current_msec - wp->start_time);
    e->pid = ngx_pid;
    e->close_code[0] = -1;
    e->close_code[1] = -1;
    e->deflate = (wp->dir[0].z || wp->dir[1].z) ? 1 : 0;
    e->hook = wp->opts.hook ? 1 : 0;
    e->recorder = ring ? (uint16_t) ring->n : 0;

    e->location_len = tmp.location_len;
    ngx_memcpy(e->location, tmp.location, tmp.location_len);
    e->client_len = tmp.client_len;
    ngx_memcpy(e->client, tmp.client, tmp.client_len);
    e->upstream_len = tmp.upstream_len;
    ngx_memcpy(e->upstream, tmp.upstream, tmp.upstream_len);

    e->node.key = (ngx_rbtree_key_t) ++zone->sh->reg.seq;
    ngx_rbtree_insert(&zone->sh->reg.rbtree, &e->node);
    ngx_queue_insert_tail(&zone->sh->reg.live, &e->queue);
    zone->sh->reg.entries++;

    wp->metrics.entry = (uint32_t) ((u_char *) e - (u_char *) zone->shpool);

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* a zeroed entry (and its ring's copy), locked; the oldest ended make way */

static ngx_http_ws_proxy_rentry_t *
ngx_http_ws_proxy_registry_alloc(ngx_http_ws_proxy_zone_t *zone,
    size_t rsize)
{
    ngx_queue_t                 *q;
    ngx_http_ws_proxy_rentry_t  *e;
    ngx_http_ws_proxy_ring_t    *ring;

    for ( ;; ) {
        e = ngx_slab_alloc_locked(zone->shpool,
                                  sizeof(ngx_http_ws_proxy_rentry_t));
        if (e) {
            break;
        }

        if (ngx_queue_empty(&zone->sh->reg.ended)) {
            return NULL;
        }

        q = ngx_queue_head(&zone->sh->reg.ended);
        ngx_http_ws_proxy_registry_free(zone,
                      ngx_queue_data(q, ngx_http_ws_proxy_rentry_t, queue));
    }

    ngx_memzero(e, sizeof(ngx_http_ws_proxy_rentry_t));

    if (rsize) {
        /* without room for it, the ring shows only in its own worker */
        ring = ngx_slab_alloc_locked(zone->shpool, rsize);

        if (ring) {
            ngx_memzero(ring, rsize);
            e->ring = ring;
        }
    }

    return e;
}


static void
ngx_http_ws_proxy_registry_free(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_rentry_t *e)
{
    ngx_rbtree_delete(&zone->sh->reg.rbtree, &e->node);
    ngx_queue_remove(&e->queue);

    if (e->ring) {
        ngx_slab_free_locked(zone->shpool, e->ring);
    }

    ngx_slab_free_locked(zone->shpool, e);
    zone->sh->reg.entries--;
}


/* ended entries past their time, locked */

static void
ngx_http_ws_proxy_registry_reap(ngx_http_ws_proxy_zone_t *zone, uint64_t now)
{
    ngx_queue_t                 *q;
    ngx_http_ws_proxy_rentry_t  *e;

    while (!ngx_queue_empty(&zone->sh->reg.ended)) {
        q = ngx_queue_head(&zone->sh->reg.ended);
        e = ngx_queue_data(q, ngx_http_ws_proxy_rentry_t, queue);

        if (e->end + NGX_WSP_R_KEEP > now) {
            break;
        }

        ngx_http_ws_proxy_registry_free(zone, e);
    }
}


/*
 * The worker's ring into the zone's copy (or a request's): each time made
 * the ms before the copy, whose unix ms is `at`
 */

static void
ngx_http_ws_proxy_ring_copy(ngx_http_ws_proxy_ring_t *dst,
    ngx_http_ws_proxy_ring_t *src)
{
    uint32_t    now;
    ngx_uint_t  i;

    now = (uint32_t) ngx_current_msec;

    dst->n = src->n;
    dst->mask = src->mask;
    dst->at = ngx_wsp_unix_ms();
    dst->dir[0].written = src->dir[0].written;
    dst->dir[1].written = src->dir[1].written;

    for (i = 0; i < 2 * (src->mask + 1); i++) {
        dst->rec[i] = src->rec[i];
        dst->rec[i].t = now - src->rec[i].t;
    }
}


/* the flush (locked): the session's counts, and its ring when `ring` */

void
ngx_http_ws_proxy_registry_flush(ngx_http_ws_proxy_t *wp, ngx_uint_t ring)
{
    ngx_uint_t                   i;
    ngx_http_ws_proxy_ring_t    *r;
    ngx_http_ws_proxy_rentry_t  *e;

    e = ngx_wsp_rentry(((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)
                       ->shpool, wp->metrics.entry);
    if (e == NULL) {
        return;
    }

    for (i = 0; i < 2; i++) {
        e->frames[i] = wp->dir[i].frames;
        e->bytes[i] = wp->dir[i].bytes;
    }

    r = ngx_wsp_ring_of(wp);

    if (ring && r && e->ring
        && (e->ring->dir[0].written != r->dir[0].written
            || e->ring->dir[1].written != r->dir[1].written))
    {
        ngx_http_ws_proxy_ring_copy(e->ring, r);
    }
}


/* the session ends (locked): its entry stays a while, as ended */

void
ngx_http_ws_proxy_registry_end(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                   i;
    ngx_http_ws_proxy_zone_t    *zone;
    ngx_http_ws_proxy_rentry_t  *e;

    zone = wp->metrics.zone;

    if (wp->metrics.unlisted) {
        wp->metrics.unlisted = 0;
        zone->sh->reg.unlisted--;
        return;
    }

    e = ngx_wsp_rentry(zone->shpool, wp->metrics.entry);
    if (e == NULL) {
        return;
    }

    ngx_http_ws_proxy_registry_flush(wp, 1);

    e->state = NGX_WSP_R_ENDED;
    e->end = ngx_wsp_unix_ms();
    e->ended_by = wp->ended_by;

    for (i = 0; i < 2; i++) {
        e->close_code[i] = (int32_t) wp->dir[i].close_code;
    }

    if (e->req == NGX_WSP_REQ_CLOSE) {
        /* ended before its worker took the close */
        (void) ngx_atomic_fetch_add(&zone->sh->reg.pending, -1);
        e->req = NGX_WSP_REQ_NONE;
    }

    ngx_queue_remove(&e->queue);
    ngx_queue_insert_tail(&zone->sh->reg.ended, &e->queue);

    ngx_http_ws_proxy_tap_ended(zone, e);

    wp->metrics.entry = 0;
}


/*
 * The worker's tick, while closes are pending somewhere: those of its own
 * sessions are taken under the lock, then sent without it (a close may
 * end its session, and so its entry in `live`), then marked done.
 */

void
ngx_http_ws_proxy_registry_requests(ngx_queue_t *live)
{
    size_t                       len[NGX_WSP_R_BATCH];
    uint64_t                     seq[NGX_WSP_R_BATCH];
    ngx_uint_t                   i, n, code[NGX_WSP_R_BATCH];
    ngx_queue_t                 *q;
    ngx_http_ws_proxy_t         *wp, *wps[NGX_WSP_R_BATCH];
    ngx_http_ws_proxy_zone_t    *zone;
    ngx_http_ws_proxy_msess_t   *m;
    ngx_http_ws_proxy_rentry_t  *e;
    u_char                       reason[NGX_WSP_R_BATCH][NGX_WSP_R_REASON];

    if (ngx_queue_empty(live)) {
        return;
    }

    q = ngx_queue_head(live);
    m = ngx_queue_data(q, ngx_http_ws_proxy_msess_t, queue);
    zone = m->zone;

    if (zone->sh->reg.pending == 0) {
        return;
    }

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(live);
         q != ngx_queue_sentinel(live) && n < NGX_WSP_R_BATCH;
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, ngx_http_ws_proxy_msess_t, queue);

        if (m->zone != zone) {
            continue;
        }

        e = ngx_wsp_rentry(zone->shpool, m->entry);

        if (e == NULL || e->req != NGX_WSP_REQ_CLOSE) {
            continue;
        }

        e->req = NGX_WSP_REQ_TAKEN;
        (void) ngx_atomic_fetch_add(&zone->sh->reg.pending, -1);

        wps[n] = (ngx_http_ws_proxy_t *) ((u_char *) m
                                  - offsetof(ngx_http_ws_proxy_t, metrics));
        seq[n] = e->node.key;
        code[n] = e->req_code;
        len[n] = e->req_len;
        ngx_memcpy(reason[n], e->req_reason, len[n]);
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        wp = wps[i];

        ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                      "ws_proxy: closing session %uL-%uL with %ui, as the "
                      "console asked", zone->sh->reg.epoch, seq[i], code[i]);

        /* the session may end in there: wp is not read after */
        (void) ngx_wsp_close(wp, code[i], reason[i], len[i], code[i],
                             reason[i], len[i]);
    }

    if (n == 0) {
        return;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (i = 0; i < n; i++) {
        e = ngx_http_ws_proxy_registry_find(zone, seq[i]);

        if (e) {
            e->req = NGX_WSP_REQ_DONE;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* "<epoch>-<seq>": the zone's birth and the session's number in it */

ngx_int_t
ngx_http_ws_proxy_parse_id(ngx_http_ws_proxy_zone_t *zone, ngx_str_t *id,
    uint64_t *seq)
{
    u_char     *dash;
    ngx_int_t   epoch, n;

    dash = ngx_strlchr(id->data, id->data + id->len, '-');
    if (dash == NULL) {
        return NGX_DECLINED;
    }

    epoch = ngx_atoi(id->data, dash - id->data);
    n = ngx_atoi(dash + 1, id->data + id->len - dash - 1);

    if (epoch == NGX_ERROR || n == NGX_ERROR || n == 0
        || (uint64_t) epoch != zone->sh->reg.epoch)
    {
        return NGX_DECLINED;
    }

    *seq = (uint64_t) n;

    return NGX_OK;
}


/* an entry by its seq, locked */

ngx_http_ws_proxy_rentry_t *
ngx_http_ws_proxy_registry_find(ngx_http_ws_proxy_zone_t *zone, uint64_t seq)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = zone->sh->reg.rbtree.root;
    sentinel = zone->sh->reg.rbtree.sentinel;

    while (node != sentinel) {
        if (seq == node->key) {
            return (ngx_http_ws_proxy_rentry_t *) node;
        }

        node = (seq < node->key) ? node->left : node->right;
    }

    return NULL;
}


/*
 * The recorder of e (locked) into out (room for NGX_WSP_RECORDER_MAX):
 * read live when this worker holds the session, else the zone's copy.
 * NGX_DECLINED: none.
 */

ngx_int_t
ngx_http_ws_proxy_registry_ring(ngx_http_ws_proxy_zone_t *zone,
    ngx_http_ws_proxy_rentry_t *e, ngx_http_ws_proxy_ring_t *out)
{
    uint32_t                    off;
    ngx_queue_t                *q, *live;
    ngx_http_ws_proxy_msess_t  *m;

    if (e->recorder == 0) {
        return NGX_DECLINED;
    }

    if (e->pid == ngx_pid && e->state == NGX_WSP_R_OPEN) {
        off = (uint32_t) ((u_char *) e - (u_char *) zone->shpool);
        live = ngx_http_ws_proxy_metrics_sessions();

        for (q = ngx_queue_head(live);
             q != ngx_queue_sentinel(live);
             q = ngx_queue_next(q))
        {
            m = ngx_queue_data(q, ngx_http_ws_proxy_msess_t, queue);

            if (m->zone == zone && m->entry == off && m->ring) {
                ngx_http_ws_proxy_ring_copy(out, ngx_wsp_rings[m->ring - 1]);
                return NGX_OK;
            }
        }
    }

    if (e->ring == NULL) {
        return NGX_DECLINED;
    }

    ngx_memcpy(out, e->ring, ngx_wsp_ring_size(e->ring->mask + 1));

    return NGX_OK;
}


/*
 * The sessions that match f, copied out under the lock, sorted and paged
 * without it: out[0 .. n) of total that matched.
 */

ngx_int_t
ngx_http_ws_proxy_registry_list(ngx_http_ws_proxy_zone_t *zone,
    ngx_pool_t *pool, ngx_http_ws_proxy_filter_t *f,
    ngx_http_ws_proxy_rsnap_t **out, ngx_uint_t *n, ngx_uint_t *total,
    ngx_uint_t *unlisted)
{
    uint64_t                     now, age;
    ngx_uint_t                   i, count, k;
    ngx_queue_t                 *q, *queues[2];
    ngx_http_ws_proxy_rsnap_t   *s;
    ngx_http_ws_proxy_rentry_t  *e;
    ngx_http_ws_proxy_mnode_t   *node;

    ngx_shmtx_lock(&zone->shpool->mutex);
    count = zone->sh->reg.entries;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    s = ngx_palloc(pool, (count + 1) * sizeof(ngx_http_ws_proxy_rsnap_t));
    if (s == NULL) {
        return NGX_ERROR;
    }

    now = ngx_wsp_unix_ms();
    k = 0;

    queues[0] = (f->state & 1) ? &zone->sh->reg.live : NULL;
    queues[1] = (f->state & 2) ? &zone->sh->reg.ended : NULL;

    ngx_shmtx_lock(&zone->shpool->mutex);

    /* ended entries go after NGX_WSP_R_KEEP even when no session starts */
    ngx_http_ws_proxy_registry_reap(zone, now);

    for (i = 0; i < 2; i++) {
        if (queues[i] == NULL) {
            continue;
        }

        for (q = ngx_queue_head(queues[i]);
             q != ngx_queue_sentinel(queues[i]) && k < count;
             q = ngx_queue_next(q))
        {
            e = ngx_queue_data(q, ngx_http_ws_proxy_rentry_t, queue);
            node = e->mnode;
            age = (now - e->start) / 1000;

            if ((f->key.len
                 && (f->key.len != node->sn.str.len
                     || ngx_memcmp(f->key.data, node->data, f->key.len)))
                || (f->client.len
                    && (f->client.len > e->client_len
                        || ngx_memcmp(f->client.data, e->client,
                                      f->client.len)))
                || (f->upstream.len
                    && (f->upstream.len > e->upstream_len
                        || ngx_memcmp(f->upstream.data, e->upstream,
                                      f->upstream.len)))
                || (f->min_age >= 0 && age < (uint64_t) f->min_age)
                || (f->max_age >= 0 && age > (uint64_t) f->max_age))
            {
                continue;
            }

            s[k].e = *e;
            s[k].key = node->sn.str;   /* never freed, never changed */
            k++;
        }
    }

    *unlisted = zone->sh->reg.unlisted;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_wsp_sort = f->sort;
    ngx_wsp_desc = f->desc;

    ngx_qsort(s, k, sizeof(ngx_http_ws_proxy_rsnap_t),
              ngx_http_ws_proxy_rentry_cmp);

    *total = k;
    *out = s + ngx_min(f->offset, k);
    *n = ngx_min(f->limit, k - ngx_min(f->offset, k));

    return NGX_OK;
}


static int
ngx_http_ws_proxy_rentry_cmp(const void *one, const void *two)
{
    int                         rc;
    uint64_t                    a, b;
    const ngx_http_ws_proxy_rsnap_t  *x, *y;

    x = one;
    y = two;

    switch (ngx_wsp_sort) {

    case NGX_WSP_SORT_BYTES:
        a = x->e.bytes[0] + x->e.bytes[1];
        b = y->e.bytes[0] + y->e.bytes[1];
        break;

    case NGX_WSP_SORT_FRAMES:
        a = x->e.frames[0] + x->e.frames[1];
        b = y->e.frames[0] + y->e.frames[1];
        break;

    default:
        if (ngx_wsp_sort == NGX_WSP_SORT_KEY) {
            rc = ngx_memn2cmp(x->key.data, y->key.data, x->key.len,
                              y->key.len);

            if (rc) {
                return ngx_wsp_desc ? -rc : rc;
            }

            /* by age within a key */
        }

        /* NGX_WSP_SORT_AGE: the oldest first */
        a = y->e.start;
        b = x->e.start;
        break;
    }

    if (a == b) {
        /* the order of the ids, for stable pages */
        rc = (x->e.node.key < y->e.node.key) ? -1
             : (x->e.node.key > y->e.node.key);
        return rc;
    }

    rc = (a < b) ? -1 : 1;

    return ngx_wsp_desc ? -rc : rc;
}


/*
 * A close asked for by the console: NGX_OK, the holding worker will send
 * it (or a close was already asked); NGX_DECLINED: no such open session.
 */

ngx_int_t
ngx_http_ws_proxy_registry_close(ngx_http_ws_proxy_zone_t *zone, uint64_t seq,
    ngx_uint_t code, u_char *reason, size_t len)
{
    ngx_http_ws_proxy_rentry_t  *e;

    ngx_shmtx_lock(&zone->shpool->mutex);

    e = ngx_http_ws_proxy_registry_find(zone, seq);

    if (e == NULL || e->state != NGX_WSP_R_OPEN) {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return NGX_DECLINED;
    }

    if (e->req == NGX_WSP_REQ_NONE) {
        e->req_code = (uint16_t) code;
        e->req_len = (u_char) ngx_min(len, NGX_WSP_R_REASON);
        ngx_memcpy(e->req_reason, reason, e->req_len);
        e->req = NGX_WSP_REQ_CLOSE;
        (void) ngx_atomic_fetch_add(&zone->sh->reg.pending, 1);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/* NGX_OK: the close went out; NGX_AGAIN: not yet; NGX_DECLINED: gone */

ngx_int_t
ngx_http_ws_proxy_registry_closed(ngx_http_ws_proxy_zone_t *zone,
    uint64_t seq)
{
    ngx_int_t                    rc;
    ngx_http_ws_proxy_rentry_t  *e;

    ngx_shmtx_lock(&zone->shpool->mutex);

    e = ngx_http_ws_proxy_registry_find(zone, seq);

    if (e == NULL) {
        rc = NGX_DECLINED;

    } else if (e->req == NGX_WSP_REQ_DONE) {
        rc = NGX_OK;

    } else if (e->state == NGX_WSP_R_ENDED && e->req == NGX_WSP_REQ_NONE) {
        rc = NGX_DECLINED;

    } else {
        rc = NGX_AGAIN;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/*
 * Item 4 of the console: a session with its recorder on that ended badly
 * (a peer gone without a close: 1006; 1007, 1009, 1011 from either side
 * or the proxy; a reset; a ping timeout; a limit, a violation, a failed
 * hook) writes its last frames each way in one [info] line.
 */

void
ngx_http_ws_proxy_recorder_dump(ngx_http_ws_proxy_t *wp)
{
    u_char                    *p, *last;
    ngx_int_t                  code;
    ngx_uint_t                 i, bad;
    ngx_http_ws_proxy_ring_t  *ring;
    u_char                     line[NGX_MAX_ERROR_STR - 256];

    if (!wp->dir[0].observe || wp->metrics.norec) {
        return;
    }

    ring = ngx_wsp_ring_of(wp);

    if (ring == NULL) {
        return;
    }

    switch (wp->ended_by) {

    case NGX_WSP_END_PING_TIMEOUT:
    case NGX_WSP_END_RESET:
    case NGX_WSP_END_VIOLATION:
    case NGX_WSP_END_LIMIT:
    case NGX_WSP_END_HOOK_ERROR:
        bad = 1;
        break;

    default:
        bad = 0;
    }

    for (i = 0; i < 2; i++) {
        code = wp->dir[i].close_code;

        if (code < 0 || code == 1006 || code == 1007 || code == 1009
            || code == 1011)
        {
            bad = 1;
        }
    }

    if (!bad) {
        return;
    }

    p = line;
    last = line + sizeof(line);

    for (i = 0; i < 2; i++) {
        p = ngx_http_ws_proxy_dump_dir(p, last, ring, i);
    }

    ngx_log_error(NGX_LOG_INFO, wp->log, 0,
                  "ws_proxy: session ended by %V (close from client %i, "
                  "from upstream %i; -1: none), flight recorder:%*s",
                  &ngx_http_ws_proxy_console_end_name[wp->ended_by],
                  (ngx_int_t) wp->dir[0].close_code,
                  (ngx_int_t) wp->dir[1].close_code, (size_t) (p - line), line);
}


/* " client [ms op len flags action, ...]": the last NGX_WSP_R_DUMP at most,
 * oldest first, ms before the end */

static u_char *
ngx_http_ws_proxy_dump_dir(u_char *p, u_char *last,
    ngx_http_ws_proxy_ring_t *ring, ngx_uint_t dir)
{
    uint64_t                   w, k, from;
    ngx_http_ws_proxy_frec_t  *rec;

    static const char  *ops[] = {
        "continuation", "text", "binary", "op3", "op4", "op5", "op6", "op7",
        "close", "ping", "pong", "op11", "op12", "op13", "op14", "op15"
    };

    w = ring->dir[dir].written;
    from = w - ngx_min(w, ngx_min((uint64_t) ring->n, NGX_WSP_R_DUMP));

    p = ngx_slprintf(p, last, " %s (%uL frames) [",
                     dir ? "upstream" : "client", w);

    for (k = from; k < w; k++) {
        rec = ngx_wsp_ring_rec(ring, dir, k);

        p = ngx_slprintf(p, last, "%s-%Mms %s %uD%s%s %s",
                         k == from ? "" : ", ",
                         (ngx_msec_t) (uint32_t) ((uint32_t) ngx_current_msec
                                                  - rec->t),
                         ops[rec->opcode & 0xf], rec->len,
                         rec->fin ? " fin" : "",
                         (rec->rsv & NGX_WSP_RSV_DEFLATE) ? " rsv1" : "",
                         ngx_wsp_actions[rec->action & 3]);
    }

    return ngx_slprintf(p, last, "]");
}
