/*
 * libFuzzer harness: the client request checks.  The input is cut into
 * lines at LF and each line into a name and a value at its first colon
 * (nothing trimmed, so the values keep whatever spaces the fuzzer put
 * there); the pairs go through ngx_wsp_request_header() and
 * ngx_wsp_request_check().  A reference written here, the obvious way
 * (lower-case copies, split, trim, compare), must reach the same verdict
 * with the same message, and must agree with ngx_wsp_has_token() on every
 * value for a token the fuzzer also chooses.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_handshake.h"


#define MAX_PAIRS  64


typedef struct {
    const uint8_t  *name;
    size_t          nlen;
    const uint8_t  *value;
    size_t          vlen;
} pair_t;


static int
lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}


static int
same_name(const uint8_t *n, size_t len, const char *want)
{
    size_t  i;

    if (len != strlen(want)) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (lower(n[i]) != lower((uint8_t) want[i])) {
            return 0;
        }
    }

    return 1;
}


static int
ref_has_token(const uint8_t *v, size_t len, const uint8_t *tok, size_t tlen)
{
    size_t  i, s, e, k;

    if (tlen == 0) {
        return 0;
    }

    s = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && v[i] != ',') {
            continue;
        }

        /* the element [s, i) */

        e = i;
        while (s < e && (v[s] == ' ' || v[s] == '\t')) {
            s++;
        }
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) {
            e--;
        }

        if (e - s == tlen) {
            for (k = 0; k < tlen; k++) {
                if (lower(v[s + k]) != lower(tok[k])) {
                    break;
                }
            }

            if (k == tlen) {
                return 1;
            }
        }

        s = i + 1;
    }

    return 0;
}


static int
ref_key(const uint8_t *k, size_t len)
{
    static const char  *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                              "abcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t  i;

    if (len != 24 || memcmp(k + 22, "==", 2) != 0) {
        return 0;
    }

    for (i = 0; i < 22; i++) {
        if (k[i] == '\0' || strchr(b64, k[i]) == NULL) {
            return 0;
        }
    }

    return 1;
}


/* the verdict and the index of the pair whose value the message shows */

static int
reference(pair_t *p, size_t n, long *shown)
{
    size_t  i;
    long    first[4];
    int     count[4], up, conn;

    static const char  *names[] = { "upgrade", "connection",
                                    "sec-websocket-version",
                                    "sec-websocket-key" };

    up = 0;
    conn = 0;

    for (i = 0; i < 4; i++) {
        first[i] = -1;
        count[i] = 0;
    }

    for (i = 0; i < n; i++) {
        int  h;

        for (h = 0; h < 4; h++) {
            if (same_name(p[i].name, p[i].nlen, names[h])) {
                break;
            }
        }

        if (h == 4) {
            continue;
        }

        if (first[h] < 0) {
            first[h] = (long) i;
        }
        count[h]++;

        if (h == 0 && ref_has_token(p[i].value, p[i].vlen,
                                    (const uint8_t *) "websocket", 9))
        {
            up = 1;
        }

        if (h == 1 && ref_has_token(p[i].value, p[i].vlen,
                                    (const uint8_t *) "upgrade", 7))
        {
            conn = 1;
        }
    }

    if (!up) {
        *shown = first[0];
        return NGX_WSP_REQ_BAD;
    }

    if (!conn) {
        *shown = first[1];
        return NGX_WSP_REQ_BAD;
    }

    if (count[2] != 1 || p[first[2]].vlen != 2
        || memcmp(p[first[2]].value, "13", 2) != 0)
    {
        *shown = first[2];
        return NGX_WSP_REQ_VERSION;
    }

    if (count[3] != 1 || !ref_key(p[first[3]].value, p[first[3]].vlen)) {
        *shown = first[3];
        return NGX_WSP_REQ_BAD;
    }

    *shown = first[3];
    return NGX_WSP_REQ_OK;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                rc, want;
    long               shown;
    size_t             i, n, tlen, s, e, c;
    uint8_t           *buf;
    pair_t             pairs[MAX_PAIRS];
    ngx_wsp_request_t  rq;

    if (size < 1) {
        return 0;
    }

    /* the first byte: how long the extra token is, taken from the end */

    tlen = data[0] % 8;
    data++;
    size--;

    if (tlen > size) {
        tlen = size;
    }

    /* a heap copy of the exact size, so that ASan sees reads past it */

    buf = malloc(size ? size : 1);
    memcpy(buf, data, size);

    n = 0;
    s = 0;

    for (i = 0; i <= size - tlen && n < MAX_PAIRS; i++) {
        if (i < size - tlen && buf[i] != '\n') {
            continue;
        }

        e = i;

        for (c = s; c < e && buf[c] != ':'; c++) {
            /* void */
        }

        pairs[n].name = buf + s;
        pairs[n].nlen = c - s;
        pairs[n].value = c < e ? buf + c + 1 : buf + e;
        pairs[n].vlen = c < e ? e - c - 1 : 0;
        n++;

        s = i + 1;
    }

    memset(&rq, 0, sizeof(rq));

    for (i = 0; i < n; i++) {
        ngx_wsp_request_header(&rq, pairs[i].name, pairs[i].nlen,
                               pairs[i].value, pairs[i].vlen);

        if (ngx_wsp_has_token(pairs[i].value, pairs[i].vlen,
                              (const char *) buf + size - tlen, tlen)
            != ref_has_token(pairs[i].value, pairs[i].vlen,
                             buf + size - tlen, tlen))
        {
            abort();
        }
    }

    rc = ngx_wsp_request_check(&rq);
    want = reference(pairs, n, &shown);

    if (rc != want) {
        abort();
    }

    if (rc == NGX_WSP_REQ_OK) {
        if (rq.key.data != pairs[shown].value || rq.key.len != 24) {
            abort();
        }

    } else {
        if (rq.error == NULL) {
            abort();
        }

        /* an absent header is named "(missing)" */

        if (shown < 0 ? (rq.error_arg.len != sizeof("(missing)") - 1
                         || memcmp(rq.error_arg.data, "(missing)",
                                   rq.error_arg.len) != 0)
                      : (rq.error_arg.data != pairs[shown].value
                         || rq.error_arg.len != pairs[shown].vlen))
        {
            abort();
        }
    }

    free(buf);

    return 0;
}
