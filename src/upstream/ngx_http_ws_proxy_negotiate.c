/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * permessage-deflate's negotiation (RFC 7692): the location's choices, the
 * offer to the upstream and the check of its answer, the answer to the
 * client's offer, and the negotiated parameters as the variables show
 * them.  Each connection negotiates on its own (wp->pmd[]); what the
 * directions then do with compressed messages is the relay's
 * (src/relay/ngx_http_ws_proxy_deflate.c).  The parsers are
 * src/protocol/ngx_wsp_deflate.c.
 */


#include "ngx_http_ws_proxy_module.h"


static void ngx_http_ws_proxy_pmd_conf(ngx_http_ws_proxy_t *wp,
    ngx_uint_t side, ngx_wsp_pmd_conf_t *conf);


/* the location's choices, which new()'s options may then change */

void
ngx_http_ws_proxy_deflate_conf(ngx_http_ws_proxy_t *wp,
    ngx_http_ws_proxy_loc_conf_t *wlcf)
{
    ngx_uint_t  i;

    wp->opts.deflate = (u_char) wlcf->deflate;
    wp->opts.deflate_level = (u_char) wlcf->deflate_level;
    wp->opts.deflate_mem_level = (u_char) wlcf->deflate_mem_level;

    for (i = 0; i < 2; i++) {
        wp->opts.deflate_takeover[i] =
            (u_char) (wlcf->side_deflate_takeover[i] != NGX_CONF_UNSET
                      ? wlcf->side_deflate_takeover[i]
                      : wlcf->deflate_takeover);
        wp->opts.deflate_bits[i] =
            (u_char) (wlcf->side_deflate_bits[i] != NGX_CONF_UNSET_UINT
                      ? wlcf->side_deflate_bits[i] : wlcf->deflate_bits);
    }
}


/* what the module asks for on the connection of side (NGX_WSP_DIR_*) */

static void
ngx_http_ws_proxy_pmd_conf(ngx_http_ws_proxy_t *wp, ngx_uint_t side,
    ngx_wsp_pmd_conf_t *conf)
{
    conf->context_takeover = wp->opts.deflate_takeover[side];
    conf->window_bits = wp->opts.deflate_bits[side];
}


/* the upstream request's Sec-WebSocket-Extensions line, if any */

u_char *
ngx_http_ws_proxy_deflate_offer(ngx_http_ws_proxy_t *wp, u_char *p)
{
    ngx_wsp_pmd_conf_t  conf;

    if (!(wp->opts.deflate & NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM))) {
        return p;
    }

    ngx_http_ws_proxy_pmd_conf(wp, NGX_WSP_DIR_UPSTREAM, &conf);

    p = ngx_cpymem(p, "Sec-WebSocket-Extensions: ",
                   sizeof("Sec-WebSocket-Extensions: ") - 1);
    p += ngx_wsp_pmd_offer(&conf, p);
    *p++ = CR; *p++ = LF;

    return p;
}


/*
 * The upstream's Sec-WebSocket-Extensions (len 0: none): an answer to the
 * offer, or an error of the connect.
 */

ngx_int_t
ngx_http_ws_proxy_deflate_answer(ngx_http_ws_proxy_t *wp,
    const u_char *value, size_t len)
{
    const char          *err;
    ngx_wsp_pmd_conf_t   conf;
    ngx_wsp_pmd_params_t *p;

    p = &wp->pmd[NGX_WSP_DIR_UPSTREAM];
    ngx_memzero(p, sizeof(ngx_wsp_pmd_params_t));

    if (len == 0) {
        return NGX_OK;
    }

    if (!(wp->opts.deflate & NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM))) {
        ngx_http_ws_proxy_set_error(wp, "upstream negotiated an extension "
                                    "that was not offered: %*s", len, value);
        return NGX_ERROR;
    }

    ngx_http_ws_proxy_pmd_conf(wp, NGX_WSP_DIR_UPSTREAM, &conf);

    if (ngx_wsp_pmd_check_answer(value, len, &conf, p, &err) != 0) {
        ngx_memzero(p, sizeof(ngx_wsp_pmd_params_t));
        ngx_http_ws_proxy_set_error(wp, "upstream's permessage-deflate "
                                    "answer: %s: %*s", err, len, value);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the client's offer, answered in the 101 being built */

ngx_int_t
ngx_http_ws_proxy_deflate_accept(ngx_http_ws_proxy_t *wp)
{
    size_t                 n;
    u_char                *value;
    ngx_str_t              offers;
    ngx_wsp_pmd_conf_t     conf;
    ngx_wsp_pmd_params_t  *p;
    u_char                 out[NGX_WSP_PMD_MAX_VALUE];

    p = &wp->pmd[NGX_WSP_DIR_CLIENT];
    ngx_memzero(p, sizeof(ngx_wsp_pmd_params_t));

    if (!(wp->opts.deflate & NGX_WSP_RUN_DIR(NGX_WSP_DIR_CLIENT))) {
        return NGX_OK;
    }

    if (ngx_http_ws_proxy_client_list(wp->request, NGX_WSP_LIST_EXTENSIONS,
                                      &offers)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (offers.len == 0) {
        return NGX_OK;
    }

    ngx_http_ws_proxy_pmd_conf(wp, NGX_WSP_DIR_CLIENT, &conf);

    if (wp->pmd[NGX_WSP_DIR_UPSTREAM].on
        && wp->pmd[NGX_WSP_DIR_UPSTREAM].client_bits < conf.window_bits)
    {
        /*
         * The upstream answered first: a client window it takes too lets
         * the client's compressed frames pass to it untouched.
         */
        conf.window_bits = wp->pmd[NGX_WSP_DIR_UPSTREAM].client_bits;
    }

    n = ngx_wsp_pmd_accept(offers.data, offers.len, &conf, p, out);

    if (n == 0) {
        ngx_http_ws_proxy_log_error(NGX_LOG_INFO, wp->log, 0,
                                    "ws_proxy: no permessage-deflate offer "
                                    "of the client accepted: \"%V\"",
                                    &offers);
        return NGX_OK;
    }

    /* the request pool holds what the 101 needs, no more */

    value = ngx_pnalloc(wp->request->pool, n);
    if (value == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(value, out, n);

    return ngx_http_ws_proxy_add_header(wp->request,
                                        "Sec-WebSocket-Extensions", 24,
                                        value, n);
}


/*
 * The negotiated parameters as an extension value, for the variables:
 * what is not the default is named.  out has NGX_WSP_PMD_MAX_VALUE bytes.
 */

size_t
ngx_http_ws_proxy_deflate_value(ngx_wsp_pmd_params_t *p, u_char *out)
{
    u_char  *q;

    if (!p->on) {
        return 0;
    }

    q = ngx_cpymem(out, "permessage-deflate",
                   sizeof("permessage-deflate") - 1);

    if (p->server_nct) {
        q = ngx_cpymem(q, "; server_no_context_takeover",
                       sizeof("; server_no_context_takeover") - 1);
    }

    if (p->client_nct) {
        q = ngx_cpymem(q, "; client_no_context_takeover",
                       sizeof("; client_no_context_takeover") - 1);
    }

    if (p->server_bits < 15) {
        q = ngx_sprintf(q, "; server_max_window_bits=%d",
                        (int) p->server_bits);
    }

    if (p->client_bits < 15) {
        q = ngx_sprintf(q, "; client_max_window_bits=%d",
                        (int) p->client_bits);
    }

    return q - out;
}

