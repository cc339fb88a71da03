/*
 * libFuzzer harness: the upstream's response head.  The first byte says
 * how the rest is cut into reads; the end-of-head search must find the
 * same end whether it is fed the reads or the whole input.  The head it
 * delimits is parsed from a heap copy of exactly its length (ASan sees a
 * read past it), and so is the whole input, delimited or not.  Every
 * string a result holds must lie inside the parsed bytes.  The bytes after
 * a head are a refusal's body: its framing (from the parser) must be one
 * of the known answers, and the chunked decoder must agree with itself (scan and
 * in-place decode, on an exact-size copy; cut at the half, it must want
 * more or end at the same place).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_handshake.h"


#define ACCEPT  "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


static void
inside(const ngx_wsp_str_t *s, const uint8_t *p, size_t n)
{
    if (s->len == 0) {
        return;
    }

    if (s->data < p || s->data + s->len > p + n) {
        abort();
    }
}


static int
check(const uint8_t *data, size_t size)
{
    int                  rc, rc2;
    uint8_t             *p;
    ngx_wsp_response_t   r, r2;

    p = malloc(size ? size : 1);
    memcpy(p, data, size);

    rc = ngx_wsp_response_parse(p, size, (const unsigned char *) ACCEPT, &r);

    if (rc != NGX_WSP_HEAD_OK && rc != NGX_WSP_HEAD_STATUS
        && rc != NGX_WSP_HEAD_ERROR)
    {
        abort();
    }

    inside(&r.status_line, p, size);
    inside(&r.headers, p, size);
    inside(&r.accept, p, size);
    inside(&r.protocol, p, size);
    inside(&r.error_arg, p, size);

    if (rc != NGX_WSP_HEAD_OK && r.error == NULL) {
        abort();
    }

    if (rc == NGX_WSP_HEAD_OK
        && (r.status != 101 || r.accept.len != 28
            || memcmp(r.accept.data, ACCEPT, 28) != 0))
    {
        abort();
    }

    if (rc == NGX_WSP_HEAD_STATUS
        && (r.status < 100 || r.status > 599
            || r.body < NGX_WSP_BODY_NONE || r.body > NGX_WSP_BODY_ERROR
            || (r.body != NGX_WSP_BODY_LENGTH && r.length != 0)))
    {
        abort();
    }

    /* no hidden state: the same bytes, the same answer */

    rc2 = ngx_wsp_response_parse(p, size, (const unsigned char *) ACCEPT,
                                 &r2);
    if (rc2 != rc || r2.error != r.error
        || r2.error_arg.len != r.error_arg.len
        || r2.protocol.len != r.protocol.len)
    {
        abort();
    }

    free(p);

    return rc;
}


static void
body(const uint8_t *data, size_t size)
{
    int        rc, rc2;
    size_t     dlen, dlen2;
    uint8_t   *p;

    p = malloc(size ? size : 1);
    memcpy(p, data, size);

    dlen = 0;
    rc = ngx_wsp_chunked(p, size, NULL, &dlen);

    if (rc < -1 || rc > 1 || (rc == 1 && dlen > size)) {
        abort();
    }

    rc2 = ngx_wsp_chunked(p, size / 2, NULL, &dlen2);

    if (rc2 == -1 && rc != -1) {
        abort();
    }

    if (rc == 1) {
        dlen2 = 0;
        if (ngx_wsp_chunked(p, size, p, &dlen2) != 1 || dlen2 != dlen) {
            abort();
        }
    }

    free(p);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t  piece, have, end, whole, scanned;

    if (size < 1) {
        return 0;
    }

    piece = data[0] % 33 + 1;
    data++;
    size--;

    scanned = 0;
    whole = ngx_wsp_head_end(data, size, &scanned);

    if (whole > size) {
        abort();
    }

    /* the reads grow the buffer; the search goes on from where it was */

    scanned = 0;
    end = 0;

    for (have = 0; have < size && end == 0; /* void */ ) {
        have += size - have < piece ? size - have : piece;
        end = ngx_wsp_head_end(data, have, &scanned);

        if (end == 0 && scanned != have) {
            abort();
        }
    }

    if (end != whole) {
        abort();
    }

    if (whole) {
        /* the head ends with an empty line, LF or CR LF */
        if (data[whole - 1] != '\n'
            || (data[whole - 2] != '\n'
                && (data[whole - 2] != '\r' || data[whole - 3] != '\n')))
        {
            abort();
        }

        (void) check(data, whole);
        body(data + whole, size - whole);
    }

    (void) check(data, size);

    return 0;
}
