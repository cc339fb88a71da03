/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The location's TLS client context towards upstreams: built from the
 * ws_proxy_ssl_* directives, shared with the enclosing level when nothing
 * differs, none at all (the worker's default one) when nothing is set.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_ws_proxy_module.h"

#if (NGX_HTTP_SSL)

static ngx_uint_t ngx_http_ws_proxy_ssl_same(
    ngx_http_ws_proxy_loc_conf_t *prev, ngx_http_ws_proxy_loc_conf_t *conf);
static ngx_int_t ngx_http_ws_proxy_ssl_create(ngx_conf_t *cf,
    ngx_http_ws_proxy_loc_conf_t *conf);


static ngx_str_t  ngx_http_ws_proxy_default_ciphers = ngx_string("DEFAULT");


char *
ngx_http_ws_proxy_merge_ssl(ngx_conf_t *cf,
    ngx_http_ws_proxy_loc_conf_t *prev, ngx_http_ws_proxy_loc_conf_t *conf)
{
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate, "");
    ngx_conf_merge_str_value(conf->pass.ssl_certificate,
                             prev->pass.ssl_certificate, "");
    ngx_conf_merge_str_value(conf->pass.ssl_certificate_key,
                             prev->pass.ssl_certificate_key, "");

    /*
     * protocols, ciphers and depth stay unset when no level sets them:
     * their defaults alone do not call for a context of the location's
     */

    if (conf->ssl_protocols == 0) {
        conf->ssl_protocols = prev->ssl_protocols;
    }

    if (conf->ssl_ciphers.data == NULL) {
        conf->ssl_ciphers = prev->ssl_ciphers;
    }

    if (conf->ssl_verify_depth == NGX_CONF_UNSET_UINT) {
        conf->ssl_verify_depth = prev->ssl_verify_depth;
    }

    if (conf->pass.ssl_certificate.len
        && conf->pass.ssl_certificate_key.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"ws_proxy_ssl_certificate_key\" for "
                           "\"ws_proxy_ssl_certificate\" \"%V\"",
                           &conf->pass.ssl_certificate);
        return NGX_CONF_ERROR;
    }

    if (conf->pass.ssl_certificate_key.len
        && conf->pass.ssl_certificate.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no \"ws_proxy_ssl_certificate\" for "
                           "\"ws_proxy_ssl_certificate_key\" \"%V\"",
                           &conf->pass.ssl_certificate_key);
        return NGX_CONF_ERROR;
    }

    if (conf->ssl_trusted_certificate.len == 0
        && conf->pass.ssl_certificate.len == 0
        && conf->ssl_protocols == 0
        && conf->ssl_ciphers.data == NULL
        && conf->ssl_verify_depth == NGX_CONF_UNSET_UINT)
    {
        return NGX_CONF_OK;
    }

    if (prev->ssl && ngx_http_ws_proxy_ssl_same(prev, conf)) {
        conf->ssl = prev->ssl;
        return NGX_CONF_OK;
    }

    if (ngx_http_ws_proxy_ssl_create(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* prev is merged when it has a context: its values are final */

static ngx_uint_t
ngx_http_ws_proxy_ssl_same(ngx_http_ws_proxy_loc_conf_t *prev,
    ngx_http_ws_proxy_loc_conf_t *conf)
{
    if (prev->ssl_protocols != conf->ssl_protocols
        || prev->ssl_verify_depth != conf->ssl_verify_depth
        || (prev->ssl_ciphers.data == NULL) != (conf->ssl_ciphers.data == NULL)
        || (conf->ssl_ciphers.data
            && ngx_strcmp(prev->ssl_ciphers.data, conf->ssl_ciphers.data)
               != 0))
    {
        return 0;
    }

    return ngx_strcmp(prev->ssl_trusted_certificate.data,
                      conf->ssl_trusted_certificate.data) == 0
           && ngx_strcmp(prev->pass.ssl_certificate.data,
                         conf->pass.ssl_certificate.data) == 0
           && ngx_strcmp(prev->pass.ssl_certificate_key.data,
                         conf->pass.ssl_certificate_key.data) == 0;
}


static ngx_int_t
ngx_http_ws_proxy_ssl_create(ngx_conf_t *cf,
    ngx_http_ws_proxy_loc_conf_t *conf)
{
    ngx_str_t           *ciphers;
    ngx_uint_t           protocols, depth;
    ngx_pool_cleanup_t  *cln;

    protocols = conf->ssl_protocols ? conf->ssl_protocols
                                    : NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3;
    ciphers = conf->ssl_ciphers.data ? &conf->ssl_ciphers
                                     : &ngx_http_ws_proxy_default_ciphers;
    depth = (conf->ssl_verify_depth != NGX_CONF_UNSET_UINT)
            ? conf->ssl_verify_depth : 1;

    conf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (conf->ssl == NULL) {
        return NGX_ERROR;
    }

    conf->ssl->log = cf->log;

    if (ngx_ssl_create(conf->ssl, protocols, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(conf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = conf->ssl;

    if (ngx_ssl_ciphers(cf, conf->ssl, ciphers, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    if (conf->ssl_trusted_certificate.len == 0) {
        /* no trust store of the location's: the system's one */
        (void) SSL_CTX_set_default_verify_paths(conf->ssl->ctx);
        SSL_CTX_set_verify_depth(conf->ssl->ctx, depth);

    } else if (ngx_ssl_trusted_certificate(cf, conf->ssl,
                                           &conf->ssl_trusted_certificate,
                                           depth)
               != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* ws_proxy_ssl_certificate: what the upstream asks for */

    if (conf->pass.ssl_certificate.len
        && ngx_ssl_certificate(cf, conf->ssl, &conf->pass.ssl_certificate,
                               &conf->pass.ssl_certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}

#endif
