/*
 * libFuzzer harness: ngx_wsp_utf8_validate(), fed the input in pieces cut
 * where the fuzzer says, must agree with a straightforward decoder written
 * here from RFC 3629 (no overlongs, no surrogates, nothing above U+10FFFF).
 */

#include <stdint.h>
#include <stdlib.h>

#include "ngx_wsp_frame.h"


static int
reference(const uint8_t *p, size_t n)
{
    size_t    i = 0, k, len;
    uint32_t  cp, min;

    while (i < n) {
        uint8_t  c = p[i];

        if (c < 0x80) {
            i++;
            continue;
        }

        if ((c & 0xe0) == 0xc0) {
            len = 2; cp = c & 0x1f; min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3; cp = c & 0x0f; min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4; cp = c & 0x07; min = 0x10000;
        } else {
            return 0;
        }

        if (i + len > n) {
            return 0;
        }

        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }

        i += len;
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t    off, piece;
    uint32_t  st;

    if (size < 1) {
        return 0;
    }

    piece = data[0] % 17 + 1;
    data++;
    size--;

    st = NGX_WSP_UTF8_ACCEPT;

    for (off = 0; off < size; off += piece) {
        st = ngx_wsp_utf8_validate(st, data + off,
                                   size - off < piece ? size - off : piece);
    }

    if ((st == NGX_WSP_UTF8_ACCEPT) != reference(data, size)) {
        abort();
    }

    return 0;
}
