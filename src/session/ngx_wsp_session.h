/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The session core: the protocol state of a proxied WebSocket session,
 * without I/O.  It owns both directions' states (reader, writer, parser)
 * and the parser itself (frame boundaries, header and close checks,
 * limits, text, raw forwarding, skipping, frames held or buffered for Lua,
 * aggregation or deflate, injected frames, rebuilt frames), Lua's
 * verdicts, the close handshake, peers gone, protocol violations and
 * limits as state transitions, the proxy's own close frames and the
 * end-of-session test.  The relay (the nginx files) feeds it what
 * happened (bytes read, a peer's FIN, a close asked for, a verdict, a
 * send that failed) and reads back the output ranges it queued and the
 * directions it marked as having work (`kick`).  It calls upward only
 * through the callbacks of ngx_wsp_session_cb_t: memory, a masking key,
 * events (what the relay logs, counts, or mirrors in its own state), and
 * what needs nginx, zlib or Lua (the message buffer, inflate, deflate,
 * waking the hook, a tap's observe(), a message rate's gate).  The
 * console's flight recorder it writes itself, into a ring the relay gives
 * it.  The liveness rules are its own (ngx_wsp_live.c,
 * from the relay's clock), and so is what each direction does with
 * compressed messages (ngx_wsp_pmd.c).
 *
 * Like ngx_wsp_frame.[ch], this depends on nothing but the C library (and
 * zlib's header, for the negotiated parameters' type): it
 * is unit-tested (t/unit/wsp_session_test.c) and fuzzed
 * (fuzz/fuzz_session.c, fuzz/fuzz_session_wire.c) without nginx, and the
 * build checks that its object references no nginx symbol.
 * docs/design.md has the state tables; ngx_wsp_live.c (liveness) and
 * ngx_wsp_pmd.c (permessage-deflate's data path) are the core's too.
 *
 * Embedding: the relay's direction and session structures begin with the
 * core's fields (NGX_WSP_SDIR_FIELDS, NGX_WSP_SESSION_FIELDS) in a union
 * with the core type, so that the relay reads `d->rx` and passes
 * `&d->core` to the core, one layout and no extra allocation.
 */


#ifndef _NGX_WSP_SESSION_H_INCLUDED_
#define _NGX_WSP_SESSION_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ngx_wsp_frame.h"
#include "ngx_wsp_deflate.h"


/* directions, named after the peer that sends the frames */
#define NGX_WSP_DIR_CLIENT           0   /* client -> upstream */
#define NGX_WSP_DIR_UPSTREAM         1   /* upstream -> client */

/*
 * A direction (the frames one peer, its src, sends to the other, its dst)
 * has three states; docs/design.md has their transitions.
 *
 * What its reader may still do:
 */
#define NGX_WSP_RX_OPEN              0   /* frames are read and parsed */
#define NGX_WSP_RX_CLOSED            1   /* a close frame (or a violation)
                                            ended src's frames: the bytes
                                            after it are read and ignored */
#define NGX_WSP_RX_EOF               2   /* src sent FIN or failed: what it
                                            sent before is still parsed */
#define NGX_WSP_RX_GONE              3   /* nothing more comes from src */

/* what its writer may still do */
#define NGX_WSP_TX_OPEN              0   /* frames go to dst */
#define NGX_WSP_TX_MSG               1   /* a close of the proxy's is due
                                            once src's open message ended
                                            (a worker's drain) */
#define NGX_WSP_TX_DUE               2   /* ... at the next frame boundary */
#define NGX_WSP_TX_CLOSED            3   /* a close frame is queued to dst,
                                            nothing goes after it */
#define NGX_WSP_TX_ABORTED           4   /* dst failed, or gets nothing */

/* where its parser is */
#define NGX_WSP_IN_HEADER            0   /* at a frame boundary */
#define NGX_WSP_IN_RAW               1   /* payload forwarded in place */
#define NGX_WSP_IN_BUFFER            2   /* payload copied, unmasked, into
                                            msg (a control frame: cbuf) */
#define NGX_WSP_IN_SKIP              3   /* payload read and dropped */
#define NGX_WSP_IN_HOLD              4   /* whole in the input buffer */
#define NGX_WSP_IN_LUA               5   /* a frame waits for Lua's
                                            verdict (slot.ready) */
#define NGX_WSP_IN_DUE               6   /* Lua answered, the frame waits
                                            for an injected frame to leave
                                            the output: hold bytes at ppos
                                            go as they came, or (hold 0)
                                            the frame d->slot names is
                                            rebuilt */

/* what the core's steps and the relay's callbacks return (nginx's values) */
#define NGX_WSP_OK                   0
#define NGX_WSP_ERROR               -1
#define NGX_WSP_AGAIN               -2
#define NGX_WSP_DONE                -4
#define NGX_WSP_DECLINED            -5
#define NGX_WSP_ABORT               -6

/* Lua's verdicts on the frame held for it (ngx_wsp_verdict()) */
#define NGX_WSP_VERDICT_FORWARD      0
#define NGX_WSP_VERDICT_REWRITE      1
#define NGX_WSP_VERDICT_DROP         2
#define NGX_WSP_VERDICT_ERROR        3

/* what permessage-deflate does in a direction (ngx_wsp_sdir_t.z) */
#define NGX_WSP_Z_RX                 1   /* src may send compressed data */
#define NGX_WSP_Z_TX                 2   /* what goes to dst is compressed */
#define NGX_WSP_Z_PASS               4   /* both, alike: compressed frames
                                            pass through untouched */

/* which limit a sender broke (NGX_WSP_EV_LIMIT's code) */
#define NGX_WSP_LIMIT_SIZE           1   /* max_frame_size: n bytes */
#define NGX_WSP_LIMIT_FRAGMENTS      2   /* max_fragments: n frames */
#define NGX_WSP_LIMIT_BUFFER         3   /* the buffering ceiling
                                            (max_payload): n bytes */
#define NGX_WSP_LIMIT_RATE           4   /* a message rate (the gate's
                                            verdict): 1008, not 1009 */

/* who sent the first close frame */
#define NGX_WSP_BY_NONE              0
#define NGX_WSP_BY_CLIENT            1
#define NGX_WSP_BY_UPSTREAM          2
#define NGX_WSP_BY_PROXY             3

/*
 * why a session ended ($ws_proxy_end, stats().ended_by): the first reason
 * recorded wins; ngx_http_ws_proxy_end_name[] has the words
 */
#define NGX_WSP_END_NONE             0
#define NGX_WSP_END_CLIENT_CLOSE     1
#define NGX_WSP_END_UPSTREAM_CLOSE   2
#define NGX_WSP_END_PROXY_CLOSE      3
#define NGX_WSP_END_IDLE             4
#define NGX_WSP_END_SESSION_TIMEOUT  5
#define NGX_WSP_END_PING_TIMEOUT     6
#define NGX_WSP_END_DRAIN            7
#define NGX_WSP_END_VIOLATION        8
#define NGX_WSP_END_LIMIT            9
#define NGX_WSP_END_SEND_TIMEOUT     10
#define NGX_WSP_END_HOOK_ERROR       11
#define NGX_WSP_END_RESET            12

/* a function kept out of the hot path it is called from (GCC, clang) */
#if defined(__GNUC__)
#define NGX_WSP_NOINLINE  __attribute__((noinline))
#else
#define NGX_WSP_NOINLINE
#endif

/* a direction's input gate (d->gate, a message rate's) */
#define NGX_WSP_GATE_ON              1   /* cb->gate() is asked at each
                                            data message's first frame */
#define NGX_WSP_GATE_HELD            2   /* a message waits at the gate:
                                            src is not read */

#define ngx_wsp_held(d)      ((d)->gate & NGX_WSP_GATE_HELD)

/* the session's work bits (`kick`): a direction has work */
#define NGX_WSP_RUN_DIR(dir)         ((uintptr_t) 1 << (dir))
#define NGX_WSP_RUN_BOTH             3

/*
 * Events the core reports through ngx_wsp_session_cb_t.event(): what the
 * relay logs, counts or mirrors; the core's state has already moved.
 */
#define NGX_WSP_EV_VIOLATION         1   /* code: 1002, 1007; text: what,
                                            NULL when the caller logged */
#define NGX_WSP_EV_LIMIT             2   /* code: NGX_WSP_LIMIT_*, n: the
                                            size or count; 1009 goes */
#define NGX_WSP_EV_HALF_CLOSE        3   /* src's FIN after its close */
#define NGX_WSP_EV_GONE              4   /* src left without a close */
#define NGX_WSP_EV_GONE_MID_FRAME    5   /* ... in the middle of a frame
                                            forwarded raw: the session
                                            failed */
#define NGX_WSP_EV_DST_GONE          6   /* nothing more goes to dst */
#define NGX_WSP_EV_CLOSE_QUEUED      7   /* a close frame is the last of
                                            d's output; code: the proxy's
                                            own, in out_ctl; 0: src's
                                            (ngx_wsp_close_forwarded()) */
#define NGX_WSP_EV_TAKEN             8   /* the frame held for Lua is
                                            dropped (in: LUA -> HEADER) */
#define NGX_WSP_EV_CLOSE_IN          9   /* src's valid close frame goes
                                            on without a hook; code: its
                                            status, the reason in ctl */
#define NGX_WSP_EV_FAILED           10   /* of the session (d NULL): a
                                            failure ends it; text: why */
#define NGX_WSP_EV_CLOSE_OUT        11   /* a close frame goes on after
                                            Lua's verdict; code: its
                                            status (1005: none), text:
                                            its reason, n bytes */
#define NGX_WSP_EV_CLOSE_UNDROPPED  12   /* Lua dropped a close frame:
                                            it goes on all the same */

/*
 * What became of a frame src sent (ngx_wsp_obs_rec_t.action): for the
 * console's flight recorder, which the core writes, and the relay's
 * observe() (its taps), while the direction's `observe` says so
 */
#define NGX_WSP_OBS_FORWARDED        0
#define NGX_WSP_OBS_DROPPED          1
#define NGX_WSP_OBS_REWRITTEN        2
#define NGX_WSP_OBS_INJECTED         3

/* what d->observe asks for each frame */
#define NGX_WSP_OBS_RECORD           1   /* a record in ctl->obs */
#define NGX_WSP_OBS_CALL             2   /* cb->observe() */


typedef struct ngx_wsp_session_s  ngx_wsp_session_t;
typedef struct ngx_wsp_sdir_s     ngx_wsp_sdir_t;


/* a frame injected from Lua (send_frame), already encoded */
typedef struct ngx_wsp_inject_s  ngx_wsp_inject_t;

struct ngx_wsp_inject_s {
    ngx_wsp_inject_t           *next;
    size_t                      len;
    unsigned char               data[1];
};


/*
 * The session's options the core applies (set before it runs; the limits
 * may change while it runs).  The relay's options begin with these
 * fields, in a union with the type.
 */
#define NGX_WSP_OPTS_FIELDS                                                  \
    uint64_t                    max_frame_size[2];  /* 0: unlimited */       \
    uintptr_t                   max_fragments[2];   /* 0: unlimited */       \
    uint64_t                    max_payload;        /* buffering ceiling */  \
    unsigned char               hook;               /* frames go to Lua */   \
    unsigned char               aggregate;          /* messages whole */     \
    /* liveness (ngx_wsp_live.c), ms, 0: off */                              \
    uintptr_t                   idle_timeout;                                \
    uintptr_t                   ping_interval;                               \
    uintptr_t                   ping_timeout;

typedef struct {
    NGX_WSP_OPTS_FIELDS
} ngx_wsp_opts_t;


/*
 * The frame a direction holds for Lua's verdict.  Lua reads it in place
 * (FFI) once its light thread is woken, without a call into C: keep it in
 * step with the declaration in lib/resty/websocket/proxy.lua.
 */
typedef struct {
    const unsigned char        *data;     /* payload; a close: its reason */
    size_t                      len;
    int                         opcode;
    int                         fin;
    int                         code;     /* a close status, -1: none */
    int                         ready;    /* 1: waiting for a verdict */
    uint32_t                    seq;      /* numbers the frames handed over */
} ngx_wsp_slot_t;


/* bytes still to send from memory the direction owns */
typedef struct {
    unsigned char              *pos;
    unsigned char              *last;
} ngx_wsp_range_t;


/* a frame's record in a flight recorder: 16 bytes */
typedef struct {
    uint64_t                    len;      /* the payload's */
    uint32_t                    t;        /* *clock's low 32 bits */
    unsigned char               fin;      /* as in ngx_wsp_frame_t */
    unsigned char               rsv;
    unsigned char               opcode;
    unsigned char               action;   /* NGX_WSP_OBS_* */
} ngx_wsp_obs_rec_t;


/* a direction's flight recorder (the relay's memory): the next record
 * goes at rec[written & mask] */
typedef struct {
    uint64_t                    written;  /* every record ever */
    ngx_wsp_obs_rec_t          *rec;
    uint64_t                    mask;     /* a power of two, less 1 */
    uint64_t                    pad;
} ngx_wsp_obs_ring_t;


/*
 * What a direction needs only around control frames, allocated the first
 * time one is met (ngx_wsp_get_ctl()), so that an idle session does not
 * carry it.  The flight recorder's ring hangs here too: the relay
 * allocates the block at the session's start when the recorder is on.
 */
typedef struct {
    /* a control frame being buffered: apart, as it may come in a message */
    unsigned char               cbuf[NGX_WSP_MAX_CONTROL];
    size_t                      clen;

    /* a close frame of the proxy's, and its reason until it is due */
    unsigned char               frame[NGX_WSP_MAX_HEADER
                                      + NGX_WSP_MAX_CONTROL];
    unsigned char               reason[NGX_WSP_MAX_CONTROL];
    size_t                      reason_len;

    /* the reason of the close frame the peer sent */
    unsigned char               close_reason[NGX_WSP_MAX_CONTROL];
    size_t                      close_reason_len;

    /* the flight recorder (NGX_WSP_OBS_RECORD), or NULL */
    ngx_wsp_obs_ring_t         *obs;
} ngx_wsp_ctl_t;


typedef struct {
    /*
     * zeroed memory that lives as long as the session (nginx: the
     * request's pool); NULL: none
     */
    void  *(*alloc)(ngx_wsp_session_t *s, size_t size);

    /* a fresh masking key for a frame towards the upstream */
    void   (*mask_key)(ngx_wsp_session_t *s, unsigned char key[4]);

    /* NGX_WSP_EV_*; d is NULL for an event of the session */
    void   (*event)(ngx_wsp_session_t *s, ngx_wsp_sdir_t *d,
                    unsigned event, unsigned code, const char *text,
                    uint64_t n);

    /*
     * What the relay does for frames that are not forwarded as they come
     * (NULL when no option asks for it).  control(): a control frame's
     * header is parsed and checked (liveness: NGX_WSP_DONE skips a pong
     * to the proxy's own ping).  reserve(): room for size more bytes in
     * d->msg after msg_len (the relay's memory).  inflate(): payload
     * bytes of a compressed frame onto d->msg.  deflate(): the payload of
     * a data frame to a dst that takes compressed data, replaced by its
     * compressed form.  hand_over(): a frame (or message) waits in
     * d->slot for Lua: wake its hook.  gate(): the first frame of a data
     * message of a direction with NGX_WSP_GATE_ON, before it is checked
     * or moves (a message rate): NGX_WSP_OK, it goes on; NGX_WSP_AGAIN,
     * it is held at that frame boundary (NGX_WSP_GATE_HELD: nothing more
     * is read from src until the relay clears it and runs the direction
     * again, when the gate is asked again); NGX_WSP_DECLINED, the sender
     * broke its rate: NGX_WSP_LIMIT_RATE closes it.
     */
    int    (*control)(ngx_wsp_sdir_t *d);
    int    (*reserve)(ngx_wsp_sdir_t *d, size_t size);
    int    (*inflate)(ngx_wsp_sdir_t *d, unsigned char *p, size_t n);
    int    (*deflate)(ngx_wsp_sdir_t *d, unsigned fin, unsigned char **data,
                      size_t *len);
    void   (*hand_over)(ngx_wsp_sdir_t *d);

    /*
     * observe(): the frame just parsed (d->frame) went as `action` says
     * (NGX_WSP_OBS_*); called only while d->observe has NGX_WSP_OBS_CALL
     */
    void   (*observe)(ngx_wsp_sdir_t *d, unsigned action);
    int    (*gate)(ngx_wsp_sdir_t *d);
} ngx_wsp_session_cb_t;


/*
 * One direction.  Input: [start, end) is the buffer, [spos, ppos) parsed
 * and waiting to be sent as it came, [ppos, last) read but not parsed.
 * Output, in this order: that raw range, a rebuilt frame (out_hdr,
 * out_body), a close of the proxy's (out_ctl).
 */
#define NGX_WSP_SDIR_FIELDS                                                  \
    ngx_wsp_session_t          *session;                                     \
                                                                             \
    unsigned char              *start;                                       \
    unsigned char              *end;                                         \
    unsigned char              *spos;                                        \
    unsigned char              *ppos;                                        \
    unsigned char              *last;                                        \
                                                                             \
    /* the states: NGX_WSP_RX_*, NGX_WSP_TX_*, NGX_WSP_IN_* */               \
    unsigned char               rx;                                          \
    unsigned char               tx;                                          \
    unsigned char               in;                                          \
    unsigned char               check_utf8;     /* the open message: text */ \
    unsigned char               z;              /* NGX_WSP_Z_* */            \
    unsigned char               inflating;      /* the frame's payload */    \
    uint16_t                    ctl_code;       /* the proxy's close due */  \
                                                                             \
    /* the frame being parsed */                                             \
    ngx_wsp_frame_t             frame;                                       \
    uint64_t                    remaining;      /* payload bytes due */      \
    uint64_t                    offset;         /* payload bytes seen */     \
    ngx_wsp_msg_state_t         msg_state;                                   \
    unsigned char               dir;            /* NGX_WSP_DIR_* */          \
    uint32_t                    utf8;                                        \
    size_t                      hold;           /* bytes held at ppos for   \
                                                   Lua (IN_LUA) */           \
    ngx_wsp_slot_t              slot;           /* the frame Lua has */      \
                                                                             \
    /* data message limits: bytes and fragments of the open message */       \
    uint64_t                    msg_size;                                    \
    uintptr_t                   msg_frames;                                  \
                                                                             \
    /* a buffered data frame or message (the relay's memory) */              \
    unsigned char              *msg;                                         \
    size_t                      msg_len;                                     \
    uint32_t                    msg_opcode;     /* its first frame's */      \
    uint32_t                    out_utf8;       /* the text forwarded of    \
                                                   a fragmented message */   \
                                                                             \
    /* frames injected from Lua, sent at the next frame boundary */          \
    ngx_wsp_inject_t           *inject;                                      \
    ngx_wsp_inject_t           *inject_cur;                                  \
                                                                             \
    /* counts: frames, data messages, compressed payload passing */          \
    uint64_t                    frames;                                      \
    uint64_t                    messages;                                    \
    uint64_t                    zbytes;                                      \
    uintptr_t                   data_time;      /* src's last data frame */  \
                                                                             \
    /* liveness (ngx_wsp_live.c) */                                          \
    uintptr_t                   ctl_time;       /* src's last control */     \
    uintptr_t                   ping_time;      /* the proxy's last ping */  \
    uint64_t                    live_offset;    /* offset then */            \
    uint32_t                    pings;          /* sent to src */            \
    unsigned char               pinged;         /* not answered yet */       \
                                                                             \
    ngx_wsp_range_t             out_hdr;                                     \
    ngx_wsp_range_t             out_body;                                    \
    ngx_wsp_range_t             out_ctl;                                     \
    ngx_wsp_ctl_t              *ctl;                                         \
    unsigned char               ohdr[NGX_WSP_MAX_HEADER];  /* out_hdr's */   \
    unsigned char               msg_drop;       /* Lua dropped the open     \
                                                   message's first frame */  \
    unsigned char               observe;        /* NGX_WSP_OBS_RECORD,      \
                                                   _CALL: per frame */       \
    unsigned char               gate;           /* NGX_WSP_GATE_* (a hole) */\
    intptr_t                    close_code;     /* src's, -1: none */

struct ngx_wsp_sdir_s {
    NGX_WSP_SDIR_FIELDS
};


#define NGX_WSP_SESSION_FIELDS                                               \
    ngx_wsp_sdir_t             *sd[2];          /* by NGX_WSP_DIR_* */       \
    const ngx_wsp_session_cb_t *cb;                                          \
    const ngx_wsp_opts_t       *conf;          /* the relay's options */  \
    const volatile uintptr_t   *clock;          /* the relay's time (ms) */  \
    uintptr_t                   kick;           /* NGX_WSP_RUN_DIR()s */     \
    uintptr_t                   closed_by;      /* NGX_WSP_BY_* */           \
    unsigned char               ended_by;       /* NGX_WSP_END_* */

struct ngx_wsp_session_s {
    NGX_WSP_SESSION_FIELDS
};


#define ngx_wsp_session_end(s, why)                                          \
    do {                                                                     \
        if ((s)->ended_by == NGX_WSP_END_NONE) {                             \
            (s)->ended_by = (why);                                           \
        }                                                                    \
    } while (0)

/* src's frames are over: its close frame (or a violation) came, or it is
 * gone (NGX_WSP_RX_CLOSED, NGX_WSP_RX_GONE) */
#define ngx_wsp_rx_over(d)   ((d)->rx & 1)

/* a close of the proxy's is waiting or due (NGX_WSP_TX_MSG, _DUE) */
#define ngx_wsp_close_pending(d)                                             \
    ((d)->tx >= NGX_WSP_TX_MSG && (d)->tx <= NGX_WSP_TX_DUE)

/* a new data message: its text is checked as UTF-8 as it passes */
#define ngx_wsp_msg_start(d, op)                                             \
    (d)->utf8 = NGX_WSP_UTF8_ACCEPT;                                         \
    (d)->check_utf8 = ((op) == NGX_WSP_OP_TEXT)

/* the payload of this frame is text to check */
#define ngx_wsp_checks_utf8(d)                                               \
    ((d)->check_utf8 && !ngx_wsp_is_control((d)->frame.opcode))

/* a reader that may still recv(): open, or closed but not yet gone, and
 * no frame held for Lua or at the gate */
#define ngx_wsp_can_recv(d)                                                  \
    ((d)->rx <= NGX_WSP_RX_CLOSED && (d)->in != NGX_WSP_IN_LUA              \
     && !ngx_wsp_held(d))

/* parsed input, or a frame of the proxy's own, waiting its turn: the
 * relay calls ngx_wsp_parse() */
#define ngx_wsp_has_work(d)                                                  \
    ((d)->ppos < (d)->last || (d)->inject || ngx_wsp_close_pending(d))

/*
 * ... or a verdict's frame waits (IN_DUE): when the relay runs a
 * direction (the kick it gives when it frees the injected frame that
 * frame waited for), not in the send loop of every message
 */
#define ngx_wsp_needs_parse(d)                                               \
    (ngx_wsp_has_work(d) || (d)->in == NGX_WSP_IN_DUE)

/* bytes the direction has queued for dst */
#define ngx_wsp_has_output(d)                                                \
    ((d)->spos < (d)->ppos                                                   \
     || (d)->out_hdr.pos < (d)->out_hdr.last                                 \
     || (d)->out_body.pos < (d)->out_body.last                               \
     || (d)->out_ctl.pos < (d)->out_ctl.last)


/*
 * The flight recorder's record of the frame in d->frame, and the relay's
 * observe() when it asks (d->observe set: one test per frame when not)
 */
static inline void
ngx_wsp_obs_record(ngx_wsp_sdir_t *d, unsigned action)
{
    unsigned             observe;
    ngx_wsp_obs_rec_t   *rec;
    ngx_wsp_obs_ring_t  *r;

    observe = d->observe;

    if (observe & NGX_WSP_OBS_RECORD) {
        r = d->ctl->obs;
        rec = &r->rec[r->written++ & r->mask];

        rec->len = d->frame.payload_len;
        rec->t = (uint32_t) *d->session->clock;

        /* fin, rsv, opcode in one word (ngx_wsp_frame_t has them in this
         * order, then masked, which action replaces) */
        memcpy((unsigned char *) rec + offsetof(ngx_wsp_obs_rec_t, fin),
               (const unsigned char *) &d->frame
               + offsetof(ngx_wsp_frame_t, fin), 4);
        rec->action = (unsigned char) action;
    }

    if (observe & NGX_WSP_OBS_CALL) {
        d->session->cb->observe(d, action);
    }
}


/*
 * Liveness (ngx_wsp_live.c): what ngx_wsp_live() asks of the relay.
 * PING(dir): send dir's src a ping (ngx_wsp_ping_payload(), at most
 * NGX_WSP_PING_MAX bytes) through the other direction; IDLE: the closes
 * are due; DEAD(dir): dir's src is dropped.  The relay runs both
 * directions after IDLE and DEAD.
 */
#define NGX_WSP_LIVE_PING(dir)       (1u << (dir))
#define NGX_WSP_LIVE_IDLE            4u
#define NGX_WSP_LIVE_DEAD(dir)       (8u << (dir))
#define NGX_WSP_LIVE_NEVER           0x7fffffff  /* ms: no time of its own */
#define NGX_WSP_PING_MAX             (18 + 10)   /* prefix, a uint32_t */


/*
 * permessage-deflate's parameters on the connection of direction dir's
 * src (p: that connection's ngx_wsp_pmd_params_t; RFC 7692 7.1: the
 * client's parameters are client_*, the server's server_*; the proxy is
 * the server on the client's connection): the window src compresses
 * with and whether it resets its context after each message (the stream
 * that inflates it does too), and the same for what the proxy compresses
 * towards that peer.
 */
#define ngx_wsp_peer_bits(p, dir)                                            \
    ((dir) == NGX_WSP_DIR_CLIENT ? (p)->client_bits : (p)->server_bits)
#define ngx_wsp_peer_nct(p, dir)                                             \
    ((dir) == NGX_WSP_DIR_CLIENT ? (p)->client_nct : (p)->server_nct)
#define ngx_wsp_own_bits(p, dir)                                             \
    ((dir) == NGX_WSP_DIR_CLIENT ? (p)->server_bits : (p)->client_bits)
#define ngx_wsp_own_nct(p, dir)                                              \
    ((dir) == NGX_WSP_DIR_CLIENT ? (p)->server_nct : (p)->client_nct)


/* the session's directions (zeroed, or already in use) join it */
void ngx_wsp_session_init(ngx_wsp_session_t *s, const ngx_wsp_session_cb_t *cb,
    const ngx_wsp_opts_t *opts, const volatile uintptr_t *clock,
    ngx_wsp_sdir_t *client, ngx_wsp_sdir_t *upstream);

/*
 * The parser: walks d's input from one frame boundary to the next,
 * queues what goes out (the raw range, an injected frame, a close of the
 * proxy's), checks every header and close frame, applies the limits,
 * checks text, skips what is not to be forwarded, and hands the rest to
 * the relay's callbacks.  Returns 1 when it stopped for want of bytes (a
 * header, or a frame that must be whole, cut short), else 0.  The relay
 * keeps the time in *s->clock (ngx_wsp_session_init()).
 */
unsigned ngx_wsp_parse(ngx_wsp_sdir_t *d);

/*
 * A frame rebuilt from a payload in memory the direction owns (d->msg,
 * ctl->cbuf, Lua's rewrite), queued in out_hdr and out_body: compressed
 * when dst takes it, masked in place with a fresh key towards the
 * upstream.
 */
void ngx_wsp_emit(ngx_wsp_sdir_t *d, unsigned fin, unsigned opcode,
    unsigned char *data, size_t len);

/* NGX_WSP_DECLINED until the whole frame at ppos is in the buffer */
int ngx_wsp_whole_frame(ngx_wsp_sdir_t *d);

/* what is unsent or unparsed moves to the front of d's input buffer */
void ngx_wsp_compact(ngx_wsp_sdir_t *d);

/* d's control block, allocated the first time; NULL: no memory */
ngx_wsp_ctl_t *ngx_wsp_get_ctl(ngx_wsp_sdir_t *d);

/*
 * Inputs: what happened to a direction.  None of them sends or ends the
 * session: they move states, queue closes and mark work in s->kick; the
 * relay then runs the marked directions and asks ngx_wsp_done().
 */

/* a protocol violation by d's src: code (1002, 1007) to it, 1001 on */
void ngx_wsp_violation(ngx_wsp_sdir_t *d, unsigned code, const char *reason,
    const char *log_reason);

/*
 * a limit (NGX_WSP_LIMIT_*; n: the size or count) broken by d's src: 1009
 * to it, 1001 on; its reader stays open
 */
void ngx_wsp_limit(ngx_wsp_sdir_t *d, unsigned limit, uint64_t n);

/* invalid UTF-8 in d's text message; raw: the frame goes out as it came */
void ngx_wsp_invalid_utf8(ngx_wsp_sdir_t *d, unsigned raw);

/* a close from the proxy to d's dst, when `when` says (NGX_WSP_TX_MSG,
 * NGX_WSP_TX_DUE) */
void ngx_wsp_close_due(ngx_wsp_sdir_t *d, unsigned code, const char *reason,
    unsigned when);

/* a close waiting for the end of src's message is due now */
void ngx_wsp_close_go(ngx_wsp_sdir_t *d);

/* every close that waited for a message is due (close_timeout): how many */
unsigned ngx_wsp_release_deferred(ngx_wsp_session_t *s);

/*
 * At a frame boundary of d's output: the close of the proxy's that is due
 * goes into out_ctl.  1: it did.
 */
unsigned ngx_wsp_close_boundary(ngx_wsp_sdir_t *d);

/* the proxy's close frame, queued after what d has to send */
void ngx_wsp_queue_close(ngx_wsp_sdir_t *d, unsigned code,
    const unsigned char *reason, size_t len);

/*
 * src's valid close frame (its status code and whole unmasked payload)
 * is accepted, before it is forwarded or shown to Lua: src's frames are
 * over, its status and reason are kept.  -1: no memory for them.
 */
int ngx_wsp_close_accepted(ngx_wsp_sdir_t *d, unsigned code,
    const unsigned char *payload, size_t len);

/* the status and reason of src's close, kept (d->ctl is allocated) */
void ngx_wsp_keep_close(ngx_wsp_sdir_t *d, unsigned code,
    const unsigned char *payload, size_t len);

/* a close frame (src's, or rebuilt) went into d's output: the last one */
void ngx_wsp_close_forwarded(ngx_wsp_sdir_t *d);

/* src's frames are over: its close frame came, or a violation */
void ngx_wsp_rx_close(ngx_wsp_sdir_t *d);

/* src sent FIN (reset: it failed) */
void ngx_wsp_src_hup(ngx_wsp_sdir_t *d, unsigned reset);

/* after src's FIN, every whole frame it sent before is parsed */
void ngx_wsp_src_gone(ngx_wsp_sdir_t *d);

/* src did not answer a ping: dropped, dst gets 1001 and `reason` */
void ngx_wsp_src_dead(ngx_wsp_sdir_t *d, const char *reason);

/*
 * Liveness, from the time in *s->clock: ngx_wsp_live_start() when the
 * session starts (the ms until the first ngx_wsp_live() call, 0: none),
 * ngx_wsp_live() when that time comes (NGX_WSP_LIVE_*; *next: the ms
 * until the next call).  ngx_wsp_live_control(): a control frame's header
 * from src (the parser's; NGX_WSP_DONE: a pong to the proxy's own ping,
 * not forwarded).  ngx_wsp_live_dead(): src did not answer a ping.
 */
uintptr_t ngx_wsp_live_start(ngx_wsp_session_t *s);
unsigned ngx_wsp_live(ngx_wsp_session_t *s, intptr_t *next);
int ngx_wsp_live_control(ngx_wsp_sdir_t *d);
void ngx_wsp_live_dead(ngx_wsp_sdir_t *d);
size_t ngx_wsp_ping_payload(ngx_wsp_sdir_t *d, unsigned char *buf);

/*
 * permessage-deflate (ngx_wsp_pmd.c), when the session starts: what each
 * direction does (d->z, NGX_WSP_Z_*) from what each connection
 * negotiated, pmd[NGX_WSP_DIR_*] (on: 0 where it did not)
 */
void ngx_wsp_deflate_start(ngx_wsp_session_t *s,
    const ngx_wsp_pmd_params_t *pmd);

/* nothing more can go to d's dst */
void ngx_wsp_dst_gone(ngx_wsp_sdir_t *d);

/* the frame held for Lua (IN_LUA) will not be forwarded */
void ngx_wsp_drop_pending(ngx_wsp_sdir_t *d);

/*
 * Lua's verdict on the frame d holds (d->slot): forward it, forward a
 * rewritten payload (data, len), or drop it; code rewrites a close status
 * (-1: keep).  A close frame is never dropped.  NGX_WSP_DECLINED: the
 * rewrite is invalid (a control payload over 125 bytes, a close status
 * that may not be sent); NGX_WSP_ABORT: a rewritten text message or close
 * reason is not UTF-8; NGX_WSP_ERROR: no memory.  The frame stays held
 * then.
 */
int ngx_wsp_verdict(ngx_wsp_sdir_t *d, unsigned verdict, unsigned char *data,
    size_t len, intptr_t code);

/* a failure that ends the session at once (reason: why, for the relay's
 * log): both directions stop */
void ngx_wsp_fail(ngx_wsp_session_t *s, const char *reason);

/*
 * 1: both directions are over, the session can end (their output all
 * sent, or impossible; no close reply still to wait for).  `pending`:
 * bytes the relay itself still has to send, per direction
 */
unsigned ngx_wsp_done(ngx_wsp_session_t *s, unsigned pending);

/*
 * The one frame builder: the header at hdr, the payload at out (NULL:
 * right after the header; the same memory as payload: in place), masked
 * with `mask` (NULL: unmasked).  Returns the header's length.
 */
size_t ngx_wsp_frame_build(unsigned char *hdr, unsigned char *out,
    const unsigned char *payload, size_t len, unsigned fin, unsigned opcode,
    const unsigned char *mask);

/* a close payload: the status, then the reason (cut to what fits) */
size_t ngx_wsp_close_payload(unsigned char *dst, unsigned code,
    const unsigned char *reason, size_t len);


#endif /* _NGX_WSP_SESSION_H_INCLUDED_ */
