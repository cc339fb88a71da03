/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * Module definition, directives, and the session object shared by the
 * handshake, upstream, pump and FFI files.
 */


#include "ngx_http_ws_proxy_module.h"


static ngx_int_t ngx_http_ws_proxy_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_ws_proxy_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_ws_proxy_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_ws_proxy_init_process(ngx_cycle_t *cycle);
static void ngx_http_ws_proxy_exit_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_ws_proxy_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static void *ngx_http_ws_proxy_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_ws_proxy_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_ws_proxy_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_ws_proxy_size_not_zero(ngx_conf_t *cf, void *post,
    void *data);
static char *ngx_http_ws_proxy_msec_not_zero(ngx_conf_t *cf, void *post,
    void *data);


/*
 * A size or a time of 0 has no meaning here (an input buffer of 0 bytes, a
 * limit that refuses every frame, a timer that fires at once): refused, as
 * the matching options of new() and connect() refuse it.
 */

static ngx_conf_post_t  ngx_http_ws_proxy_size_post =
    { ngx_http_ws_proxy_size_not_zero };

static ngx_conf_post_t  ngx_http_ws_proxy_msec_post =
    { ngx_http_ws_proxy_msec_not_zero };


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


/* permessage-deflate: the connections that negotiate it, and its ranges */

static ngx_conf_enum_t  ngx_http_ws_proxy_deflate_sides[] = {
    { ngx_string("off"), 0 },
    { ngx_string("on"), NGX_WSP_RUN_BOTH },
    { ngx_string("client"), NGX_WSP_RUN_DIR(NGX_WSP_DIR_CLIENT) },
    { ngx_string("upstream"), NGX_WSP_RUN_DIR(NGX_WSP_DIR_UPSTREAM) },
    { ngx_null_string, 0 }
};

static ngx_conf_num_bounds_t  ngx_http_ws_proxy_deflate_bits_bounds = {
    ngx_conf_check_num_bounds, 8, 15
};

static ngx_conf_num_bounds_t  ngx_http_ws_proxy_deflate_level_bounds = {
    ngx_conf_check_num_bounds, 0, 9
};

static ngx_conf_num_bounds_t  ngx_http_ws_proxy_deflate_mem_bounds = {
    ngx_conf_check_num_bounds, 1, 9
};

#if (NGX_HTTP_SSL)

/* ws_proxy_ssl_protocols: the names of proxy_ssl_protocols */

static ngx_conf_bitmask_t  ngx_http_ws_proxy_ssl_protocols[] = {
    { ngx_string("SSLv2"), NGX_SSL_SSLv2 },
    { ngx_string("SSLv3"), NGX_SSL_SSLv3 },
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};

#endif


/* ws_proxy_tap_payloads: what a tap's ring takes in one record */

static ngx_conf_num_bounds_t  ngx_http_ws_proxy_tap_payloads_bounds = {
    ngx_conf_check_num_bounds, 0, NGX_WSP_TAP_PAYLOAD_MAX
};


/* as limit_conn_status, limit_conn_log_level */

static ngx_conf_num_bounds_t  ngx_http_ws_proxy_limit_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599
};


static ngx_conf_enum_t  ngx_http_ws_proxy_limit_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_ws_proxy_commands[] = {

    { ngx_string("ws_proxy_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, buffer_size),
      &ngx_http_ws_proxy_size_post },

    { ngx_string("ws_proxy_handshake_buffer_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, handshake_buffer_size),
      NULL },

    { ngx_string("ws_proxy_max_payload"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, max_payload),
      &ngx_http_ws_proxy_size_post },

    { ngx_string("ws_proxy_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, connect_timeout),
      &ngx_http_ws_proxy_msec_post },

    { ngx_string("ws_proxy_send_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, send_timeout),
      &ngx_http_ws_proxy_msec_post },

    { ngx_string("ws_proxy_read_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, read_timeout),
      &ngx_http_ws_proxy_msec_post },

    { ngx_string("ws_proxy_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, close_timeout),
      &ngx_http_ws_proxy_msec_post },

    /* liveness (ngx_http_ws_proxy_live.c): 0 turns it off */

    { ngx_string("ws_proxy_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("ws_proxy_ping_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, ping_interval),
      NULL },

    { ngx_string("ws_proxy_ping_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, ping_timeout),
      NULL },

    { ngx_string("ws_proxy_session_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, session_timeout),
      NULL },

    /* the drain: ngx_http_ws_proxy_drain.c */
    { ngx_string("ws_proxy_drain_time"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, drain_time),
      NULL },

    /* permessage-deflate: ngx_http_ws_proxy_negotiate.c */
    { ngx_string("ws_proxy_deflate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, deflate),
      &ngx_http_ws_proxy_deflate_sides },

    { ngx_string("ws_proxy_deflate_context_takeover"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, deflate_takeover),
      NULL },

    { ngx_string("ws_proxy_deflate_window_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, deflate_bits),
      &ngx_http_ws_proxy_deflate_bits_bounds },

    { ngx_string("ws_proxy_client_deflate_context_takeover"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, side_deflate_takeover[0]),
      NULL },

    { ngx_string("ws_proxy_upstream_deflate_context_takeover"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, side_deflate_takeover[1]),
      NULL },

    { ngx_string("ws_proxy_client_deflate_window_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, side_deflate_bits[0]),
      &ngx_http_ws_proxy_deflate_bits_bounds },

    { ngx_string("ws_proxy_upstream_deflate_window_bits"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, side_deflate_bits[1]),
      &ngx_http_ws_proxy_deflate_bits_bounds },

    { ngx_string("ws_proxy_deflate_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, deflate_level),
      &ngx_http_ws_proxy_deflate_level_bounds },

    { ngx_string("ws_proxy_deflate_mem_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, deflate_mem_level),
      &ngx_http_ws_proxy_deflate_mem_bounds },

#if (NGX_HTTP_SSL)
    { ngx_string("ws_proxy_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, ssl_trusted_certificate),
      NULL },
#endif

    /* metrics: ngx_http_ws_proxy_metrics.c, ngx_http_ws_proxy_status.c */

    { ngx_string("ws_proxy_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_ws_proxy_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_proxy_zone_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, zone_key),
      NULL },

    { ngx_string("ws_proxy_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_ws_proxy_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* the console's flight recorder: ngx_http_ws_proxy_registry.c */

    { ngx_string("ws_proxy_flight_recorder"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_ws_proxy_flight_recorder,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* the tap's payloads: ngx_http_ws_proxy_tap.c */

    { ngx_string("ws_proxy_tap_payloads"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, tap_payloads),
      &ngx_http_ws_proxy_tap_payloads_bounds },

    /* session caps per key: ngx_http_ws_proxy_limit.c */

    { ngx_string("ws_proxy_limit_session_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_ws_proxy_limit_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_proxy_limit_sessions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_ws_proxy_limit_sessions,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_proxy_limit_sessions_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, limit.status),
      &ngx_http_ws_proxy_limit_status_bounds },

    { ngx_string("ws_proxy_limit_sessions_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, limit.log_level),
      &ngx_http_ws_proxy_limit_log_levels },

    /* message rates per key or session: ngx_http_ws_proxy_limit.c */

    { ngx_string("ws_proxy_limit_message_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_http_ws_proxy_limit_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_proxy_limit_messages"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF
      |NGX_CONF_1MORE,
      ngx_http_ws_proxy_limit_messages,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* upstream groups: ngx_http_ws_proxy_balancer.c */

    { ngx_string("ws_proxy_next_upstream_tries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, next_upstream_tries),
      NULL },

    { ngx_string("ws_proxy_next_upstream_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, next_upstream_timeout),
      NULL },

    /* ws_proxy_pass and its options: ngx_http_ws_proxy_pass.c */

    { ngx_string("ws_proxy_pass"),
      NGX_HTTP_LOC_CONF|NGX_HTTP_LIF_CONF|NGX_CONF_TAKE1,
      ngx_http_ws_proxy_pass,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_proxy_set_header"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_ws_proxy_set_header,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("ws_proxy_pass_request_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.pass_request_headers),
      NULL },

    { ngx_string("ws_proxy_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.max_frame_size),
      NULL },

    { ngx_string("ws_proxy_client_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t,
               pass.side_max_frame_size[NGX_WSP_DIR_CLIENT]),
      NULL },

    { ngx_string("ws_proxy_upstream_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t,
               pass.side_max_frame_size[NGX_WSP_DIR_UPSTREAM]),
      NULL },

    { ngx_string("ws_proxy_max_fragments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.max_fragments),
      NULL },

    { ngx_string("ws_proxy_client_max_fragments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t,
               pass.side_max_fragments[NGX_WSP_DIR_CLIENT]),
      NULL },

    { ngx_string("ws_proxy_upstream_max_fragments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t,
               pass.side_max_fragments[NGX_WSP_DIR_UPSTREAM]),
      NULL },

    { ngx_string("ws_proxy_recv_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.recv_timeout),
      &ngx_http_ws_proxy_msec_post },

    { ngx_string("ws_proxy_aggregate_fragments"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.aggregate),
      NULL },

#if (NGX_HTTP_SSL)
    { ngx_string("ws_proxy_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.ssl_verify),
      NULL },

    { ngx_string("ws_proxy_ssl_name"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.ssl_name),
      NULL },

    { ngx_string("ws_proxy_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.ssl_certificate),
      NULL },

    { ngx_string("ws_proxy_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, pass.ssl_certificate_key),
      NULL },

    /* the location's TLS context: ngx_http_ws_proxy_ssl_conf.c */

    { ngx_string("ws_proxy_ssl_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, ssl_protocols),
      &ngx_http_ws_proxy_ssl_protocols },

    { ngx_string("ws_proxy_ssl_ciphers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, ssl_ciphers),
      NULL },

    { ngx_string("ws_proxy_ssl_verify_depth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_ws_proxy_loc_conf_t, ssl_verify_depth),
      NULL },
#endif

      ngx_null_command
};


/* variables: what each peer sent, filled live and final after the session */

#define NGX_WSP_VAR_FRAMES       0
#define NGX_WSP_VAR_BYTES        1
#define NGX_WSP_VAR_MESSAGES     2
#define NGX_WSP_VAR_CLOSE_CODE   3
#define NGX_WSP_VAR_CLOSE_REASON 4
#define NGX_WSP_VAR_CLOSED_BY    5
#define NGX_WSP_VAR_DURATION     6
#define NGX_WSP_VAR_PROTOCOL     7
#define NGX_WSP_VAR_END          8
#define NGX_WSP_VAR_DEFLATE      9

#define ngx_wsp_var(what, dir)  ((what) << 1 | (dir))


static ngx_http_variable_t  ngx_http_ws_proxy_vars[] = {

    { ngx_string("ws_proxy_client_frames"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_FRAMES, 0), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_upstream_frames"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_FRAMES, 1),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_client_bytes"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_BYTES, 0), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_upstream_bytes"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_BYTES, 1), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_client_messages"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_MESSAGES, 0),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_upstream_messages"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_MESSAGES, 1),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_client_close_code"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_CLOSE_CODE, 0),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_upstream_close_code"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_CLOSE_CODE, 1),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_client_close_reason"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_CLOSE_REASON, 0),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_upstream_close_reason"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_CLOSE_REASON, 1),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_closed_by"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_CLOSED_BY, 0), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_end"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_END, 0), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_duration"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_DURATION, 0), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_protocol"), NULL, ngx_http_ws_proxy_variable,
      ngx_wsp_var(NGX_WSP_VAR_PROTOCOL, 0), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_client_deflate"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_DEFLATE, 0),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("ws_proxy_upstream_deflate"), NULL,
      ngx_http_ws_proxy_variable, ngx_wsp_var(NGX_WSP_VAR_DEFLATE, 1),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_http_module_t  ngx_http_ws_proxy_module_ctx = {
    ngx_http_ws_proxy_add_variables,       /* preconfiguration */
    ngx_http_ws_proxy_init,                /* postconfiguration */

    ngx_http_ws_proxy_create_main_conf,    /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_ws_proxy_create_loc_conf,     /* create location configuration */
    ngx_http_ws_proxy_merge_loc_conf       /* merge location configuration */
};


ngx_module_t  ngx_http_ws_proxy_module = {
    NGX_MODULE_V1,
    &ngx_http_ws_proxy_module_ctx,         /* module context */
    ngx_http_ws_proxy_commands,            /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_ws_proxy_init_process,        /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_ws_proxy_exit_process,        /* exit process */
    ngx_http_ws_proxy_exit_process,        /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_ws_proxy_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_ws_proxy_body_filter;

    /* what the console (ops) needs of the relay, handed down */
    ngx_http_ws_proxy_console_init(ngx_http_ws_proxy_close,
                                   ngx_http_ws_proxy_end_name);

    return ngx_http_ws_proxy_metrics_init_conf(cf);
}


/*
 * After the 101 the client connection carries WebSocket frames, which only
 * the module writes: response body bytes (ngx.say(), ngx.print()) would
 * reach the client as garbage in the frame stream, so they are refused:
 * logged and discarded.  NGX_ERROR would make nginx fail the connection
 * (and with it the session) for a stray write.  Buffers without data (the
 * flush after the 101, the last buffer of the request's end) pass.
 */

static ngx_int_t
ngx_http_ws_proxy_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_buf_t            *b;
    ngx_uint_t            refused;
    ngx_chain_t          *cl;
    ngx_http_ws_proxy_t  *wp;

    wp = ngx_http_get_module_ctx(r, ngx_http_ws_proxy_module);

    if (wp == NULL || !wp->client_handshake) {
        return ngx_http_next_body_filter(r, in);
    }

    refused = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ngx_buf_special(b) && ngx_buf_size(b) > 0) {
            b->pos = b->last;
            b->file_pos = b->file_last;
            refused = 1;
        }
    }

    if (!refused) {
        return ngx_http_next_body_filter(r, in);
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "ws_proxy: response body output after the WebSocket "
                  "handshake refused and discarded (ngx.say() or "
                  "ngx.print() would write into the frame stream)");

    return NGX_OK;
}


static ngx_int_t
ngx_http_ws_proxy_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    if (ngx_http_ws_proxy_balancer_add_variables(cf) != NGX_OK
        || ngx_http_ws_proxy_limit_add_variables(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (v = ngx_http_ws_proxy_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * $ws_proxy_client_deflate: the Sec-WebSocket-Extensions of the client's
 * 101, as sent.  The parameters in effect can hold more (the module's own
 * smaller window, which it need not announce): the variable says what the
 * client was told.
 */

static void
ngx_http_ws_proxy_sent_extensions(ngx_http_request_t *r,
    ngx_http_variable_value_t *v)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    v->len = 0;
    v->data = (u_char *) "";

    if (r->headers_out.status != NGX_HTTP_SWITCHING_PROTOCOLS) {
        return;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash
            && h[i].key.len == sizeof("Sec-WebSocket-Extensions") - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) "Sec-WebSocket-Extensions",
                               h[i].key.len) == 0)
        {
            v->len = h[i].value.len;
            v->data = h[i].value.data;
            return;
        }
    }
}


static ngx_int_t
ngx_http_ws_proxy_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                   *p;
    ngx_uint_t                what;
    ngx_msec_int_t            ms;
    ngx_http_ws_proxy_t      *wp;
    ngx_http_ws_proxy_dir_t  *d;

    static const char  *by[] = { "", "client", "upstream", "proxy" };

    wp = ngx_http_get_module_ctx(r, ngx_http_ws_proxy_module);

    if (wp == NULL || wp->start_time == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    d = &wp->dir[data & 1];
    what = data >> 1;

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 8);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    switch (what) {

    case NGX_WSP_VAR_FRAMES:
        v->len = ngx_sprintf(p, "%uL", d->frames) - p;
        break;

    case NGX_WSP_VAR_BYTES:
        v->len = ngx_sprintf(p, "%uL", d->bytes) - p;
        break;

    case NGX_WSP_VAR_MESSAGES:
        v->len = ngx_sprintf(p, "%uL", d->messages) - p;
        break;

    case NGX_WSP_VAR_CLOSE_CODE:
        if (d->close_code < 0) {
            v->len = 0;
        } else {
            v->len = ngx_sprintf(p, "%i", d->close_code) - p;
        }
        break;

    case NGX_WSP_VAR_CLOSE_REASON:
        if (d->ctl) {
            v->data = d->ctl->close_reason;
            v->len = d->ctl->close_reason_len;

        } else {
            v->len = 0;
        }
        break;

    case NGX_WSP_VAR_CLOSED_BY:
        v->data = (u_char *) by[wp->closed_by];
        v->len = ngx_strlen(by[wp->closed_by]);
        break;

    case NGX_WSP_VAR_END:
        /* the first reason recorded; empty while none is */
        v->data = ngx_http_ws_proxy_end_name[wp->ended_by].data;
        v->len = ngx_http_ws_proxy_end_name[wp->ended_by].len;
        break;

    case NGX_WSP_VAR_DURATION:
        ms = (ngx_msec_int_t) ((wp->end_time ? wp->end_time
                                             : ngx_current_msec)
                               - wp->start_time);
        ms = ngx_max(ms, 0);
        v->len = ngx_sprintf(p, "%T.%03M", (time_t) ms / 1000, ms % 1000)
                 - p;
        break;

    case NGX_WSP_VAR_DEFLATE:
        if ((data & 1) == NGX_WSP_DIR_CLIENT) {
            ngx_http_ws_proxy_sent_extensions(r, v);
            break;
        }

        /* what was negotiated on the upstream's connection */
        v->data = ngx_pnalloc(r->pool, NGX_WSP_PMD_MAX_VALUE);
        if (v->data == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_http_ws_proxy_deflate_value(&wp->pmd[data & 1],
                                                 v->data);
        break;

    default: /* NGX_WSP_VAR_PROTOCOL */
        v->data = wp->protocol.data;
        v->len = wp->protocol.len;
        break;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * The main configuration holds the metrics zone only.  Called first of
 * the module's code in http{}: the layers below are handed the module
 * here, before they read a directive or a configuration through it.
 */

static void *
ngx_http_ws_proxy_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_ws_proxy_self = &ngx_http_ws_proxy_module;

    return ngx_pcalloc(cf->pool, sizeof(ngx_http_ws_proxy_main_conf_t));
}


static void *
ngx_http_ws_proxy_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_ws_proxy_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_ws_proxy_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->buffer_size = NGX_CONF_UNSET_SIZE;
    conf->handshake_buffer_size = NGX_CONF_UNSET_SIZE;
    conf->max_payload = NGX_CONF_UNSET_SIZE;
    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->send_timeout = NGX_CONF_UNSET_MSEC;
    conf->read_timeout = NGX_CONF_UNSET_MSEC;
    conf->close_timeout = NGX_CONF_UNSET_MSEC;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->ping_interval = NGX_CONF_UNSET_MSEC;
    conf->ping_timeout = NGX_CONF_UNSET_MSEC;
    conf->session_timeout = NGX_CONF_UNSET_MSEC;
    conf->drain_time = NGX_CONF_UNSET_MSEC;
    conf->status_control = NGX_CONF_UNSET;
    conf->flight_recorder = NGX_CONF_UNSET_UINT;
    conf->tap_payloads = NGX_CONF_UNSET_SIZE;
    conf->deflate = NGX_CONF_UNSET_UINT;
    conf->deflate_takeover = NGX_CONF_UNSET;
    conf->deflate_bits = NGX_CONF_UNSET_UINT;
    conf->side_deflate_takeover[0] = NGX_CONF_UNSET;
    conf->side_deflate_takeover[1] = NGX_CONF_UNSET;
    conf->side_deflate_bits[0] = NGX_CONF_UNSET_UINT;
    conf->side_deflate_bits[1] = NGX_CONF_UNSET_UINT;
    conf->deflate_level = NGX_CONF_UNSET_UINT;
    conf->deflate_mem_level = NGX_CONF_UNSET_UINT;
    conf->zone_key = NGX_CONF_UNSET_PTR;
#if (NGX_HTTP_SSL)
    conf->ssl_verify_depth = NGX_CONF_UNSET_UINT;
#endif

    /* upstream groups, ws_proxy_pass */
    conf->next_upstream_tries = NGX_CONF_UNSET_UINT;
    conf->next_upstream_timeout = NGX_CONF_UNSET_MSEC;
    ngx_http_ws_proxy_pass_create(&conf->pass);
    ngx_http_ws_proxy_limit_create(&conf->limit);

    return conf;
}


static char *
ngx_http_ws_proxy_size_not_zero(ngx_conf_t *cf, void *post, void *data)
{
    size_t  *sp = data;

    if (*sp == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ws_proxy_msec_not_zero(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *mp = data;

    if (*mp == 0) {
        return "must be more than 0";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_ws_proxy_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_ws_proxy_loc_conf_t *prev = parent;
    ngx_http_ws_proxy_loc_conf_t *conf = child;

    ngx_uint_t                      i;
    ngx_http_ws_proxy_main_conf_t  *wmcf;

    ngx_conf_merge_size_value(conf->buffer_size, prev->buffer_size,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->handshake_buffer_size,
                              prev->handshake_buffer_size, 8 * 1024);
    ngx_conf_merge_size_value(conf->max_payload, prev->max_payload,
                              16 * 1024 * 1024);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              60000);
    ngx_conf_merge_msec_value(conf->send_timeout, prev->send_timeout,
                              60000);
    ngx_conf_merge_msec_value(conf->read_timeout, prev->read_timeout,
                              60000);
    ngx_conf_merge_msec_value(conf->close_timeout, prev->close_timeout,
                              5000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 0);
    ngx_conf_merge_msec_value(conf->ping_interval, prev->ping_interval, 0);
    ngx_conf_merge_msec_value(conf->ping_timeout, prev->ping_timeout, 0);
    ngx_conf_merge_msec_value(conf->session_timeout, prev->session_timeout,
                              0);
    ngx_conf_merge_msec_value(conf->drain_time, prev->drain_time, 0);
    ngx_conf_merge_value(conf->status_control, prev->status_control, 0);
    ngx_conf_merge_uint_value(conf->flight_recorder, prev->flight_recorder,
                              0);
    ngx_conf_merge_size_value(conf->tap_payloads, prev->tap_payloads, 0);
    ngx_conf_merge_uint_value(conf->deflate, prev->deflate, 0);
    ngx_conf_merge_value(conf->deflate_takeover, prev->deflate_takeover, 0);
    ngx_conf_merge_uint_value(conf->deflate_bits, prev->deflate_bits, 15);

    /* a side's own stays unset when no level sets it, as in pass.c */

    for (i = 0; i < 2; i++) {
        ngx_conf_merge_value(conf->side_deflate_takeover[i],
                             prev->side_deflate_takeover[i], NGX_CONF_UNSET);
        ngx_conf_merge_uint_value(conf->side_deflate_bits[i],
                                  prev->side_deflate_bits[i],
                                  NGX_CONF_UNSET_UINT);
    }
    ngx_conf_merge_uint_value(conf->deflate_level, prev->deflate_level, 1);
    ngx_conf_merge_uint_value(conf->deflate_mem_level,
                              prev->deflate_mem_level, 8);
    ngx_conf_merge_ptr_value(conf->zone_key, prev->zone_key, NULL);

    if (conf->zone_key) {
        /* checked with the zone at postconfiguration */
        wmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_ws_proxy_module);
        wmcf->zone_key = 1;
    }

    /* upstream groups, ws_proxy_pass */
    ngx_conf_merge_uint_value(conf->next_upstream_tries,
                              prev->next_upstream_tries, 0);
    ngx_conf_merge_msec_value(conf->next_upstream_timeout,
                              prev->next_upstream_timeout, 0);

    if (ngx_http_ws_proxy_pass_merge(cf, &prev->pass, &conf->pass)
        != NGX_CONF_OK
        || ngx_http_ws_proxy_limit_merge(cf, &prev->limit, &conf->limit)
           != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

#if (NGX_HTTP_SSL)
    if (ngx_http_ws_proxy_merge_ssl(cf, prev, conf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }
#endif

    /* without pings there is nothing to time out (a Lua option can give
     * the interval, but then it can give the timeout too) */

    if (conf->ping_timeout && conf->ping_interval == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_proxy_ping_timeout\" needs "
                           "\"ws_proxy_ping_interval\" at the same level "
                           "or above");
        return NGX_CONF_ERROR;
    }

    if (conf->buffer_size < 256) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_proxy_buffer_size\" must be at least 256");
        return NGX_CONF_ERROR;
    }

    /* the upgrade request's own headers take about 500 bytes */

    if (conf->handshake_buffer_size < 1024) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"ws_proxy_handshake_buffer_size\" must be at "
                           "least 1024");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the sessions' ids (ngx_http_ws_proxy_lookup()), never reused */

static uint64_t  ngx_http_ws_proxy_last_id;


static ngx_int_t
ngx_http_ws_proxy_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(ngx_http_ws_proxy_worker_sessions());
    return NGX_OK;
}


static void
ngx_http_ws_proxy_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_ws_proxy_free_buffers();
    ngx_http_ws_proxy_deflate_exit();
    ngx_http_ws_proxy_console_exit();
#if (NGX_HTTP_SSL)
    ngx_http_ws_proxy_ssl_exit();
#endif
}


ngx_http_ws_proxy_t *
ngx_http_ws_proxy_create(ngx_http_request_t *r, ngx_uint_t hook)
{
    ngx_uint_t                     heap;
    ngx_pool_t                    *pool;
    ngx_http_ws_proxy_t           *wp;
    ngx_pool_cleanup_t            *cln;
    ngx_http_ws_proxy_loc_conf_t  *wlcf;

    /*
     * The pool cleanup runs when the request is freed, whatever the way it
     * ends (normal end, Lua error, client abort); it closes the upstream
     * and frees the semaphores after lua-nginx-module has dropped its
     * waiters, so C never posts to a freed semaphore.
     */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    /*
     * The session goes where it costs no new memory: the request pool when
     * one of its blocks has room (nginx's own request data leaves some
     * in the second one), the heap otherwise, as a new pool block would
     * cost 4k for every idle session.  The test is ngx_palloc()'s own.
     * With a hook that room is taken later by the contexts of the light
     * thread lua-nginx-module spawns for it: the session goes to the heap.
     */

    heap = 1;

    for (pool = r->pool->current; pool && !hook; pool = pool->d.next) {
        if ((size_t) (pool->d.end - ngx_align_ptr(pool->d.last, NGX_ALIGNMENT))
            >= sizeof(ngx_http_ws_proxy_t))
        {
            heap = 0;
            break;
        }
    }

    wp = heap ? ngx_calloc(sizeof(ngx_http_ws_proxy_t), r->connection->log)
              : ngx_pcalloc(r->pool, sizeof(ngx_http_ws_proxy_t));
    if (wp == NULL) {
        return NULL;
    }

    wp->heap = heap;
    wp->id = ++ngx_http_ws_proxy_last_id;

    wlcf = ngx_http_get_module_loc_conf(r, ngx_http_ws_proxy_module);

    wp->request = r;
    wp->pool = r->pool;
    wp->log = r->connection->log;
    wp->client = r->connection;
    wp->rc = NGX_OK;

    ngx_http_ws_proxy_conf_opts(wp);
    ngx_http_ws_proxy_deflate_conf(wp, wlcf);
    wp->ssl_verify = wlcf->pass.ssl_verify ? 1 : 0;
    wp->server_name = wlcf->pass.ssl_name;
    wp->connect_timeout = wlcf->connect_timeout;
    wp->send_timeout = wlcf->send_timeout;
    wp->read_timeout = wlcf->read_timeout;

    ngx_http_ws_proxy_core_init(wp);

    cln->handler = ngx_http_ws_proxy_cleanup;
    cln->data = wp;

    /* a single-process nginx does not run init_process: the list is lazy */

    ngx_queue_insert_tail(ngx_http_ws_proxy_worker_sessions(), &wp->queue);

    ngx_http_set_ctx(r, wp, ngx_http_ws_proxy_module);

    return wp;
}


/*
 * The session's options as the location's directives give them: what
 * ws_proxy_pass runs with, and the defaults of new()'s options, which
 * ngx_http_ws_proxy_ffi_set_opts() lays over them.
 */

void
ngx_http_ws_proxy_conf_opts(ngx_http_ws_proxy_t *wp)
{
    ngx_uint_t                      i;
    ngx_http_ws_proxy_pass_conf_t  *pcf;
    ngx_http_ws_proxy_loc_conf_t   *wlcf;

    wlcf = ngx_http_get_module_loc_conf(wp->request, ngx_http_ws_proxy_module);
    pcf = &wlcf->pass;

    wp->opts.max_payload = wlcf->max_payload;
    wp->opts.send_timeout = wlcf->send_timeout;
    wp->opts.close_timeout = wlcf->close_timeout;
    wp->opts.idle_timeout = wlcf->idle_timeout;
    wp->opts.ping_interval = wlcf->ping_interval;
    wp->opts.ping_timeout = wlcf->ping_timeout;
    wp->opts.session_timeout = wlcf->session_timeout;
    wp->opts.drain_time = wlcf->drain_time;
    wp->opts.tap_payloads = (uint16_t) wlcf->tap_payloads;

    /* a side's own limit, else the both-sides one */

    for (i = 0; i < 2; i++) {
        wp->opts.max_frame_size[i] =
            pcf->side_max_frame_size[i] != NGX_CONF_UNSET_SIZE
            ? pcf->side_max_frame_size[i] : pcf->max_frame_size;
        wp->opts.max_fragments[i] =
            pcf->side_max_fragments[i] != NGX_CONF_UNSET_UINT
            ? pcf->side_max_fragments[i] : pcf->max_fragments;
    }

    wp->opts.recv_timeout = pcf->recv_timeout;
    wp->opts.aggregate = pcf->aggregate ? 1 : 0;
}
