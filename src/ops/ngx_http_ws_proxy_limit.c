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
 */


#include "ngx_http_ws_proxy_metrics.h"


/* a key's bytes that count; a longer key counts by its first ones */
#define NGX_WSP_LIMIT_KEY_MAX    1024


/* the open sessions of one value of the key */
typedef struct {
    ngx_str_node_t              sn;          /* sn.str: data below */
    ngx_uint_t                  sessions;
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


/* ws_proxy_limit_session_zone <key> zone=<name>:<size>; */

char *
ngx_http_ws_proxy_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char                            *p;
    ssize_t                            size;
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

    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);
    ngx_conf_merge_uint_value(conf->status, prev->status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level,
                              NGX_LOG_WARN);

    if (conf->limits == NULL) {
        return NGX_CONF_OK;
    }

    limit = conf->limits->elts;

    for (i = 0; i < conf->limits->nelts; i++) {
        if (limit[i].shm_zone->data == NULL) {
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
            return ngx_http_ws_proxy_limit_take(wp, &shm_zone[i], n, key);
        }
    }

    ngx_http_ws_proxy_set_error(wp, "unknown ws_proxy_limit_session_zone "
                                "\"%*s\"", zone->len, zone->data);

    return NGX_ERROR;
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
    size_t                      size;
    uint32_t                    hash;
    ngx_str_t                   value;
    ngx_uint_t                  full;
    ngx_str_node_t             *sn;
    ngx_pool_cleanup_t         *cln;
    ngx_http_ws_proxy_lnode_t  *node;
    ngx_http_ws_proxy_lslot_t  *slot;
    ngx_http_ws_proxy_lzone_t  *ctx;

    ctx = shm_zone->data;

    if (key) {
        value = *key;

    } else if (ngx_http_complex_value(wp->request, &ctx->key, &value)
               != NGX_OK)
    {
        ngx_http_ws_proxy_set_error(wp, "no memory");
        return NGX_ERROR;
    }

    if (value.len == 0) {
        if (wp->limit_status == NGX_WSP_LIMIT_NONE) {
            wp->limit_status = NGX_WSP_LIMIT_PASSED;
        }

        return NGX_OK;
    }

    value.len = ngx_min(value.len, NGX_WSP_LIMIT_KEY_MAX);

    /* the cleanup first: a slot taken is always given back */

    cln = ngx_pool_cleanup_add(wp->pool, sizeof(ngx_http_ws_proxy_lslot_t));
    if (cln == NULL) {
        ngx_http_ws_proxy_set_error(wp, "no memory");
        return NGX_ERROR;
    }

    slot = cln->data;
    slot->shm_zone = shm_zone;
    slot->node = NULL;
    cln->handler = ngx_http_ws_proxy_limit_cleanup;

    hash = ngx_crc32_short(value.data, value.len);
    full = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    sn = ngx_str_rbtree_lookup(&ctx->sh->rbtree, &value, hash);
    node = (ngx_http_ws_proxy_lnode_t *) sn;

    if (node == NULL) {
        size = offsetof(ngx_http_ws_proxy_lnode_t, data) + value.len;

        node = ngx_slab_alloc_locked(ctx->shpool, size);

        if (node == NULL) {
            full = 1;

        } else {
            node->sn.node.key = hash;
            node->sn.str.len = value.len;
            node->sn.str.data = node->data;
            node->sessions = 0;
            ngx_memcpy(node->data, value.data, value.len);

            ngx_rbtree_insert(&ctx->sh->rbtree, &node->sn.node);
        }

    } else if (node->sessions >= n) {
        node = NULL;
    }

    if (node) {
        node->sessions++;
        slot->node = node;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (node == NULL) {
        return ngx_http_ws_proxy_limit_refused(wp, shm_zone, n, &value,
                                               full);
    }

    if (wp->limit_status == NGX_WSP_LIMIT_NONE) {
        wp->limit_status = NGX_WSP_LIMIT_PASSED;
    }

    return NGX_OK;
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
