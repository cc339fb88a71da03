/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * permessage-deflate (RFC 7692): the negotiation of its parameters in both
 * roles, and the per-message inflate and deflate on a zlib stream.
 *
 * As ngx_wsp_frame.c, this file and ngx_wsp_deflate.c depend on nothing
 * but the C library, zlib and the token rule of ngx_wsp_handshake.c, so that they can be unit-tested, fuzzed and
 * benchmarked without nginx.  Nothing here allocates except through the
 * zalloc/zfree a caller sets in the z_stream before an init function.
 */


#ifndef _NGX_WSP_DEFLATE_H_INCLUDED_
#define _NGX_WSP_DEFLATE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <zlib.h>


/* the longest extension value ngx_wsp_pmd_accept()/_offer() write */
#define NGX_WSP_PMD_MAX_VALUE    128

/* results of ngx_wsp_inflate() and ngx_wsp_deflate() */
#define NGX_WSP_Z_OK             0   /* all input taken, output flushed */
#define NGX_WSP_Z_FULL           1   /* the output space is used up: more
                                        output is due, call again with
                                        more room */
#define NGX_WSP_Z_ERROR          2   /* data that does not inflate */

/* ngx_wsp_deflate() returns FULL, without output, given less room */
#define NGX_WSP_DEFLATE_MIN_ROOM 6


/* the parameters negotiated on one connection (RFC 7692 7.1) */
typedef struct {
    uint8_t         on;              /* permessage-deflate is in use */
    uint8_t         server_nct;      /* server_no_context_takeover */
    uint8_t         client_nct;      /* client_no_context_takeover */
    uint8_t         server_bits;     /* 8..15: the server's LZ77 window */
    uint8_t         client_bits;     /* 8..15: the client's LZ77 window */
} ngx_wsp_pmd_params_t;


/* what the module asks for, in either role */
typedef struct {
    uint8_t         context_takeover;  /* 0: both ends reset their context
                                          after each message */
    uint8_t         window_bits;       /* 8..15: the largest window either
                                          end may use */
} ngx_wsp_pmd_conf_t;


/*
 * Server role.  value is the client's Sec-WebSocket-Extensions (all its
 * lines joined with ", "): a list of offers, of permessage-deflate or of
 * other extensions, in the client's order of preference.  The first
 * permessage-deflate offer that is valid (each parameter known, at most
 * once, with a valid value) and that the module can honour is accepted:
 * p is filled with what both ends will use and out gets the value of the
 * response's Sec-WebSocket-Extensions (at most NGX_WSP_PMD_MAX_VALUE
 * bytes), which asks for what conf asks as far as RFC 7692 lets a server
 * ask (no context takeover, a smaller window).  Returns the length
 * written, or 0 when no offer is accepted (p->on is then 0), also when
 * the value has bad syntax anywhere.  Names compare without regard to
 * case; empty list elements are skipped (RFC 7230 7).
 */
size_t ngx_wsp_pmd_accept(const unsigned char *value, size_t len,
    const ngx_wsp_pmd_conf_t *conf, ngx_wsp_pmd_params_t *p,
    unsigned char *out);

/*
 * Client role: writes the one offer the module makes (at most
 * NGX_WSP_PMD_MAX_VALUE bytes) and returns its length.
 */
size_t ngx_wsp_pmd_offer(const ngx_wsp_pmd_conf_t *conf, unsigned char *out);

/*
 * Client role: checks the value of the server's Sec-WebSocket-Extensions
 * against the offer ngx_wsp_pmd_offer() made with conf.  Returns 0 and
 * fills p when it is a valid answer, else -1 with *err set to a static
 * text (an extension not offered, a parameter unknown, repeated, with a
 * bad value, or that the offer did not allow).  An empty value (no list
 * element) returns 0 with p->on 0: nothing was accepted.  The err text
 * for a foreign extension is "an extension that was not offered".
 */
int ngx_wsp_pmd_check_answer(const unsigned char *value, size_t len,
    const ngx_wsp_pmd_conf_t *conf, ngx_wsp_pmd_params_t *p,
    const char **err);


/*
 * A raw inflate stream for the messages of a peer that uses a window of
 * at most 2^bits bytes.  z's zalloc, zfree and opaque are the caller's.
 * Returns zlib's Z_OK or its error.
 */
int ngx_wsp_inflate_init(z_stream *z, int bits);

/*
 * Inflates the n bytes at in, the compressed payload of a frame, into
 * [*out, end), advancing *out.  fin: the frame ends its message, and the
 * 4 bytes 0x00 0x00 0xff 0xff RFC 7692 7.2.2 has the receiver append are
 * fed after the payload.  *used (the input taken) and *out are set on
 * every return.  Returns NGX_WSP_Z_OK when all of it is inflated
 * (the stream is then at the end of the message when fin), NGX_WSP_Z_FULL
 * when [*out, end) is full and more output may be due (call again with
 * in advanced by *used and more room; a message that ends exactly at
 * end returns OK, so a cap needs no extra byte), NGX_WSP_Z_ERROR for
 * data that is not a valid deflate stream, for a message whose end
 * (with the tail) is not an empty stored block, or for zlib's want of
 * memory.  A final block (BFINAL: RFC 7692 7.2.3.4 lets a sender flush
 * so) is taken: the stream restarts at once with the window it had, and
 * if the block ends the payload the message ends there (the tail is not
 * fed).  Between messages nothing is to be done; a caller may
 * inflateReset() when the peer has no context takeover.
 */
int ngx_wsp_inflate(z_stream *z, const unsigned char *in, size_t n,
    size_t *used, int fin, unsigned char **out, unsigned char *end);


/*
 * A raw deflate stream with a window of 2^bits bytes (8 is taken as 9,
 * which zlib's deflate needs; its matches stay within 2^8 - 6 bytes, so a
 * peer that asked for 8 can still inflate them) and zlib's memLevel and
 * compression level.  Returns zlib's Z_OK or its error.
 */
int ngx_wsp_deflate_init(z_stream *z, int level, int bits, int mem_level);

/*
 * Deflates the n bytes at in into [*out, end), advancing *out; the output
 * ends on a byte boundary (Z_SYNC_FLUSH).  fin: the message ends here,
 * and the 4 bytes 0x00 0x00 0xff 0xff that end the flush are taken back
 * (RFC 7692 7.2.1): *out moves back by 4.  The caller keeps the output of
 * the calls for one frame contiguous (a buffer that grows keeps what it
 * holds), so that those bytes are still there when a call ended FULL
 * inside them.  Returns NGX_WSP_Z_OK or NGX_WSP_Z_FULL as ngx_wsp_inflate()
 * does (used: the input taken); FULL, with nothing done, when given less
 * than NGX_WSP_DEFLATE_MIN_ROOM bytes of room.  An empty message becomes
 * the single byte 0x00; an empty last frame after frames with data too.
 * NGX_WSP_Z_ERROR only for a zlib error (a stream never initialized).
 * The caller calls deflateReset() after a message when it has no
 * context takeover.
 */
int ngx_wsp_deflate(z_stream *z, const unsigned char *in, size_t n,
    size_t *used, int fin, unsigned char **out, unsigned char *end);

/*
 * What zlib allocates for one stream of each kind: zconf.h's formulas
 * plus the state structures, an upper bound within 1 KB (a unit test
 * counts it) for zlib 1.2.x on 64 bits.
 */
size_t ngx_wsp_inflate_memory(int bits);
size_t ngx_wsp_deflate_memory(int bits, int mem_level);


#endif /* _NGX_WSP_DEFLATE_H_INCLUDED_ */
