/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * ws_proxy_status: the zone's counters in the Prometheus text exposition
 * format (0.0.4), or as JSON with ?format=json.  The counters are copied
 * out under the zone's lock, then written without it.
 */


#include "ngx_http_ws_proxy_console.h"
#include "ngx_http_ws_proxy_dash.h"


#define NGX_WSP_OUT_BUF      16384


static ngx_int_t ngx_http_ws_proxy_snapshot(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_zone_t *zone);
static void ngx_http_ws_proxy_prom(ngx_http_ws_proxy_out_t *o);
static void ngx_http_ws_proxy_prom_head(ngx_http_ws_proxy_out_t *o,
    const char *name, const char *type, const char *help);
static void ngx_http_ws_proxy_prom_one(ngx_http_ws_proxy_out_t *o,
    const char *name, const char *type, const char *help, size_t off);
static void ngx_http_ws_proxy_prom_from(ngx_http_ws_proxy_out_t *o,
    const char *name, const char *help, size_t off, const char **kinds,
    ngx_uint_t nkinds, const char *label);
static void ngx_http_ws_proxy_prom_handshakes(ngx_http_ws_proxy_out_t *o);
static void ngx_http_ws_proxy_prom_closes(ngx_http_ws_proxy_out_t *o);
static void ngx_http_ws_proxy_prom_duration(ngx_http_ws_proxy_out_t *o);
static void ngx_http_ws_proxy_prom_delay(ngx_http_ws_proxy_out_t *o);
static void ngx_http_ws_proxy_json(ngx_http_ws_proxy_out_t *o,
    ngx_str_t *zone);
static void ngx_http_ws_proxy_json_key(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_snap_t *s);
static void ngx_http_ws_proxy_json_from(ngx_http_ws_proxy_out_t *o,
    const char *name, uint64_t *v, const char **kinds, ngx_uint_t nkinds);


static const char  *ngx_wsp_from[] = { "client", "upstream" };

static const char  *ngx_wsp_outcomes[] = {
    "accepted", "refused", "bad_request", "unreachable", "timeout",
    "invalid_response"
};

static const char  *ngx_wsp_kinds[] = { "protocol_error", "invalid_utf8" };

static const char  *ngx_wsp_limits[] = { "frame_size", "fragments",
                                         "buffer", "message_rate" };

static const char  *ngx_wsp_by[] = { "none", "client", "upstream", "proxy" };


#define ngx_wsp_field(s, off)  ((uint64_t *) ((u_char *) &(s)->c + (off)))
#define ngx_wsp_off(f)         offsetof(ngx_http_ws_proxy_counters_t, f)


ngx_int_t
ngx_http_ws_proxy_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       format;
    ngx_uint_t                      json;
    ngx_http_ws_proxy_out_t         o;
    ngx_http_ws_proxy_zone_t       *zone;
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    /* the dashboard: ?format=html, or a browser's Accept */
    if (ngx_http_ws_proxy_page_wanted(r)) {
        return ngx_http_ws_proxy_page_handler(r);
    }

    /* the tap: ?tap=<id>, a WebSocket (ngx_http_ws_proxy_tap.c) */
    if (ngx_http_arg(r, (u_char *) "tap", 3, &format) == NGX_OK) {
        return ngx_http_ws_proxy_tap_handler(r);
    }

    /* the console's queries: ?sessions, ?session=<id> */
    rc = ngx_http_ws_proxy_console_handler(r);
    if (rc != NGX_DECLINED) {
        return rc;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    wmcf = ngx_http_get_module_main_conf(r, ngx_wsp_module);
    zone = wmcf->zone->data;

    json = ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
           && format.len == 4 && ngx_strncmp(format.data, "json", 4) == 0;

    ngx_memzero(&o, sizeof(ngx_http_ws_proxy_out_t));
    o.r = r;
    o.last = &o.out;

    if (ngx_http_ws_proxy_snapshot(&o, zone) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (json) {
        ngx_http_ws_proxy_json(&o, &zone->name);
        ngx_str_set(&r->headers_out.content_type, "application/json");

    } else {
        ngx_http_ws_proxy_prom(&o);
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4");
    }

    if (o.failed || o.b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = o.len;

    o.b->last_buf = (r == r->main) ? 1 : 0;
    o.b->last_in_chain = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, o.out);
}


/*
 * The counters copied out under the lock.  Keys are only ever added, so
 * the count read first bounds what is copied next; a key added between
 * the two shows in the next answer.
 */

static ngx_int_t
ngx_http_ws_proxy_snapshot(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_zone_t *zone)
{
    u_char                     *p, *keys;
    size_t                      i, len;
    ngx_uint_t                  n;
    ngx_queue_t                *q;
    ngx_http_ws_proxy_snap_t   *s;
    ngx_http_ws_proxy_mnode_t  *node;

    ngx_shmtx_lock(&zone->shpool->mutex);
    n = zone->sh->keys;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    o->s = ngx_palloc(o->r->pool, n * sizeof(ngx_http_ws_proxy_snap_t));
    keys = ngx_pnalloc(o->r->pool, n * NGX_WSP_M_KEY_MAX * 2);

    if (o->s == NULL || keys == NULL) {
        return NGX_ERROR;
    }

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue) && o->n < n;
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_ws_proxy_mnode_t, queue);
        s = &o->s[o->n++];

        s->c = node->c;

        /* keys hold printable ASCII only: '\' and '"' are escaped */

        p = keys;
        len = ngx_min(node->sn.str.len, NGX_WSP_M_KEY_MAX);

        for (i = 0; i < len; i++) {
            if (node->data[i] == '\\' || node->data[i] == '"') {
                *p++ = '\\';
            }

            *p++ = node->data[i];
        }

        s->key.data = keys;
        s->key.len = p - keys;
        keys = p;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return NGX_OK;
}


/* appends to the response, in buffers of 16k */

void
ngx_http_ws_proxy_print(ngx_http_ws_proxy_out_t *o, const char *fmt, ...)
{
    u_char       *p;
    va_list       args;
    ngx_chain_t  *cl;

    if (o->failed) {
        return;
    }

    if (o->b == NULL || o->b->end - o->b->last < NGX_WSP_OUT_LINE) {
        cl = ngx_alloc_chain_link(o->r->pool);
        if (cl == NULL) {
            o->failed = 1;
            return;
        }

        cl->buf = ngx_create_temp_buf(o->r->pool, NGX_WSP_OUT_BUF);
        if (cl->buf == NULL) {
            o->failed = 1;
            return;
        }

        cl->next = NULL;
        *o->last = cl;
        o->last = &cl->next;
        o->b = cl->buf;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(o->b->last, o->b->end, fmt, args);
    va_end(args);

    o->len += p - o->b->last;
    o->b->last = p;
}


static void
ngx_http_ws_proxy_prom(ngx_http_ws_proxy_out_t *o)
{
    ngx_http_ws_proxy_prom_one(o, "ws_proxy_sessions_open", "gauge",
                               "WebSocket sessions being proxied now.",
                               ngx_wsp_off(sessions_open));
    ngx_http_ws_proxy_prom_one(o, "ws_proxy_sessions_total", "counter",
                               "WebSocket sessions that started proxying.",
                               ngx_wsp_off(sessions));
    ngx_http_ws_proxy_prom_one(o, "ws_proxy_sessions_refused_total",
                               "counter",
                               "WebSocket sessions refused at the handshake "
                               "by ws_proxy_limit_sessions (too many open "
                               "sessions for a key).",
                               ngx_wsp_off(sessions_refused));
    ngx_http_ws_proxy_prom_handshakes(o);
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_frames_total",
                                "Frames received, by sender.",
                                ngx_wsp_off(frames), NULL, 1, NULL);
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_messages_total",
                                "Messages received, by sender.",
                                ngx_wsp_off(messages), NULL, 1, NULL);
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_bytes_total",
                                "Bytes received (frames as on the wire), "
                                "by sender.",
                                ngx_wsp_off(bytes), NULL, 1, NULL);
    ngx_http_ws_proxy_prom_closes(o);
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_protocol_violations_total",
                                "Protocol violations, by sender and kind.",
                                ngx_wsp_off(violations), ngx_wsp_kinds,
                                NGX_WSP_M_KINDS, "kind");
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_limits_total",
                                "Limits hit, by sender and limit.",
                                ngx_wsp_off(limits), ngx_wsp_limits,
                                NGX_WSP_M_LIMITS, "limit");
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_messages_delayed_total",
                                "Messages held back by a message rate "
                                "(action=delay), by sender.",
                                ngx_wsp_off(delayed), NULL, 1, NULL);
    ngx_http_ws_proxy_prom_delay(o);
    ngx_http_ws_proxy_prom_one(o, "ws_proxy_hook_errors_total", "counter",
                               "on_frame hook failures.",
                               ngx_wsp_off(hook_errors));
    ngx_http_ws_proxy_prom_duration(o);
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_deflate_uncompressed_bytes_total",
                                "permessage-deflate payload bytes before "
                                "compression, by sender.",
                                ngx_wsp_off(inflated), NULL, 1, NULL);
    ngx_http_ws_proxy_prom_from(o, "ws_proxy_deflate_compressed_bytes_total",
                                "permessage-deflate payload bytes after "
                                "compression, by sender.",
                                ngx_wsp_off(deflated), NULL, 1, NULL);
}


static void
ngx_http_ws_proxy_prom_head(ngx_http_ws_proxy_out_t *o, const char *name,
    const char *type, const char *help)
{
    ngx_http_ws_proxy_print(o, "# HELP %s %s\n# TYPE %s %s\n",
                            name, help, name, type);
}


/* one value per key */

static void
ngx_http_ws_proxy_prom_one(ngx_http_ws_proxy_out_t *o, const char *name,
    const char *type, const char *help, size_t off)
{
    ngx_uint_t                 i;
    ngx_http_ws_proxy_snap_t  *s;

    ngx_http_ws_proxy_prom_head(o, name, type, help);

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];
        ngx_http_ws_proxy_print(o, "%s{key=\"%V\"} %uL\n", name, &s->key,
                                *ngx_wsp_field(s, off));
    }
}


/* counters per sender, and per kind when kinds are given */

static void
ngx_http_ws_proxy_prom_from(ngx_http_ws_proxy_out_t *o, const char *name,
    const char *help, size_t off, const char **kinds, ngx_uint_t nkinds,
    const char *label)
{
    uint64_t                  *v;
    ngx_uint_t                 i, d, k;
    ngx_http_ws_proxy_snap_t  *s;

    ngx_http_ws_proxy_prom_head(o, name, "counter", help);

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];
        v = ngx_wsp_field(s, off);

        for (d = 0; d < 2; d++) {
            for (k = 0; k < nkinds; k++) {
                if (kinds == NULL) {
                    ngx_http_ws_proxy_print(o,
                                            "%s{key=\"%V\",from=\"%s\"} %uL\n",
                                            name, &s->key, ngx_wsp_from[d],
                                            v[d]);
                    continue;
                }

                ngx_http_ws_proxy_print(o, "%s{key=\"%V\",from=\"%s\","
                                        "%s=\"%s\"} %uL\n",
                                        name, &s->key, ngx_wsp_from[d],
                                        label, kinds[k], v[d * nkinds + k]);
            }
        }
    }
}


/* the time messages were held back, in seconds (kept in ms) */

static void
ngx_http_ws_proxy_prom_delay(ngx_http_ws_proxy_out_t *o)
{
    uint64_t                   ms;
    ngx_uint_t                 i, d;
    ngx_http_ws_proxy_snap_t  *s;

    static const char  *name = "ws_proxy_message_delay_seconds_total";

    ngx_http_ws_proxy_prom_head(o, name, "counter",
                                "Time messages were held back by a message "
                                "rate, by sender.");

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];

        for (d = 0; d < 2; d++) {
            ms = s->c.delay_ms[d];
            ngx_http_ws_proxy_print(o, "%s{key=\"%V\",from=\"%s\"} "
                                    "%uL.%03uL\n", name, &s->key,
                                    ngx_wsp_from[d], ms / 1000, ms % 1000);
        }
    }
}


static void
ngx_http_ws_proxy_prom_handshakes(ngx_http_ws_proxy_out_t *o)
{
    ngx_uint_t                 i, k;
    ngx_http_ws_proxy_snap_t  *s;

    static const char  *name = "ws_proxy_handshakes_total";

    ngx_http_ws_proxy_prom_head(o, name, "counter",
                                "Opening handshakes, by outcome; refusals "
                                "by the upstream's status.");

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];

        for (k = 0; k < NGX_WSP_HSO_OUTCOMES; k++) {
            if (k == NGX_WSP_HSO_REFUSED) {
                continue;
            }

            ngx_http_ws_proxy_print(o, "%s{key=\"%V\",outcome=\"%s\"} %uL\n",
                                    name, &s->key, ngx_wsp_outcomes[k],
                                    s->c.handshakes[k]);
        }

        for (k = 0; k < NGX_WSP_M_STATUSES && s->c.status[k]; k++) {
            ngx_http_ws_proxy_print(o, "%s{key=\"%V\",outcome=\"refused\","
                                    "status=\"%ud\"} %uL\n",
                                    name, &s->key, (unsigned) s->c.status[k],
                                    s->c.refused[k]);
        }

        if (s->c.refused_other) {
            ngx_http_ws_proxy_print(o, "%s{key=\"%V\",outcome=\"refused\","
                                    "status=\"other\"} %uL\n",
                                    name, &s->key, s->c.refused_other);
        }
    }
}


/* close frames by sender and code: every registered code, and "other" */

static void
ngx_http_ws_proxy_prom_closes(ngx_http_ws_proxy_out_t *o)
{
    ngx_uint_t                 i, d, k;
    const char                *name;
    ngx_http_ws_proxy_snap_t  *s;

    /* not static: it names two families, and every scrape starts here */
    name = "ws_proxy_closes_total";

    ngx_http_ws_proxy_prom_head(o, name, "counter",
                                "Close frames received, by sender and "
                                "status code; 1006: none.");

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];

        for (d = 0; d < 2; d++) {
            for (k = 0; k < NGX_WSP_M_CODE_OTHER; k++) {
                ngx_http_ws_proxy_print(o, "%s{key=\"%V\",from=\"%s\","
                                        "code=\"%ui\"} %uL\n",
                                        name, &s->key, ngx_wsp_from[d],
                                        1000 + k, s->c.closes[d][k]);
            }

            ngx_http_ws_proxy_print(o, "%s{key=\"%V\",from=\"%s\","
                                    "code=\"other\"} %uL\n",
                                    name, &s->key, ngx_wsp_from[d],
                                    s->c.closes[d][NGX_WSP_M_CODE_OTHER]);
        }
    }

    name = "ws_proxy_closed_by_total";

    ngx_http_ws_proxy_prom_head(o, name, "counter",
                                "Sessions by who sent the first close "
                                "frame (none: a peer went away).");

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];

        for (k = 0; k < 4; k++) {
            ngx_http_ws_proxy_print(o, "%s{key=\"%V\",by=\"%s\"} %uL\n",
                                    name, &s->key, ngx_wsp_by[k],
                                    s->c.closed_by[k]);
        }
    }
}


static void
ngx_http_ws_proxy_prom_duration(ngx_http_ws_proxy_out_t *o)
{
    uint64_t                   sum;
    ngx_uint_t                 i, k;
    ngx_http_ws_proxy_snap_t  *s;

    static const char  *name = "ws_proxy_session_duration_seconds";

    ngx_http_ws_proxy_prom_head(o, name, "histogram",
                                "Durations of the sessions that ended.");

    for (i = 0; i < o->n; i++) {
        s = &o->s[i];
        sum = 0;

        for (k = 0; k < NGX_WSP_M_BUCKETS; k++) {
            sum += s->c.duration[k];
            ngx_http_ws_proxy_print(o, "%s_bucket{key=\"%V\",le=\"%s\"} "
                                    "%uL\n", name, &s->key,
                                    ngx_http_ws_proxy_bucket_names[k], sum);
        }

        ngx_http_ws_proxy_print(o, "%s_bucket{key=\"%V\",le=\"+Inf\"} %uL\n"
                                "%s_sum{key=\"%V\"} %uL.%03uL\n"
                                "%s_count{key=\"%V\"} %uL\n",
                                name, &s->key, s->c.duration_count,
                                name, &s->key, s->c.duration_ms / 1000,
                                s->c.duration_ms % 1000,
                                name, &s->key, s->c.duration_count);
    }
}


static void
ngx_http_ws_proxy_json(ngx_http_ws_proxy_out_t *o, ngx_str_t *zone)
{
    ngx_uint_t  i;

    /* a zone's name is a config token: printable, no quote or backslash */

    ngx_http_ws_proxy_print(o, "{\"zone\":\"%V\",\"keys\":{", zone);

    for (i = 0; i < o->n; i++) {
        ngx_http_ws_proxy_print(o, i ? "," : "");
        ngx_http_ws_proxy_json_key(o, &o->s[i]);
    }

    ngx_http_ws_proxy_print(o, "}}\n");
}


static void
ngx_http_ws_proxy_json_key(ngx_http_ws_proxy_out_t *o,
    ngx_http_ws_proxy_snap_t *s)
{
    ngx_uint_t                     d, k, n;
    ngx_http_ws_proxy_counters_t  *c;

    c = &s->c;

    ngx_http_ws_proxy_print(o, "\"%V\":{\"sessions_open\":%uL,"
                            "\"sessions_total\":%uL,"
                            "\"sessions_refused\":%uL,\"handshakes\":{",
                            &s->key, c->sessions_open, c->sessions,
                            c->sessions_refused);

    for (k = 0; k < NGX_WSP_HSO_OUTCOMES; k++) {
        ngx_http_ws_proxy_print(o, "%s\"%s\":%uL", k ? "," : "",
                                ngx_wsp_outcomes[k], c->handshakes[k]);
    }

    ngx_http_ws_proxy_print(o, ",\"refused_by_status\":{");

    for (k = 0; k < NGX_WSP_M_STATUSES && c->status[k]; k++) {
        ngx_http_ws_proxy_print(o, "%s\"%ud\":%uL", k ? "," : "",
                                (unsigned) c->status[k], c->refused[k]);
    }

    if (c->refused_other) {
        ngx_http_ws_proxy_print(o, "%s\"other\":%uL", k ? "," : "",
                                c->refused_other);
    }

    ngx_http_ws_proxy_print(o, "}}");

    ngx_http_ws_proxy_json_from(o, "frames", c->frames, NULL, 1);
    ngx_http_ws_proxy_json_from(o, "messages", c->messages, NULL, 1);
    ngx_http_ws_proxy_json_from(o, "bytes", c->bytes, NULL, 1);

    /* closes: the codes that occurred */

    ngx_http_ws_proxy_print(o, ",\"closes\":{");

    for (d = 0; d < 2; d++) {
        ngx_http_ws_proxy_print(o, "%s\"%s\":{", d ? "," : "",
                                ngx_wsp_from[d]);

        for (k = 0, n = 0; k < NGX_WSP_M_CODES; k++) {
            if (c->closes[d][k] == 0) {
                continue;
            }

            if (k == NGX_WSP_M_CODE_OTHER) {
                ngx_http_ws_proxy_print(o, "%s\"other\":%uL", n++ ? "," : "",
                                        c->closes[d][k]);

            } else {
                ngx_http_ws_proxy_print(o, "%s\"%ui\":%uL", n++ ? "," : "",
                                        1000 + k, c->closes[d][k]);
            }
        }

        ngx_http_ws_proxy_print(o, "}");
    }

    ngx_http_ws_proxy_print(o, "},\"closed_by\":{");

    for (k = 0; k < 4; k++) {
        ngx_http_ws_proxy_print(o, "%s\"%s\":%uL", k ? "," : "",
                                ngx_wsp_by[k], c->closed_by[k]);
    }

    ngx_http_ws_proxy_print(o, "}");

    ngx_http_ws_proxy_json_from(o, "protocol_violations", &c->violations[0][0],
                                ngx_wsp_kinds, NGX_WSP_M_KINDS);
    ngx_http_ws_proxy_json_from(o, "limits", &c->limits[0][0],
                                ngx_wsp_limits, NGX_WSP_M_LIMITS);
    ngx_http_ws_proxy_json_from(o, "messages_delayed", c->delayed, NULL, 1);

    ngx_http_ws_proxy_print(o, ",\"message_delay_seconds\":{\"client\":"
                            "%uL.%03uL,\"upstream\":%uL.%03uL}",
                            c->delay_ms[0] / 1000, c->delay_ms[0] % 1000,
                            c->delay_ms[1] / 1000, c->delay_ms[1] % 1000);

    ngx_http_ws_proxy_print(o, ",\"hook_errors\":%uL,"
                            "\"session_duration_seconds\":{\"buckets\":{",
                            c->hook_errors);

    for (k = 0, n = 0; k < NGX_WSP_M_BUCKETS; k++) {
        n += c->duration[k];
        ngx_http_ws_proxy_print(o, "\"%s\":%uL,",
                                ngx_http_ws_proxy_bucket_names[k], n);
    }

    ngx_http_ws_proxy_print(o, "\"+Inf\":%uL},\"sum\":%uL.%03uL,"
                            "\"count\":%uL}",
                            c->duration_count, c->duration_ms / 1000,
                            c->duration_ms % 1000, c->duration_count);

    ngx_http_ws_proxy_json_from(o, "deflate_uncompressed_bytes", c->inflated,
                                NULL, 1);
    ngx_http_ws_proxy_json_from(o, "deflate_compressed_bytes", c->deflated,
                                NULL, 1);

    ngx_http_ws_proxy_print(o, "}");
}


/* ,"name":{"client":v,"upstream":v}, or per kind {"client":{"k":v},...} */

static void
ngx_http_ws_proxy_json_from(ngx_http_ws_proxy_out_t *o, const char *name,
    uint64_t *v, const char **kinds, ngx_uint_t nkinds)
{
    ngx_uint_t  d, k;

    ngx_http_ws_proxy_print(o, ",\"%s\":{", name);

    for (d = 0; d < 2; d++) {
        if (kinds == NULL) {
            ngx_http_ws_proxy_print(o, "%s\"%s\":%uL", d ? "," : "",
                                    ngx_wsp_from[d], v[d]);
            continue;
        }

        ngx_http_ws_proxy_print(o, "%s\"%s\":{", d ? "," : "",
                                ngx_wsp_from[d]);

        for (k = 0; k < nkinds; k++) {
            ngx_http_ws_proxy_print(o, "%s\"%s\":%uL", k ? "," : "",
                                    kinds[k], v[d * nkinds + k]);
        }

        ngx_http_ws_proxy_print(o, "}");
    }

    ngx_http_ws_proxy_print(o, "}");
}
