/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * lua-nginx-module's semaphore functions, found at run time.  Linked at
 * load time, they made the module unloadable without ngx_http_lua_module
 * (dlopen() failed on the undefined symbols), also for a configuration that
 * only uses ws_proxy_pass.  They are looked up among the symbols the
 * process has loaded (dlsym(RTLD_DEFAULT)) the first time the Lua library
 * asks for the module (ngx_http_ws_proxy_ffi_abi(), _new()): by then
 * ngx_http_lua_module.so, which runs the library, is loaded.  The table
 * they fill is the base layer's (ngx_http_ws_proxy_base.c), which the
 * layers below call through.
 */


#include "ngx_http_ws_proxy_module.h"

#include <dlfcn.h>


ngx_int_t
ngx_http_ws_proxy_lua_resolve(void)
{
    ngx_http_ws_proxy_lua_api_t  api;

    if (ngx_http_ws_proxy_lua_api.sema_gc) {
        return NGX_OK;
    }

    /* the ISO C cast of an object pointer to a function pointer */

    *(void **) &api.sema_new = dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_sema_new");
    *(void **) &api.sema_post = dlsym(RTLD_DEFAULT,
                                      "ngx_http_lua_ffi_sema_post");
    *(void **) &api.sema_count = dlsym(RTLD_DEFAULT,
                                       "ngx_http_lua_ffi_sema_count");
    *(void **) &api.sema_wait = dlsym(RTLD_DEFAULT,
                                      "ngx_http_lua_ffi_sema_wait");
    *(void **) &api.sema_gc = dlsym(RTLD_DEFAULT, "ngx_http_lua_ffi_sema_gc");

    if (api.sema_new == NULL || api.sema_post == NULL
        || api.sema_count == NULL || api.sema_wait == NULL
        || api.sema_gc == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "ws_proxy: lua-nginx-module's semaphore functions "
                      "(ngx_http_lua_ffi_sema_*) not found");
        return NGX_ERROR;
    }

    /* sema_gc last: it says the table is complete */

    ngx_http_ws_proxy_lua_api.sema_new = api.sema_new;
    ngx_http_ws_proxy_lua_api.sema_post = api.sema_post;
    ngx_http_ws_proxy_lua_api.sema_count = api.sema_count;
    ngx_http_ws_proxy_lua_api.sema_wait = api.sema_wait;
    ngx_http_ws_proxy_lua_api.sema_gc = api.sema_gc;

    return NGX_OK;
}
