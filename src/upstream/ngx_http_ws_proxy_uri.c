/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The upstream's URI, as connect() and ws_proxy_pass give it: its scheme,
 * its authority (a unix socket, an [IPv6] literal, an address or a name,
 * with a port), the Host header and SNI name it gives, and its path and
 * query for the request line.  Only bytes RFC 3986 allows get through:
 * connect() refuses a URI with others, ws_proxy_pass (wp->escape_path)
 * percent-encodes those of the path and query, as they come from the
 * client's request line or from variables.
 */


#include "ngx_http_ws_proxy_module.h"


static u_char *ngx_http_ws_proxy_uri_scheme(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri);
static u_char *ngx_http_ws_proxy_uri_unix(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri, u_char *p, ngx_str_t *host);
static u_char *ngx_http_ws_proxy_uri_authority(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri, u_char *p, u_char *last, ngx_str_t *host);
static ngx_int_t ngx_http_ws_proxy_uri_path(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri, u_char *p);
static void *ngx_http_ws_proxy_bad_uri(ngx_http_ws_proxy_t *wp,
    ngx_str_t *uri);
static ngx_uint_t ngx_http_ws_proxy_uri_chars(u_char *p, u_char *last,
    ngx_uint_t host);
static size_t ngx_http_ws_proxy_uri_char(u_char *p, u_char *last,
    ngx_uint_t host);
static ngx_int_t ngx_http_ws_proxy_uri_escape(ngx_http_ws_proxy_t *wp,
    u_char *p, u_char *last, ngx_str_t *path);


/*
 * ws://host[:port][/path][?query], wss://..., with host an IPv4 address,
 * an [IPv6] literal or a name; "unix:/path:" as nginx writes unix sockets.
 */

ngx_int_t
ngx_http_ws_proxy_parse_uri(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    ngx_str_t *host)
{
    u_char  *p, *last;

    last = uri->data + uri->len;

    p = ngx_http_ws_proxy_uri_scheme(wp, uri);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (last - p > 5 && ngx_strncmp(p, "unix:", 5) == 0) {
        p = ngx_http_ws_proxy_uri_unix(wp, uri, p, host);

    } else {
        p = ngx_http_ws_proxy_uri_authority(wp, uri, p, last, host);
    }

    if (p == NULL || ngx_http_ws_proxy_uri_path(wp, uri, p) != NGX_OK) {
        return NGX_ERROR;
    }

    wp->uri = *uri;

    return NGX_OK;
}


/* "ws://" or "wss://": the scheme's default port; returns what follows */

static u_char *
ngx_http_ws_proxy_uri_scheme(ngx_http_ws_proxy_t *wp, ngx_str_t *uri)
{
    u_char  *p, *last;

    p = uri->data;
    last = p + uri->len;

    if (last - p > 5 && ngx_strncasecmp(p, (u_char *) "ws://", 5) == 0) {
        wp->ssl = 0;
        wp->port = 80;
        return p + 5;
    }

    if (last - p > 6 && ngx_strncasecmp(p, (u_char *) "wss://", 6) == 0) {
#if (NGX_HTTP_SSL)
        wp->ssl = 1;
        wp->port = 443;
        return p + 6;
#else
        ngx_http_ws_proxy_set_error(wp, "wss:// needs nginx with SSL");
        return NULL;
#endif
    }

    return ngx_http_ws_proxy_bad_uri(wp, uri);
}


/* ws://unix:/path/to.sock:/uri, as nginx writes unix sockets */

static u_char *
ngx_http_ws_proxy_uri_unix(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    u_char *p, ngx_str_t *host)
{
    u_char  *h, *last;

    h = p;
    last = uri->data + uri->len;

    for (p += 5; p < last && *p != ':'; p++) {
        if (*p <= 0x20 || *p == 0x7f) {
            return ngx_http_ws_proxy_bad_uri(wp, uri);
        }
    }

    host->data = h;
    host->len = p - h;

    if (host->len == 5 || p == last) {
        return ngx_http_ws_proxy_bad_uri(wp, uri);
    }

    ngx_str_set(&wp->host, "localhost");
    wp->sni = wp->server_name.len ? wp->server_name
                                  : (ngx_str_t) ngx_string("localhost");

    return p + 1;
}


/*
 * host[:port], the host an [IPv6] literal, an address or a name: the
 * Host header and the SNI name it gives; returns the path that follows
 */

static u_char *
ngx_http_ws_proxy_uri_authority(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    u_char *p, u_char *last, ngx_str_t *host)
{
    u_char     *q, *h, *colon, *port_start;
    ngx_int_t   port;

    h = p;
    colon = NULL;

    /* the authority ends at the path or the query */

    for (q = p; q < last && *q != '/' && *q != '?'; q++) {
        if (*q == '@') {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\": "
                                        "userinfo (user:password@) is not "
                                        "supported, use the \"headers\" "
                                        "option for an Authorization header",
                                        uri);
            return NULL;
        }
    }

    if (p < last && *p == '[') {
        while (p < last && *p != ']') {
            p++;
        }

        if (p == last) {
            return ngx_http_ws_proxy_bad_uri(wp, uri);
        }

        host->data = h + 1;
        host->len = p - h - 1;
        p++;

    } else {
        while (p < last && *p != ':' && *p != '/' && *p != '?') {
            p++;
        }

        host->data = h;
        host->len = p - h;
    }

    if (host->len == 0 || !ngx_http_ws_proxy_uri_chars(host->data,
                                                       host->data + host->len,
                                                       1))
    {
        return ngx_http_ws_proxy_bad_uri(wp, uri);
    }

    if (p < last && *p == ':') {
        colon = p++;
        port_start = p;

        while (p < last && *p >= '0' && *p <= '9') {
            p++;
        }

        port = ngx_atoi(port_start, p - port_start);
        if (port < 1 || port > 65535 || (p < last && *p != '/' && *p != '?')) {
            ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\": "
                                        "invalid port", uri);
            return NULL;
        }

        wp->port = (in_port_t) port;
    }

    /* the Host header carries the port only when it is not the default */

    wp->host.data = h;

    if (colon && wp->port != (wp->ssl ? 443 : 80)) {
        wp->host.len = p - h;

    } else {
        wp->host.len = (colon ? colon : p) - h;
    }

    wp->sni = wp->server_name.len ? wp->server_name : *host;

    return p;
}


/* the path and query for the request line ("?q" becomes "/?q") */

static ngx_int_t
ngx_http_ws_proxy_uri_path(ngx_http_ws_proxy_t *wp, ngx_str_t *uri,
    u_char *p)
{
    u_char  *last;

    last = uri->data + uri->len;

    if (wp->escape_path) {
        return ngx_http_ws_proxy_uri_escape(wp, p, last, &wp->path);
    }

    /* what goes into the request line: RFC 3986 bytes only */

    if (!ngx_http_ws_proxy_uri_chars(p, last, 0)) {
        (void) ngx_http_ws_proxy_bad_uri(wp, uri);
        return NGX_ERROR;
    }

    if (p == last) {
        ngx_str_set(&wp->path, "/");
        return NGX_OK;
    }

    if (*p != '?') {
        wp->path.data = p;
        wp->path.len = last - p;
        return NGX_OK;
    }

    wp->path.len = last - p + 1;
    wp->path.data = ngx_pnalloc(wp->pool, wp->path.len);
    if (wp->path.data == NULL) {
        ngx_http_ws_proxy_set_error(wp, "out of memory");
        return NGX_ERROR;
    }

    wp->path.data[0] = '/';
    ngx_memcpy(wp->path.data + 1, p, last - p);

    return NGX_OK;
}


/*
 * ws_proxy_pass's path and query: what the client's request line or the
 * variables gave, with every byte RFC 3986 refuses percent-encoded (UTF-8,
 * '"', '{', '|' that browsers send unencoded, a control byte a decoded
 * $uri holds, a '%' that starts no pct-encoded byte); "?q" becomes "/?q".
 */

static ngx_int_t
ngx_http_ws_proxy_uri_escape(ngx_http_ws_proxy_t *wp, u_char *p,
    u_char *last, ngx_str_t *path)
{
    u_char      *q, *dst;
    size_t       n, len;
    ngx_uint_t   slash;
    static u_char  hex[] = "0123456789ABCDEF";

    slash = (p == last || *p == '?');
    len = slash;

    for (q = p; q < last; q += n) {
        n = ngx_http_ws_proxy_uri_char(q, last, 0);
        len += n ? n : 3;
        n = n ? n : 1;
    }

    if (!slash && len == (size_t) (last - p)) {
        path->data = p;
        path->len = len;
        return NGX_OK;
    }

    dst = ngx_pnalloc(wp->pool, len);
    if (dst == NULL) {
        ngx_http_ws_proxy_set_error(wp, "out of memory");
        return NGX_ERROR;
    }

    path->data = dst;
    path->len = len;

    if (slash) {
        *dst++ = '/';
    }

    for (q = p; q < last; q += n) {
        n = ngx_http_ws_proxy_uri_char(q, last, 0);

        if (n) {
            dst = ngx_cpymem(dst, q, n);
            continue;
        }

        *dst++ = '%';
        *dst++ = hex[*q >> 4];
        *dst++ = hex[*q & 0xf];
        n = 1;
    }

    return NGX_OK;
}


/*
 * Where the path and query start in a ws:// or wss:// URI (the end when it
 * has none), NULL when there is no authority to end: ws_proxy_pass adds
 * the client's URI to a URI from variables that has no path.
 */

u_char *
ngx_http_ws_proxy_uri_path_start(ngx_str_t *uri)
{
    u_char  *p, *last;

    p = uri->data;
    last = p + uri->len;

    if (last - p > 5 && ngx_strncasecmp(p, (u_char *) "ws://", 5) == 0) {
        p += 5;

    } else if (last - p > 6
               && ngx_strncasecmp(p, (u_char *) "wss://", 6) == 0)
    {
        p += 6;

    } else {
        return NULL;
    }

    if (last - p > 5 && ngx_strncmp(p, "unix:", 5) == 0) {
        p = ngx_strlchr(p + 5, last, ':');
        return p ? p + 1 : NULL;
    }

    while (p < last && *p != '/' && *p != '?') {
        p++;
    }

    return p;
}


static void *
ngx_http_ws_proxy_bad_uri(ngx_http_ws_proxy_t *wp, ngx_str_t *uri)
{
    ngx_http_ws_proxy_set_error(wp, "bad websocket uri \"%V\"", uri);

    return NULL;
}


/*
 * 1 when [p, last) holds only bytes RFC 3986 allows: a path and query
 * (pchar, "/" and "?"), or a host (reg-name or the inside of an IP
 * literal); "%" must start a pct-encoded byte.  No CR, LF, NUL, space or
 * other control byte can reach the request line or the Host header.
 */

static ngx_uint_t
ngx_http_ws_proxy_uri_chars(u_char *p, u_char *last, ngx_uint_t host)
{
    size_t  n;

    for ( /* void */ ; p < last; p += n) {
        n = ngx_http_ws_proxy_uri_char(p, last, host);

        if (n == 0) {
            return 0;
        }
    }

    return 1;
}


/* the length of the allowed byte or pct-encoded byte at p, 0: refused */

static size_t
ngx_http_ws_proxy_uri_char(u_char *p, u_char *last, ngx_uint_t host)
{
    u_char  c;

    c = *p;

    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    switch (c) {

    /* unreserved */
    case '-': case '.': case '_': case '~':

    /* sub-delims */
    case '!': case '$': case '&': case '\'': case '(': case ')':
    case '*': case '+': case ',': case ';': case '=':

    /* in an IPv6 literal, and in pchar */
    case ':':
        return 1;

    case '@': case '/': case '?':
        return host ? 0 : 1;

    case '%':
        if (last - p < 3 || !isxdigit(p[1]) || !isxdigit(p[2])) {
            return 0;
        }

        return 3;

    default:
        return 0;
    }
}
