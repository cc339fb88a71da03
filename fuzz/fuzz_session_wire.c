/*
 * libFuzzer harness of the session core on the wire
 * (src/session/ngx_wsp_session.c with its parser): two peers send byte streams
 * (frames encoded from the input, valid or not, and any bytes), which reach
 * the core in random-sized reads, mixed with short and blocked sends, a send
 * that fails, FIN and resets, closes asked for from Lua (at once, or after the
 * open message as a drain does), close_timeout, frames injected from Lua,
 * limits, liveness (idle timeout, pings and their timeout: a clock that
 * moves, the core's ngx_wsp_live() when the session's time comes, its
 * pings injected and sometimes answered), and with a hook (or
 * aggregation) Lua's verdicts on the frames it
 * holds: forward, rewrite (ASCII, or the input's bytes: text cut anywhere)
 * or drop, of whole messages and of fragments; a verdict the core refuses
 * ends the session as a failed hook does.  A message rate's gate (a
 * message held at its first frame, let go, or refused with 1008) and the
 * flight recorder (a small ring per direction that wraps) come and go.  After every step: the core's
 * invariants (t_check()), and what each peer got parses as valid frames
 * for the sender's role, with valid text and a valid close, nothing after
 * that close.  At the end both peers leave and the session must be done;
 * ASan finds leaks.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "wsp_wire.h"


static t_session_t  t;

/* the flight recorder's rings, small so that they wrap */
static ngx_wsp_obs_rec_t   obs_rec[2][4];
static ngx_wsp_obs_ring_t  obs_ring[2];

static const unsigned  codes[8] = {
    1000, 1001, 1002, 1003, 1008, 1011, 3000, 4999
};

static const unsigned  opcodes[8] = {
    NGX_WSP_OP_CONT, NGX_WSP_OP_TEXT, NGX_WSP_OP_BINARY, NGX_WSP_OP_CLOSE,
    NGX_WSP_OP_PING, NGX_WSP_OP_PONG, NGX_WSP_OP_TEXT, 0x3
};

static const unsigned  inject_ops[4] = {
    NGX_WSP_OP_PING, NGX_WSP_OP_PONG, NGX_WSP_OP_TEXT, NGX_WSP_OP_BINARY
};

/* payload material: ASCII, multi-byte UTF-8, and bytes that are not */
static const unsigned char  text[] =
    "hello \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 world \xff\xc3";


#define must(cond)                                                           \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: %s (%s; %s)\n", __FILE__, __LINE__,     \
                    #cond, w_peer[0].error ? w_peer[0].error : "-",          \
                    w_peer[1].error ? w_peer[1].error : "-");                \
            __builtin_trap();                                                \
        }                                                                    \
    } while (0)


static void
check(void)
{
    unsigned     i;
    const char  *e;

    for (i = 0; i < 2; i++) {
        e = t_check(&t, i);

        if (e) {
            fprintf(stderr, "direction %u: %s\n", i, e);
        }

        must(e == NULL);
        must(w_peer[i].error == NULL);
    }
}


/* a frame of peer p from the script: opcode, fin, length, payload kind */

static void
frame(unsigned p, unsigned a, unsigned b, const uint8_t **data,
    const uint8_t *end)
{
    size_t          len, i;
    unsigned        opcode, code;
    unsigned char   payload[300];

    opcode = opcodes[a & 7];
    len = b;

    if (ngx_wsp_is_control(opcode) && !(a & 0x80)) {
        len %= 126;
    }

    if (opcode == NGX_WSP_OP_CLOSE && len >= 2 && !(a & 0x40)) {
        code = codes[b % 8];
        payload[0] = (unsigned char) (code >> 8);
        payload[1] = (unsigned char) (code & 0xff);
        i = 2;

    } else {
        i = 0;
    }

    for ( /* void */ ; i < len; i++) {
        if (a & 0x20 && *data < end) {
            payload[i] = *(*data)++;

        } else {
            payload[i] = text[i % (sizeof(text) - (a & 0x40 ? 1 : 4))];
        }
    }

    w_frame(p, (a & 0x08) == 0, opcode, payload, len, (a & 0x10) && b < 4);
}


/*
 * Lua's verdict, then the relay's run; rewrites are ASCII, or (v & 4) the
 * input's bytes as they are.  A verdict refused as text that is not UTF-8
 * (a rewrite, or a fragment that would leave the text sent cut) is a
 * failed hook: both peers get 1011, as ngx_http_ws_proxy_abort() does.
 */

static void
verdict(unsigned i, unsigned v, const uint8_t *data, size_t len,
    intptr_t code)
{
    int            rc;
    size_t         k;
    unsigned       raw;
    unsigned char  rewrite[130];

    raw = v & 4;

    for (k = 0; k < len; k++) {
        rewrite[k] = raw ? data[k] : 0x20 + (data[k] & 0x3f);
    }

    rc = ngx_wsp_verdict(&t.d[i], v % 3, rewrite, len, code);

    if (rc == NGX_WSP_ABORT) {
        for (k = 0; k < 2; k++) {
            ngx_wsp_close_due(&t.d[k], 1011, "", NGX_WSP_TX_DUE);
        }

        /* Lua's thread is gone: nothing waits for its verdict */
        ngx_wsp_drop_pending(&t.d[i]);
        w_run(&t, NGX_WSP_RUN_BOTH);
        return;
    }

    w_run(&t, NGX_WSP_RUN_DIR(i));
}


/*
 * The relay's liveness timer (ngx_http_ws_proxy_live.c): ms pass, and if
 * no close is under way the core says what is due; the pings go as the
 * relay injects them, and peer k answers its ping when `answer` says so.
 */

static void
tick(unsigned ms, unsigned answer)
{
    size_t         n;
    intptr_t       next;
    unsigned       k, act;
    unsigned char  buf[NGX_WSP_PING_MAX];

    t_clock += ms;

    if ((t.d[0].rx | t.d[0].tx | t.d[1].rx | t.d[1].tx) != 0) {
        return;
    }

    act = ngx_wsp_live(&t.s, &next);
    must(next > 0 && next <= NGX_WSP_LIVE_NEVER);

    if (act & (NGX_WSP_LIVE_IDLE | NGX_WSP_LIVE_DEAD(0)
               | NGX_WSP_LIVE_DEAD(1)))
    {
        must(act == NGX_WSP_LIVE_IDLE || act == NGX_WSP_LIVE_DEAD(0)
             || act == NGX_WSP_LIVE_DEAD(1));
        must(t.s.ended_by != NGX_WSP_END_NONE);
        w_run(&t, NGX_WSP_RUN_BOTH);
        return;
    }

    must(act == 0 || t.opts.ping_interval);

    for (k = 0; k < 2; k++) {
        if (!(act & NGX_WSP_LIVE_PING(k))) {
            continue;
        }

        must(t.d[k].pinged);
        n = ngx_wsp_ping_payload(&t.d[k], buf);
        must(n > 18 && n <= NGX_WSP_PING_MAX);
        w_inject(&t, 1 - k, NGX_WSP_OP_PING, buf, n);

        if (answer & (1u << k)) {
            w_frame(k, 1, NGX_WSP_OP_PONG, buf, n, 0);
        }
    }
}


/*
 * a message rate on peer i's messages (the relay's rate.c): on or off,
 * its answer to the next message, and a held message let go (the timer)
 */

static void
gate(unsigned i, unsigned a, unsigned b)
{
    ngx_wsp_sdir_t  *d;

    d = &t.d[i];

    if (a & 0x10) {
        d->gate = (unsigned char) (d->gate ^ NGX_WSP_GATE_ON);
    }

    w_gate_rc[i] = (b % 8 == 0) ? NGX_WSP_DECLINED
                   : (b % 2) ? NGX_WSP_AGAIN : NGX_WSP_OK;

    if ((a & 0x20) && (d->gate & NGX_WSP_GATE_HELD)) {
        d->gate &= ~NGX_WSP_GATE_HELD;
        w_gate_rc[i] = NGX_WSP_OK;
        w_run(&t, NGX_WSP_RUN_DIR(i));
    }
}


/* ws_proxy_flight_recorder: the relay hangs a ring on each direction */

static void
recorder(void)
{
    unsigned        i;
    ngx_wsp_ctl_t  *ctl;

    for (i = 0; i < 2; i++) {
        ctl = ngx_wsp_get_ctl(&t.d[i]);
        if (ctl == NULL) {
            return;
        }

        memset(&obs_ring[i], 0, sizeof(obs_ring[i]));
        obs_ring[i].rec = obs_rec[i];
        obs_ring[i].mask = 3;
        ctl->obs = &obs_ring[i];
        t.d[i].observe = NGX_WSP_OBS_RECORD;
    }
}


static void
step(unsigned op, unsigned a, unsigned b, const uint8_t **data,
    const uint8_t *end)
{
    unsigned         i;
    ngx_wsp_sdir_t  *d;
    unsigned char    ping[4] = { 'p', 'i', 'n', 'g' };

    i = a & 1;
    d = &t.d[i];

    switch (op % 15) {

    case 0: /* peer i sends a frame */
    case 1:
        frame(i, a, b, data, end);
        break;

    case 2: /* peer i sends any bytes */
        b = b % 16;
        b = (size_t) (end - *data) < b ? (unsigned) (end - *data) : b;
        w_raw(i, *data, b);
        *data += b;
        break;

    case 3: /* a read of peer i's bytes */
    case 4:
        w_read(&t, i, (size_t) b + 1);
        w_run(&t, NGX_WSP_RUN_DIR(i));
        break;

    case 5: /* peer 1 - i takes some bytes, or blocks */
        w_peer[1 - i].blocked = (a & 2) != 0;

        if (!w_peer[1 - i].blocked) {
            (void) w_send(&t, i, b);
            w_run(&t, NGX_WSP_RUN_DIR(i));
        }
        break;

    case 6: /* FIN or reset from peer i, once its bytes are read */
        if (d->rx <= NGX_WSP_RX_CLOSED && w_peer[i].spos == w_peer[i].slen
            && (a & 0x1e) == 0)
        {
            ngx_wsp_src_hup(d, a & 0x20);
            w_run(&t, NGX_WSP_RUN_DIR(i));
        }
        break;

    case 7: /* a send to peer 1 - i failed */
        if ((a & 0x1e) == 0 && d->tx != NGX_WSP_TX_ABORTED) {
            ngx_wsp_dst_gone(d);
            w_run(&t, NGX_WSP_RUN_BOTH);
        }
        break;

    case 8: /* close() from Lua, or a drain */
        ngx_wsp_close_due(d, codes[b % 8], (a & 4) ? "bye" : "",
                          (a & 2) ? NGX_WSP_TX_MSG : NGX_WSP_TX_DUE);
        w_run(&t, NGX_WSP_RUN_DIR(i));
        break;

    case 9: /* close_timeout */
        if (ngx_wsp_release_deferred(&t.s)) {
            w_run(&t, NGX_WSP_RUN_BOTH);
        }
        break;

    case 10: /* send_frame() from Lua: a ping, a pong, text or binary */
        w_inject(&t, i, inject_ops[(a >> 1) & 3], ping, b % 5);
        break;

    case 11: /* limits (set_max_*()), a message rate's gate */
        if (a & 8) {
            gate(i, a, b);

        } else if (a & 2) {
            t.opts.max_frame_size[i] = b;

        } else {
            t.opts.max_fragments[i] = b % 5;
        }
        break;

    case 12: /* the hook, aggregation, the buffering ceiling (new()) */
        if (w_peer[0].spos + w_peer[1].spos == 0) {
            /* new() sets them: before the relay reads a byte */
            t.opts.hook = (a & 2) != 0;
            t.opts.aggregate = (a & 4) != 0;
            t.opts.max_payload = (a & 8) ? b : 1 << 20;

            /* liveness: ws_proxy_idle_timeout, ping_interval, _timeout */
            t.opts.idle_timeout = (a & 0x10) ? 1 + b * 8 : 0;
            t.opts.ping_interval = (a & 0x20) ? 1 + (b & 0x3f) * 4 : 0;
            t.opts.ping_timeout = (a & 0x40) && t.opts.ping_interval
                                  ? 1 + (b >> 4) * 4 : 0;
            (void) ngx_wsp_live_start(&t.s);

            if (a & 0x80) {
                recorder();
            }
        }
        break;

    case 13: /* the session's time comes */
        tick(b * 2, a >> 1);
        break;

    default: /* Lua's verdict on the frame held: forward, rewrite, drop */
        if (d->in == NGX_WSP_IN_LUA) {
            b = b % 130;
            b = (size_t) (end - *data) < b ? (unsigned) (end - *data) : b;
            verdict(i, a >> 1, *data, b, (a & 0x10) ? codes[b % 8] : -1);
            *data += b;
        }
        break;
    }
}


/*
 * work the relay's loop (w_process(): a bounded number of rounds) may
 * have left: frames injected from Lua still to go (one a frame
 * boundary), src's FIN seen but what it sent before not all parsed
 */
#define pending(i)                                                           \
    ((t.d[i].inject && t.d[i].tx <= NGX_WSP_TX_DUE)                          \
     || t.d[i].rx == NGX_WSP_RX_EOF || t.d[i].in == NGX_WSP_IN_DUE)


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned        i, n;
    const uint8_t  *end, *op;

    w_init(&t);
    t_clock = 0;

    end = data + size;

    while (end - data >= 3) {
        op = data;
        data += 3;

        step(op[0], op[1], op[2], &data, end);
        check();
    }

    /* both peers leave, and may take what they are sent */

    for (n = 0; n < 2 * W_STREAM + 4; n++) {
        if (n > 4 && w_read_all(&t, 0) && w_read_all(&t, 1)
            && t.d[0].in != NGX_WSP_IN_LUA && t.d[1].in != NGX_WSP_IN_LUA
            && !pending(0) && !pending(1))
        {
            break;
        }

        for (i = 0; i < 2; i++) {
            w_peer[i].blocked = 0;

            /* a rate's held message goes, the next ones too */
            w_gate_rc[i] = NGX_WSP_OK;
            t.d[i].gate &= ~NGX_WSP_GATE_HELD;

            while (t.d[i].in == NGX_WSP_IN_LUA) {
                /* the hook forwards what it holds */
                verdict(i, NGX_WSP_VERDICT_FORWARD, NULL, 0, -1);
            }

            w_read(&t, i, W_STREAM);

            if (w_peer[i].spos == w_peer[i].slen
                && t.d[i].rx <= NGX_WSP_RX_CLOSED)
            {
                ngx_wsp_src_hup(&t.d[i], 0);
            }
        }

        w_run(&t, NGX_WSP_RUN_BOTH);
        check();
    }

    if (!ngx_wsp_done(&t.s, 0)) {
        for (i = 0; i < 2; i++) {
            fprintf(stderr, "dir %u: rx %u tx %u in %u out %d spos %zu "
                    "slen %zu\n", i, t.d[i].rx, t.d[i].tx, t.d[i].in,
                    ngx_wsp_has_output(&t.d[i]), w_peer[i].spos,
                    w_peer[i].slen);
        }
    }

    must(ngx_wsp_done(&t.s, 0));

    for (i = 0; i < 2; i++) {
        w_check(i, 1, t.d[1 - i].tx == NGX_WSP_TX_ABORTED);
        must(w_peer[i].error == NULL);
    }

    w_free(&t);

    return 0;
}
