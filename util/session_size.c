/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The session's size by part (docs/design.md, "What an idle session
 * holds"), from the module's own declarations: built by util/session-size
 * against the configured nginx tree (make), printed in bytes.
 */

#include "ngx_http_ws_proxy_module.h"

#include <stdio.h>


#define part(name, from, to)                                                 \
    printf("%-44s %5zu\n", name,                                             \
           offsetof(ngx_http_ws_proxy_t, to)                                 \
           - offsetof(ngx_http_ws_proxy_t, from))


int
main(void)
{
    printf("%-44s %5zu\n", "ngx_http_ws_proxy_t (the session)",
           sizeof(ngx_http_ws_proxy_t));

    part("  id, request, options", queue, client);
    printf("%-44s %5zu\n", "    of which the options",
           sizeof(ngx_http_ws_proxy_opts_t));
    printf("%-44s %5zu\n", "    of which the core's options",
           sizeof(ngx_wsp_opts_t));
    part("  client side", client, peer);
    part("  upstream side (connect, handshake, TLS)", peer, dir);
    part("  the two directions", dir, core);
    printf("%-44s %5zu\n", "    one direction",
           sizeof(ngx_http_ws_proxy_dir_t));
    printf("%-44s %5zu\n", "      of which the core's (ngx_wsp_sdir_t)",
           sizeof(ngx_wsp_sdir_t));
    part("  the core's session fields", core, sema);
    part("  Lua wake-up, close timer, liveness, drain", sema, lua_log);
    part("  Lua's log lines, result, error", lua_log, metrics);
    part("  metrics", metrics, uscf);
    printf("%-44s %5zu\n", "  groups, caps, rates, ws_proxy_pass",
           sizeof(ngx_http_ws_proxy_t)
           - offsetof(ngx_http_ws_proxy_t, uscf));

    printf("%-44s %5zu\n", "lazy: a direction's control block",
           sizeof(ngx_wsp_ctl_t));

    return 0;
}
