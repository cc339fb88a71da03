/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * RFC 6455 frame codec: header parsing and writing, masking, close payload
 * checks and incremental UTF-8 validation.
 *
 * This file and ngx_wsp_frame.c depend on nothing but the C library, so that
 * the codec can be unit-tested, fuzzed and benchmarked without nginx.  The
 * module itself only ever calls it on bytes it already holds: nothing here
 * allocates, blocks or keeps hidden state.
 */


#ifndef _NGX_WSP_FRAME_H_INCLUDED_
#define _NGX_WSP_FRAME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <string.h>


#define NGX_WSP_OP_CONT          0x0
#define NGX_WSP_OP_TEXT          0x1
#define NGX_WSP_OP_BINARY        0x2
#define NGX_WSP_OP_CLOSE         0x8
#define NGX_WSP_OP_PING          0x9
#define NGX_WSP_OP_PONG          0xa

/*
 * RSV1 as ngx_wsp_frame_write_header() takes it, or'ed into the opcode
 * (bit 6 of the first byte): permessage-deflate's "compressed"
 */
#define NGX_WSP_RSV1             0x40

/* opcodes 0x8 .. 0xf are control frames (RFC 6455 5.5) */
#define ngx_wsp_is_control(op)   ((op) & 0x8)

#define NGX_WSP_MAX_HEADER       14
#define NGX_WSP_MAX_CONTROL      125

/* roles: who sent the bytes being parsed */
#define NGX_WSP_ROLE_CLIENT      0   /* frames must be masked */
#define NGX_WSP_ROLE_UPSTREAM    1   /* frames must not be masked */

/* close status codes the proxy itself uses */
#define NGX_WSP_CLOSE_NORMAL         1000
#define NGX_WSP_CLOSE_GOING_AWAY     1001
#define NGX_WSP_CLOSE_PROTOCOL       1002
#define NGX_WSP_CLOSE_NO_STATUS      1005   /* never on the wire */
#define NGX_WSP_CLOSE_ABNORMAL       1006   /* never on the wire */
#define NGX_WSP_CLOSE_INVALID_DATA   1007
#define NGX_WSP_CLOSE_POLICY         1008
#define NGX_WSP_CLOSE_TOO_BIG        1009
#define NGX_WSP_CLOSE_INTERNAL       1011

/* results of ngx_wsp_frame_parse_header() */
#define NGX_WSP_PARSE_OK         0
#define NGX_WSP_PARSE_AGAIN      1   /* fewer bytes than a whole header */
#define NGX_WSP_PARSE_ERROR      2   /* see frame->error */


typedef struct {
    uint64_t        payload_len;
    uint32_t        header_len;     /* 2 .. 14 */
    uint8_t         fin;            /* 0 or 1 */
    uint8_t         rsv;            /* RSV1..RSV3 as bits 0x4, 0x2, 0x1 */
    uint8_t         opcode;         /* 0x0 .. 0xf */
    uint8_t         masked;         /* 0 or 1 */
    uint8_t         mask[4];
    const char     *error;          /* static text, set on PARSE_ERROR */
} ngx_wsp_frame_t;


/*
 * Per-direction message state for the fragmentation rules of RFC 6455 5.4.
 * Zero-initialise it; it is updated by ngx_wsp_frame_check().
 */
typedef struct {
    uint8_t         open_opcode;    /* TEXT/BINARY of the open message, or 0 */
    uint8_t         deflate;        /* set by the caller: permessage-deflate
                                       was negotiated with the sender */
    uint8_t         compressed;     /* non-zero: the current data message
                                       has RSV1 */
} ngx_wsp_msg_state_t;

/* RSV1 in ngx_wsp_frame_t.rsv */
#define NGX_WSP_RSV_DEFLATE      0x4


/*
 * Parses one frame header from the len bytes at p.  Returns PARSE_OK and
 * fills f (header_len says how many bytes it took), PARSE_AGAIN when more
 * bytes are needed, or PARSE_ERROR with f->error set when the header is
 * malformed in a way visible without context: a 64-bit length with its most
 * significant bit set.  A non-minimal length encoding is accepted: RFC 6455
 * asks senders for the minimal one but gives receivers no rule about it.
 *
 * This and ngx_wsp_frame_check() are inline: the session core runs both on
 * every frame, and the calls into another object file cost it more than
 * either body (docs/performance.md, "Per message").
 */

static inline int
ngx_wsp_frame_parse_header(const unsigned char *p, size_t len,
    ngx_wsp_frame_t *f)
{
    size_t    need;
    uint64_t  n;
    int       i;

    if (len < 2) {
        return NGX_WSP_PARSE_AGAIN;
    }

    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 0x7;
    f->opcode = p[0] & 0xf;
    f->masked = p[1] >> 7;
    n = p[1] & 0x7f;
    need = 2 + (n == 126 ? 2 : n == 127 ? 8 : 0) + (f->masked ? 4 : 0);

    if (len < need) {
        return NGX_WSP_PARSE_AGAIN;
    }

    p += 2;

    if (n == 126) {
        n = ((uint64_t) p[0] << 8) | p[1];
        p += 2;

    } else if (n == 127) {
        if (p[0] & 0x80) {
            f->error = "64-bit payload length with the most significant "
                       "bit set";
            return NGX_WSP_PARSE_ERROR;
        }

        n = 0;
        for (i = 0; i < 8; i++) {
            n = (n << 8) | p[i];
        }

        p += 8;
    }

    if (f->masked) {
        memcpy(f->mask, p, 4);
    }

    f->payload_len = n;
    f->header_len = (uint32_t) need;
    f->error = NULL;

    return NGX_WSP_PARSE_OK;
}

/*
 * Applies the RFC 6455 rules that need the role and the message state:
 * RSV bits without an extension (RSV1 is permessage-deflate's, allowed on
 * the first frame of a data message when st->deflate: RFC 7692 6), reserved
 * opcodes, masking by role, control
 * frames longer than 125 bytes or fragmented, a continuation with no open
 * message, a new data frame inside an open message.  Returns 0 when the
 * frame is acceptable (and updates st), else the close status to send
 * (1002) with *reason set to a static text naming the violation.
 */

static inline int
ngx_wsp_frame_check(const ngx_wsp_frame_t *f, int role,
    ngx_wsp_msg_state_t *st, const char **reason)
{
    if (f->rsv) {
        if (f->rsv != NGX_WSP_RSV_DEFLATE || !st->deflate) {
            *reason = "rsv bits set";
            return 1002;
        }

        /* RSV1: permessage-deflate's "compressed", on a message's start */

        if (ngx_wsp_is_control(f->opcode)) {
            *reason = "rsv1 set on a control frame";
            return 1002;
        }

        if (f->opcode == 0) {
            *reason = "rsv1 set on a continuation frame";
            return 1002;
        }
    }

    if ((f->opcode > 2 && f->opcode < 8) || f->opcode > 0xa) {
        *reason = "reserved opcode";
        return 1002;
    }

    if (role == NGX_WSP_ROLE_CLIENT && !f->masked) {
        *reason = "unmasked client frame";
        return 1002;
    }

    if (role == NGX_WSP_ROLE_UPSTREAM && f->masked) {
        *reason = "masked upstream frame";
        return 1002;
    }

    if (ngx_wsp_is_control(f->opcode)) {
        if (f->payload_len > NGX_WSP_MAX_CONTROL) {
            *reason = "control frame too long";
            return 1002;
        }

        if (!f->fin) {
            *reason = "fragmented control frame";
            return 1002;
        }

        return 0;
    }

    if (f->opcode == 0) {
        if (!st->open_opcode) {
            *reason = "continuation without message";
            return 1002;
        }

        if (f->fin) {
            st->open_opcode = 0;
        }

        return 0;
    }

    if (st->open_opcode) {
        *reason = "new message inside fragmented message";
        return 1002;
    }

    if (!f->fin) {
        st->open_opcode = f->opcode;
    }

    st->compressed = f->rsv;

    return 0;
}

/*
 * Writes a frame header for a payload of len bytes into dst (which has room
 * for NGX_WSP_MAX_HEADER bytes) and returns its length.  opcode may carry
 * NGX_WSP_RSV1.  mask is NULL for an
 * unmasked frame, else the 4-byte key to put in the header.
 */
size_t ngx_wsp_frame_write_header(unsigned char *dst, int fin, int opcode,
    uint64_t len, const unsigned char *mask);

/*
 * XORs n bytes from src into dst with the 4-byte key, as if the first byte
 * were at offset `offset` of the payload (so a payload can be (un)masked in
 * pieces).  dst may equal src.  Works a word at a time whatever the
 * alignment of src and dst.
 */
void ngx_wsp_mask(unsigned char *dst, const unsigned char *src, size_t n,
    const unsigned char key[4], uint64_t offset);

/*
 * Checks an (unmasked) close payload: empty, or a 2-byte status code that
 * may be sent on the wire followed by a valid UTF-8 reason.  Returns 0 and
 * sets *code (1005 for an empty payload) when valid, else the close status
 * to answer with (1002 for a 1-byte payload or a status that may not be
 * sent, 1007 for a reason that is not UTF-8) and sets *reason.
 */
int ngx_wsp_close_check(const unsigned char *p, size_t n, unsigned *code,
    const char **reason);

/* 1 when the status code may appear in a close frame on the wire */
int ngx_wsp_close_code_valid(unsigned code);


/*
 * Incremental UTF-8 validation (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF).  Start with state NGX_WSP_UTF8_ACCEPT, feed the
 * bytes of a message in any number of pieces; a piece may end inside a code
 * point.  The state becomes NGX_WSP_UTF8_REJECT (and stays so) at the first
 * invalid byte; at the end of the message it must be NGX_WSP_UTF8_ACCEPT.
 */
#define NGX_WSP_UTF8_ACCEPT      0
#define NGX_WSP_UTF8_REJECT      1

uint32_t ngx_wsp_utf8_validate(uint32_t state, const unsigned char *p,
    size_t n);

/*
 * The same on payload bytes still masked with `key` (a client's frame in
 * place), `offset` being the position of p in the payload: unmasked a
 * small piece at a time on the stack, the payload itself is not touched.
 */
uint32_t ngx_wsp_utf8_validate_masked(uint32_t state, const unsigned char *p,
    size_t n, const unsigned char key[4], uint64_t offset);


#endif /* _NGX_WSP_FRAME_H_INCLUDED_ */
