/*
 * Unit tests of the session core, without nginx: prints TAP.  The first
 * tests script the core's transitions as the relay reports them (bytes
 * read and forwarded, FIN, a close frame accepted, a violation, sends);
 * the wire tests (test_wire_*) have two peers send frames as bytes
 * through the core's parser and the relay's loop (t/unit/wsp_wire.h) and
 * check what each peer gets, the states and the end.
 */

#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "wsp_wire.h"


#define C  NGX_WSP_DIR_CLIENT
#define U  NGX_WSP_DIR_UPSTREAM


static t_session_t  t;


static int
checked(void)
{
    return t_check(&t, C) == NULL && t_check(&t, U) == NULL;
}


/* everything queued in both directions is sent */

static void
flush_all(void)
{
    (void) t_send(&t, C, T_BUF * 4);
    (void) t_send(&t, U, T_BUF * 4);
}


/* the relay at a frame boundary of every direction with work */

static void
run_kicked(void)
{
    unsigned  i;

    while (t.s.kick) {
        for (i = 0; i < 2; i++) {
            if (t.s.kick & NGX_WSP_RUN_DIR(i)) {
                t.s.kick &= ~NGX_WSP_RUN_DIR(i);

                if (t.d[i].in == NGX_WSP_IN_HEADER && t.d[i].tx) {
                    (void) ngx_wsp_close_boundary(&t.d[i]);
                }
            }
        }
    }
}


/*
 * src's valid close frame with `code`: accepted and forwarded raw, or,
 * when nothing more goes to dst (the proxy closed it), skipped and kept
 * as the relay's parser does
 */

static void
close_from(unsigned dir, unsigned code)
{
    unsigned char    payload[2];
    ngx_wsp_sdir_t  *d = &t.d[dir];

    payload[0] = (unsigned char) (code >> 8);
    payload[1] = (unsigned char) (code & 0xff);

    (void) t_read(&t, dir, 4);

    if (d->tx >= NGX_WSP_TX_CLOSED) {
        ok(ngx_wsp_get_ctl(d) != NULL, "a close reply is skipped");
        ngx_wsp_keep_close(d, code, payload, 2);
        ngx_wsp_rx_close(d);
        d->ppos = d->last;
        d->spos = d->last;
        return;
    }

    ok(ngx_wsp_close_accepted(d, code, payload, 2) == 0,
       "a close frame is accepted");
    (void) t_forward(&t, dir, 4);
    ngx_wsp_close_forwarded(d);
}


static void
test_close_client_first(void)
{
    t_init(&t);

    (void) t_read(&t, C, 10);
    (void) t_forward(&t, C, 10);
    close_from(C, 1000);

    ok(t.d[C].rx == NGX_WSP_RX_CLOSED && t.d[C].tx == NGX_WSP_TX_CLOSED,
       "client first: its reader and its writer are closed");
    ok(t.s.closed_by == NGX_WSP_BY_CLIENT
       && t.s.ended_by == NGX_WSP_END_CLIENT_CLOSE,
       "client first: closed by the client");
    ok(!ngx_wsp_done(&t.s, 0), "client first: not done before the reply");

    close_from(U, 1000);
    ok(!ngx_wsp_done(&t.s, 0), "client first: not done with output unsent");

    flush_all();
    ok(!ngx_wsp_done(&t.s, NGX_WSP_RUN_DIR(U)),
       "client first: not done while the relay has bytes of its own");
    ok(ngx_wsp_done(&t.s, 0), "client first: done once all is sent");
    ok(t.d[C].close_code == 1000 && t.d[U].close_code == 1000,
       "client first: both close codes kept");
    ok(checked(), "client first: invariants");

    t_free(&t);
}


static void
test_close_upstream_first_then_fin(void)
{
    t_init(&t);

    close_from(U, 1001);
    ok(t.s.closed_by == NGX_WSP_BY_UPSTREAM,
       "upstream first: closed by the upstream");

    /* its FIN right after its close: a half-close, no peer gone */
    ngx_wsp_src_hup(&t.d[U], 0);
    ok(t.d[U].rx == NGX_WSP_RX_GONE
       && t.ev[t.nev - 1].event == NGX_WSP_EV_HALF_CLOSE,
       "upstream first: its FIN after its close is a half-close");
    ok(t.d[C].tx == NGX_WSP_TX_OPEN,
       "upstream first: the client's reply may still go to it");

    close_from(C, 1001);
    flush_all();
    ok(ngx_wsp_done(&t.s, 0), "upstream first: done after the reply");
    ok(t.s.ended_by == NGX_WSP_END_UPSTREAM_CLOSE,
       "upstream first: the first reason recorded wins");
    ok(checked(), "upstream first: invariants");

    t_free(&t);
}


static void
test_violation_after_data(void)
{
    t_init(&t);

    /* 20 bytes of valid frames forwarded, 5 of them sent */
    (void) t_read(&t, C, 30);
    (void) t_forward(&t, C, 20);
    (void) t_send(&t, C, 5);

    ngx_wsp_violation(&t.d[C], NGX_WSP_CLOSE_PROTOCOL, "bad opcode",
                      "bad opcode");

    ok(t.d[C].rx == NGX_WSP_RX_CLOSED, "violation: the offender's reader "
       "is closed");
    ok(t.ev[0].event == NGX_WSP_EV_VIOLATION && t.ev[0].code == 1002
       && t.s.ended_by == NGX_WSP_END_VIOLATION,
       "violation: reported, the end is a violation");
    ok(t.d[C].ppos - t.d[C].spos == 15 && t.d[C].tx == NGX_WSP_TX_CLOSED
       && t_close_sent(&t.d[C]) == NGX_WSP_CLOSE_GOING_AWAY,
       "violation: the frames before it, then 1001 to the upstream");
    ok(t.d[U].tx == NGX_WSP_TX_DUE && (t.s.kick & NGX_WSP_RUN_DIR(U)),
       "violation: the offender's close is due at once");

    run_kicked();
    ok(t.d[U].tx == NGX_WSP_TX_CLOSED
       && t_close_sent(&t.d[U]) == NGX_WSP_CLOSE_PROTOCOL,
       "violation: the offender gets 1002");
    ok(checked(), "violation: invariants");

    flush_all();
    ok(!ngx_wsp_done(&t.s, 0), "violation: the upstream's reply is awaited");

    close_from(U, 1001);
    ok(ngx_wsp_done(&t.s, 0), "violation: done at the upstream's reply");
    ok(t.closes[U] == 1, "violation: the upstream's reply is not forwarded "
       "after the proxy's close");

    t_free(&t);
}


static void
test_limit_then_reply(void)
{
    unsigned char  payload[2] = { 0x03, 0xe9 };

    t_init(&t);

    ngx_wsp_limit(&t.d[U], NGX_WSP_LIMIT_SIZE, 100);

    ok(t.d[U].rx == NGX_WSP_RX_OPEN,
       "limit: the sender's reader stays open for its reply");
    ok(t.s.ended_by == NGX_WSP_END_LIMIT
       && t.ev[0].event == NGX_WSP_EV_LIMIT
       && t.ev[0].code == NGX_WSP_LIMIT_SIZE,
       "limit: reported");

    run_kicked();
    ok(t_close_sent(&t.d[C]) == NGX_WSP_CLOSE_TOO_BIG
       && t.d[C].ctl->frame[1] == (0x80 | 19)
       && memcmp(t.d[C].ctl->reason, "Payload Too Large", 17) == 0,
       "limit: the upstream gets 1009 \"Payload Too Large\", masked");
    ok(t_close_sent(&t.d[U]) == NGX_WSP_CLOSE_GOING_AWAY,
       "limit: the client gets 1001");

    flush_all();
    ok(!ngx_wsp_done(&t.s, 0), "limit: replies awaited");

    /* the sender's reply is skipped, kept for the variables */
    ngx_wsp_keep_close(&t.d[U], 1001, payload, 2);
    ngx_wsp_rx_close(&t.d[U]);
    ok(!ngx_wsp_done(&t.s, 0), "limit: the client's reply is awaited");

    close_from(C, 1000);
    ok(ngx_wsp_done(&t.s, 0), "limit: done after both replies");
    ok(t.d[U].close_code == 1001, "limit: the sender's reply code kept");
    ok(checked(), "limit: invariants");

    t_free(&t);
}


static void
test_eof_mid_frame(void)
{
    t_init(&t);

    (void) t_read(&t, C, 40);
    (void) t_forward(&t, C, 40);
    t.d[C].in = NGX_WSP_IN_RAW;         /* 40 bytes of a larger frame */

    ngx_wsp_src_hup(&t.d[C], 0);
    ok(t.d[C].rx == NGX_WSP_RX_EOF, "EOF mid-frame: what came before is "
       "parsed first");

    ngx_wsp_src_gone(&t.d[C]);
    ok(t.d[C].tx == NGX_WSP_TX_ABORTED && t.d[U].tx == NGX_WSP_TX_ABORTED,
       "EOF mid-frame: no close can follow half a frame, both dropped");
    ok(t.d[C].ctl == NULL, "EOF mid-frame: no close queued");
    ok(t.ev[t.nev - 1].event == NGX_WSP_EV_DST_GONE
       && t.ev[t.nev - 2].event == NGX_WSP_EV_GONE_MID_FRAME,
       "EOF mid-frame: reported as a failure");
    ok(ngx_wsp_done(&t.s, 0), "EOF mid-frame: done");
    ok(checked(), "EOF mid-frame: invariants");

    t_free(&t);

    /* the same at a frame boundary: a 1001 to the upstream */

    t_init(&t);

    ngx_wsp_src_hup(&t.d[C], 1);
    ngx_wsp_src_gone(&t.d[C]);
    ok(t.s.ended_by == NGX_WSP_END_RESET,
       "EOF at a boundary: a reset is named");
    ok(t.d[C].tx == NGX_WSP_TX_CLOSED
       && t_close_sent(&t.d[C]) == NGX_WSP_CLOSE_GOING_AWAY,
       "EOF at a boundary: the upstream gets 1001, masked");
    ok(!ngx_wsp_done(&t.s, 0), "EOF at a boundary: its close is unsent");
    flush_all();
    ok(!ngx_wsp_done(&t.s, 0), "EOF at a boundary: the reply is awaited");
    close_from(U, 1001);
    ok(ngx_wsp_done(&t.s, 0), "EOF at a boundary: done at the reply");
    ok(t.closes[U] == 0, "EOF at a boundary: the reply goes nowhere");
    ok(checked(), "EOF at a boundary: invariants");

    t_free(&t);
}


static void
test_reply_in_name_of_gone(void)
{
    t_init(&t);

    close_from(C, 4000);
    flush_all();

    /* the upstream leaves without its reply: the client gets it anyway */
    ngx_wsp_src_hup(&t.d[U], 0);
    ngx_wsp_src_gone(&t.d[U]);
    ok(t_close_sent(&t.d[U]) == 4000,
       "peer gone: the reply in its name carries the client's code");
    flush_all();
    ok(ngx_wsp_done(&t.s, 0), "peer gone: done");

    t_free(&t);
}


static void
test_invalid_utf8(void)
{
    t_init(&t);

    /* a text frame: header 2, 10 payload bytes seen, 3 bytes sent */
    (void) t_read(&t, U, 12);
    (void) t_forward(&t, U, 12);
    (void) t_send(&t, U, 3);
    t.d[U].in = NGX_WSP_IN_RAW;
    t.d[U].frame.header_len = 2;
    t.d[U].offset = 10;

    ngx_wsp_invalid_utf8(&t.d[U], 1);
    ok(t.d[U].tx == NGX_WSP_TX_ABORTED,
       "UTF-8 after a partial send: the client is dropped");
    ok(t.d[C].tx == NGX_WSP_TX_DUE
       && t.d[C].ctl_code == NGX_WSP_CLOSE_INVALID_DATA,
       "UTF-8 after a partial send: the upstream is due 1007");
    run_kicked();
    ok(t_close_sent(&t.d[C]) == NGX_WSP_CLOSE_INVALID_DATA,
       "UTF-8 after a partial send: 1007 goes");
    ok(checked(), "UTF-8 after a partial send: invariants");

    t_free(&t);

    /* nothing of the frame sent yet: it is taken back, 1001 follows */

    t_init(&t);

    (void) t_read(&t, U, 20);
    (void) t_forward(&t, U, 20);        /* 8 bytes before, then the frame */
    t.d[U].in = NGX_WSP_IN_RAW;
    t.d[U].frame.header_len = 2;
    t.d[U].offset = 10;

    ngx_wsp_invalid_utf8(&t.d[U], 1);
    ok(t.d[U].ppos - t.d[U].spos == 8,
       "UTF-8 before a send: the frame is taken back");
    ok(t_close_sent(&t.d[U]) == NGX_WSP_CLOSE_GOING_AWAY,
       "UTF-8 before a send: the client gets 1001 after the frames before");
    ok(checked(), "UTF-8 before a send: invariants");

    t_free(&t);
}


static void
test_drain_waits_for_message(void)
{
    t_init(&t);

    t.d[C].msg_state.open_opcode = NGX_WSP_OP_TEXT;
    ngx_wsp_close_due(&t.d[C], 1012, "service restart", NGX_WSP_TX_MSG);
    ok(t.d[C].tx == NGX_WSP_TX_MSG, "drain: the close waits");
    run_kicked();
    ok(t.d[C].tx == NGX_WSP_TX_MSG && t.d[C].out_ctl.pos == NULL,
       "drain: not inside an open message");

    t.d[C].msg_state.open_opcode = 0;
    ok(ngx_wsp_close_boundary(&t.d[C]) && t_close_sent(&t.d[C]) == 1012,
       "drain: the close goes once the message ended");

    /* close_timeout releases one that still waits */
    t.d[U].msg_state.open_opcode = NGX_WSP_OP_BINARY;
    ngx_wsp_close_due(&t.d[U], 1012, "service restart", NGX_WSP_TX_MSG);
    ok(ngx_wsp_release_deferred(&t.s) == 1 && t.d[U].tx == NGX_WSP_TX_DUE,
       "drain: close_timeout makes the waiting close due");
    ok(checked(), "drain: invariants");

    t_free(&t);
}


static void
test_held_frame_dropped(void)
{
    t_init(&t);

    (void) t_read(&t, C, 30);
    t.d[C].in = NGX_WSP_IN_LUA;         /* a frame of 12 held for Lua */
    t.d[C].hold = 12;

    ngx_wsp_close_due(&t.d[C], 1000, "", NGX_WSP_TX_DUE);
    ok(t.taken[C] == 1 && t.d[C].in == NGX_WSP_IN_HEADER
       && t.d[C].ppos - t.d[C].start == 12 && t.d[C].spos == t.d[C].ppos,
       "close(): the frame held for Lua is skipped, not sent");
    run_kicked();
    ok(t_close_sent(&t.d[C]) == 1000, "close(): its close goes");
    ok(checked(), "close(): invariants");

    t_free(&t);
}


static void
test_no_memory(void)
{
    t_init(&t);

    t.no_memory = 1;
    ngx_wsp_close_due(&t.d[C], 1001, "idle timeout", NGX_WSP_TX_DUE);
    ok(t.d[C].tx == NGX_WSP_TX_ABORTED,
       "no memory for a close: the peer is dropped instead");
    ok(ngx_wsp_close_accepted(&t.d[U], 1000,
                              (const unsigned char *) "\x03\xe8", 2) == -1,
       "no memory for a close's reason: said so");

    ngx_wsp_fail(&t.s, "out of memory");
    ok(ngx_wsp_done(&t.s, 0), "a failure: the session is done");
    ok(checked(), "no memory: invariants");

    t_free(&t);
}


static void
test_dead_peer(void)
{
    t_init(&t);

    ngx_wsp_src_dead(&t.d[U], "upstream did not answer a ping");
    ok(t.d[U].rx == NGX_WSP_RX_GONE && t.d[C].tx == NGX_WSP_TX_ABORTED,
       "dead peer: dropped");
    run_kicked();
    ok(t_close_sent(&t.d[U]) == NGX_WSP_CLOSE_GOING_AWAY
       && memcmp(t.d[U].ctl->frame + 4, "upstream did not", 16) == 0,
       "dead peer: the client gets 1001 naming it");
    flush_all();
    ok(!ngx_wsp_done(&t.s, 0), "dead peer: the client's reply is awaited");
    close_from(C, 1001);
    ok(ngx_wsp_done(&t.s, 0), "dead peer: done");

    t_free(&t);
}


static void
test_builder(void)
{
    size_t         n;
    unsigned char  reason[200], payload[NGX_WSP_MAX_CONTROL];
    unsigned char  frame[NGX_WSP_MAX_HEADER + NGX_WSP_MAX_CONTROL];
    unsigned char  key[4] = { 1, 2, 3, 4 };

    memset(reason, 'r', sizeof(reason));

    n = ngx_wsp_close_payload(payload, 1000, reason, sizeof(reason));
    ok(n == NGX_WSP_MAX_CONTROL && payload[0] == 0x03 && payload[1] == 0xe8,
       "close payload: the reason is cut to fit a control frame");

    n = ngx_wsp_frame_build(frame, NULL, payload, 4, 1, NGX_WSP_OP_CLOSE,
                            key);
    ok(n == 6 && frame[0] == 0x88 && frame[1] == 0x84
       && frame[6] == (0x03 ^ 1) && frame[9] == ('r' ^ 4),
       "frame builder: header, key, masked payload");
}


/* the wire: every byte the peers sent is read, and everything is sent */

static void
wire_all(void)
{
    unsigned  i, n;

    for (n = 0; n < 2 * W_STREAM + 4; n++) {
        if (n > 4 && w_read_all(&t, 0) && w_read_all(&t, 1))
        {
            break;
        }

        for (i = 0; i < 2; i++) {
            w_read(&t, i, W_STREAM);
        }

        w_run(&t, NGX_WSP_RUN_BOTH);
    }
}


/* peer p leaves (FIN) once all it sent was read */

static void
wire_fin(unsigned p)
{
    wire_all();
    ngx_wsp_src_hup(&t.d[p], 0);
    w_run(&t, NGX_WSP_RUN_DIR(p));
    wire_all();
}


static void
wire_close(unsigned p, unsigned code)
{
    unsigned char  payload[2];

    payload[0] = (unsigned char) (code >> 8);
    payload[1] = (unsigned char) (code & 0xff);

    w_frame(p, 1, NGX_WSP_OP_CLOSE, payload, 2, 0);
}


/* what peer p got is whole and valid: its error, or NULL */

static int
wire_clean(unsigned p)
{
    w_check(p, 1, t.d[1 - p].tx == NGX_WSP_TX_ABORTED);

    return w_peer[p].error == NULL;
}


static void
test_wire_close_both_orders(void)
{
    unsigned  first;

    for (first = 0; first < 2; first++) {
        w_init(&t);

        w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "hi", 2, 0);
        w_frame(U, 1, NGX_WSP_OP_BINARY, (const unsigned char *) "yo", 2, 0);
        wire_close(first, 1000);
        wire_all();

        ok(t.d[first].rx == NGX_WSP_RX_CLOSED
           && w_peer[1 - first].closed && !w_peer[first].closed
           && w_peer[1 - first].close_code == 1000,
           first == C ? "wire, client closes first: its close goes on"
                      : "wire, upstream closes first: its close goes on");

        wire_close(1 - first, 1000);
        wire_fin(U);
        wire_fin(C);

        ok(ngx_wsp_done(&t.s, 0) && wire_clean(C) && wire_clean(U)
           && w_peer[C].closed && w_peer[U].closed
           && w_peer[U].ops[0] == NGX_WSP_OP_TEXT
           && w_peer[C].ops[0] == NGX_WSP_OP_BINARY,
           "wire: the reply goes back, both peers got data then a close, "
           "done");
        ok(t.s.closed_by == (first == C ? NGX_WSP_BY_CLIENT
                                        : NGX_WSP_BY_UPSTREAM)
           && t.s.ended_by == (first == C ? NGX_WSP_END_CLIENT_CLOSE
                                          : NGX_WSP_END_UPSTREAM_CLOSE)
           && t.d[C].close_code == 1000 && t.d[U].close_code == 1000,
           "wire: who closed first, why it ended, both codes kept");
        ok(checked(), "wire close: invariants");

        w_free(&t);
    }
}


static void
test_wire_violation_after_data(void)
{
    w_init(&t);

    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "ok", 2, 0);
    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "bad", 3, 1);
    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "late", 4, 0);
    wire_all();

    ok(w_peer[U].frames == 2 && w_peer[U].ops[0] == NGX_WSP_OP_TEXT
       && w_peer[U].close_code == NGX_WSP_CLOSE_GOING_AWAY,
       "wire violation: the upstream gets the frame before it, then 1001");
    ok(w_peer[C].close_code == NGX_WSP_CLOSE_PROTOCOL
       && t.s.ended_by == NGX_WSP_END_VIOLATION
       && t.d[C].rx == NGX_WSP_RX_CLOSED,
       "wire violation: the client gets 1002, its frames are over");

    wire_close(U, 1001);
    wire_fin(U);
    wire_fin(C);
    ok(ngx_wsp_done(&t.s, 0) && wire_clean(C) && wire_clean(U),
       "wire violation: done, nothing after the closes");

    w_free(&t);
}


static void
test_wire_garbage(void)
{
    /* a frame with RSV2, no extension agreed */
    static const unsigned char  rsv2[] = { 0xa2, 0x01, 'x' };

    w_init(&t);

    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "fine", 4, 0);
    w_raw(U, rsv2, sizeof(rsv2));
    wire_all();

    ok(w_peer[U].close_code == NGX_WSP_CLOSE_PROTOCOL
       && w_peer[C].frames == 2 && w_peer[C].ops[0] == NGX_WSP_OP_TEXT
       && w_peer[C].close_code == NGX_WSP_CLOSE_GOING_AWAY
       && wire_clean(C),
       "wire: RSV2 from the upstream: 1002 to it, its text then 1001 on");

    w_free(&t);
}


static void
test_wire_limit_then_reply(void)
{
    unsigned char  big[20];

    w_init(&t);
    memset(big, 'x', sizeof(big));
    t.opts.max_frame_size[C] = 10;

    w_frame(C, 1, NGX_WSP_OP_BINARY, big, 5, 0);
    w_frame(C, 1, NGX_WSP_OP_BINARY, big, 20, 0);
    w_frame(C, 1, NGX_WSP_OP_BINARY, big, 5, 0);
    wire_close(C, 1000);
    wire_all();

    ok(w_peer[C].close_code == NGX_WSP_CLOSE_TOO_BIG
       && w_peer[U].frames == 2
       && w_peer[U].close_code == NGX_WSP_CLOSE_GOING_AWAY
       && t.s.ended_by == NGX_WSP_END_LIMIT,
       "wire limit: 1009 to the sender, the frame before it and 1001 on");
    ok(t.d[C].rx == NGX_WSP_RX_CLOSED && t.d[C].close_code == 1000,
       "wire limit: the frames after it skipped, the close reply kept");

    wire_close(U, 1001);
    wire_fin(U);
    wire_fin(C);
    ok(ngx_wsp_done(&t.s, 0) && wire_clean(C) && wire_clean(U),
       "wire limit: done");

    w_free(&t);
}


static void
test_wire_eof_mid_frame(void)
{
    unsigned char  body[100];

    w_init(&t);
    memset(body, 'b', sizeof(body));

    w_frame(U, 1, NGX_WSP_OP_BINARY, body, 100, 0);
    w_peer[U].slen -= 60;
    wire_fin(U);

    ok(w_peer[C].in_frame && w_peer[C].offset == 40
       && t.d[U].tx == NGX_WSP_TX_ABORTED
       && t.d[C].tx == NGX_WSP_TX_ABORTED,
       "wire EOF mid-frame: 40 bytes went, no close can follow: both "
       "dropped");
    ok(ngx_wsp_done(&t.s, 0) && wire_clean(C), "wire EOF mid-frame: done");

    w_free(&t);
}


static void
test_wire_utf8_after_partial_send(void)
{
    unsigned char  text[50];

    w_init(&t);
    memset(text, 't', sizeof(text));
    text[40] = 0xff;

    w_frame(C, 1, NGX_WSP_OP_TEXT, text, 50, 0);
    w_read(&t, C, 30);
    w_run(&t, NGX_WSP_RUN_DIR(C));

    ok(w_peer[U].in_frame && w_peer[U].offset == 24,
       "wire UTF-8: the start of the frame went out");

    wire_all();

    ok(t.d[C].tx == NGX_WSP_TX_ABORTED
       && w_peer[C].close_code == NGX_WSP_CLOSE_INVALID_DATA,
       "wire UTF-8: the client gets 1007, the upstream is dropped");
    ok(wire_clean(U) && w_peer[U].offset == 24,
       "wire UTF-8: nothing of the read with the invalid byte went");

    wire_fin(C);
    ok(ngx_wsp_done(&t.s, 0), "wire UTF-8: done");

    w_free(&t);
}


static void
test_wire_injected_in_order(void)
{
    w_init(&t);

    t_clock = 777;
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "one", 3, 0);
    wire_all();
    ok(t.d[U].data_time == 777 && t.d[C].data_time == 0,
       "wire: a data frame's time is the relay's clock's (liveness)");
    w_inject(&t, U, NGX_WSP_OP_PING, (const unsigned char *) "p", 1);
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "two", 3, 0);
    wire_all();

    ok(w_peer[C].frames == 3 && w_peer[C].ops[0] == NGX_WSP_OP_TEXT
       && w_peer[C].ops[1] == NGX_WSP_OP_PING
       && w_peer[C].ops[2] == NGX_WSP_OP_TEXT,
       "wire: an injected ping goes between the frames, in order");

    /* one injected while the client's output is blocked waits its turn */
    w_peer[C].blocked = 1;
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "3", 1, 0);
    wire_all();
    w_inject(&t, U, NGX_WSP_OP_PONG, (const unsigned char *) "", 0);
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "4", 1, 0);
    wire_all();
    w_peer[C].blocked = 0;
    wire_all();

    ok(w_peer[C].frames == 6 && w_peer[C].ops[3] == NGX_WSP_OP_TEXT
       && w_peer[C].ops[4] == NGX_WSP_OP_PONG
       && w_peer[C].ops[5] == NGX_WSP_OP_TEXT && wire_clean(C),
       "wire: with the output blocked, the injected pong keeps its place");

    w_free(&t);
}


/*
 * A send to the client fails while the upstream's frame is forwarded raw:
 * the rest of it is dropped, and the upstream's FIN is still seen (it
 * was not: the direction waited at that frame's end for close_timeout).
 */

static void
test_wire_dst_gone_mid_frame(void)
{
    unsigned char  body[100];

    w_init(&t);
    memset(body, 'b', sizeof(body));

    w_frame(U, 1, NGX_WSP_OP_BINARY, body, 100, 0);
    w_frame(U, 1, NGX_WSP_OP_BINARY, body, 10, 0);
    w_read(&t, U, 50);
    w_run(&t, NGX_WSP_RUN_DIR(U));

    ngx_wsp_dst_gone(&t.d[U]);
    w_run(&t, NGX_WSP_RUN_BOTH);

    ok(t.d[U].in == NGX_WSP_IN_SKIP,
       "dst gone mid-frame: the rest of the frame is skipped");

    wire_fin(U);
    ok(t.d[U].rx == NGX_WSP_RX_GONE && t.d[U].ppos == t.d[U].last,
       "dst gone mid-frame: the upstream's frames are read, its FIN seen");
    ok(ngx_wsp_done(&t.s, 0), "dst gone mid-frame: done");

    w_free(&t);
}


/*
 * With a hook: each frame waits in the slot for Lua's verdict, the next
 * one is not parsed before it; forward, rewrite and drop go out in order,
 * a close frame is never dropped, an invalid rewrite is refused and the
 * frame stays held.
 */

static void
test_wire_verdicts_in_order(void)
{
    unsigned char  big[130];

    w_init(&t);
    t.opts.hook = 1;
    memset(big, 'x', sizeof(big));

    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "one", 3, 0);
    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "two", 3, 0);
    w_frame(C, 1, NGX_WSP_OP_PING, (const unsigned char *) "p", 1, 0);
    w_frame(C, 1, NGX_WSP_OP_BINARY, (const unsigned char *) "four", 4, 0);
    wire_close(C, 1000);
    wire_all();

    ok(t.d[C].in == NGX_WSP_IN_LUA && t.d[C].slot.ready
       && t.d[C].slot.len == 3 && memcmp(t.d[C].slot.data, "one", 3) == 0
       && w_handed[C] == 1 && w_peer[U].frames == 0,
       "verdicts: the first frame waits for Lua, unmasked in place");

    (void) ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_FORWARD, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(C));
    ok(w_peer[U].frames == 1 && w_handed[C] == 2
       && memcmp(t.d[C].slot.data, "two", 3) == 0,
       "verdicts: forwarded as it came, the next one handed over");

    ok(ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_REWRITE,
                       (unsigned char *) "\xff", 1, -1) == NGX_WSP_ABORT
       && t.d[C].in == NGX_WSP_IN_LUA,
       "verdicts: a rewrite that is not UTF-8 is refused, still held");

    (void) ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_REWRITE,
                           (unsigned char *) "TWO!", 4, -1);
    w_run(&t, NGX_WSP_RUN_DIR(C));

    ok(ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_REWRITE, big, 126, -1)
       == NGX_WSP_DECLINED,
       "verdicts: a control payload over 125 bytes is refused");

    (void) ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_DROP, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(C));
    w_inject(&t, C, NGX_WSP_OP_PONG, (const unsigned char *) "", 0);
    (void) ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_FORWARD, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(C));

    ok(t.d[C].slot.opcode == NGX_WSP_OP_CLOSE && t.d[C].slot.code == 1000
       && t.d[C].rx == NGX_WSP_RX_CLOSED,
       "verdicts: the close frame waits too, its status in the slot");

    (void) ngx_wsp_verdict(&t.d[C], NGX_WSP_VERDICT_DROP, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(C));

    ok(w_peer[U].frames == 5 && w_peer[U].ops[0] == NGX_WSP_OP_TEXT
       && w_peer[U].ops[1] == NGX_WSP_OP_TEXT
       && w_peer[U].ops[2] == NGX_WSP_OP_PONG
       && w_peer[U].ops[3] == NGX_WSP_OP_BINARY
       && w_peer[U].ops[4] == NGX_WSP_OP_CLOSE
       && w_peer[U].close_code == 1000
       && t.ev[t.nev - 3].event == NGX_WSP_EV_CLOSE_UNDROPPED,
       "verdicts: one, TWO!, the ping dropped, the pong injected, four, "
       "then the close Lua could not drop");

    /* the upstream's reply waits for Lua as well */
    wire_close(U, 1000);
    wire_all();
    ok(t.d[U].in == NGX_WSP_IN_LUA && t.d[U].slot.code == 1000,
       "verdicts: the close reply is handed to Lua");

    (void) ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    wire_fin(U);
    wire_fin(C);
    ok(ngx_wsp_done(&t.s, 0) && wire_clean(U) && wire_clean(C)
       && w_peer[C].close_code == 1000,
       "verdicts: the reply forwarded, done");

    w_free(&t);
}


/* Lua's verdict on the frame the client's direction holds, then the run */

static int
wire_verdict(unsigned verdict, const char *data)
{
    int  rc;

    rc = ngx_wsp_verdict(&t.d[C], verdict, (unsigned char *) data,
                         data ? strlen(data) : 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(C));

    return rc;
}


/* the client sends a message in fragments, with a hook, not aggregated */

static void
wire_fragments(unsigned opcode, const char **frags, unsigned n)
{
    unsigned  i;

    w_init(&t);
    t.opts.hook = 1;

    for (i = 0; i < n; i++) {
        w_frame(C, i == n - 1, i ? NGX_WSP_OP_CONT : opcode,
                (const unsigned char *) frags[i], strlen(frags[i]), 0);
    }

    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "next", 4, 0);
    wire_all();
}


/*
 * Lua drops fragments of a message (defect: the upstream got
 * continuations without their start, or a message never ended).  The
 * first one dropped drops the whole message without waking the hook
 * again; a middle one sends nothing; the last one an empty last frame.
 */

static void
test_wire_fragment_dropped(void)
{
    static const char  *three[] = { "ab", "cd", "ef" };

    wire_fragments(NGX_WSP_OP_TEXT, three, 3);
    (void) wire_verdict(NGX_WSP_VERDICT_DROP, NULL);

    ok(w_handed[C] == 2 && t.d[C].slot.opcode == NGX_WSP_OP_TEXT
       && t.d[C].slot.fin && memcmp(t.d[C].slot.data, "next", 4) == 0
       && w_peer[U].frames == 0 && wire_clean(U),
       "fragments: the first dropped drops the message, the hook sees "
       "the next message");

    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);
    ok(w_peer[U].frames == 1 && w_peer[U].ops[0] == NGX_WSP_OP_TEXT
       && t.d[C].messages == 2 && wire_clean(U),
       "fragments: the next message goes, both counted");
    w_free(&t);

    wire_fragments(NGX_WSP_OP_BINARY, three, 3);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);
    (void) wire_verdict(NGX_WSP_VERDICT_DROP, NULL);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);

    ok(w_peer[U].frames == 3 && w_peer[U].ops[0] == NGX_WSP_OP_BINARY
       && w_peer[U].ops[1] == NGX_WSP_OP_CONT
       && w_peer[U].ops[2] == NGX_WSP_OP_TEXT && wire_clean(U),
       "fragments: a middle one dropped sends nothing for it");
    w_free(&t);

    wire_fragments(NGX_WSP_OP_TEXT, three, 3);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);
    (void) wire_verdict(NGX_WSP_VERDICT_DROP, NULL);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);

    ok(w_peer[U].frames == 4 && w_peer[U].ops[2] == NGX_WSP_OP_CONT
       && w_peer[U].f.fin && w_peer[U].ops[3] == NGX_WSP_OP_TEXT
       && wire_clean(U),
       "fragments: the last one dropped becomes an empty last frame");
    w_free(&t);
}


/*
 * Text cut in fragments inside a character ("\xc3\xa9" is é): what goes
 * out stays UTF-8 as one stream, or the verdict is refused and the frame
 * stays held (the relay ends the session as for a failed hook).
 */

static void
test_wire_fragment_text(void)
{
    static const char  *cut[] = { "a\xc3", "\xa9" "b", "c" };

    /* the fragment that ends inside é rewritten, the next forwarded */
    wire_fragments(NGX_WSP_OP_TEXT, cut, 3);
    ok(wire_verdict(NGX_WSP_VERDICT_REWRITE, "x") == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL) == NGX_WSP_ABORT
       && t.d[C].in == NGX_WSP_IN_LUA && w_peer[U].frames == 1
       && wire_clean(U),
       "fragments: forwarding the rest of a character whose start was "
       "rewritten is refused, still held");
    ok(wire_verdict(NGX_WSP_VERDICT_DROP, NULL) == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL) == NGX_WSP_OK
       && w_peer[U].frames == 2 && wire_clean(U),
       "fragments: dropping it instead keeps the text whole");
    w_free(&t);

    /* a middle fragment dropped after a cut character */
    wire_fragments(NGX_WSP_OP_TEXT, cut, 3);
    (void) wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL);
    ok(wire_verdict(NGX_WSP_VERDICT_DROP, NULL) == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL) == NGX_WSP_ABORT
       && w_peer[U].frames == 1 && wire_clean(U),
       "fragments: after the end of a character was dropped, the next "
       "fragment is refused");
    ok(wire_verdict(NGX_WSP_VERDICT_DROP, NULL) == NGX_WSP_ABORT
       && wire_verdict(NGX_WSP_VERDICT_REWRITE, "\xa9!") == NGX_WSP_OK
       && w_peer[U].frames == 2 && wire_clean(U),
       "fragments: ... so is an empty last frame; a rewrite that ends "
       "the character goes");
    w_free(&t);

    /* rewrites: each must continue the text sent before it */
    wire_fragments(NGX_WSP_OP_TEXT, cut, 3);
    ok(wire_verdict(NGX_WSP_VERDICT_FORWARD, NULL) == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_REWRITE, "x") == NGX_WSP_ABORT
       && wire_verdict(NGX_WSP_VERDICT_REWRITE, "\xa9\xe2\x82")
          == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_REWRITE, "c") == NGX_WSP_ABORT
       && wire_verdict(NGX_WSP_VERDICT_REWRITE, "\xac") == NGX_WSP_OK
       && w_peer[U].frames == 3 && wire_clean(U),
       "fragments: a rewrite after a cut character must finish it, the "
       "last one must end the text whole");
    w_free(&t);

    /* binary is not text */
    wire_fragments(NGX_WSP_OP_BINARY, cut, 3);
    ok(wire_verdict(NGX_WSP_VERDICT_REWRITE, "\xff") == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_DROP, NULL) == NGX_WSP_OK
       && wire_verdict(NGX_WSP_VERDICT_DROP, NULL) == NGX_WSP_OK
       && w_peer[U].frames == 2 && wire_clean(U),
       "fragments: binary fragments are not checked as text");
    w_free(&t);
}


/*
 * send_frame() of a data frame while a message of the upstream's is open
 * towards the client (defect: it went between the fragments): it waits
 * for the message's end; a ping injected after it does not wait.
 */

static void
test_wire_injected_data_waits(void)
{
    unsigned  hook;

    for (hook = 0; hook < 2; hook++) {
        w_init(&t);
        t.opts.hook = hook;

        w_frame(U, 0, NGX_WSP_OP_TEXT, (const unsigned char *) "a", 1, 0);
        wire_all();

        while (t.d[U].in == NGX_WSP_IN_LUA) {
            (void) ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL,
                                   0, -1);
            w_run(&t, NGX_WSP_RUN_DIR(U));
        }

        w_inject(&t, U, NGX_WSP_OP_BINARY, (const unsigned char *) "i", 1);
        w_inject(&t, U, NGX_WSP_OP_PING, (const unsigned char *) "p", 1);
        w_frame(U, 1, NGX_WSP_OP_CONT, (const unsigned char *) "b", 1, 0);
        wire_all();

        if (hook) {
            ok(t.d[U].in == NGX_WSP_IN_LUA && w_peer[C].frames == 2
               && w_peer[C].ops[1] == NGX_WSP_OP_PING,
               "injected: with the last fragment held, the ping went, the "
               "binary waits");
            (void) ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL,
                                   0, -1);
            w_run(&t, NGX_WSP_RUN_DIR(U));
        }

        ok(w_peer[C].frames == 4 && w_peer[C].ops[0] == NGX_WSP_OP_TEXT
           && w_peer[C].ops[1] == NGX_WSP_OP_PING
           && w_peer[C].ops[2] == NGX_WSP_OP_CONT
           && w_peer[C].ops[3] == NGX_WSP_OP_BINARY
           && t.d[U].inject == NULL && wire_clean(C),
           hook ? "injected (hook): the binary went after the message"
                : "injected: the ping between the fragments, the binary "
                  "after the message");
        w_free(&t);
    }

    /*
     * a close due while the last frame is being buffered for the hook:
     * that frame is skipped, never sent, the message stays open in the
     * output: the binary does not go before the close
     */
    w_init(&t);
    t.opts.hook = 1;
    w_frame(U, 0, NGX_WSP_OP_TEXT, (const unsigned char *) "a", 1, 0);
    w_frame(U, 1, NGX_WSP_OP_CONT, (const unsigned char *) "bcdefgh", 7, 0);
    w_read(&t, U, 3);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    (void) ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    w_read(&t, U, 4);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    w_inject(&t, U, NGX_WSP_OP_BINARY, (const unsigned char *) "i", 1);
    ngx_wsp_close_due(&t.d[U], 1001, "", NGX_WSP_TX_DUE);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    ok(t.d[U].in == NGX_WSP_IN_SKIP && w_peer[C].frames == 2
       && w_peer[C].ops[0] == NGX_WSP_OP_TEXT
       && w_peer[C].ops[1] == NGX_WSP_OP_CLOSE && wire_clean(C),
       "injected: a close due mid-message skips the last frame, the binary "
       "does not go before the close");
    w_free(&t);

    /* the same with the last frame held for the hook when the close is due */
    w_init(&t);
    t.opts.hook = 1;
    w_frame(U, 0, NGX_WSP_OP_TEXT, (const unsigned char *) "a", 1, 0);
    w_frame(U, 1, NGX_WSP_OP_CONT, (const unsigned char *) "b", 1, 0);
    wire_all();
    (void) ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL, 0, -1);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    w_inject(&t, U, NGX_WSP_OP_TEXT, (const unsigned char *) "i", 1);
    ngx_wsp_close_due(&t.d[U], 1001, "", NGX_WSP_TX_DUE);
    w_run(&t, NGX_WSP_RUN_DIR(U));
    ok(w_peer[C].frames == 2 && w_peer[C].ops[0] == NGX_WSP_OP_TEXT
       && w_peer[C].ops[1] == NGX_WSP_OP_CLOSE && wire_clean(C),
       "injected: a close due drops the last frame held for the hook, the "
       "text does not go before the close");
    w_free(&t);

    /* aggregated, nothing of the message is out before its end */
    w_init(&t);
    t.opts.aggregate = 1;
    w_frame(U, 0, NGX_WSP_OP_TEXT, (const unsigned char *) "a", 1, 0);
    wire_all();
    w_inject(&t, U, NGX_WSP_OP_BINARY, (const unsigned char *) "i", 1);
    w_frame(U, 1, NGX_WSP_OP_CONT, (const unsigned char *) "b", 1, 0);
    wire_all();
    ok(w_peer[C].frames == 2 && w_peer[C].ops[0] == NGX_WSP_OP_BINARY
       && w_peer[C].ops[1] == NGX_WSP_OP_TEXT && wire_clean(C),
       "injected: an aggregated message is not open in the output");
    w_free(&t);
}

/*
 * Liveness with a fake clock (src/session/ngx_wsp_live.c): the idle
 * timeout counts data frames either way, not controls; its closes go to
 * both peers.
 */

static void
test_live_idle(void)
{
    intptr_t  next;
    unsigned  act;

    w_init(&t);
    t.opts.idle_timeout = 1000;

    t_clock = 100;
    ok(ngx_wsp_live_start(&t.s) == 1000 && t.d[C].data_time == 100
       && t.d[U].ctl_time == 100,
       "live: the first time is the idle timeout, every peer heard now");

    t_clock = 600;
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "x", 1, 0);
    w_frame(C, 1, NGX_WSP_OP_PING, (const unsigned char *) "", 0, 0);
    wire_all();

    t_clock = 1100;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && next == 500,
       "live: idle 500 ms more after the upstream's data frame at 600");

    t_clock = 1599;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && next == 1, "live: not idle 1 ms before the time");

    t_clock = 1600;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == NGX_WSP_LIVE_IDLE && t.s.ended_by == NGX_WSP_END_IDLE
       && t.d[C].tx == NGX_WSP_TX_DUE && t.d[U].tx == NGX_WSP_TX_DUE,
       "live: idle at 1600 (a ping is no data), both closes due");
    w_run(&t, NGX_WSP_RUN_BOTH);
    ok(w_peer[C].closed && w_peer[C].close_code == NGX_WSP_CLOSE_GOING_AWAY
       && w_peer[U].closed
       && w_peer[U].close_code == NGX_WSP_CLOSE_GOING_AWAY
       && wire_clean(C) && wire_clean(U),
       "live: idle: both peers get 1001");
    w_free(&t);

    /* nothing configured: no time of its own */
    w_init(&t);
    t_clock = 5;
    ok(ngx_wsp_live_start(&t.s) == 0
       && ngx_wsp_live(&t.s, &next) == 0 && next == NGX_WSP_LIVE_NEVER,
       "live: off without idle_timeout and ping_interval");
    w_free(&t);
}


/* a ping's payload, sent to d's src through the other direction */

static size_t
live_ping(unsigned dir, unsigned char *buf)
{
    size_t  n;

    n = ngx_wsp_ping_payload(&t.d[dir], buf);
    w_inject(&t, 1 - dir, NGX_WSP_OP_PING, buf, n);

    return n;
}


/*
 * The heartbeat: each peer pinged every ping_interval; a pong with the
 * proxy's payload answers and is not forwarded, any other frame answers
 * too; a peer silent for ping_timeout after a ping is dropped, the other
 * gets 1001 naming it.
 */

static void
test_live_ping(void)
{
    size_t         n;
    intptr_t       next;
    unsigned       act, frames;
    unsigned char  buf[2][NGX_WSP_PING_MAX];

    w_init(&t);
    t.opts.ping_interval = 1000;
    t.opts.ping_timeout = 300;

    t_clock = 0;
    ok(ngx_wsp_live_start(&t.s) == 1000, "ping: the first time: interval");

    t_clock = 999;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && next == 1, "ping: none before the interval");

    t_clock = 1000;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == (NGX_WSP_LIVE_PING(C) | NGX_WSP_LIVE_PING(U)) && next == 300
       && t.d[C].pings == 1 && t.d[U].pinged && t.d[U].ping_time == 1000,
       "ping: both peers pinged at the interval, next: the timeout");

    n = live_ping(U, buf[U]);
    ok(n == 19 && memcmp(buf[U], "ngx_ws_proxy ping 1", 19) == 0,
       "ping: the payload is the prefix and the number");
    (void) live_ping(C, buf[C]);
    wire_all();
    ok(w_peer[U].frames == 1 && w_peer[U].ops[0] == NGX_WSP_OP_PING
       && w_peer[C].frames == 1 && w_peer[C].ops[0] == NGX_WSP_OP_PING,
       "ping: each peer gets its ping");

    /* the upstream answers at 1100; its pong stops at the proxy */
    t_clock = 1100;
    frames = w_peer[C].frames;
    w_frame(U, 1, NGX_WSP_OP_PONG, buf[U], n, 0);
    /* a pong of the client's own is forwarded */
    w_frame(C, 1, NGX_WSP_OP_PONG, (const unsigned char *) "mine", 4, 0);
    wire_all();
    ok(w_peer[C].frames == frames && t.d[U].ctl_time == 1100
       && w_peer[U].frames == 2 && w_peer[U].ops[1] == NGX_WSP_OP_PONG,
       "ping: the answer to the proxy's ping is not forwarded, a peer's "
       "own pong is");

    t_clock = 1200;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && !t.d[U].pinged && !t.d[C].pinged && next == 900,
       "ping: both answered (the upstream's pong, the client's own pong: "
       "any frame answers), the next ping an interval after the answers");
    w_free(&t);

    /* a silent peer is dropped */
    w_init(&t);
    t.opts.ping_interval = 1000;
    t.opts.ping_timeout = 300;
    t_clock = 0;
    (void) ngx_wsp_live_start(&t.s);
    t_clock = 1000;
    act = ngx_wsp_live(&t.s, &next);
    (void) live_ping(C, buf[C]);
    (void) live_ping(U, buf[U]);
    wire_all();
    t_clock = 1100;
    w_frame(U, 1, NGX_WSP_OP_PONG, buf[U], 19, 0);
    wire_all();
    t_clock = 1299;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && next == 1, "ping: the client has 1 ms left");
    t_clock = 1300;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == NGX_WSP_LIVE_DEAD(C) && t.s.ended_by == NGX_WSP_END_PING_TIMEOUT
       && t.d[C].rx == NGX_WSP_RX_GONE && t.d[U].tx == NGX_WSP_TX_ABORTED,
       "ping: the silent client is dropped at the timeout");
    w_run(&t, NGX_WSP_RUN_BOTH);
    ok(w_peer[U].closed && w_peer[U].close_code == NGX_WSP_CLOSE_GOING_AWAY
       && memcmp(t.d[C].ctl->reason, "client did not answer", 21) == 0
       && wire_clean(U),
       "ping: the upstream gets 1001 naming the client");
    w_free(&t);

    /* without ping_timeout: a ping every interval, nobody dropped */
    w_init(&t);
    t.opts.ping_interval = 1000;
    t_clock = 0;
    (void) ngx_wsp_live_start(&t.s);
    t_clock = 1000;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == (NGX_WSP_LIVE_PING(C) | NGX_WSP_LIVE_PING(U)) && next == 1000,
       "ping: without timeout, next: the interval");
    t_clock = 2000;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == (NGX_WSP_LIVE_PING(C) | NGX_WSP_LIVE_PING(U))
       && t.d[C].pings == 2 && next == 1000,
       "ping: without timeout, unanswered pings go on every interval");
    w_free(&t);
}


/* the bytes of a frame still coming answer a ping */

static void
test_live_mid_frame(void)
{
    intptr_t        next;
    unsigned        act;
    unsigned char   hdr[2] = { 0x82, 100 };   /* binary, 100 bytes, fin */
    unsigned char   body[30];

    w_init(&t);
    t.opts.ping_interval = 1000;
    t.opts.ping_timeout = 300;
    memset(body, 'b', sizeof(body));

    t_clock = 0;
    (void) ngx_wsp_live_start(&t.s);

    /* the upstream sends 30 of a frame's 100 bytes: heard at the look */
    w_raw(U, hdr, 2);
    w_raw(U, body, 30);
    wire_all();

    t_clock = 500;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && next == 500, "mid frame: the client's ping is due first");

    t_clock = 1000;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == NGX_WSP_LIVE_PING(C) && next == 300,
       "mid frame: the upstream, heard at 500, is not pinged at 1000");

    t_clock = 1400;
    w_frame(C, 1, NGX_WSP_OP_BINARY, (const unsigned char *) "c", 1, 0);
    wire_all();

    t_clock = 1500;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == NGX_WSP_LIVE_PING(U) && !t.d[C].pinged,
       "mid frame: no byte since 500: the upstream pinged at 1500");

    t_clock = 1700;
    w_raw(U, body, 30);
    wire_all();

    t_clock = 1800;
    act = ngx_wsp_live(&t.s, &next);
    ok(act == 0 && !t.d[U].pinged && t.d[U].rx == NGX_WSP_RX_OPEN,
       "mid frame: more bytes of the upstream's frame answer its ping");
    w_free(&t);
}


/*
 * A verdict while a frame injected from Lua is partly sent: the frame it
 * forwards (held in place, or rebuilt) waits until the injected frame is
 * all out (it went first into the output, before the injected frame's
 * rest: the stream was corrupt).
 */

static void
test_wire_verdict_after_partial_inject(void)
{
    unsigned  v;

    for (v = 0; v < 3; v++) {
        w_init(&t);
        t.opts.hook = 1;

        w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "held", 4, 0);
        wire_all();
        ok(t.d[U].in == NGX_WSP_IN_LUA, "partial inject: a frame is held");

        w_peer[C].blocked = 1;
        w_inject(&t, U, NGX_WSP_OP_PING, (const unsigned char *) "ping!", 5);
        w_peer[C].blocked = 0;
        ok(w_send(&t, U, 3) == 3, "partial inject: 3 bytes of the ping out");
        w_peer[C].blocked = 1;

        if (v == 0) {
            ok(ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL, 0, -1)
               == NGX_WSP_OK, "partial inject: forwarded");

        } else if (v == 1) {
            ok(ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_REWRITE,
                               (unsigned char *) "new", 3, -1)
               == NGX_WSP_OK, "partial inject: rewritten");

        } else {
            ok(ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_DROP, NULL, 0, -1)
               == NGX_WSP_OK, "partial inject: dropped");
        }

        w_run(&t, NGX_WSP_RUN_DIR(U));
        w_peer[C].blocked = 0;

        /* the ping's rest goes, then the frame: nothing else comes */
        (void) w_send(&t, U, T_BUF);
        w_run(&t, 0);
        ok(w_peer[C].frames == (v == 2 ? 1u : 2u) && wire_clean(C),
           "partial inject: the frame goes once the ping is out, with no "
           "more input");

        w_frame(U, 1, NGX_WSP_OP_BINARY, (const unsigned char *) "next", 4,
                0);
        wire_all();

        /* the hook forwards the next frame */
        if (t.d[U].in == NGX_WSP_IN_LUA) {
            (void) ngx_wsp_verdict(&t.d[U], NGX_WSP_VERDICT_FORWARD, NULL, 0,
                                   -1);
            w_run(&t, NGX_WSP_RUN_DIR(U));
            wire_all();
        }

        ok(wire_clean(C) && w_peer[C].ops[0] == NGX_WSP_OP_PING
           && (v == 2 ? w_peer[C].frames == 2
                        && w_peer[C].ops[1] == NGX_WSP_OP_BINARY
                      : w_peer[C].frames == 3
                        && w_peer[C].ops[1] == NGX_WSP_OP_TEXT
                        && w_peer[C].ops[2] == NGX_WSP_OP_BINARY),
           "partial inject: the client gets the whole ping, then the "
           "frames after it");
        w_free(&t);
    }
}


/*
 * permessage-deflate's data path (src/session/ngx_wsp_pmd.c): what each
 * direction does from what each connection negotiated
 */

static void
test_pmd_plan(void)
{
    ngx_wsp_pmd_params_t  pmd[2];

    /* both connections alike: compressed frames pass both ways */
    t_init(&t);
    memset(pmd, 0, sizeof(pmd));
    pmd[C].on = pmd[U].on = 1;
    pmd[C].client_bits = pmd[C].server_bits = 15;
    pmd[U].client_bits = pmd[U].server_bits = 15;
    ngx_wsp_deflate_start(&t.s, pmd);
    ok(t.d[C].z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX | NGX_WSP_Z_PASS)
       && t.d[U].z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX | NGX_WSP_Z_PASS)
       && t.d[C].msg_state.deflate && t.d[U].msg_state.deflate,
       "pmd: alike on both connections: pass both ways");

    /* a hook looks at payloads: inflate and deflate */
    t.opts.hook = 1;
    ngx_wsp_deflate_start(&t.s, pmd);
    ok(t.d[C].z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX)
       && t.d[U].z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX),
       "pmd: with a hook nothing passes compressed");
    t.opts.hook = 0;

    /* the client compresses with 15 bits, the upstream takes 10: inflate */
    pmd[U].client_bits = 10;
    ngx_wsp_deflate_start(&t.s, pmd);
    ok(t.d[C].z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX)
       && t.d[U].z == (NGX_WSP_Z_RX | NGX_WSP_Z_TX | NGX_WSP_Z_PASS),
       "pmd: a window larger than dst's: the client's messages inflated");
    pmd[U].client_bits = 15;

    /* the upstream keeps no context, the client keeps its own: pass */
    pmd[U].server_nct = 1;
    ngx_wsp_deflate_start(&t.s, pmd);
    ok(t.d[U].z & NGX_WSP_Z_PASS,
       "pmd: src resets its context, dst may keep one: pass");

    /* the client must reset its context, the upstream keeps one: no */
    pmd[U].server_nct = 0;
    pmd[C].server_nct = 1;
    ngx_wsp_deflate_start(&t.s, pmd);
    ok(!(t.d[U].z & NGX_WSP_Z_PASS) && (t.d[C].z & NGX_WSP_Z_PASS),
       "pmd: src keeps a context dst may not: the upstream's inflated");
    ok(ngx_wsp_own_nct(&pmd[C], C) && !ngx_wsp_peer_nct(&pmd[U], U)
       && ngx_wsp_peer_bits(&pmd[C], C) == 15,
       "pmd: the windows and resets by connection and role");

    /* one connection only */
    t_free(&t);
    t_init(&t);
    pmd[U].on = 0;
    ngx_wsp_deflate_start(&t.s, pmd);
    ok(t.d[C].z == NGX_WSP_Z_RX && t.d[U].z == NGX_WSP_Z_TX
       && !t.d[U].msg_state.deflate,
       "pmd: the client's connection only: inflate from it, deflate to it");
    t_free(&t);
}


/*
 * The console's flight recorder: with NGX_WSP_OBS_RECORD the core writes
 * a record of each frame src sent, with its fate, into ctl->obs, oldest
 * first, wrapping at mask + 1; a direction without it writes nothing
 */

static void
test_wire_recorder(void)
{
    ngx_wsp_ctl_t       *ctl;
    ngx_wsp_obs_rec_t    rec[4];
    ngx_wsp_obs_ring_t   ring;

    w_init(&t);
    memset(&ring, 0, sizeof(ring));
    memset(rec, 0, sizeof(rec));
    ring.rec = rec;
    ring.mask = 3;

    ctl = ngx_wsp_get_ctl(&t.d[U]);
    ok(ctl != NULL, "recorder: the control block");
    ctl->obs = &ring;
    t.d[U].observe = NGX_WSP_OBS_RECORD;

    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "a", 1, 0);
    w_frame(U, 1, NGX_WSP_OP_PING, (const unsigned char *) "p", 1, 0);
    w_frame(U, 0, NGX_WSP_OP_BINARY, (const unsigned char *) "xyz", 3, 0);
    w_frame(U, 1, NGX_WSP_OP_CONT, (const unsigned char *) "", 0, 0);
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "bb", 2, 0);
    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "c", 1, 0);
    wire_all();

    ok(ring.written == 5, "recorder: five frames written");
    ok(rec[1].opcode == NGX_WSP_OP_PING && rec[1].len == 1 && rec[1].fin
       && rec[1].action == NGX_WSP_OBS_FORWARDED,
       "recorder: the ping, its length, FIN, forwarded");
    ok(rec[2].opcode == NGX_WSP_OP_BINARY && rec[2].len == 3 && !rec[2].fin
       && rec[3].opcode == NGX_WSP_OP_CONT && rec[3].fin,
       "recorder: a fragmented message's frames, FIN on the last");
    ok(rec[0].opcode == NGX_WSP_OP_TEXT && rec[0].len == 2,
       "recorder: the fifth frame wrapped to the first place");
    ok(w_peer[C].frames == 5 && w_peer[U].frames == 1,
       "recorder: every frame still forwarded");

    w_free(&t);
}


/*
 * The input gate (a message rate in the relay): asked once per data
 * message, at its first frame, never for a continuation or a control
 * frame; a message held stops src's reads at that frame boundary while
 * the other direction flows; let through, it goes whole and in order;
 * refused, its sender gets 1008.
 */

static unsigned  g_budget, g_calls, g_refuse;


static int
g_gate(ngx_wsp_sdir_t *d)
{
    (void) d;

    g_calls++;

    if (g_budget) {
        g_budget--;
        return NGX_WSP_OK;
    }

    return g_refuse ? NGX_WSP_DECLINED : NGX_WSP_AGAIN;
}


static const ngx_wsp_session_cb_t  g_cb = {
    t_alloc, t_mask_key, t_event, NULL, w_reserve, NULL, NULL, w_hand_over,
    NULL, g_gate
};


static void
g_init(void)
{
    w_init(&t);
    ngx_wsp_session_init(&t.s, &g_cb, &t.opts, &t_clock, &t.d[0], &t.d[1]);
    t.d[C].gate = NGX_WSP_GATE_ON;
    g_budget = 1;
    g_calls = 0;
    g_refuse = 0;
}


static void
test_wire_gate(void)
{
    g_init();

    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "m1", 2, 0);
    w_frame(C, 0, NGX_WSP_OP_TEXT, (const unsigned char *) "m2", 2, 0);
    w_frame(C, 1, NGX_WSP_OP_PING, (const unsigned char *) "p", 1, 0);
    w_frame(C, 1, NGX_WSP_OP_CONT, (const unsigned char *) "b", 1, 0);
    w_frame(C, 1, NGX_WSP_OP_BINARY, (const unsigned char *) "m3", 2, 0);
    w_frame(U, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "u1", 2, 0);
    wire_all();

    ok(w_peer[U].frames == 1 && ngx_wsp_held(&t.d[C]) && !ngx_wsp_can_recv(&t.d[C])
       && t.d[C].in == NGX_WSP_IN_HEADER && g_calls == 2,
       "gate: the second message held at its first frame, src not read");
    ok(w_peer[C].frames == 1 && w_peer[C].ops[0] == NGX_WSP_OP_TEXT,
       "gate: the other direction flows while one is held");

    /* the relay's timer: the bucket allows one message more */
    g_budget = 1;
    t.d[C].gate &= ~NGX_WSP_GATE_HELD;
    wire_all();

    ok(w_peer[U].frames == 4 && w_peer[U].ops[1] == NGX_WSP_OP_TEXT
       && w_peer[U].ops[2] == NGX_WSP_OP_PING
       && w_peer[U].ops[3] == NGX_WSP_OP_CONT && ngx_wsp_held(&t.d[C])
       && g_calls == 4,
       "gate: let through, the fragmented message goes whole, its ping and "
       "continuation not asked about, the next one held");

    g_budget = 1;
    t.d[C].gate &= ~NGX_WSP_GATE_HELD;
    wire_close(C, 1000);
    wire_all();

    ok(w_peer[U].frames == 6 && w_peer[U].ops[4] == NGX_WSP_OP_BINARY
       && w_peer[U].closed && w_peer[U].close_code == 1000 && g_calls == 5
       && wire_clean(U),
       "gate: every message in order, the close not asked about");

    w_free(&t);

    /* refused: 1008 to the sender, 1001 on, the frame before delivered */
    g_init();
    g_refuse = 1;

    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "m1", 2, 0);
    w_frame(C, 1, NGX_WSP_OP_TEXT, (const unsigned char *) "m2", 2, 0);
    wire_all();

    ok(w_peer[C].close_code == NGX_WSP_CLOSE_POLICY && w_peer[U].frames == 2
       && w_peer[U].close_code == NGX_WSP_CLOSE_GOING_AWAY
       && t.s.ended_by == NGX_WSP_END_LIMIT && !ngx_wsp_held(&t.d[C]),
       "gate refused: 1008 to the sender, 1001 on, ended by a limit");

    wire_close(C, 1008);
    wire_close(U, 1001);
    wire_fin(U);
    wire_fin(C);
    ok(ngx_wsp_done(&t.s, 0) && wire_clean(C) && wire_clean(U),
       "gate refused: done");

    w_free(&t);
}


int
main(void)
{
    test_close_client_first();
    test_close_upstream_first_then_fin();
    test_violation_after_data();
    test_limit_then_reply();
    test_eof_mid_frame();
    test_reply_in_name_of_gone();
    test_invalid_utf8();
    test_drain_waits_for_message();
    test_held_frame_dropped();
    test_no_memory();
    test_dead_peer();
    test_builder();
    test_wire_close_both_orders();
    test_wire_violation_after_data();
    test_wire_garbage();
    test_wire_limit_then_reply();
    test_wire_eof_mid_frame();
    test_wire_utf8_after_partial_send();
    test_wire_injected_in_order();
    test_wire_dst_gone_mid_frame();
    test_wire_verdicts_in_order();
    test_wire_fragment_dropped();
    test_wire_fragment_text();
    test_wire_injected_data_waits();
    test_wire_recorder();
    test_wire_gate();
    test_live_idle();
    test_live_ping();
    test_live_mid_frame();
    test_wire_verdict_after_partial_inject();
    test_pmd_plan();

    return done_testing();
}
