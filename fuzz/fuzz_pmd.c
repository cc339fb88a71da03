/*
 * libFuzzer harness: a Sec-WebSocket-Extensions value through
 * ngx_wsp_pmd_accept() and ngx_wsp_pmd_check_answer().  An answer
 * accept() writes is at most NGX_WSP_PMD_MAX_VALUE bytes and must pass
 * check_answer() for the client that offers the most (context takeover,
 * window 15), with parameters that agree with the server's, unless it
 * gives that client the window of 8 it offered for itself, which a client
 * that deflates with zlib must refuse; the server's own window is 9..15
 * (zlib has no raw deflate of 8); whatever check_answer() accepts has
 * windows of 8..15, its own at least 9.
 *
 * data[0]: bit 0 context takeover, bits 1-3 window bits - 8
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_deflate.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                    rc, bits;
    size_t                 n;
    uint8_t               *copy;
    const char            *err;
    unsigned char          out[NGX_WSP_PMD_MAX_VALUE + 16];
    ngx_wsp_pmd_conf_t     conf, any;
    ngx_wsp_pmd_params_t   sp, cp;

    if (size < 1) {
        return 0;
    }

    conf.context_takeover = data[0] & 1;
    conf.window_bits = (uint8_t) (8 + ((data[0] >> 1) & 7));
    bits = conf.window_bits < 9 ? 9 : conf.window_bits;

    /* an exact-size copy: ASan sees any read past the end */
    copy = malloc(size - 1 ? size - 1 : 1);
    memcpy(copy, data + 1, size - 1);

    memset(out, 0xaa, sizeof(out));
    n = ngx_wsp_pmd_accept(copy, size - 1, &conf, &sp, out);

    if (n > NGX_WSP_PMD_MAX_VALUE || out[NGX_WSP_PMD_MAX_VALUE] != 0xaa
        || (n == 0) != (sp.on == 0))
    {
        abort();
    }

    if (n) {
        any.context_takeover = 1;
        any.window_bits = 15;

        rc = ngx_wsp_pmd_check_answer(out, n, &any, &cp, &err);

        if (sp.client_bits == 8) {
            if (rc != -1 || sp.server_bits < 9 || sp.server_bits > bits) {
                abort();
            }

        } else if (rc != 0 || !cp.on || cp.server_nct != sp.server_nct
            || cp.client_nct != sp.client_nct
            || cp.server_bits < sp.server_bits
            || cp.client_bits != sp.client_bits
            || sp.server_bits < 9 || sp.server_bits > bits
            || sp.client_bits < 8 || sp.client_bits > 15)
        {
            abort();
        }
    }

    err = NULL;
    rc = ngx_wsp_pmd_check_answer(copy, size - 1, &conf, &cp, &err);

    if ((rc == 0 && cp.on && (cp.server_bits < 8 || cp.server_bits > 15
                              || cp.client_bits < 9
                              || cp.client_bits > bits))
        || (rc != 0 && (err == NULL || cp.on)) || (rc != 0 && rc != -1))
    {
        abort();
    }

    free(copy);

    return 0;
}
