/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The console's endpoints under ws_proxy_status (docs/api.md, "The
 * console"): ?sessions, the list, filtered, sorted and paged;
 * ?session=<id>, one session with its flight recorder; ?session=<id>&close
 * (POST or DELETE), closing it in whichever worker holds it, answered once
 * its close frames went out (the request waits on a timer, polling the
 * zone).  The registry itself: ngx_http_ws_proxy_registry.c.
 */


#include "ngx_http_ws_proxy_console.h"


#define NGX_WSP_WAIT_POLL    50          /* ms between looks at the zone */
#define NGX_WSP_WAIT_MAX     5000        /* ms before a 504 */


typedef struct {
    ngx_event_t                 ev;
    ngx_http_request_t         *r;
    ngx_http_ws_proxy_zone_t   *zone;
    uint64_t                    seq;
    ngx_uint_t                  code;
    ngx_msec_t                  deadline;
} ngx_http_ws_proxy_wait_t;


static ngx_uint_t ngx_http_ws_proxy_has_arg(ngx_str_t *args,
    const char *name, size_t len, ngx_str_t *value);
static ngx_int_t ngx_http_ws_proxy_list(ngx_http_request_t *r,
    ngx_http_ws_proxy_zone_t *zone);
static ngx_int_t ngx_http_ws_proxy_one(ngx_http_request_t *r,
    ngx_http_ws_proxy_zone_t *zone, ngx_str_t *id);
static ngx_int_t ngx_http_ws_proxy_close_one(ngx_http_request_t *r,
    ngx_http_ws_proxy_zone_t *zone, ngx_str_t *id);
static void ngx_http_ws_proxy_wait_handler(ngx_event_t *ev);
static void ngx_http_ws_proxy_wait_cleanup(void *data);
static void ngx_http_ws_proxy_json_session(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_zone_t *zone, ngx_http_ws_proxy_rsnap_t *s);
static void ngx_http_ws_proxy_json_str(ngx_http_ws_proxy_out_t *o,
    const char *name, u_char *data, size_t len);
static void ngx_http_ws_proxy_json_ring(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_ring_t *ring);
static ngx_int_t ngx_http_ws_proxy_answer(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_ws_proxy_out_t *o);


static const char  *ngx_wsp_ops[] = {
    "continuation", "text", "binary", "op3", "op4", "op5", "op6", "op7",
    "close", "ping", "pong", "op11", "op12", "op13", "op14", "op15"
};

static const char  *ngx_wsp_actions[] = {
    "forwarded", "dropped", "rewritten", "injected"
};


/* NGX_DECLINED: not a query of the console's */

ngx_int_t
ngx_http_ws_proxy_console_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       id;
    ngx_http_ws_proxy_zone_t       *zone;
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    if (r->args.len == 0) {
        return NGX_DECLINED;
    }

    wmcf = ngx_http_get_module_main_conf(r, ngx_wsp_module);
    zone = wmcf->zone->data;

    if (ngx_http_ws_proxy_has_arg(&r->args, "session", 7, &id)) {

        if (r->method & (NGX_HTTP_POST|NGX_HTTP_DELETE)) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            if (r->method == NGX_HTTP_POST
                && !ngx_http_ws_proxy_has_arg(&r->args, "close", 5, NULL))
            {
                return ngx_http_ws_proxy_error(r, NGX_HTTP_BAD_REQUEST,
                                      "POST ?session=<id> needs \\\"close\\\"",
                                      NULL);
            }

            return ngx_http_ws_proxy_close_one(r, zone, &id);
        }

        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (ngx_http_ws_proxy_has_arg(&r->args, "close", 5, NULL)) {
            return ngx_http_ws_proxy_error(r, NGX_HTTP_NOT_ALLOWED,
                                           "close takes POST or DELETE",
                                           NULL);
        }

        return ngx_http_ws_proxy_one(r, zone, &id);
    }

    if (ngx_http_ws_proxy_has_arg(&r->args, "sessions", 8, NULL)) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return NGX_HTTP_NOT_ALLOWED;
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_ws_proxy_list(r, zone);
    }

    return NGX_DECLINED;
}


/*
 * An argument of the query, given as "name" or "name=value" (ngx_http_arg()
 * finds only the second); value: raw, empty when none, NULL: not wanted
 */

static ngx_uint_t
ngx_http_ws_proxy_has_arg(ngx_str_t *args, const char *name, size_t len,
    ngx_str_t *value)
{
    u_char  *p, *last, *end;

    p = args->data;
    last = p + args->len;

    while (p < last) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if ((size_t) (end - p) >= len && ngx_strncmp(p, name, len) == 0
            && (p + len == end || p[len] == '='))
        {
            if (value) {
                value->data = (p + len == end) ? end : p + len + 1;
                value->len = end - value->data;
            }

            return 1;
        }

        p = end + 1;
    }

    return 0;
}


/*
 * The filter, sort and page of a query (the HTTP one's, or what Lua's
 * sessions() built from its table): NGX_ERROR, a bad value
 */

ngx_int_t
ngx_http_ws_proxy_filter_parse(ngx_str_t *args, ngx_http_ws_proxy_filter_t *f,
    ngx_pool_t *pool)
{
    u_char     *dst, *src;
    ngx_int_t   n;
    ngx_str_t   v, *s;
    ngx_uint_t  i;

    static const char  *strs[] = { "key", "client", "upstream" };

    ngx_memzero(f, sizeof(ngx_http_ws_proxy_filter_t));
    f->min_age = -1;
    f->max_age = -1;
    f->state = 1;
    f->limit = NGX_WSP_LIST_LIMIT;

    for (i = 0; i < 3; i++) {
        if (!ngx_http_ws_proxy_has_arg(args, strs[i], ngx_strlen(strs[i]),
                                       &v))
        {
            continue;
        }

        s = (i == 0) ? &f->key : (i == 1) ? &f->client : &f->upstream;

        s->data = ngx_pnalloc(pool, v.len);
        if (s->data == NULL) {
            return NGX_ERROR;
        }

        dst = s->data;
        src = v.data;
        ngx_unescape_uri(&dst, &src, v.len, 0);
        s->len = dst - s->data;
    }

    if (ngx_http_ws_proxy_has_arg(args, "min_age", 7, &v)) {
        f->min_age = ngx_atoi(v.data, v.len);
        if (f->min_age == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ws_proxy_has_arg(args, "max_age", 7, &v)) {
        f->max_age = ngx_atoi(v.data, v.len);
        if (f->max_age == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ws_proxy_has_arg(args, "state", 5, &v)) {
        if (v.len == 4 && ngx_strncmp(v.data, "open", 4) == 0) {
            f->state = 1;

        } else if (v.len == 5 && ngx_strncmp(v.data, "ended", 5) == 0) {
            f->state = 2;

        } else if (v.len == 3 && ngx_strncmp(v.data, "all", 3) == 0) {
            f->state = 3;

        } else {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ws_proxy_has_arg(args, "sort", 4, &v)) {
        if (v.len && v.data[0] == '-') {
            f->desc = 1;
            v.data++;
            v.len--;
        }

        if (v.len == 3 && ngx_strncmp(v.data, "age", 3) == 0) {
            f->sort = NGX_WSP_SORT_AGE;

        } else if (v.len == 5 && ngx_strncmp(v.data, "bytes", 5) == 0) {
            f->sort = NGX_WSP_SORT_BYTES;

        } else if (v.len == 6 && ngx_strncmp(v.data, "frames", 6) == 0) {
            f->sort = NGX_WSP_SORT_FRAMES;

        } else if (v.len == 3 && ngx_strncmp(v.data, "key", 3) == 0) {
            f->sort = NGX_WSP_SORT_KEY;

        } else {
            return NGX_ERROR;
        }
    }

    if (ngx_http_ws_proxy_has_arg(args, "offset", 6, &v)) {
        n = ngx_atoi(v.data, v.len);
        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        f->offset = (ngx_uint_t) n;
    }

    if (ngx_http_ws_proxy_has_arg(args, "limit", 5, &v)) {
        n = ngx_atoi(v.data, v.len);
        if (n == NGX_ERROR || n > NGX_WSP_LIST_MAX) {
            return NGX_ERROR;
        }

        f->limit = (ngx_uint_t) n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_list(ngx_http_request_t *r, ngx_http_ws_proxy_zone_t *zone)
{
    ngx_uint_t                   i, n, total, unlisted;
    ngx_http_ws_proxy_out_t      o;
    ngx_http_ws_proxy_rsnap_t   *s;
    ngx_http_ws_proxy_filter_t   f;

    if (ngx_http_ws_proxy_filter_parse(&r->args, &f, r->pool) != NGX_OK) {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_BAD_REQUEST,
                                       "bad filter, sort or page: %V",
                                       &r->args);
    }

    if (ngx_http_ws_proxy_registry_list(zone, r->pool, &f, &s, &n, &total,
                                        &unlisted)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(&o, sizeof(ngx_http_ws_proxy_out_t));
    o.r = r;
    o.last = &o.out;

    ngx_http_ws_proxy_print(&o, "{\"zone\":\"%V\",\"total\":%ui,"
                            "\"unlisted\":%ui,\"offset\":%ui,\"limit\":%ui,"
                            "\"sessions\":[", &zone->name, total, unlisted,
                            f.offset, f.limit);

    for (i = 0; i < n; i++) {
        if (i) {
            ngx_http_ws_proxy_print(&o, ",");
        }

        ngx_http_ws_proxy_json_session(&o, zone, &s[i]);
        ngx_http_ws_proxy_print(&o, "}");
    }

    ngx_http_ws_proxy_print(&o, "]}\n");

    return ngx_http_ws_proxy_answer(r, NGX_HTTP_OK, &o);
}


static ngx_int_t
ngx_http_ws_proxy_one(ngx_http_request_t *r, ngx_http_ws_proxy_zone_t *zone,
    ngx_str_t *id)
{
    uint64_t                     seq;
    ngx_int_t                    rc;
    ngx_http_ws_proxy_out_t      o;
    ngx_http_ws_proxy_ring_t    *ring;
    ngx_http_ws_proxy_rsnap_t    s;
    ngx_http_ws_proxy_rentry_t  *e;

    if (ngx_http_ws_proxy_parse_id(zone, id, &seq) != NGX_OK) {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_NOT_FOUND,
                                       "no session %V", id);
    }

    ring = ngx_palloc(r->pool, ngx_wsp_ring_size(NGX_WSP_RECORDER_MAX));
    if (ring == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    e = ngx_http_ws_proxy_registry_find(zone, seq);

    if (e) {
        s.e = *e;
        s.key = e->mnode->sn.str;
        rc = ngx_http_ws_proxy_registry_ring(zone, e, ring);
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    if (e == NULL) {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_NOT_FOUND,
                                       "no session %V", id);
    }

    ngx_memzero(&o, sizeof(ngx_http_ws_proxy_out_t));
    o.r = r;
    o.last = &o.out;

    ngx_http_ws_proxy_json_session(&o, zone, &s);
    ngx_http_ws_proxy_json_ring(&o, (rc == NGX_OK) ? ring : NULL);
    ngx_http_ws_proxy_print(&o, "}\n");

    return ngx_http_ws_proxy_answer(r, NGX_HTTP_OK, &o);
}


/* a close's code (1000, 3000-4999; none: 1000) and reason (UTF-8, cut) */

ngx_int_t
ngx_http_ws_proxy_close_args(ngx_str_t *code, ngx_str_t *reason,
    ngx_uint_t *c)
{
    ngx_int_t  n;

    n = 1000;

    if (code && code->len) {
        n = ngx_atoi(code->data, code->len);

        if (n != 1000 && (n < 3000 || n > 4999)) {
            return NGX_ERROR;
        }
    }

    *c = (ngx_uint_t) n;

    if (reason) {
        reason->len = ngx_min(reason->len, NGX_WSP_R_REASON);

        /* a reason cut inside a character loses the character */
        while (reason->len
               && ngx_wsp_utf8_validate(NGX_WSP_UTF8_ACCEPT, reason->data,
                                        reason->len)
                  != NGX_WSP_UTF8_ACCEPT)
        {
            if (reason->len < NGX_WSP_R_REASON - 3) {
                return NGX_ERROR;
            }

            reason->len--;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_close_one(ngx_http_request_t *r,
    ngx_http_ws_proxy_zone_t *zone, ngx_str_t *id)
{
    u_char                         *dst, *src;
    uint64_t                        seq;
    ngx_str_t                       code, reason, raw;
    ngx_uint_t                      c;
    ngx_pool_cleanup_t             *cln;
    ngx_http_ws_proxy_wait_t       *w;
    ngx_http_ws_proxy_loc_conf_t   *wlcf;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_wsp_module);

    if (!wlcf->status_control) {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_FORBIDDEN,
                                       "control is not allowed here", NULL);
    }

    ngx_str_null(&code);
    ngx_str_null(&reason);

    (void) ngx_http_ws_proxy_has_arg(&r->args, "code", 4, &code);

    if (ngx_http_ws_proxy_has_arg(&r->args, "reason", 6, &raw)) {
        reason.data = ngx_pnalloc(r->pool, raw.len + 1);
        if (reason.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        dst = reason.data;
        src = raw.data;
        ngx_unescape_uri(&dst, &src, raw.len, 0);
        reason.len = dst - reason.data;
    }

    if (ngx_http_ws_proxy_close_args(&code, &reason, &c) != NGX_OK) {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_BAD_REQUEST,
                                       "bad close code or reason: a code "
                                       "1000 or 3000-4999, a UTF-8 reason",
                                       NULL);
    }

    if (ngx_http_ws_proxy_parse_id(zone, id, &seq) != NGX_OK
        || ngx_http_ws_proxy_registry_close(zone, seq, c, reason.data,
                                            reason.len)
           != NGX_OK)
    {
        return ngx_http_ws_proxy_error(r, NGX_HTTP_NOT_FOUND,
                                       "no session %V", id);
    }

    w = ngx_pcalloc(r->pool, sizeof(ngx_http_ws_proxy_wait_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (w == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w->r = r;
    w->zone = zone;
    w->seq = seq;
    w->code = c;
    w->deadline = ngx_current_msec + NGX_WSP_WAIT_MAX;

    w->ev.handler = ngx_http_ws_proxy_wait_handler;
    w->ev.data = w;
    w->ev.log = r->connection->log;
    w->ev.cancelable = 1;

    cln->handler = ngx_http_ws_proxy_wait_cleanup;
    cln->data = w;

    ngx_add_timer(&w->ev, NGX_WSP_WAIT_POLL);

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_ws_proxy_wait_handler(ngx_event_t *ev)
{
    ngx_int_t                  rc;
    ngx_http_request_t        *r;
    ngx_http_ws_proxy_out_t    o;
    ngx_http_ws_proxy_wait_t  *w;

    w = ev->data;
    r = w->r;

    rc = ngx_http_ws_proxy_registry_closed(w->zone, w->seq);

    if (rc == NGX_AGAIN) {
        if ((ngx_msec_int_t) (ngx_current_msec - w->deadline) < 0) {
            ngx_add_timer(ev, NGX_WSP_WAIT_POLL);
            return;
        }

        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "ws_proxy: the close of session %uL-%uL was not "
                      "sent within %d ms", w->zone->sh->reg.epoch, w->seq,
                      NGX_WSP_WAIT_MAX);
    }

    ngx_memzero(&o, sizeof(ngx_http_ws_proxy_out_t));
    o.r = r;
    o.last = &o.out;

    if (rc == NGX_OK) {
        ngx_http_ws_proxy_print(&o, "{\"id\":\"%uL-%uL\",\"closed\":true,"
                                "\"code\":%ui}\n", w->zone->sh->reg.epoch,
                                w->seq, w->code);

    } else if (rc == NGX_DECLINED) {
        ngx_http_ws_proxy_print(&o, "{\"error\":\"no session %uL-%uL\"}\n",
                                w->zone->sh->reg.epoch, w->seq);

    } else {
        ngx_http_ws_proxy_print(&o, "{\"error\":\"the close of %uL-%uL was "
                                "not sent in time\"}\n",
                                w->zone->sh->reg.epoch, w->seq);
    }

    ngx_http_finalize_request(r, ngx_http_ws_proxy_answer(r,
                                  (rc == NGX_OK) ? NGX_HTTP_OK
                                  : (rc == NGX_DECLINED) ? NGX_HTTP_NOT_FOUND
                                  : NGX_HTTP_GATEWAY_TIME_OUT, &o));
}


static void
ngx_http_ws_proxy_wait_cleanup(void *data)
{
    ngx_http_ws_proxy_wait_t  *w = data;

    if (w->ev.timer_set) {
        ngx_del_timer(&w->ev);
    }
}


/* S of docs/api.md, without its closing brace */

static void
ngx_http_ws_proxy_json_session(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_zone_t *zone, ngx_http_ws_proxy_rsnap_t *s)
{
    uint64_t                     now, age;
    ngx_uint_t                   i;
    ngx_http_ws_proxy_rentry_t  *e;

    static const char  *from[] = { "client", "upstream" };

    e = &s->e;
    now = ngx_wsp_unix_ms();
    age = (now > e->start) ? now - e->start : 0;

    ngx_http_ws_proxy_print(o, "{\"id\":\"%uL-%uL\"", zone->sh->reg.epoch,
                            (uint64_t) e->node.key);
    ngx_http_ws_proxy_json_str(o, "key", s->key.data, s->key.len);
    ngx_http_ws_proxy_json_str(o, "location", e->location, e->location_len);
    ngx_http_ws_proxy_json_str(o, "client", e->client, e->client_len);
    ngx_http_ws_proxy_json_str(o, "upstream", e->upstream, e->upstream_len);

    ngx_http_ws_proxy_print(o, ",\"start\":%uL.%03uL,\"age\":%uL.%03uL,"
                            "\"worker\":%P,"
                            "\"frames\":{\"client\":%uL,\"upstream\":%uL},"
                            "\"bytes\":{\"client\":%uL,\"upstream\":%uL},"
                            "\"deflate\":%s,\"hook\":%s,\"state\":\"%s\"",
                            e->start / 1000, e->start % 1000, age / 1000,
                            age % 1000, e->pid, e->frames[0], e->frames[1],
                            e->bytes[0], e->bytes[1],
                            e->deflate ? "true" : "false",
                            e->hook ? "true" : "false",
                            e->state == NGX_WSP_R_OPEN ? "open" : "ended");

    if (e->state == NGX_WSP_R_OPEN) {
        ngx_http_ws_proxy_print(o, ",\"end\":null,\"close_codes\":"
                                "{\"client\":null,\"upstream\":null}");

    } else {
        ngx_http_ws_proxy_print(o, ",\"end\":\"%V\",\"close_codes\":{",
                              &ngx_http_ws_proxy_console_end_name[e->ended_by]);

        for (i = 0; i < 2; i++) {
            if (e->close_code[i] < 0) {
                ngx_http_ws_proxy_print(o, "%s\"%s\":null", i ? "," : "",
                                        from[i]);

            } else {
                ngx_http_ws_proxy_print(o, "%s\"%s\":%D", i ? "," : "",
                                        from[i], e->close_code[i]);
            }
        }

        ngx_http_ws_proxy_print(o, "}");
    }

    ngx_http_ws_proxy_print(o, ",\"recorder\":%s,\"taps\":%ud",
                            e->recorder ? "true" : "false",
                            (unsigned) e->taps);
}


/* ,"name":"value", JSON-escaped */

static void
ngx_http_ws_proxy_json_str(ngx_http_ws_proxy_out_t *o, const char *name,
    u_char *data, size_t len)
{
    u_char  buf[NGX_WSP_M_KEY_MAX * 6];

    len = ngx_min(len, NGX_WSP_M_KEY_MAX);
    len = (u_char *) ngx_escape_json(buf, data, len) - buf;

    ngx_http_ws_proxy_print(o, ",\"%s\":\"%*s\"", name, len, buf);
}


/* ,"frames_recent":{"client":[F...],"upstream":[F...]}, oldest first */

static void
ngx_http_ws_proxy_json_ring(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_ring_t *ring)
{
    uint64_t                   k, from, w;
    ngx_uint_t                 d;
    ngx_http_ws_proxy_frec_t  *rec;

    static const char  *names[] = { "client", "upstream" };

    ngx_http_ws_proxy_print(o, ",\"frames_recent\":{");

    for (d = 0; d < 2; d++) {
        ngx_http_ws_proxy_print(o, "%s\"%s\":[", d ? "," : "", names[d]);

        if (ring) {
            w = ring->dir[d].written;
            from = w - ngx_min(w, (uint64_t) ring->n);

            for (k = from; k < w; k++) {
                rec = ngx_wsp_ring_rec(ring, d, k);

                ngx_http_ws_proxy_print(o, "%s{\"t\":%uL.%03uL,\"op\":\"%s\","
                                        "\"len\":%uD,\"fin\":%s,"
                                        "\"rsv1\":%s,\"action\":\"%s\"}",
                                        k == from ? "" : ",",
                                        (ring->at - rec->t) / 1000,
                                        (ring->at - rec->t) % 1000,
                                        ngx_wsp_ops[rec->opcode & 0xf],
                                        rec->len,
                                        rec->fin ? "true" : "false",
                                        (rec->rsv & NGX_WSP_RSV_DEFLATE)
                                        ? "true" : "false",
                                        ngx_wsp_actions[rec->action & 3]);
            }
        }

        ngx_http_ws_proxy_print(o, "]");
    }

    ngx_http_ws_proxy_print(o, "}");
}


static ngx_int_t
ngx_http_ws_proxy_answer(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_ws_proxy_out_t *o)
{
    ngx_int_t  rc;

    if (o->failed || o->b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = status;
    r->headers_out.content_length_n = o->len;

    o->b->last_buf = (r == r->main) ? 1 : 0;
    o->b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, o->out);
}


/*
 * {"error": "..."}; arg, JSON-escaped, for %V in fmt: the refusals of the
 * console and of the tap (its request body, if any, discarded before)
 */

ngx_int_t
ngx_http_ws_proxy_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *fmt, ngx_str_t *arg)
{
    u_char                   *p;
    ngx_str_t                 esc;
    ngx_http_ws_proxy_out_t   o;

    ngx_str_null(&esc);

    if (arg) {
        esc.len = ngx_min(arg->len, 128);
        p = ngx_pnalloc(r->pool, esc.len * 6);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        esc.data = p;
        esc.len = (u_char *) ngx_escape_json(p, arg->data, esc.len) - p;
    }

    ngx_memzero(&o, sizeof(ngx_http_ws_proxy_out_t));
    o.r = r;
    o.last = &o.out;

    ngx_http_ws_proxy_print(&o, "{\"error\":\"");
    ngx_http_ws_proxy_print(&o, fmt, &esc);
    ngx_http_ws_proxy_print(&o, "\"}\n");

    return ngx_http_ws_proxy_answer(r, status, &o);
}
