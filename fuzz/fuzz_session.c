/*
 * libFuzzer harness of the session core (src/session/ngx_wsp_session.c): the
 * input is a script of what the relay reports about two peers, in random order
 * and sizes: bytes read, forwarded and sent in pieces, close frames,
 * violations, limits, invalid UTF-8, FIN and resets, frames held for Lua and
 * their verdicts, closes asked for, the close timer, dead peers, failures.
 * Each step is applied only where the relay could report it
 * (t/unit/wsp_session.h has the scripted session), and after each one the
 * invariants are checked: positions in the buffer, states that only move
 * forward, a close of the proxy's re-parses as a valid close frame masked by
 * role, nothing follows a close frame.  At the end both peers leave and the
 * session must be done; ASan finds what the core leaked.
 */

#include <stdint.h>
#include <stdlib.h>

#include "wsp_session.h"


static t_session_t  t;

/* status codes that may be sent (the relay checks Lua's) */
static const unsigned  codes[8] = {
    1000, 1001, 1002, 1003, 1008, 1011, 3000, 4999
};


#define must(cond)   do { if (!(cond)) { __builtin_trap(); } } while (0)


static void
check(const unsigned char *rx, const unsigned char *tx)
{
    unsigned  i;

    for (i = 0; i < 2; i++) {
        must(t_check(&t, i) == NULL);

        /* states only move forward; a closed reader never sees EOF */
        must(t.d[i].tx >= tx[i]);
        must(t.d[i].rx >= rx[i]);
        must(!(rx[i] == NGX_WSP_RX_CLOSED && t.d[i].rx == NGX_WSP_RX_EOF));
    }
}


static void
boundaries(void)
{
    unsigned         i, n;
    ngx_wsp_sdir_t  *d;

    for (n = 0; t.s.kick && n < 4; n++) {
        for (i = 0; i < 2; i++) {
            d = &t.d[i];

            if (!(t.s.kick & NGX_WSP_RUN_DIR(i))) {
                continue;
            }

            t.s.kick &= ~NGX_WSP_RUN_DIR(i);

            if (d->in == NGX_WSP_IN_SKIP && d->tx == NGX_WSP_TX_DUE) {
                /* the rest of a buffered frame is skipped */
                d->in = NGX_WSP_IN_HEADER;
            }

            if (d->in == NGX_WSP_IN_HEADER && d->tx) {
                (void) ngx_wsp_close_boundary(d);
            }
        }
    }
}


static void
step(unsigned op, unsigned a, unsigned b)
{
    unsigned         i, steady;
    size_t           seen;
    ngx_wsp_sdir_t  *d;
    unsigned char    payload[2];

    i = a & 1;
    d = &t.d[i];

    steady = (t.d[0].rx | t.d[0].tx | t.d[1].rx | t.d[1].tx) == 0;

    switch (op % 18) {

    case 0: /* read */
        if (d->rx <= NGX_WSP_RX_CLOSED && d->in != NGX_WSP_IN_LUA) {
            (void) t_read(&t, i, b);

            if (ngx_wsp_rx_over(d) && d->spos == d->ppos) {
                /* after its close a peer's bytes are ignored */
                d->ppos = d->last;
                d->spos = d->last;
            }
        }
        break;

    case 1: /* a frame's bytes parsed: forwarded raw, or skipped */
        if (ngx_wsp_rx_over(d) || d->in == NGX_WSP_IN_LUA) {
            break;
        }

        if (d->tx >= NGX_WSP_TX_CLOSED) {
            d->ppos += (size_t) (d->last - d->ppos) < b
                       ? (size_t) (d->last - d->ppos) : b;
            d->spos = d->ppos;
            d->in = (a & 2) ? NGX_WSP_IN_SKIP : NGX_WSP_IN_HEADER;
            break;
        }

        if (d->in == NGX_WSP_IN_HEADER) {
            d->frame.header_len = 2;
            d->offset = 0;
        }

        seen = t_forward(&t, i, b);
        d->offset += seen;
        d->in = (a & 2) ? NGX_WSP_IN_RAW : NGX_WSP_IN_HEADER;
        break;

    case 2: /* a send, maybe short */
        (void) t_send(&t, i, b);
        break;

    case 3: /* a violation found by the parser */
        if (!ngx_wsp_rx_over(d) && d->tx < NGX_WSP_TX_CLOSED
            && d->in != NGX_WSP_IN_LUA)
        {
            ngx_wsp_violation(d, (a & 2) ? NGX_WSP_CLOSE_INVALID_DATA
                                         : NGX_WSP_CLOSE_PROTOCOL,
                              "fuzz", (a & 4) ? "fuzz" : NULL);
        }
        break;

    case 4: /* a limit */
        if (!ngx_wsp_rx_over(d) && d->tx < NGX_WSP_TX_CLOSED
            && d->in != NGX_WSP_IN_LUA)
        {
            ngx_wsp_limit(d, NGX_WSP_LIMIT_FRAGMENTS, 2);
        }
        break;

    case 5: /* invalid UTF-8 in a raw frame, or a buffered one */
        if (ngx_wsp_rx_over(d) || d->tx >= NGX_WSP_TX_CLOSED
            || d->in == NGX_WSP_IN_LUA)
        {
            break;
        }

        if (d->in == NGX_WSP_IN_RAW
            && d->frame.header_len + d->offset
               <= (uint64_t) (d->ppos - d->start))
        {
            ngx_wsp_invalid_utf8(d, 1);

        } else if (d->in != NGX_WSP_IN_RAW) {
            ngx_wsp_invalid_utf8(d, 0);
        }
        break;

    case 6: /* close() from Lua, idle, a deadline, a drain */
        ngx_wsp_close_due(d, codes[b % 8], (a & 4) ? "why" : "",
                          (a & 2) ? NGX_WSP_TX_MSG : NGX_WSP_TX_DUE);
        break;

    case 7: /* close_timeout */
        (void) ngx_wsp_release_deferred(&t.s);
        break;

    case 8: /* src's close frame, accepted, then forwarded or held */
        if (ngx_wsp_rx_over(d) || d->in != NGX_WSP_IN_HEADER
            || d->tx == NGX_WSP_TX_DUE
            || (d->tx == NGX_WSP_TX_MSG && d->msg_state.open_opcode == 0))
        {
            break;
        }

        payload[0] = (unsigned char) (codes[b % 8] >> 8);
        payload[1] = (unsigned char) (codes[b % 8] & 0xff);

        if (d->tx >= NGX_WSP_TX_CLOSED) {
            /* a reply to the proxy's close: kept, skipped */
            if (ngx_wsp_get_ctl(d)) {
                ngx_wsp_keep_close(d, codes[b % 8], payload, 2);
            }

            ngx_wsp_rx_close(d);
            break;
        }

        if (ngx_wsp_close_accepted(d, codes[b % 8], payload, 2) != 0) {
            ngx_wsp_fail(&t.s, "out of memory");
            break;
        }

        if (a & 2) {
            d->in = NGX_WSP_IN_LUA;
            d->hold = 0;
            t.held_close[i] = 1;

        } else {
            ngx_wsp_close_forwarded(d);
        }
        break;

    case 9: /* FIN or reset */
        if (d->rx <= NGX_WSP_RX_CLOSED && d->in != NGX_WSP_IN_LUA) {
            ngx_wsp_src_hup(d, a & 2);
        }
        break;

    case 10: /* every whole frame before the FIN parsed */
        if (d->rx == NGX_WSP_RX_EOF) {
            ngx_wsp_src_gone(d);
        }
        break;

    case 11: /* a ping unanswered */
        if (steady) {
            ngx_wsp_src_dead(d, "did not answer a ping");
        }
        break;

    case 12: /* a send failed */
        if (d->tx != NGX_WSP_TX_ABORTED) {
            ngx_wsp_dst_gone(d);
        }
        break;

    case 13: /* out of memory */
        if ((a & 0x1e) == 0) {
            ngx_wsp_fail(&t.s, "out of memory");
        }
        break;

    case 14: /* a whole frame held for Lua */
        if (!ngx_wsp_rx_over(d) && d->in == NGX_WSP_IN_HEADER
            && d->tx < NGX_WSP_TX_CLOSED && d->tx != NGX_WSP_TX_DUE
            && d->spos == d->ppos)
        {
            d->in = NGX_WSP_IN_LUA;
            d->hold = (size_t) (d->last - d->ppos) < b
                      ? (size_t) (d->last - d->ppos) : b;
        }
        break;

    case 15: /* Lua's verdict: forward the held frame */
        if (d->in == NGX_WSP_IN_LUA && d->tx < NGX_WSP_TX_CLOSED
            && d->tx != NGX_WSP_TX_DUE)
        {
            d->in = NGX_WSP_IN_HEADER;
            d->ppos += d->hold;
            d->hold = 0;

            if (t.held_close[i]) {
                /* a close frame cannot be dropped: it goes, rebuilt */
                t.held_close[i] = 0;
                ngx_wsp_close_forwarded(d);
            }
        }
        break;

    case 16: /* a data message starts or ends */
        if (!ngx_wsp_rx_over(d) && d->in == NGX_WSP_IN_HEADER) {
            d->msg_state.open_opcode = (a & 2) ? NGX_WSP_OP_TEXT : 0;
        }
        break;

    default: /* the memory runs out, or comes back */
        t.no_memory = a & 2;
        break;
    }

    boundaries();
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t         i;
    unsigned       k, n;
    unsigned char  rx[2], tx[2];

    t_init(&t);

    for (i = 0; i + 2 < size; i += 3) {
        rx[0] = t.d[0].rx;
        rx[1] = t.d[1].rx;
        tx[0] = t.d[0].tx;
        tx[1] = t.d[1].tx;

        step(data[i], data[i + 1], data[i + 2]);
        check(rx, tx);
    }

    /* both peers leave: whatever happened, the session ends */

    t.no_memory = 0;

    for (n = 0; n < 3; n++) {
        for (k = 0; k < 2; k++) {
            if (t.d[k].in == NGX_WSP_IN_LUA && t.held_close[k]
                && t.d[k].tx < NGX_WSP_TX_CLOSED)
            {
                /* Lua's verdict on a close frame: it goes (rebuilt) */
                t.held_close[k] = 0;
                t.d[k].in = NGX_WSP_IN_HEADER;
                ngx_wsp_close_forwarded(&t.d[k]);

            } else if (t.d[k].in == NGX_WSP_IN_LUA) {
                /* the hook's thread ends with the session */
                ngx_wsp_drop_pending(&t.d[k]);
            }

            if (t.d[k].rx <= NGX_WSP_RX_CLOSED) {
                ngx_wsp_src_hup(&t.d[k], 0);
            }

            if (t.d[k].rx == NGX_WSP_RX_EOF) {
                ngx_wsp_src_gone(&t.d[k]);
            }
        }

        boundaries();
        (void) t_send(&t, 0, 1 << 20);
        (void) t_send(&t, 1, 1 << 20);
    }

    must(ngx_wsp_done(&t.s, 0));
    must(t_check(&t, 0) == NULL && t_check(&t, 1) == NULL);

    t_free(&t);

    return 0;
}
