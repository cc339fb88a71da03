/*
 * Unit tests of the session core, without nginx: prints TAP.  Each test
 * scripts both peers as the relay would report them (bytes read and
 * forwarded, FIN, a close frame accepted, a violation its parser found,
 * sends) and checks the states, the closes queued and the end.
 */

#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "wsp_session.h"


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

    return done_testing();
}
