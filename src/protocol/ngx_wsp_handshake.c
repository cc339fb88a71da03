/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Opening handshake parsing and checks, see ngx_wsp_handshake.h.
 * Plain C99: no nginx.
 */


#include <string.h>

#include "ngx_wsp_handshake.h"


#define NGX_WSP_CR  '\r'
#define NGX_WSP_LF  '\n'


/* what the checks of one response head have seen so far */

typedef struct {
    unsigned    upgrade:1;
    unsigned    upgrade_bad:1;
    unsigned    connection:1;
    unsigned    te:1;
    unsigned    chunked:1;
    unsigned    bad_length:1;
    unsigned    accepts;
    unsigned    protocols;
    unsigned    extensions;
    unsigned    lengths;
} ngx_wsp_checks_t;


static int ngx_wsp_strcaseeq(const unsigned char *a, size_t len,
    const char *b, size_t blen);
static const unsigned char *ngx_wsp_crlf(const unsigned char *p, size_t len);
static int ngx_wsp_list_find(const unsigned char *value, size_t len,
    const unsigned char *token, size_t tlen, int icase);
static void ngx_wsp_request_arg(ngx_wsp_request_t *rq, ngx_wsp_str_t *value);
static void ngx_wsp_trim(const unsigned char **v, const unsigned char **ve);
static int ngx_wsp_parse_status(const unsigned char *p, size_t len,
    unsigned *status);
static int ngx_wsp_head_error(ngx_wsp_response_t *r, const char *error,
    const unsigned char *arg, size_t len);
static int ngx_wsp_upgrade_header(ngx_wsp_response_t *r,
    ngx_wsp_checks_t *ck, ngx_wsp_header_t *h, const unsigned char *accept);
static int ngx_wsp_framing_header(ngx_wsp_response_t *r,
    ngx_wsp_checks_t *ck, ngx_wsp_header_t *h);
static void ngx_wsp_framing_end(ngx_wsp_response_t *r, ngx_wsp_checks_t *ck);


size_t
ngx_wsp_head_end(const unsigned char *buf, size_t len, size_t *scanned)
{
    size_t  i;

    /*
     * The end is LF LF or LF CR LF: resume two bytes back, so that an end
     * split between two reads is still seen whole.
     */

    i = *scanned > 2 ? *scanned - 2 : 0;

    for ( /* void */ ; i + 1 < len; i++) {

        if (buf[i] != NGX_WSP_LF) {
            continue;
        }

        if (buf[i + 1] == NGX_WSP_LF) {
            return i + 2;
        }

        if (buf[i + 1] == NGX_WSP_CR) {
            if (i + 2 >= len) {
                break;
            }

            if (buf[i + 2] == NGX_WSP_LF) {
                return i + 3;
            }
        }
    }

    *scanned = len;

    return 0;
}


int
ngx_wsp_header_next(const unsigned char **pos, const unsigned char *end,
    ngx_wsp_header_t *h)
{
    const unsigned char  *line, *eol, *colon;

    line = *pos;

    for (eol = line; eol < end; eol++) {
        if (*eol == NGX_WSP_CR || *eol == NGX_WSP_LF || *eol == '\0') {
            break;
        }
    }

    h->name.data = line;
    h->name.len = eol - line;
    h->value.data = eol;
    h->value.len = 0;

    if (eol + 1 >= end || eol[0] != NGX_WSP_CR || eol[1] != NGX_WSP_LF) {
        return -1;
    }

    *pos = eol + 2;

    if (eol == line) {
        /* the empty line: anything after it is not the head's */
        return 0;
    }

    if (*line == ' ' || *line == '\t') {
        /* obs-fold: a continuation line */
        return -1;
    }

    for (colon = line; colon < eol && ngx_wsp_is_tchar(*colon); colon++) {
        /* void */
    }

    if (colon == line || colon == eol || *colon != ':') {
        return -1;
    }

    h->name.len = colon - line;
    h->value.data = colon + 1;
    ngx_wsp_trim(&h->value.data, &eol);
    h->value.len = eol - h->value.data;

    return 1;
}


int
ngx_wsp_response_parse(const unsigned char *head, size_t len,
    const unsigned char *accept, ngx_wsp_response_t *r)
{
    int                   rc;
    const unsigned char  *end, *eol, *pos;
    ngx_wsp_header_t      h;
    ngx_wsp_checks_t      ck;

    memset(r, 0, sizeof(ngx_wsp_response_t));
    memset(&ck, 0, sizeof(ngx_wsp_checks_t));

    end = head + len;

    /*
     * The status line: up to its CR LF.  A line that ends otherwise is
     * reported up to its first CR or LF, as the module always did.
     */

    for (eol = head; eol < end; eol++) {
        if (*eol == NGX_WSP_CR || *eol == NGX_WSP_LF || *eol == '\0') {
            break;
        }
    }

    r->status_line.data = head;
    r->status_line.len = eol - head;

    if (eol + 1 >= end || eol[0] != NGX_WSP_CR || eol[1] != NGX_WSP_LF
        || ngx_wsp_parse_status(head, eol - head, &r->status) != 0)
    {
        return ngx_wsp_head_error(r, "bad HTTP response status line: ",
                                  head, eol - head);
    }

    r->headers.data = eol + 2;

    for (pos = eol + 2; ; ) {
        rc = ngx_wsp_header_next(&pos, end, &h);

        if (rc < 0) {
            return ngx_wsp_head_error(r, "bad HTTP response header: ",
                                      h.name.data, h.name.len);
        }

        if (rc == 0) {
            break;
        }

        r->headers.len = pos - r->headers.data;

        rc = r->status == 101 ? ngx_wsp_upgrade_header(r, &ck, &h, accept)
                              : ngx_wsp_framing_header(r, &ck, &h);

        if (rc != NGX_WSP_HEAD_OK) {
            return rc;
        }
    }

    if (pos != end) {
        /* bytes after the empty line: the caller did not split the head */
        return ngx_wsp_head_error(r, "bad HTTP response header: ",
                                  pos - 2, end - pos + 2);
    }

    if (r->status != 101) {
        ngx_wsp_framing_end(r, &ck);
        (void) ngx_wsp_head_error(r, "bad HTTP response status line: ",
                                  head, eol - head);
        return NGX_WSP_HEAD_STATUS;
    }

    if (!ck.upgrade || ck.upgrade_bad) {
        return ngx_wsp_head_error(r, "bad \"upgrade\" response header",
                                  NULL, 0);
    }

    if (!ck.connection) {
        return ngx_wsp_head_error(r, "bad \"connection\" response header",
                                  NULL, 0);
    }

    if (!ck.accepts) {
        return ngx_wsp_head_error(r, "missing \"sec-websocket-accept\" "
                                  "response header", NULL, 0);
    }

    return NGX_WSP_HEAD_OK;
}


/* one header of a 101: the checks of RFC 6455 4.1 */

static int
ngx_wsp_upgrade_header(ngx_wsp_response_t *r, ngx_wsp_checks_t *ck,
    ngx_wsp_header_t *h, const unsigned char *accept)
{
    const unsigned char  *n, *v;
    size_t                nlen, vlen;

    n = h->name.data;
    nlen = h->name.len;
    v = h->value.data;
    vlen = h->value.len;

    if (ngx_wsp_strcaseeq(n, nlen, "Upgrade", 7)) {

        /* one list over all lines: it must be "websocket" alone */

        if (ck->upgrade || !ngx_wsp_strcaseeq(v, vlen, "websocket", 9)) {
            ck->upgrade_bad = 1;
        }

        ck->upgrade = 1;

    } else if (ngx_wsp_strcaseeq(n, nlen, "Connection", 10)) {

        if (ngx_wsp_has_token(v, vlen, "upgrade", 7)) {
            ck->connection = 1;
        }

    } else if (ngx_wsp_strcaseeq(n, nlen, "Sec-WebSocket-Accept", 20)) {

        if (ck->accepts++ || vlen != NGX_WSP_ACCEPT_LEN
            || memcmp(v, accept, NGX_WSP_ACCEPT_LEN) != 0)
        {
            return ngx_wsp_head_error(r, "bad \"sec-websocket-accept\" "
                                      "response header: ", v, vlen);
        }

        r->accept = h->value;

    } else if (ngx_wsp_strcaseeq(n, nlen, "Sec-WebSocket-Protocol", 22)) {

        if (ck->protocols++) {
            return ngx_wsp_head_error(r, "duplicate "
                                      "\"sec-websocket-protocol\" "
                                      "response header: ", v, vlen);
        }

        r->protocol = h->value;

    } else if (ngx_wsp_strcaseeq(n, nlen, "Sec-WebSocket-Extensions", 24)
               && vlen)
    {
        /* what was offered is the caller's: it checks the answer */

        if (ck->extensions++) {
            return ngx_wsp_head_error(r, "duplicate "
                                      "\"sec-websocket-extensions\" "
                                      "response header: ", v, vlen);
        }

        r->extensions = h->value;
    }

    return NGX_WSP_HEAD_OK;
}


/*
 * One header of a response other than 101: only Transfer-Encoding and
 * Content-Length matter, to know where its body ends (RFC 9112 6.3).
 */

static int
ngx_wsp_framing_header(ngx_wsp_response_t *r, ngx_wsp_checks_t *ck,
    ngx_wsp_header_t *h)
{
    uint64_t              n;
    const unsigned char  *v, *ve, *last;

    v = h->value.data;
    ve = v + h->value.len;

    if (ngx_wsp_strcaseeq(h->name.data, h->name.len, "Transfer-Encoding",
                          17))
    {
        /* chunked must be the last coding of the last line */

        ck->te = 1;

        for (last = ve; last > v && last[-1] != ','; last--) {
            /* void */
        }

        ngx_wsp_trim(&last, &ve);
        ck->chunked = ngx_wsp_strcaseeq(last, ve - last, "chunked", 7);

    } else if (ngx_wsp_strcaseeq(h->name.data, h->name.len,
                                 "Content-Length", 14))
    {
        if (v == ve) {
            ck->bad_length = 1;
        }

        for (n = 0; v < ve; v++) {
            if (*v < '0' || *v > '9' || n > (UINT64_MAX - 9) / 10) {
                ck->bad_length = 1;
                break;
            }

            n = n * 10 + (*v - '0');
        }

        if (ck->lengths++ && n != r->length) {
            ck->bad_length = 1;
        }

        r->length = n;
    }

    return NGX_WSP_HEAD_OK;
}


static void
ngx_wsp_framing_end(ngx_wsp_response_t *r, ngx_wsp_checks_t *ck)
{
    if (r->status < 200 || r->status == 204 || r->status == 304) {
        r->body = NGX_WSP_BODY_NONE;

    } else if (ck->te) {
        r->body = ck->chunked ? NGX_WSP_BODY_CHUNKED : NGX_WSP_BODY_CLOSE;

    } else if (ck->bad_length) {
        r->body = NGX_WSP_BODY_ERROR;

    } else if (ck->lengths) {
        r->body = NGX_WSP_BODY_LENGTH;
        return;

    } else {
        r->body = NGX_WSP_BODY_CLOSE;
    }

    r->length = 0;
}


int
ngx_wsp_has_token(const unsigned char *value, size_t len, const char *token,
    size_t tlen)
{
    return ngx_wsp_list_find(value, len, (const unsigned char *) token, tlen,
                             1);
}


int
ngx_wsp_has_element(const unsigned char *value, size_t len,
    const unsigned char *token, size_t tlen)
{
    return ngx_wsp_list_find(value, len, token, tlen, 0);
}


static int
ngx_wsp_list_find(const unsigned char *value, size_t len,
    const unsigned char *token, size_t tlen, int icase)
{
    const unsigned char  *p, *last, *start, *end;

    if (tlen == 0) {
        /* an empty element is no token, so nothing matches "" */
        return 0;
    }

    p = value;
    last = value + len;

    while (p < last) {

        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        end = p;
        ngx_wsp_trim(&start, &end);

        if (icase ? ngx_wsp_strcaseeq(start, end - start,
                                      (const char *) token, tlen)
                  : ((size_t) (end - start) == tlen
                     && memcmp(start, token, tlen) == 0))
        {
            return 1;
        }

        if (p < last) {
            p++;    /* the comma */
        }
    }

    return 0;
}


int
ngx_wsp_chunked(const unsigned char *src, size_t len, unsigned char *dst,
    size_t *dlen)
{
    int                   digits;
    size_t                pos, out;
    uint64_t              size;
    const unsigned char  *crlf;

    pos = 0;
    out = 0;

    for ( ;; ) {

        /* chunk-size [ chunk-ext ] CRLF */

        size = 0;
        digits = 0;

        while (pos < len) {
            unsigned char  c = src[pos];

            if (c >= '0' && c <= '9') {
                c -= '0';

            } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
                c = (c | 0x20) - 'a' + 10;

            } else {
                break;
            }

            if (size >> 56) {
                return -1;
            }

            size = size * 16 + c;
            digits++;
            pos++;
        }

        if (pos == len) {
            return 0;
        }

        if (digits == 0
            || (src[pos] != NGX_WSP_CR && src[pos] != ';'
                && src[pos] != ' ' && src[pos] != '\t'))
        {
            return -1;
        }

        crlf = ngx_wsp_crlf(src + pos, len - pos);
        if (crlf == NULL) {
            return 0;
        }

        pos = crlf - src + 2;

        if (size == 0) {
            break;
        }

        /* chunk-data CRLF */

        if (size > len - pos || len - pos - size < 2) {
            return 0;
        }

        if (src[pos + size] != NGX_WSP_CR || src[pos + size + 1] != NGX_WSP_LF)
        {
            return -1;
        }

        if (dst) {
            memmove(dst + out, src + pos, size);
        }

        out += size;
        pos += size + 2;
    }

    /* trailer lines up to an empty one */

    for ( ;; ) {
        crlf = ngx_wsp_crlf(src + pos, len - pos);
        if (crlf == NULL) {
            return 0;
        }

        if (crlf == src + pos) {
            break;
        }

        pos = crlf - src + 2;
    }

    *dlen = out;

    return 1;
}


/* the first CR LF in p[0, len), or NULL */

static const unsigned char *
ngx_wsp_crlf(const unsigned char *p, size_t len)
{
    const unsigned char  *cr;

    while ((cr = memchr(p, NGX_WSP_CR, len)) != NULL) {

        if ((size_t) (cr - p) + 1 >= len) {
            return NULL;
        }

        if (cr[1] == NGX_WSP_LF) {
            return cr;
        }

        len -= cr - p + 1;
        p = cr + 1;
    }

    return NULL;
}


int
ngx_wsp_list_header(const unsigned char *name, size_t nlen)
{
    if (ngx_wsp_strcaseeq(name, nlen, "Sec-WebSocket-Protocol", 22)) {
        return NGX_WSP_LIST_PROTOCOL;
    }

    if (ngx_wsp_strcaseeq(name, nlen, "Sec-WebSocket-Extensions", 24)) {
        return NGX_WSP_LIST_EXTENSIONS;
    }

    return -1;
}


size_t
ngx_wsp_list_append(unsigned char *dst, size_t len,
    const unsigned char *value, size_t vlen)
{
    const unsigned char  *v, *ve;

    v = value;
    ve = value + vlen;
    ngx_wsp_trim(&v, &ve);

    if (v == ve) {
        return len;
    }

    if (len) {
        if (dst) {
            dst[len] = ',';
            dst[len + 1] = ' ';
        }

        len += 2;
    }

    if (dst) {
        memcpy(dst + len, v, ve - v);
    }

    return len + (ve - v);
}


void
ngx_wsp_request_header(ngx_wsp_request_t *rq, const unsigned char *name,
    size_t nlen, const unsigned char *value, size_t vlen)
{
    if (ngx_wsp_strcaseeq(name, nlen, "Upgrade", 7)) {

        if (rq->upgrade.data == NULL) {
            rq->upgrade.data = value;
            rq->upgrade.len = vlen;
        }

        if (ngx_wsp_has_token(value, vlen, "websocket", 9)) {
            rq->upgrade_ok = 1;
        }

    } else if (ngx_wsp_strcaseeq(name, nlen, "Connection", 10)) {

        if (rq->connection.data == NULL) {
            rq->connection.data = value;
            rq->connection.len = vlen;
        }

        if (ngx_wsp_has_token(value, vlen, "upgrade", 7)) {
            rq->connection_ok = 1;
        }

    } else if (ngx_wsp_strcaseeq(name, nlen, "Sec-WebSocket-Version", 21)) {

        if (rq->versions == 0) {
            rq->version.data = value;
            rq->version.len = vlen;
        }

        /* saturates at 2: two are as wrong as twenty */
        if (rq->versions < 2) {
            rq->versions++;
        }

    } else if (ngx_wsp_strcaseeq(name, nlen, "Sec-WebSocket-Key", 17)) {

        if (rq->keys == 0) {
            rq->key.data = value;
            rq->key.len = vlen;
        }

        if (rq->keys < 2) {
            rq->keys++;
        }
    }
}


/* the value named in the message, "(missing)" when the header was absent */

static void
ngx_wsp_request_arg(ngx_wsp_request_t *rq, ngx_wsp_str_t *value)
{
    if (value->data == NULL) {
        rq->error_arg.data = (const unsigned char *) "(missing)";
        rq->error_arg.len = sizeof("(missing)") - 1;
        return;
    }

    rq->error_arg = *value;
}


int
ngx_wsp_request_check(ngx_wsp_request_t *rq)
{
    /*
     * RFC 6455 11.3.1 and 11.3.5: Sec-WebSocket-Key and -Version must not
     * appear more than once in a request; a second one is refused with
     * the first one's value in the message.
     */

    if (!rq->upgrade_ok) {
        rq->error = "bad \"upgrade\" request header: ";
        ngx_wsp_request_arg(rq, &rq->upgrade);
        return NGX_WSP_REQ_BAD;
    }

    if (!rq->connection_ok) {
        rq->error = "bad \"connection\" request header: ";
        ngx_wsp_request_arg(rq, &rq->connection);
        return NGX_WSP_REQ_BAD;
    }

    if (rq->versions != 1
        || rq->version.len != 2
        || memcmp(rq->version.data, "13", 2) != 0)
    {
        /* a repeated "13" is not a bad value: say what is wrong */
        rq->error = rq->versions > 1
                    ? "duplicate \"sec-websocket-version\" request header: "
                    : "bad \"sec-websocket-version\" request header: ";
        ngx_wsp_request_arg(rq, &rq->version);
        return NGX_WSP_REQ_VERSION;
    }

    if (rq->keys != 1 || !ngx_wsp_key_valid(rq->key.data, rq->key.len)) {
        rq->error = rq->keys > 1
                    ? "duplicate \"sec-websocket-key\" request header: "
                    : "bad \"sec-websocket-key\" request header: ";
        ngx_wsp_request_arg(rq, &rq->key);
        return NGX_WSP_REQ_BAD;
    }

    return NGX_WSP_REQ_OK;
}


/*
 * 16 bytes are 22 base64 digits and "==".  The last digit carries 4 bits
 * that are not part of the 16 bytes; they are not required to be zero
 * (nginx's decoder never required it, and the key is only ever hashed).
 */

int
ngx_wsp_key_valid(const unsigned char *k, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (k == NULL || len != NGX_WSP_KEY_LEN || k[22] != '=' || k[23] != '=') {
        return 0;
    }

    for (i = 0; i < 22; i++) {
        c = k[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '+' || c == '/'))
        {
            return 0;
        }
    }

    return 1;
}


static int
ngx_wsp_strcaseeq(const unsigned char *a, size_t len, const char *b,
    size_t blen)
{
    size_t         i;
    unsigned char  c1, c2;

    if (len != blen) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c1 = a[i];
        c2 = (unsigned char) b[i];

        if (c1 >= 'A' && c1 <= 'Z') {
            c1 |= 0x20;
        }

        if (c2 >= 'A' && c2 <= 'Z') {
            c2 |= 0x20;
        }

        if (c1 != c2) {
            return 0;
        }
    }

    return 1;
}


/* RFC 9110 5.6.2: tchar */

int
ngx_wsp_is_tchar(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}


static void
ngx_wsp_trim(const unsigned char **v, const unsigned char **ve)
{
    while (*v < *ve && (**v == ' ' || **v == '\t')) {
        (*v)++;
    }

    while (*ve > *v && ((*ve)[-1] == ' ' || (*ve)[-1] == '\t')) {
        (*ve)--;
    }
}


/* "HTTP/1.x NNN", then nothing or SP and a reason */

static int
ngx_wsp_parse_status(const unsigned char *p, size_t len, unsigned *status)
{
    if (len < 12
        || memcmp(p, "HTTP/1.", 7) != 0
        || p[7] < '0' || p[7] > '9'
        || p[8] != ' '
        || p[9] < '1' || p[9] > '5'
        || p[10] < '0' || p[10] > '9'
        || p[11] < '0' || p[11] > '9'
        || (len > 12 && p[12] != ' '))
    {
        return -1;
    }

    *status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

    return 0;
}


static int
ngx_wsp_head_error(ngx_wsp_response_t *r, const char *error,
    const unsigned char *arg, size_t len)
{
    r->error = error;
    r->error_arg.data = arg;
    r->error_arg.len = len;

    return NGX_WSP_HEAD_ERROR;
}
