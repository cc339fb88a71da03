/*
 * libFuzzer harness: a byte stream parsed as frames the way the pump does
 * it (header, rules by role and message state, payload unmasked in pieces,
 * close payloads checked), cut at fuzzer-chosen points.  Checks that
 * unmasking in pieces equals unmasking at once and that UTF-8 validation in
 * pieces equals validation at once.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_frame.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   role, rc;
    size_t                pos, len, piece, off;
    unsigned              code;
    uint32_t              st1, st2;
    const char           *reason;
    unsigned char        *a, *b;
    ngx_wsp_frame_t       f;
    ngx_wsp_msg_state_t   ms;

    if (size < 2) {
        return 0;
    }

    role = data[0] & 1;
    piece = (data[0] >> 1) + 1;         /* 1 .. 128 */
    data++;
    size--;

    memset(&ms, 0, sizeof(ms));

    for (pos = 0; pos < size; /* void */) {

        rc = ngx_wsp_frame_parse_header(data + pos, size - pos, &f);
        if (rc != NGX_WSP_PARSE_OK) {
            break;
        }

        if (f.header_len < 2 || f.header_len > NGX_WSP_MAX_HEADER) {
            abort();
        }

        (void) ngx_wsp_frame_check(&f, role, &ms, &reason);

        pos += f.header_len;

        if (f.payload_len > size - pos) {
            break;
        }

        len = (size_t) f.payload_len;
        a = malloc(len + 1);
        b = malloc(len + 1);

        ngx_wsp_mask(a, data + pos, len, f.mask, 0);

        for (off = 0; off < len; off += piece) {
            size_t  n = len - off < piece ? len - off : piece;
            ngx_wsp_mask(b + off, data + pos + off, n, f.mask, off);
        }

        if (len && memcmp(a, b, len) != 0) {
            abort();
        }

        st1 = ngx_wsp_utf8_validate(NGX_WSP_UTF8_ACCEPT, a, len);
        st2 = NGX_WSP_UTF8_ACCEPT;

        for (off = 0; off < len; off += piece) {
            size_t  n = len - off < piece ? len - off : piece;
            st2 = ngx_wsp_utf8_validate(st2, a + off, n);
        }

        if ((st1 == NGX_WSP_UTF8_ACCEPT) != (st2 == NGX_WSP_UTF8_ACCEPT)
            || (st1 == NGX_WSP_UTF8_REJECT) != (st2 == NGX_WSP_UTF8_REJECT))
        {
            abort();
        }

        if (f.opcode == NGX_WSP_OP_CLOSE && len <= NGX_WSP_MAX_CONTROL) {
            (void) ngx_wsp_close_check(a, len, &code, &reason);
        }

        free(a);
        free(b);

        pos += len;
    }

    return 0;
}
