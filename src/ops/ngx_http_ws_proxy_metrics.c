/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Metrics: the ws_proxy_zone shared memory zone and what the sessions add
 * to it.  A session counts in its own memory (the statistics of its two
 * directions) and adds to the zone at coarse points only: its handshake's
 * outcome, its start, a violation or a limit, a hook error, its end, and
 * the worker's flush timer, once a second while it has sessions.  The
 * frame path takes no lock and runs no code of this file.
 */


#include "ngx_http_ws_proxy_console.h"
#include "ngx_http_ws_proxy_dash.h"


#define NGX_WSP_M_TICK       250         /* ms between the timer's runs */
#define NGX_WSP_M_FLUSH      4           /* ticks between flushes */


static ngx_int_t ngx_http_ws_proxy_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_http_ws_proxy_mnode_t *ngx_http_ws_proxy_metrics_alloc(
    ngx_slab_pool_t *shpool, u_char *key, size_t len, uint32_t hash);
static ngx_http_ws_proxy_mnode_t *ngx_http_ws_proxy_metrics_node(
    ngx_http_ws_proxy_t *wp);
static void ngx_http_ws_proxy_metrics_key(ngx_http_ws_proxy_t *wp,
    ngx_str_t *key);
static void ngx_http_ws_proxy_metrics_add(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_counters_t *c);
static void ngx_http_ws_proxy_metrics_timer(ngx_event_t *ev);


const ngx_msec_t  ngx_http_ws_proxy_buckets[NGX_WSP_M_BUCKETS] = {
    100, 500, 1000, 5000, 10000, 30000, 60000, 300000, 1800000, 3600000,
    14400000
};

const char  *ngx_http_ws_proxy_bucket_names[NGX_WSP_M_BUCKETS] = {
    "0.1", "0.5", "1", "5", "10", "30", "60", "300", "1800", "3600", "14400"
};


/* the worker's running sessions that count into a zone, and its timer */

static ngx_queue_t  ngx_http_ws_proxy_metrics_live;
static ngx_event_t  ngx_http_ws_proxy_metrics_flush;
static ngx_uint_t   ngx_http_ws_proxy_metrics_ticks;


/* ws_proxy_zone <name> <size>; */

char *
ngx_http_ws_proxy_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ws_proxy_main_conf_t  *wmcf = conf;

    ssize_t                    size;
    ngx_str_t                 *value;
    ngx_shm_zone_t            *shm_zone;
    ngx_http_ws_proxy_zone_t  *zone;

    if (wmcf->zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid zone name \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    size = ngx_parse_size(&value[2]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid zone size \"%V\"",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: at least %uz",
                           &value[1], 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_ws_proxy_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    zone->name = value[1];

    shm_zone = ngx_shared_memory_add(cf, &value[1], size,
                                     &ngx_wsp_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate zone \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_ws_proxy_metrics_init_zone;
    shm_zone->data = zone;

    wmcf->zone = shm_zone;

    return NGX_CONF_OK;
}


/*
 * ws_proxy_status [control];  control: the console may close sessions
 * (and tap them) from this location
 */

char *
ngx_http_ws_proxy_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_ws_proxy_loc_conf_t  *wlcf = conf;

    ngx_str_t                      *value;
    ngx_http_core_loc_conf_t       *clcf;
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    if (clcf->handler) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2) {
        if (value[1].len != 7
            || ngx_strncmp(value[1].data, "control", 7) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": \"control\" "
                               "or none", &value[1]);
            return NGX_CONF_ERROR;
        }

        wlcf->status_control = 1;
    }

    clcf->handler = ngx_http_ws_proxy_status_handler;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_wsp_module);
    wmcf->status = 1;

    return NGX_CONF_OK;
}


/*
 * The zone survives a reload with the same name and size (nginx hands the
 * old one over, with its counters); a new one gets its tree and the
 * "other" key, which is never refused.
 */

static ngx_int_t
ngx_http_ws_proxy_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ws_proxy_zone_t  *ozone = data;

    size_t                     len;
    ngx_slab_pool_t           *shpool;
    ngx_http_ws_proxy_msh_t   *sh;
    ngx_http_ws_proxy_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone) {
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;
    zone->shpool = shpool;

    if (shm_zone->shm.exists) {
        zone->sh = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_alloc(shpool, sizeof(ngx_http_ws_proxy_msh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    zone->sh = sh;
    shpool->data = sh;

    ngx_rbtree_init(&sh->rbtree, &sh->sentinel, ngx_str_rbtree_insert_value);
    ngx_queue_init(&sh->queue);
    ngx_http_ws_proxy_registry_init(sh);
    sh->keys = 0;
    sh->full_keys = 0;

    ngx_shmtx_lock(&shpool->mutex);
    sh->other = ngx_http_ws_proxy_metrics_alloc(shpool, (u_char *) "other",
                                                5, ngx_crc32_short(
                                                    (u_char *) "other", 5));
    ngx_shmtx_unlock(&shpool->mutex);

    if (sh->other == NULL) {
        return NGX_ERROR;
    }

    len = sizeof(" in ws_proxy_zone \"\"") + shm_zone->shm.name.len;

    shpool->log_ctx = ngx_slab_alloc(shpool, len);
    if (shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shpool->log_ctx, " in ws_proxy_zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is expected: new keys then count as "other" */
    shpool->log_nomem = 0;

    return NGX_OK;
}


/* a new key, locked; NULL when the zone is full */

static ngx_http_ws_proxy_mnode_t *
ngx_http_ws_proxy_metrics_alloc(ngx_slab_pool_t *shpool, u_char *key,
    size_t len, uint32_t hash)
{
    ngx_http_ws_proxy_msh_t    *sh;
    ngx_http_ws_proxy_mnode_t  *node;

    sh = shpool->data;

    node = ngx_slab_alloc_locked(shpool,
                                 offsetof(ngx_http_ws_proxy_mnode_t, data)
                                 + len);
    if (node == NULL) {
        return NULL;
    }

    ngx_memzero(node, offsetof(ngx_http_ws_proxy_mnode_t, data));
    ngx_memcpy(node->data, key, len);

    node->sn.node.key = hash;
    node->sn.str.len = len;
    node->sn.str.data = node->data;

    ngx_rbtree_insert(&sh->rbtree, &node->sn.node);
    ngx_queue_insert_tail(&sh->queue, &node->queue);
    sh->keys++;

    return node;
}


/* the session's key in the zone, found or added the first time it counts */

static ngx_http_ws_proxy_mnode_t *
ngx_http_ws_proxy_metrics_node(ngx_http_ws_proxy_t *wp)
{
    uint32_t                        hash;
    ngx_str_t                       key;
    ngx_uint_t                      full;
    ngx_str_node_t                 *sn;
    ngx_http_ws_proxy_zone_t       *zone;
    ngx_http_ws_proxy_mnode_t      *node;
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    if (wp->metrics.node || wp->metrics.none) {
        return wp->metrics.node;
    }

    wmcf = ngx_http_get_module_main_conf(wp->request,
                                         ngx_wsp_module);

    if (wmcf->zone == NULL) {
        wp->metrics.none = 1;
        return NULL;
    }

    zone = wmcf->zone->data;

    ngx_http_ws_proxy_metrics_key(wp, &key);

    hash = ngx_crc32_short(key.data, key.len);

    full = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&zone->sh->rbtree, &key, hash);

    if (sn) {
        node = (ngx_http_ws_proxy_mnode_t *) sn;

    } else {
        node = ngx_http_ws_proxy_metrics_alloc(zone->shpool, key.data,
                                               key.len, hash);
        if (node == NULL) {
            node = zone->sh->other;

            /* said once per set of keys (by any worker), not per session */
            if (zone->sh->full_keys != zone->sh->keys) {
                zone->sh->full_keys = zone->sh->keys;
                full = zone->sh->keys;
            }
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (full) {
        /* the key is printable ASCII (ngx_http_ws_proxy_metrics_key()) */
        ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                      "ws_proxy: ws_proxy_zone \"%V\" is full with %ui "
                      "keys: key \"%V\" and any other new one count under "
                      "\"other\"", &zone->name, full, &key);
    }

    wp->metrics.node = node;
    wp->metrics.zone = zone;

    return node;
}


/*
 * ws_proxy_zone_key's value, or the location's name; at most
 * NGX_WSP_M_KEY_MAX bytes, and bytes outside printable ASCII become "_",
 * so that a key is a valid label value and JSON string once escaped.
 */

static void
ngx_http_ws_proxy_metrics_key(ngx_http_ws_proxy_t *wp, ngx_str_t *key)
{
    u_char                        *p;
    size_t                         i;
    ngx_str_t                      value;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(wp->request,
                                        ngx_wsp_module);

    if (wlcf->zone_key == NULL) {
        clcf = ngx_http_get_module_loc_conf(wp->request,
                                            ngx_http_core_module);
        value = clcf->name;

    } else if (ngx_http_complex_value(wp->request, wlcf->zone_key, &value)
               != NGX_OK)
    {
        ngx_str_set(&value, "other");
    }

    key->len = ngx_min(value.len, NGX_WSP_M_KEY_MAX);
    key->data = ngx_pnalloc(wp->pool, key->len);

    if (key->data == NULL) {
        ngx_str_set(key, "other");
        return;
    }

    p = key->data;

    for (i = 0; i < key->len; i++) {
        p[i] = (value.data[i] < 0x20 || value.data[i] > 0x7e) ? '_'
                                                             : value.data[i];
    }
}


/*
 * A handshake's outcome, once per session: the first failure, or the
 * start of the pump (ngx_http_ws_proxy_metrics_start()).
 */

void
ngx_http_ws_proxy_metrics_handshake(ngx_http_ws_proxy_t *wp,
    ngx_uint_t outcome)
{
    ngx_uint_t                     i, status;
    ngx_slab_pool_t               *shpool;
    ngx_http_ws_proxy_counters_t  *c;
    ngx_http_ws_proxy_mnode_t     *node;

    if (wp->metrics.handshake) {
        return;
    }

    node = ngx_http_ws_proxy_metrics_node(wp);
    if (node == NULL) {
        return;
    }

    wp->metrics.handshake = 1;

    c = &node->c;
    status = wp->upstream_status;
    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    c->handshakes[outcome]++;

    if (outcome == NGX_WSP_HSO_REFUSED) {
        for (i = 0; i < NGX_WSP_M_STATUSES; i++) {
            if (c->status[i] == status || c->status[i] == 0) {
                break;
            }
        }

        if (i < NGX_WSP_M_STATUSES && status > 0 && status < 1000) {
            c->status[i] = (uint16_t) status;
            c->refused[i]++;

        } else {
            c->refused_other++;
        }
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * An attempt to reach the upstream failed the way `outcome` says: noted,
 * not counted, as a group may go on to its next server.
 */

void
ngx_http_ws_proxy_metrics_failed(ngx_http_ws_proxy_t *wp, ngx_uint_t outcome)
{
    wp->metrics.failed = outcome + 1;
}


/*
 * The connect failed for good (rc NGX_DECLINED: a refusal, to relay): the
 * last attempt's failure is the session's outcome.
 */

void
ngx_http_ws_proxy_metrics_connect_end(ngx_http_ws_proxy_t *wp, ngx_int_t rc)
{
    ngx_uint_t  outcome;

    if (rc == NGX_DECLINED) {
        outcome = NGX_WSP_HSO_REFUSED;

    } else if (wp->metrics.failed) {
        outcome = wp->metrics.failed - 1;

    } else {
        outcome = wp->response.len ? NGX_WSP_HSO_INVALID
                                   : NGX_WSP_HSO_UNREACHABLE;
    }

    ngx_http_ws_proxy_metrics_handshake(wp, outcome);
}


/* the pump starts: the handshakes succeeded, the session is open */

void
ngx_http_ws_proxy_metrics_start(ngx_http_ws_proxy_t *wp)
{
    ngx_slab_pool_t            *shpool;
    ngx_http_ws_proxy_mnode_t  *node;

    /* the flight recorder needs no zone */
    ngx_http_ws_proxy_recorder_start(wp);

    node = ngx_http_ws_proxy_metrics_node(wp);
    if (node == NULL || wp->metrics.running) {
        return;
    }

    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    ngx_shmtx_lock(&shpool->mutex);

    if (!wp->metrics.handshake) {
        node->c.handshakes[NGX_WSP_HSO_ACCEPTED]++;
    }

    node->c.sessions++;
    node->c.sessions_open++;

    ngx_shmtx_unlock(&shpool->mutex);

    wp->metrics.handshake = 1;
    wp->metrics.running = 1;

    ngx_http_ws_proxy_registry_start(wp);

    if (ngx_http_ws_proxy_metrics_live.next == NULL) {
        ngx_queue_init(&ngx_http_ws_proxy_metrics_live);
    }

    ngx_queue_insert_tail(&ngx_http_ws_proxy_metrics_live,
                          &wp->metrics.queue);

    if (!ngx_http_ws_proxy_metrics_flush.timer_set) {
        ngx_http_ws_proxy_metrics_flush.handler =
                                             ngx_http_ws_proxy_metrics_timer;
        ngx_http_ws_proxy_metrics_flush.log = ngx_cycle->log;
        ngx_http_ws_proxy_metrics_flush.data = NULL;

        /* it must not hold a worker that is shutting down */
        ngx_http_ws_proxy_metrics_flush.cancelable = 1;

        ngx_add_timer(&ngx_http_ws_proxy_metrics_flush, NGX_WSP_M_TICK);
    }
}


/* the worker's running sessions that count into a zone */

ngx_queue_t *
ngx_http_ws_proxy_metrics_sessions(void)
{
    if (ngx_http_ws_proxy_metrics_live.next == NULL) {
        ngx_queue_init(&ngx_http_ws_proxy_metrics_live);
    }

    return &ngx_http_ws_proxy_metrics_live;
}


/* what the session counted since it last added, locked */

static void
ngx_http_ws_proxy_metrics_add(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_counters_t *c)
{
    ngx_uint_t                  i;
    ngx_http_ws_proxy_dir_t    *d;
    ngx_http_ws_proxy_msess_t  *m;

    m = &wp->metrics;

    for (i = 0; i < 2; i++) {
        d = &wp->dir[i];

        c->frames[i] += d->frames - m->frames[i];
        c->bytes[i] += d->bytes - m->bytes[i];
        c->messages[i] += d->messages - m->messages[i];

        m->frames[i] = d->frames;
        m->bytes[i] = d->bytes;
        m->messages[i] = d->messages;

        /* permessage-deflate */
        c->inflated[i] += d->zplain - m->zplain[i];
        c->deflated[i] += d->zbytes - m->zbytes[i];
        m->zplain[i] = d->zplain;
        m->zbytes[i] = d->zbytes;
    }
}


/* the session ends: the rest of its counts, its closes and its duration */

void
ngx_http_ws_proxy_metrics_end(ngx_http_ws_proxy_t *wp)
{
    ngx_int_t                      code;
    ngx_uint_t                     i, k;
    ngx_msec_t                     ms;
    ngx_slab_pool_t               *shpool;
    ngx_http_ws_proxy_counters_t  *c;

    ngx_http_ws_proxy_recorder_dump(wp);

    if (!wp->metrics.running) {
        return;
    }

    wp->metrics.running = 0;
    ngx_queue_remove(&wp->metrics.queue);

    c = &((ngx_http_ws_proxy_mnode_t *) wp->metrics.node)->c;
    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    ms = wp->end_time - wp->start_time;

    for (k = 0; k < NGX_WSP_M_BUCKETS; k++) {
        if (ms <= ngx_http_ws_proxy_buckets[k]) {
            break;
        }
    }

    ngx_shmtx_lock(&shpool->mutex);

    ngx_http_ws_proxy_metrics_add(wp, c);

    for (i = 0; i < 2; i++) {
        /* no close frame is what 1006 stands for (RFC 6455 7.1.5) */
        code = wp->dir[i].close_code < 0 ? 1006 : wp->dir[i].close_code;

        c->closes[i][(code >= 1000 && code <= 1015)
                     ? (ngx_uint_t) code - 1000 : NGX_WSP_M_CODE_OTHER]++;
    }

    c->closed_by[wp->closed_by & 3]++;

    if (k < NGX_WSP_M_BUCKETS) {
        c->duration[k]++;
    }

    c->duration_count++;
    c->duration_ms += ms;

    c->sessions_open--;

    ngx_http_ws_proxy_registry_end(wp);

    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * A protocol violation or a limit of a running session (pump.c calls it
 * for both): which limit is told by the session's state, as the pump
 * checks them in this order.
 */

void
ngx_http_ws_proxy_metrics_violation(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, ngx_uint_t limit)
{
    ngx_uint_t                     k;
    ngx_slab_pool_t               *shpool;
    ngx_http_ws_proxy_t           *wp;
    ngx_http_ws_proxy_counters_t  *c;

    wp = ngx_wsp_dir_wp(d);

    if (!wp->metrics.running) {
        return;
    }

    c = &((ngx_http_ws_proxy_mnode_t *) wp->metrics.node)->c;
    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    if (!limit) {
        k = (code == NGX_WSP_CLOSE_INVALID_DATA) ? NGX_WSP_M_UTF8
                                                 : NGX_WSP_M_PROTOCOL;

    } else if (code == NGX_WSP_CLOSE_POLICY) {
        k = NGX_WSP_M_RATE;

    } else if (wp->opts.max_frame_size[d->dir]
               && d->msg_size > wp->opts.max_frame_size[d->dir])
    {
        k = NGX_WSP_M_FRAME_SIZE;

    } else if (wp->opts.max_fragments[d->dir]
               && d->msg_frames > wp->opts.max_fragments[d->dir])
    {
        k = NGX_WSP_M_FRAGMENTS;

    } else {
        k = NGX_WSP_M_BUFFER;
    }

    ngx_shmtx_lock(&shpool->mutex);

    if (limit) {
        c->limits[d->dir][k]++;

    } else {
        c->violations[d->dir][k]++;
    }

    ngx_shmtx_unlock(&shpool->mutex);
}


void
ngx_http_ws_proxy_metrics_hook_error(ngx_http_ws_proxy_t *wp)
{
    ngx_slab_pool_t  *shpool;

    if (!wp->metrics.running) {
        return;
    }

    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    ((ngx_http_ws_proxy_mnode_t *) wp->metrics.node)->c.hook_errors++;
    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * A session refused by a cap of ws_proxy_limit_sessions: counted under the
 * session's key (ws_proxy_zone_key), once per refusal.
 */

void
ngx_http_ws_proxy_metrics_limited(ngx_http_ws_proxy_t *wp)
{
    ngx_slab_pool_t            *shpool;
    ngx_http_ws_proxy_mnode_t  *node;

    node = ngx_http_ws_proxy_metrics_node(wp);
    if (node == NULL) {
        return;
    }

    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    node->c.sessions_refused++;
    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * A message a rate held (action=delay), once it goes: counted with the
 * time it waited under the session's key, one lock per held message (a
 * rate's worth a second at most).
 */

void
ngx_http_ws_proxy_metrics_delayed(ngx_http_ws_proxy_t *wp, ngx_uint_t dir,
    ngx_msec_t ms)
{
    ngx_slab_pool_t               *shpool;
    ngx_http_ws_proxy_counters_t  *c;

    if (!wp->metrics.running) {
        return;
    }

    c = &((ngx_http_ws_proxy_mnode_t *) wp->metrics.node)->c;
    shpool = ((ngx_http_ws_proxy_zone_t *) wp->metrics.zone)->shpool;

    ngx_shmtx_lock(&shpool->mutex);
    c->delayed[dir]++;
    c->delay_ms[dir] += ms;
    ngx_shmtx_unlock(&shpool->mutex);
}


/*
 * Every NGX_WSP_M_TICK ms while the worker has running sessions: the
 * console's close requests, when any is pending; and once a second
 * (NGX_WSP_M_FLUSH ticks) what the sessions counted since, so that long
 * sessions show live, with their registry entries.  One lock per zone and
 * flush (the worker's sessions share its cycle's zone).
 */

static void
ngx_http_ws_proxy_metrics_timer(ngx_event_t *ev)
{
    ngx_queue_t                *q;
    ngx_slab_pool_t            *shpool, *locked;
    ngx_http_ws_proxy_t        *wp;
    ngx_http_ws_proxy_msess_t  *m;

    if (!ev->timedout) {
        /* cancelled: the worker exits, its sessions added at their end */
        return;
    }

    ev->timedout = 0;
    locked = NULL;

    ngx_http_ws_proxy_registry_requests(&ngx_http_ws_proxy_metrics_live);
    ngx_http_ws_proxy_tap_tick(&ngx_http_ws_proxy_metrics_live);

    if (++ngx_http_ws_proxy_metrics_ticks % NGX_WSP_M_FLUSH) {
        goto next;
    }

    for (q = ngx_queue_head(&ngx_http_ws_proxy_metrics_live);
         q != ngx_queue_sentinel(&ngx_http_ws_proxy_metrics_live);
         q = ngx_queue_next(q))
    {
        m = ngx_queue_data(q, ngx_http_ws_proxy_msess_t, queue);
        wp = (ngx_http_ws_proxy_t *) ((u_char *) m
                                      - offsetof(ngx_http_ws_proxy_t,
                                                 metrics));

        shpool = ((ngx_http_ws_proxy_zone_t *) m->zone)->shpool;

        if (shpool != locked) {
            if (locked) {
                ngx_shmtx_unlock(&locked->mutex);
            }

            ngx_shmtx_lock(&shpool->mutex);
            locked = shpool;
        }

        ngx_http_ws_proxy_metrics_add(wp,
                                &((ngx_http_ws_proxy_mnode_t *) m->node)->c);
        ngx_http_ws_proxy_registry_flush(wp, 1);
    }

    if (locked) {
        ngx_shmtx_unlock(&locked->mutex);
    }

next:

    if (!ngx_queue_empty(&ngx_http_ws_proxy_metrics_live)) {
        ngx_add_timer(ev, NGX_WSP_M_TICK);
    }
}


/*
 * postconfiguration: ws_proxy_status has nothing to show without a zone,
 * and ws_proxy_zone_key nothing to count under
 */

ngx_int_t
ngx_http_ws_proxy_metrics_init_conf(ngx_conf_t *cf)
{
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    wmcf = ngx_http_conf_get_module_main_conf(cf, ngx_wsp_module);

    if (wmcf->status && wmcf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_proxy_status\" needs a \"ws_proxy_zone\" "
                           "in the http block");
        return NGX_ERROR;
    }

    if (wmcf->zone_key && wmcf->zone == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_proxy_zone_key\" needs a \"ws_proxy_zone\" "
                           "in the http block");
        return NGX_ERROR;
    }

    return NGX_OK;
}
