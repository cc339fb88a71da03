/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Session caps per key, as nginx's limit_conn counts connections:
 * ws_proxy_limit_session_zone keeps, in a shared memory zone, the number of
 * open sessions of each value of a key; ws_proxy_limit_sessions refuses the
 * session beyond n at the handshake, before the upstream is dialled.  A
 * session takes its slot when it is admitted and gives it back when it ends
 * (ngx_http_ws_proxy_finish()) or, whatever happens first, when its request
 * goes (a pool cleanup): exactly once.  Nothing runs per frame.  See
 * docs/api.md, "Session caps".
 *
 * Message rates, as limit_req counts requests: the same zones and nodes
 * (ws_proxy_limit_message_zone adds rate=), a node being a key's leaky
 * bucket (its last message and excess, one word) that the sessions
 * limited by it hold as they hold a slot (its `sessions` counts them, it
 * goes with the last one), so that a message costs one compare-and-swap
 * of the word and no lookup.  ws_proxy_limit_messages is a location's;
 * the relay asks at each message (ngx_http_ws_proxy_rate.c).
 * See docs/api.md, "Message rates".
 */


#include "ngx_http_ws_proxy_metrics.h"


/* a key's bytes that count; a longer key counts by its first ones */
#define NGX_WSP_LIMIT_KEY_MAX    1024


/* the open sessions of one value of the key */
typedef struct {
    ngx_str_node_t              sn;          /* sn.str: data below */
    ngx_uint_t                  sessions;
    volatile uint64_t           bucket;      /* a message rate's: as
                                                limit_req's node keeps it,
                                                ngx_wsp_bucket() */
    u_char                      data[1];
} ngx_http_ws_proxy_lnode_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
} ngx_http_ws_proxy_lsh_t;


/* ws_proxy_limit_session_zone: shm_zone->data */
typedef struct {
    ngx_http_ws_proxy_lsh_t    *sh;
    ngx_slab_pool_t            *shpool;
    ngx_http_complex_value_t    key;
    ngx_uint_t                  rate;        /* per 1000 s; 0: sessions */
} ngx_http_ws_proxy_lzone_t;


/* ws_proxy_limit_sessions: one cap of a location */
typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_uint_t                  n;
} ngx_http_ws_proxy_limit_t;


/* a slot a session holds: the data of its pool cleanup */
typedef struct {
    ngx_shm_zone_t             *shm_zone;
    ngx_http_ws_proxy_lnode_t  *node;        /* NULL: given back */
} ngx_http_ws_proxy_lslot_t;


static ngx_int_t ngx_http_ws_proxy_limit_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_ws_proxy_limit_take(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_uint_t n, ngx_str_t *key);
static ngx_int_t ngx_http_ws_proxy_limit_refused(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_uint_t n, ngx_str_t *key,
    ngx_uint_t full);
static ngx_int_t ngx_http_ws_proxy_limit_key(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_str_t *key, ngx_str_t *value);
static ngx_int_t ngx_http_ws_proxy_limit_hold(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_str_t *value, ngx_uint_t n,
    ngx_http_ws_proxy_lnode_t **node);
static ngx_http_ws_proxy_lnode_t *ngx_http_ws_proxy_limit_node(
    ngx_http_ws_proxy_lzone_t *ctx, ngx_str_t *value, uint32_t hash);
static ngx_shm_zone_t *ngx_http_ws_proxy_limit_find(ngx_str_t *zone);
static ngx_int_t ngx_http_ws_proxy_limit_rate(ngx_str_t *value,
    ngx_uint_t *rate);
static ngx_int_t ngx_http_ws_proxy_limit_merge_messages(ngx_conf_t *cf,
    ngx_http_ws_proxy_limit_conf_t *conf);
static void ngx_http_ws_proxy_limit_cleanup(void *data);
static ngx_int_t ngx_http_ws_proxy_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


/*
 * The zones' own tag: a name taken by ws_proxy_zone (or another module's
 * zone) is refused by nginx ("already declared for a different use").
 */
static u_char  ngx_http_ws_proxy_limit_tag;


static ngx_str_t  ngx_http_ws_proxy_limit_status_name[] = {
    ngx_null_string,
    ngx_string("PASSED"),
    ngx_string("REJECTED")
};


static ngx_str_t  ngx_http_ws_proxy_limit_var =
    ngx_string("ws_proxy_limit_sessions_status");


/*
 * ws_proxy_limit_session_zone <key> zone=<name>:<size>;
 * ws_proxy_limit_message_zone <key> zone=<name>:<size> rate=<n>r/s;
 */

char *
ngx_http_ws_proxy_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                            *p;
    ssize_t                            size;
    ngx_uint_t                         rate;
    ngx_str_t                         *value, name, s;
    ngx_shm_zone_t                    *shm_zone;
    ngx_http_ws_proxy_lzone_t         *ctx;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (ngx_strncmp(value[2].data, "zone=", 5) != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\": \"%V\" needs "
                           "zone=<name>:<size>", &value[2], &cmd->name);
        return NGX_CONF_ERROR;
    }

    name.data = value[2].data + 5;
    p = (u_char *) ngx_strchr(name.data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\": zone=<name>:<size>",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    name.len = p - name.data;
    s.data = p + 1;
    s.len = value[2].data + value[2].len - s.data;

    size = ngx_parse_size(&s);

    if (name.len == 0 || size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    /* ws_proxy_limit_message_zone: its rate (the session zone has none) */

    rate = 0;

    if (cf->args->nelts == 4
        && (ngx_strncmp(value[3].data, "rate=", 5) != 0
            || ngx_http_ws_proxy_limit_rate(&value[3], &rate) != NGX_OK))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\": rate=<n>r/s or r/m",
                           &value[3]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: at least %uz",
                           &name, 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_ws_proxy_lzone_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    ctx->rate = rate;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &ctx->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_ws_proxy_limit_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate zone \"%V\"",
                           &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_ws_proxy_limit_init_zone;
    shm_zone->data = ctx;

    return NGX_CONF_OK;
}


/* ws_proxy_limit_sessions zone=<name> <n>; (a bare <name> too) */

char *
ngx_http_ws_proxy_limit_sessions(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ws_proxy_loc_conf_t  *wlcf = conf;

    ngx_int_t                        n;
    ngx_str_t                       *value, name;
    ngx_uint_t                       i;
    ngx_shm_zone_t                  *shm_zone;
    ngx_http_ws_proxy_limit_t       *limit;
    ngx_http_ws_proxy_limit_conf_t  *lcf;

    lcf = &wlcf->limit;
    value = cf->args->elts;

    name = value[1];

    if (name.len > 5 && ngx_strncmp(name.data, "zone=", 5) == 0) {
        name.data += 5;
        name.len -= 5;
    }

    n = ngx_atoi(value[2].data, value[2].len);

    if (n <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid number of sessions \"%V\": at least 1",
                           &value[2]);
        return NGX_CONF_ERROR;
    }

    /* the zone may be defined further on: its size is checked then */

    shm_zone = ngx_shared_memory_add(cf, &name, 0,
                                     &ngx_http_ws_proxy_limit_tag);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (lcf->limits == NGX_CONF_UNSET_PTR) {
        lcf->limits = ngx_array_create(cf->pool, 1,
                                       sizeof(ngx_http_ws_proxy_limit_t));
        if (lcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limit = lcf->limits->elts;

    for (i = 0; i < lcf->limits->nelts; i++) {
        if (limit[i].shm_zone == shm_zone) {
            return "is duplicate";
        }
    }

    limit = ngx_array_push(lcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    limit->shm_zone = shm_zone;
    limit->n = n;

    return NGX_CONF_OK;
}


void
ngx_http_ws_proxy_limit_create(ngx_http_ws_proxy_limit_conf_t *conf)
{
    conf->limits = NGX_CONF_UNSET_PTR;
    conf->messages = NGX_CONF_UNSET_PTR;
    conf->status = NGX_CONF_UNSET_UINT;
    conf->log_level = NGX_CONF_UNSET_UINT;
}


/*
 * A level without ws_proxy_limit_sessions takes the outer level's, as
 * limit_conn does.  The whole http block is read by now: a zone named but
 * never defined is refused here, with its name.
 */

char *
ngx_http_ws_proxy_limit_merge(ngx_conf_t *cf,
    ngx_http_ws_proxy_limit_conf_t *prev, ngx_http_ws_proxy_limit_conf_t *conf)
{
    ngx_uint_t                  i;
    ngx_http_ws_proxy_limit_t  *limit;
    ngx_http_ws_proxy_lzone_t  *ctx;

    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);
    ngx_conf_merge_ptr_value(conf->messages, prev->messages, NULL);

    if (ngx_http_ws_proxy_limit_merge_messages(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level,
                              NGX_LOG_WARN);

    if (conf->limits == NULL) {
        return NGX_CONF_OK;
    }

    limit = conf->limits->elts;

    for (i = 0; i < conf->limits->nelts; i++) {
        ctx = limit[i].shm_zone->data;

        if (ctx == NULL || ctx->rate) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown ws_proxy_limit_session_zone \"%V\" "
                               "in \"ws_proxy_limit_sessions\"",
                               &limit[i].shm_zone->shm.name);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * The zone survives a reload with the same name and size, and the counts
 * of the sessions that old workers still hold with it, as long as its key
 * is the same.
 */

static ngx_int_t
ngx_http_ws_proxy_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_ws_proxy_lzone_t  *octx = data;

    size_t                      len;
    ngx_http_ws_proxy_lzone_t  *ctx;

    ctx = shm_zone->data;

    if (octx) {
        if (ctx->key.value.len != octx->key.value.len
            || ngx_strncmp(ctx->key.value.data, octx->key.value.data,
                           ctx->key.value.len)
               != 0)
        {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "ws_proxy_limit_session_zone \"%V\" uses the "
                          "\"%V\" key while previously it used the \"%V\" "
                          "key", &shm_zone->shm.name, &ctx->key.value,
                          &octx->key.value);
            return NGX_ERROR;
        }

        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;

        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_ws_proxy_lsh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_str_rbtree_insert_value);

    len = sizeof(" in ws_proxy_limit_session_zone \"\"")
          + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in ws_proxy_limit_session_zone "
                "\"%V\"%Z", &shm_zone->shm.name);

    /* a full zone refuses the session with a line of ours */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


/*
 * ws_proxy_pass, and Lua without the limit_sessions option: the caps of
 * the location.  NGX_OK: admitted (or nothing to cap), NGX_DECLINED:
 * refused (logged, counted, wp->err says why), NGX_ERROR.
 */

ngx_int_t
ngx_http_ws_proxy_limit_conf(ngx_http_ws_proxy_t *wp)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_http_ws_proxy_limit_t     *limit;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_wsp_module);

    if (wlcf->limit.limits == NULL) {
        return NGX_OK;
    }

    limit = wlcf->limit.limits->elts;

    for (i = 0; i < wlcf->limit.limits->nelts; i++) {
        rc = ngx_http_ws_proxy_limit_take(wp, limit[i].shm_zone, limit[i].n,
                                          NULL);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/*
 * Lua's limit_sessions option: a zone by its name, a cap, and a key of
 * Lua's (NULL: the zone's own).  Called once per cap of the option.
 */

ngx_int_t
ngx_http_ws_proxy_limit_named(ngx_http_ws_proxy_t *wp, ngx_str_t *zone,
    ngx_uint_t n, ngx_str_t *key)
{
    ngx_shm_zone_t  *shm_zone;

    shm_zone = ngx_http_ws_proxy_limit_find(zone);

    if (shm_zone && ((ngx_http_ws_proxy_lzone_t *) shm_zone->data)->rate == 0)
    {
        return ngx_http_ws_proxy_limit_take(wp, shm_zone, n, key);
    }

    ngx_http_ws_proxy_set_error(wp, "unknown ws_proxy_limit_session_zone "
                                "\"%*s\"", zone->len, zone->data);

    return NGX_ERROR;
}


/* a zone of ours by its name (Lua's options name them); NULL: none */

static ngx_shm_zone_t *
ngx_http_ws_proxy_limit_find(ngx_str_t *zone)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *shm_zone;

    part = &((ngx_cycle_t *) ngx_cycle)->shared_memory.part;
    shm_zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            shm_zone = part->elts;
            i = 0;
        }

        if (shm_zone[i].tag == &ngx_http_ws_proxy_limit_tag
            && shm_zone[i].data
            && shm_zone[i].shm.name.len == zone->len
            && ngx_strncmp(shm_zone[i].shm.name.data, zone->data, zone->len)
               == 0)
        {
            return &shm_zone[i];
        }
    }

    return NULL;
}


/*
 * One cap: the key's slot taken under the zone's lock, or the session
 * refused, and every slot it took already given back (all or nothing, as
 * limit_conn).  An empty key is not counted.
 */

static ngx_int_t
ngx_http_ws_proxy_limit_take(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_uint_t n, ngx_str_t *key)
{
    ngx_int_t                   rc;
    ngx_str_t                   value;
    ngx_http_ws_proxy_lnode_t  *node;

    if (ngx_http_ws_proxy_limit_key(wp, shm_zone, key, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value.len) {
        rc = ngx_http_ws_proxy_limit_hold(wp, shm_zone, &value, n, &node);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            return ngx_http_ws_proxy_limit_refused(wp, shm_zone, n, &value,
                                                   rc == NGX_BUSY);
        }
    }

    if (wp->limit_status == NGX_WSP_LIMIT_NONE) {
        wp->limit_status = NGX_WSP_LIMIT_PASSED;
    }

    return NGX_OK;
}


/* the key of a zone for the session: Lua's, or the zone's (cut) */

static ngx_int_t
ngx_http_ws_proxy_limit_key(ngx_http_ws_proxy_t *wp, ngx_shm_zone_t *shm_zone,
    ngx_str_t *key, ngx_str_t *value)
{
    ngx_http_ws_proxy_lzone_t  *ctx;

    ctx = shm_zone->data;

    if (key && (key->len || ctx->rate == 0)) {
        *value = *key;

    } else if (ngx_http_complex_value(wp->request, &ctx->key, value)
               != NGX_OK)
    {
        ngx_http_ws_proxy_set_error(wp, "no memory");
        return NGX_ERROR;
    }

    value->len = ngx_min(value->len, NGX_WSP_LIMIT_KEY_MAX);

    return NGX_OK;
}


/*
 * A hold on a key's node (a session's slot, a rate's bucket), given back
 * with the session or its request (a pool cleanup, added first: a hold
 * is always given back).  NGX_OK: *node; NGX_DECLINED: the key holds n
 * already; NGX_BUSY: the zone is full; NGX_ERROR.
 */

static ngx_int_t
ngx_http_ws_proxy_limit_hold(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_str_t *value, ngx_uint_t n,
    ngx_http_ws_proxy_lnode_t **node)
{
    ngx_int_t                   rc;
    ngx_pool_cleanup_t         *cln;
    ngx_http_ws_proxy_lslot_t  *slot;
    ngx_http_ws_proxy_lzone_t  *ctx;

    ctx = shm_zone->data;

    cln = ngx_pool_cleanup_add(wp->pool, sizeof(ngx_http_ws_proxy_lslot_t));
    if (cln == NULL) {
        ngx_http_ws_proxy_set_error(wp, "no memory");
        return NGX_ERROR;
    }

    slot = cln->data;
    slot->shm_zone = shm_zone;
    slot->node = NULL;
    cln->handler = ngx_http_ws_proxy_limit_cleanup;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    *node = ngx_http_ws_proxy_limit_node(ctx, value,
                                         ngx_crc32_short(value->data,
                                                         value->len));
    rc = NGX_OK;

    if (*node == NULL) {
        rc = NGX_BUSY;

    } else if ((*node)->sessions >= n) {
        *node = NULL;
        rc = NGX_DECLINED;

    } else {
        (*node)->sessions++;
        slot->node = *node;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


/* the key's node (the zone locked), new with no session; NULL: full */

static ngx_http_ws_proxy_lnode_t *
ngx_http_ws_proxy_limit_node(ngx_http_ws_proxy_lzone_t *ctx,
    ngx_str_t *value, uint32_t hash)
{
    size_t                      size;
    ngx_http_ws_proxy_lnode_t  *node;

    node = (ngx_http_ws_proxy_lnode_t *)
               ngx_str_rbtree_lookup(&ctx->sh->rbtree, value, hash);

    if (node) {
        return node;
    }

    size = offsetof(ngx_http_ws_proxy_lnode_t, data) + value->len;

    node = ngx_slab_alloc_locked(ctx->shpool, size);
    if (node == NULL) {
        return NULL;
    }

    node->sn.node.key = hash;
    node->sn.str.len = value->len;
    node->sn.str.data = node->data;
    node->sessions = 0;

    /* a minute ago: the first message finds the bucket empty */
    node->bucket = ngx_wsp_bucket(ngx_current_msec - 60000, 0);
    ngx_memcpy(node->data, value->data, value->len);

    ngx_rbtree_insert(&ctx->sh->rbtree, &node->sn.node);

    return node;
}


/* a refusal: the slots already taken given back, one line, one count */

static ngx_int_t
ngx_http_ws_proxy_limit_refused(ngx_http_ws_proxy_t *wp,
    ngx_shm_zone_t *shm_zone, ngx_uint_t n, ngx_str_t *key, ngx_uint_t full)
{
    u_char                        *p, *last;
    size_t                         i, len;
    u_char                         buf[NGX_WSP_ERRBUF_SIZE / 2];
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    static u_char  hex[] = "0123456789abcdef";

    ngx_http_ws_proxy_limit_release(wp);
    wp->limit_status = NGX_WSP_LIMIT_REJECTED;

    /*
     * The key as it can be read in a log line: every byte that is not
     * printable ASCII as \xNN ($binary_remote_addr, a client's header)
     */

    p = buf;
    last = buf + sizeof(buf) - 7;           /* an escape and "..." fit */
    len = key->len;

    for (i = 0; i < len && p < last; i++) {
        if (key->data[i] < 0x20 || key->data[i] > 0x7e) {
            *p++ = '\\';
            *p++ = 'x';
            *p++ = hex[key->data[i] >> 4];
            *p++ = hex[key->data[i] & 0xf];

        } else {
            *p++ = key->data[i];
        }
    }

    if (i < len) {
        p = ngx_cpymem(p, "...", 3);
    }

    if (full) {
        ngx_http_ws_proxy_set_error(wp, "ws_proxy_limit_session_zone \"%V\" "
                                    "is full: no slot for key \"%*s\"",
                                    &shm_zone->shm.name, p - buf, buf);

    } else {
        ngx_http_ws_proxy_set_error(wp, "too many sessions for key \"%*s\" "
                                    "in zone \"%V\" (limit %ui)",
                                    p - buf, buf, &shm_zone->shm.name, n);
    }

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_wsp_module);

    ngx_log_error(wlcf->limit.log_level, wp->log, 0,
                  "ws_proxy: %*s, session refused", wp->err_len, wp->err);

    ngx_http_ws_proxy_metrics_limited(wp);

    return NGX_DECLINED;
}


/*
 * The session ends, or its request goes: its slots are given back, each
 * once.  A slot's cleanup stays in the pool and does nothing the second
 * time.
 */

void
ngx_http_ws_proxy_limit_release(ngx_http_ws_proxy_t *wp)
{
    ngx_pool_cleanup_t  *cln;

    if (wp->limit_status != NGX_WSP_LIMIT_PASSED
        && wp->limit_status != NGX_WSP_LIMIT_REJECTED)
    {
        return;
    }

    for (cln = wp->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_ws_proxy_limit_cleanup) {
            ngx_http_ws_proxy_limit_cleanup(cln->data);
        }
    }
}


static void
ngx_http_ws_proxy_limit_cleanup(void *data)
{
    ngx_http_ws_proxy_lslot_t  *slot = data;

    ngx_http_ws_proxy_lzone_t  *ctx;
    ngx_http_ws_proxy_lnode_t  *node;

    node = slot->node;

    if (node == NULL) {
        return;
    }

    slot->node = NULL;
    ctx = slot->shm_zone->data;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    if (--node->sessions == 0) {
        ngx_rbtree_delete(&ctx->sh->rbtree, &node->sn.node);
        ngx_slab_free_locked(ctx->shpool, node);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * Lua's connect() after a refusal: the client gets the location's status
 * (ws_proxy_limit_sessions_status), as ws_proxy_pass answers it, without
 * a body (no error_page: the request stays in the Lua handler).
 */

ngx_int_t
ngx_http_ws_proxy_limit_refuse(ngx_http_ws_proxy_t *wp)
{
    ngx_int_t                      rc;
    ngx_http_request_t            *r;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    r = wp->request;

    if (wp->limit_status != NGX_WSP_LIMIT_REJECTED || r->header_sent) {
        return NGX_DECLINED;
    }

    wlcf = ngx_http_get_module_loc_conf(r, ngx_wsp_module);

    r->headers_out.status = wlcf->limit.status;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;
    r->keepalive = 0;

    rc = ngx_http_send_header(r);

    return rc == NGX_ERROR ? NGX_ERROR : NGX_OK;
}


ngx_int_t
ngx_http_ws_proxy_limit_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var;

    var = ngx_http_add_variable(cf, &ngx_http_ws_proxy_limit_var,
                                NGX_HTTP_VAR_NOCACHEABLE);
    if (var == NULL) {
        return NGX_ERROR;
    }

    var->get_handler = ngx_http_ws_proxy_limit_variable;

    return NGX_OK;
}


/* $ws_proxy_limit_sessions_status: PASSED, REJECTED; none: not found */

static ngx_int_t
ngx_http_ws_proxy_limit_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_get_module_ctx(r, ngx_wsp_module);

    if (wp == NULL || wp->limit_status == NGX_WSP_LIMIT_NONE) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = ngx_http_ws_proxy_limit_status_name[wp->limit_status].data;
    v->len = ngx_http_ws_proxy_limit_status_name[wp->limit_status].len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* rate=<n>r/s or <n>r/m, in messages per 1000 s as limit_req keeps it */

static ngx_int_t
ngx_http_ws_proxy_limit_rate(ngx_str_t *value, ngx_uint_t *rate)
{
    size_t     len;
    u_char    *p;
    ngx_int_t  n, scale;

    p = value->data + 5;
    len = value->len - 5;
    scale = 1;

    if (len > 3 && ngx_strncmp(p + len - 3, "r/s", 3) == 0) {
        len -= 3;

    } else if (len > 3 && ngx_strncmp(p + len - 3, "r/m", 3) == 0) {
        len -= 3;
        scale = 60;

    } else {
        return NGX_ERROR;
    }

    n = ngx_atoi(p, len);

    if (n <= 0 || n > 1000000) {
        return NGX_ERROR;
    }

    *rate = n * 1000 / scale;

    return *rate ? NGX_OK : NGX_ERROR;
}


/*
 * ws_proxy_limit_messages zone=<name> | rate=<n>r/s [burst=<n>]
 *     [from=client|upstream|both] [action=delay|close];
 *
 * A zone's bucket is its key's, shared by the workers; rate= alone is the
 * session's own.  One limit per sender and level.
 */

char *
ngx_http_ws_proxy_limit_messages(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_ws_proxy_loc_conf_t  *wlcf = conf;

    ngx_int_t                        burst;
    ngx_str_t                       *value, name;
    ngx_uint_t                       i;
    ngx_http_ws_proxy_mlimit_t      *ml, *other;
    ngx_http_ws_proxy_limit_conf_t  *lcf;

    lcf = &wlcf->limit;
    value = cf->args->elts;

    if (lcf->messages == NGX_CONF_UNSET_PTR) {
        lcf->messages = ngx_array_create(cf->pool, 1,
                                         sizeof(ngx_http_ws_proxy_mlimit_t));
        if (lcf->messages == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    ml = ngx_array_push(lcf->messages);
    if (ml == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(ml, sizeof(ngx_http_ws_proxy_mlimit_t));
    ml->dirs = NGX_WSP_RUN_DIR(NGX_WSP_DIR_CLIENT);

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0
            && value[i].len > 5 && ml->shm_zone == NULL)
        {
            name.data = value[i].data + 5;
            name.len = value[i].len - 5;

            /* the zone may be defined further on: checked at the merge */

            ml->shm_zone = ngx_shared_memory_add(cf, &name, 0,
                                                 &ngx_http_ws_proxy_limit_tag);
            if (ml->shm_zone == NULL) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0 && ml->rate == 0) {
            if (ngx_http_ws_proxy_limit_rate(&value[i], &ml->rate)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\": rate=<n>r/s or r/m",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            burst = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (burst < 0 || burst > 1000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            ml->burst = burst * 1000;
            continue;
        }

        if (ngx_strcmp(value[i].data, "from=client") == 0) {
            ml->dirs = NGX_WSP_RUN_DIR(NGX_WSP_DIR_CLIENT);
            continue;
        }

        if (ngx_strcmp(value[i].data, "from=upstream") == 0) {
            ml->dirs = NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM);
            continue;
        }

        if (ngx_strcmp(value[i].data, "from=both") == 0) {
            ml->dirs = NGX_WSP_RUN_BOTH;
            continue;
        }

        if (ngx_strcmp(value[i].data, "action=delay") == 0) {
            ml->close = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "action=close") == 0) {
            ml->close = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if ((ml->shm_zone == NULL) == (ml->rate == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" needs zone=<name> or rate=<n>r/s, "
                           "not both", &cmd->name);
        return NGX_CONF_ERROR;
    }

    other = lcf->messages->elts;

    for (i = 0; i + 1 < lcf->messages->nelts; i++) {
        if (other[i].dirs & ml->dirs) {
            return "is duplicate: one limit per sender";
        }
    }

    return NGX_CONF_OK;
}


/* a zone named by ws_proxy_limit_messages is defined, with a rate */

static ngx_int_t
ngx_http_ws_proxy_limit_merge_messages(ngx_conf_t *cf,
    ngx_http_ws_proxy_limit_conf_t *conf)
{
    ngx_uint_t                   i;
    ngx_http_ws_proxy_lzone_t   *ctx;
    ngx_http_ws_proxy_mlimit_t  *ml;

    if (conf->messages == NULL) {
        return NGX_OK;
    }

    ml = conf->messages->elts;

    for (i = 0; i < conf->messages->nelts; i++) {
        if (ml[i].shm_zone == NULL) {
            continue;
        }

        ctx = ml[i].shm_zone->data;

        if (ctx == NULL || ctx->rate == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "unknown ws_proxy_limit_message_zone \"%V\" "
                               "in \"ws_proxy_limit_messages\"",
                               &ml[i].shm_zone->shm.name);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A sender's bucket at the start of a session: its own (no zone), or its
 * key's node of a zone (ml's, or Lua's by name, with Lua's key or the
 * zone's), held as a slot is, given back with the request.  An empty key
 * is not limited.  NGX_ERROR: wp->err says why.
 */

ngx_int_t
ngx_http_ws_proxy_limit_bucket(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_bucket_t *b, ngx_http_ws_proxy_mlimit_t *ml,
    ngx_str_t *zone, ngx_str_t *key)
{
    ngx_int_t                   rc;
    ngx_str_t                   value;
    ngx_shm_zone_t             *shm_zone;
    ngx_http_ws_proxy_lnode_t  *node;
    ngx_http_ws_proxy_lzone_t  *ctx;

    b->own = ngx_wsp_bucket(ngx_current_msec - 60000, 0);
    b->word = &b->own;
    b->shm_zone = NULL;
    b->shpool = NULL;
    b->rate = ml->rate;
    b->burst = ml->burst;
    b->close = ml->close;

    shm_zone = ml->shm_zone;

    if (shm_zone == NULL && zone && zone->len) {
        shm_zone = ngx_http_ws_proxy_limit_find(zone);

        if (shm_zone == NULL
            || ((ngx_http_ws_proxy_lzone_t *) shm_zone->data)->rate == 0)
        {
            ngx_http_ws_proxy_set_error(wp, "unknown "
                                        "ws_proxy_limit_message_zone "
                                        "\"%*s\"", zone->len, zone->data);
            return NGX_ERROR;
        }
    }

    if (shm_zone == NULL) {
        goto pass;
    }

    ctx = shm_zone->data;
    b->rate = ctx->rate;

    if (ngx_http_ws_proxy_limit_key(wp, shm_zone, key, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (value.len == 0) {
        b->rate = 0;
        return NGX_OK;
    }

    /* a bucket has no cap: every session of the key holds it */

    rc = ngx_http_ws_proxy_limit_hold(wp, shm_zone, &value, (ngx_uint_t) -1,
                                      &node);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        /* as limit_req's full zone refuses, but a session is not refused */
        ngx_log_error(NGX_LOG_WARN, wp->log, 0,
                      "ws_proxy: ws_proxy_limit_message_zone \"%V\" is "
                      "full, the session's messages are not limited",
                      &shm_zone->shm.name);
        b->rate = 0;
        return NGX_OK;
    }

    b->word = &node->bucket;
    b->shm_zone = shm_zone;
    b->shpool = ctx->shpool;

pass:

    /*
     * The excess a message goes at once with: the burst, and with
     * action=delay what would wait under a ms (a high rate's messages
     * of one event loop's pass, at one ngx_current_msec)
     */
    b->pass = b->burst;
    b->batch = 0;
    b->credit = 0;

    if (!b->close && b->rate) {
        b->pass += (b->rate - 1) / 1000;

        /*
         * Over 1000 messages a second, a swap counts the next messages
         * too, within what the rate drains in a ms (at most 15): they go
         * without one (per-worker batching, never over the rate)
         */
        b->batch = ngx_min((b->rate - 1) / 1000000, 15);
    }

    return NGX_OK;
}
