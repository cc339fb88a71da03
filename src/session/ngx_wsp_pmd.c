/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The session core's permessage-deflate data path (RFC 7692): from what
 * each connection negotiated (upstream's ngx_http_ws_proxy_negotiate.c),
 * what each direction does with compressed messages (NGX_WSP_Z_*): pass
 * them untouched, inflate what its src compressed, compress what goes to
 * its dst.  The RSV1 rules are the parser's and ngx_wsp_emit()'s, the
 * streams' windows and resets (context takeover) the macros of
 * ngx_wsp_session.h; zlib's calls stay behind the relay's inflate() and
 * deflate() callbacks.  No I/O, no nginx.
 */


#include "ngx_wsp_session.h"


static unsigned ngx_wsp_pass_through(ngx_wsp_session_t *s,
    const ngx_wsp_pmd_params_t *pmd, unsigned dir);


/* when the session starts: pmd[] by connection (NGX_WSP_DIR_*) */

void
ngx_wsp_deflate_start(ngx_wsp_session_t *s, const ngx_wsp_pmd_params_t *pmd)
{
    unsigned         i;
    ngx_wsp_sdir_t  *d;

    for (i = 0; i < 2; i++) {
        d = s->sd[i];
        d->z = 0;

        if (pmd[i].on) {
            d->z |= NGX_WSP_Z_RX;
            d->msg_state.deflate = 1;
        }

        if (pmd[1 - i].on) {
            d->z |= NGX_WSP_Z_TX;
        }

        if (d->z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX)
            && ngx_wsp_pass_through(s, pmd, i))
        {
            d->z |= NGX_WSP_Z_PASS;
        }
    }
}


/*
 * Compressed frames may pass untouched when nothing looks at payloads and
 * dst can inflate what src compressed: a window no larger than the one dst
 * was promised, and no context kept by src unless dst may keep one too.
 */

static unsigned
ngx_wsp_pass_through(ngx_wsp_session_t *s, const ngx_wsp_pmd_params_t *pmd,
    unsigned dir)
{
    const ngx_wsp_pmd_params_t  *src, *dst;

    if (s->conf->hook || s->conf->aggregate || s->conf->max_frame_size[dir]) {
        return 0;
    }

    src = &pmd[dir];
    dst = &pmd[1 - dir];

    return ngx_wsp_peer_bits(src, dir) <= ngx_wsp_own_bits(dst, 1 - dir)
           && (ngx_wsp_peer_nct(src, dir) || !ngx_wsp_own_nct(dst, 1 - dir));
}
