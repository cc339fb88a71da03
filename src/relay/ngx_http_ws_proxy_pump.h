/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * What the files of the pump share among themselves (nothing outside the
 * pump includes this): events and output (ngx_http_ws_proxy_pump.c),
 * frames (ngx_http_ws_proxy_frames.c), the close handshake and the end of
 * a session (ngx_http_ws_proxy_close.c), Lua's verdicts and controls
 * (ngx_http_ws_proxy_verdict.c).  See docs/design.md for the states.
 */


#ifndef _NGX_HTTP_WS_PROXY_PUMP_H_INCLUDED_
#define _NGX_HTTP_WS_PROXY_PUMP_H_INCLUDED_


#include "ngx_http_ws_proxy_module.h"


/* the peer that sends a direction's frames, by NGX_WSP_DIR_* */
extern const char  *ngx_http_ws_proxy_role[];

#define ngx_wsp_src_role(d)  ngx_http_ws_proxy_role[(d)->dir]
#define ngx_wsp_dst_role(d)  ngx_http_ws_proxy_role[1 - (d)->dir]

/* the other direction of the session */
#define ngx_wsp_other(d)     (&ngx_wsp_dir_wp(d)->dir[1 - (d)->dir])

/* no close and no peer gone in either direction: all states are 0 */
#define ngx_wsp_steady(wp)                                                   \
    (((wp)->dir[0].rx | (wp)->dir[0].tx | (wp)->dir[1].rx | (wp)->dir[1].tx) \
     == 0)


static ngx_inline ngx_int_t
ngx_http_ws_proxy_has_output(ngx_http_ws_proxy_dir_t *d)
{
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_wsp_dir_wp(d);

    /* the end of the 101 in nginx's chain goes before the frames */
    return ngx_wsp_has_output(d)
           || (d->dst == wp->client && wp->request->out);
}


/* ngx_http_ws_proxy_pump.c: events, output, buffers */
ngx_int_t ngx_http_ws_proxy_flush(ngx_http_ws_proxy_dir_t *d);
ngx_int_t ngx_http_ws_proxy_get_buffer(ngx_http_ws_proxy_dir_t *d);
void ngx_http_ws_proxy_release(ngx_http_ws_proxy_dir_t *d);
int ngx_http_ws_proxy_reserve(ngx_wsp_sdir_t *sd, size_t size);
void ngx_http_ws_proxy_free_msg(ngx_http_ws_proxy_dir_t *d);

/* ngx_http_ws_proxy_frames.c: the relay's frames, Kong's close line */
size_t ngx_http_ws_proxy_frame(u_char *hdr, u_char *out,
    const u_char *payload, size_t len, ngx_uint_t fin, ngx_uint_t opcode,
    ngx_uint_t masked);
#define ngx_http_ws_proxy_close_payload  ngx_wsp_close_payload
void ngx_http_ws_proxy_log_close(ngx_http_ws_proxy_dir_t *d,
    ngx_uint_t code, u_char *reason, size_t len);

/*
 * The session core's transitions (ngx_wsp_session.c: the close handshake,
 * peers gone, violations, limits), called by the relay's names on its
 * directions
 */
#define ngx_http_ws_proxy_violation(d, code, reason, log_reason)            \
    ngx_wsp_violation(&(d)->core, code, reason, log_reason)
#define ngx_http_ws_proxy_limit(d, limit, n)                                 \
    ngx_wsp_limit(&(d)->core, limit, n)
#define ngx_http_ws_proxy_invalid_utf8(d, raw)                               \
    ngx_wsp_invalid_utf8(&(d)->core, raw)
#define ngx_http_ws_proxy_close_due(d, code, reason, when)                   \
    ngx_wsp_close_due(&(d)->core, code, reason, when)
#define ngx_http_ws_proxy_release_deferred(wp)                               \
    ngx_wsp_release_deferred(&(wp)->core)
#define ngx_http_ws_proxy_queue_close(d, code, reason, len)                  \
    ngx_wsp_queue_close(&(d)->core, code, reason, len)
#define ngx_http_ws_proxy_src_gone(d)  ngx_wsp_src_gone(&(d)->core)
#define ngx_http_ws_proxy_dst_gone(d)  ngx_wsp_dst_gone(&(d)->core)
#define ngx_http_ws_proxy_drop_pending(d)  ngx_wsp_drop_pending(&(d)->core)

/* ngx_http_ws_proxy_close.c: the core's callbacks, the end */
void ngx_http_ws_proxy_close_timer(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_src_hup(ngx_http_ws_proxy_dir_t *d);
#define ngx_http_ws_proxy_fail(wp, reason)                                   \
    ngx_wsp_fail(&(wp)->core, reason)
ngx_int_t ngx_http_ws_proxy_done(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_finish(ngx_http_ws_proxy_t *wp);
void ngx_http_ws_proxy_goodbye(ngx_http_ws_proxy_t *wp,
    ngx_uint_t to_client);

/* ngx_http_ws_proxy_deflate.c: the data plane of permessage-deflate */
int ngx_http_ws_proxy_inflate(ngx_wsp_sdir_t *sd, u_char *in, size_t n);
int ngx_http_ws_proxy_deflate(ngx_wsp_sdir_t *sd, unsigned fin,
    u_char **data, size_t *len);
void ngx_http_ws_proxy_deflate_idle(ngx_http_ws_proxy_dir_t *d);

/* ngx_http_ws_proxy_live.c: a control frame's time, the module's pongs */

/* ngx_http_ws_proxy_verdict.c: Lua's verdicts and controls */
void ngx_http_ws_proxy_hand_over(ngx_wsp_sdir_t *sd);
void ngx_http_ws_proxy_free_injected(ngx_http_ws_proxy_dir_t *d);


#endif /* _NGX_HTTP_WS_PROXY_PUMP_H_INCLUDED_ */
