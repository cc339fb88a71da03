/*
 * wsbench: a WebSocket echo server and load generator on epoll, for the
 * benchmarks under bench/ (no such tool is packaged in Debian).
 *
 *   wsbench server PORT
 *   wsbench load HOST PORT PATH MODE CONNS SIZE SECONDS [INFLIGHT]
 *       MODE: echo (closed loop, one message in flight per connection),
 *             stream (INFLIGHT frames in flight per connection),
 *             idle (open CONNS connections, hold them SECONDS),
 *             frag (echo of messages of INFLIGHT fragments);
 *       prefixes: "text" (printable ASCII text frames), "json" (text
 *       frames of JSON-like text, see json_message()), "deflate" (json,
 *       and permessage-deflate offered with no context takeover either
 *       way), "deflatectx" (json, permessage-deflate offered with context
 *       takeover allowed); e.g. "deflateecho", "deflateidle".
 *   wsbench sample SIZE     writes the JSON-like message pool to stdout
 *                           and its zlib level 1 ratio to stderr
 *
 * The load side masks its frames, fills payloads with a pattern derived
 * from the connection and sequence number, and checks every echoed byte.
 * It prints one line: msgs= msgs_per_s= mb_per_s= p50_us= p99_us= errors=
 * and with deflate: pmd_conns= (connections that negotiated it) wire_b=
 * (compressed payload bytes per echoed message) matched= (echoes whose
 * compressed bytes equal the ones sent, checked by memcmp) inflated=
 * (echoes inflated and compared with the text sent) plain= (echoes that
 * came back uncompressed).  In the "deflateidle" mode every connection
 * echoes one compressed message before it idles, one connection after the
 * other (so that a proxy holds one message's zlib streams at a time).
 *
 * Environment (for many idle sessions, bench/scale): WSBENCH_SRC=ADDR binds
 * the load side's connections to that source address (its own ephemeral
 * ports, so that several load processes can each hold ~20,000 sessions
 * to one port); WSBENCH_LEAN=1 gives back a connection's empty input and
 * output buffers (64 KiB each once used), in the server after every event
 * and in the "idle" load once the handshake is done, so that the load and
 * echo sides hold about 1 KB per session.  The "ready" line of the idle
 * mode carries open_ms= (from the first connect to the last 101).
 *
 * The server answers a permessage-deflate offer (RFC 7692) and echoes a
 * compressed message as it came, compressed bytes and RSV1 unchanged: valid
 * because an echo sends back the same texts in the same order, so the
 * peer's inflater holds the same history as its deflater did (and the
 * server asks for client_no_context_takeover whenever the client asks it
 * for server_no_context_takeover).
 */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>


typedef struct {
    int             fd;
    int             state;          /* 0 handshake, 1 open */
    unsigned char  *in;
    size_t          in_len, in_cap;
    unsigned char  *out;
    size_t          out_pos, out_len, out_cap;
    uint64_t        seq_sent, seq_recv;
    double          sent_at[64];
    int             want_out;
    unsigned char  *frag;                   /* server: message being joined */
    size_t          frag_len, frag_cap;
    int             frag_op;
    int             frag_rsv;
    int             pmd;            /* permessage-deflate negotiated */
    int             cnt, snt;       /* client_/server_no_context_takeover */
    int             cwb;            /* client's deflate window bits */
    z_stream       *dz, *iz;        /* load side: its deflater, inflater */
} conn_t;


static int       ep;
static size_t    msg_size;
static int       inflight = 1;
static int       fragments = 1;    /* "frag" mode: fragments per message */
static int       text;             /* "text..." modes: printable ASCII text
                                      frames, which the proxy checks as
                                      UTF-8 */
static int       json;             /* JSON-like text messages */
static int       pmd_offer;        /* 1: offer no context takeover,
                                      2: offer context takeover */
static uint64_t  msgs, errors, bytes;
static uint64_t  pmd_conns, matched, inflated, plain, wire_bytes;
static uint64_t  max_msgs, sent_msgs;     /* "mN" as SECONDS: N messages */
static double   *lat;
static size_t    nlat, lat_cap;
static int       lean;             /* WSBENCH_LEAN=1 */
static double    open_start;       /* idle: the first connect */


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


static void
die(const char *s)
{
    perror(s);
    exit(2);
}


static void
reserve(unsigned char **p, size_t *cap, size_t need)
{
    if (need <= *cap) {
        return;
    }

    while (*cap < need) {
        *cap = *cap ? *cap * 2 : 65536;
    }

    *p = realloc(*p, *cap);
    if (*p == NULL) {
        die("realloc");
    }
}


static void
out_add(conn_t *c, const void *data, size_t n)
{
    if (c->out_pos == c->out_len) {
        c->out_pos = c->out_len = 0;
    }

    reserve(&c->out, &c->out_cap, c->out_len + n);
    memcpy(c->out + c->out_len, data, n);
    c->out_len += n;
}


static int
flush_out(conn_t *c)
{
    struct epoll_event  ev;
    ssize_t             n;

    while (c->out_pos < c->out_len) {
        n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos,
                 MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) {
                break;
            }
            return -1;
        }
        c->out_pos += n;
    }

    int want = c->out_pos < c->out_len;

    if (want != c->want_out) {
        ev.events = EPOLLIN | (want ? EPOLLOUT : 0);
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }

    return 0;
}


/* WSBENCH_LEAN: an idle connection keeps no empty buffer */
static void
lean_buffers(conn_t *c)
{
    if (c->in_len == 0 && c->in != NULL) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    }

    if (c->out_pos == c->out_len && c->out != NULL) {
        free(c->out);
        c->out = NULL;
        c->out_cap = c->out_pos = c->out_len = 0;
    }
}


static size_t
frame_header(unsigned char *h, int opcode, size_t len, const unsigned char *key)
{
    size_t  n;
    int     i;

    h[0] = 0x80 | opcode;

    if (len < 126) {
        h[1] = len;
        n = 2;
    } else if (len < 65536) {
        h[1] = 126; h[2] = len >> 8; h[3] = len;
        n = 4;
    } else {
        h[1] = 127;
        for (i = 0; i < 8; i++) {
            h[2 + i] = (uint64_t) len >> (56 - 8 * i);
        }
        n = 10;
    }

    if (key) {
        h[1] |= 0x80;
        memcpy(h + n, key, 4);
        n += 4;
    }

    return n;
}


/* a complete frame at p? returns its total length, 0 if incomplete */
static size_t
frame_parse(unsigned char *p, size_t len, int *opcode, unsigned char **payload,
    size_t *plen)
{
    size_t    n = 2, i;
    uint64_t  l;

    if (len < 2) {
        return 0;
    }

    l = p[1] & 0x7f;

    if (l == 126) {
        if (len < 4) return 0;
        l = (p[2] << 8) | p[3];
        n = 4;
    } else if (l == 127) {
        if (len < 10) return 0;
        l = 0;
        for (i = 0; i < 8; i++) l = (l << 8) | p[2 + i];
        n = 10;
    }

    if (p[1] & 0x80) {
        if (len < n + 4 + l) return 0;
        for (i = 0; i < l; i++) {
            p[n + 4 + i] ^= p[n + (i & 3)];
        }
        n += 4;
    } else if (len < n + l) {
        return 0;
    }

    *opcode = p[0] & 0x0f;
    *payload = p + n;
    *plen = l;

    return n + l;
}


static void
set_nonblock(int fd)
{
    int  one = 1;

    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}


static void
raise_nofile(void)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}


/* ------------------------------------------------------- JSON-like text */

#define POOL  64

static unsigned char  *pool_txt[POOL], *pool_z[POOL];
static size_t          pool_zlen[POOL];
static uint64_t        rng;


static uint32_t
rnd32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t) (rng >> 16);
}


static const char  *words[] = {
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert",
    "sybil", "trent", "victor", "walter", "pending", "filled",
    "cancelled", "rejected", "open", "closed", "eu-west-1", "us-east-2",
    "ap-south-1", "android", "ios", "linux", "windows", "chrome",
    "firefox", "safari", "EUR", "USD", "JPY", "GBP", "BTC-USD", "ETH-EUR",
    "AAPL", "MSFT", "trade", "quote", "heartbeat", "login", "logout",
    "Paris", "Berlin", "Tokyo", "Lagos", "Lima", "Oslo", "ticker",
    "orders", "news", "chat", "timeout", "retry", "connected", "slow"
};

#define NWORDS  (sizeof(words) / sizeof(words[0]))

static const char  *levels[] = { "debug", "info", "info", "warn", "error" };


/*
 * One record of one of three kinds, as an API of trades, sessions and log
 * lines would send: the same keys for a kind, numbers that move by small
 * steps (timestamps, ids, prices), enumerations and short strings.
 */

static int
json_record(char *p, size_t room, uint64_t *ts, unsigned *id)
{
    uint32_t  r = rnd32();

    *ts += 10 * (rnd32() % 4);
    *id += 1;

    switch (r % 4 < 2 ? 0 : r % 4 - 1) {
    case 0:
        return snprintf(p, room, "{\"kind\":\"trade\",\"id\":%u,"
                        "\"symbol\":\"%s\",\"side\":\"%s\",\"price\":%u.%02u,"
                        "\"qty\":%u,\"ts\":%llu,\"status\":\"%s\","
                        "\"venue\":\"XNAS\",\"currency\":\"USD\"}",
                        *id, words[39 + rnd32() % 4],
                        rnd32() & 1 ? "buy" : "sell", 180 + rnd32() % 8,
                        rnd32() % 4 * 25, 10 * (1 + rnd32() % 8),
                        (unsigned long long) *ts, words[19 + rnd32() % 6]);
    case 1:
        return snprintf(p, room, "{\"kind\":\"session\",\"user\":\"%s\","
                        "\"session\":\"s%04x\",\"region\":\"%s\","
                        "\"device\":\"%s\",\"ok\":%s,\"latency_ms\":%u,"
                        "\"ts\":%llu,\"client\":{\"app\":\"web\","
                        "\"version\":\"4.2.1\"}}",
                        words[rnd32() % 8], 0x1a00 + (rnd32() & 0x1f),
                        words[25 + rnd32() % 3], words[28 + rnd32() % 7],
                        rnd32() % 8 ? "true" : "false", 5 * (1 + rnd32() % 8),
                        (unsigned long long) *ts);
    default:
        return snprintf(p, room, "{\"kind\":\"log\",\"level\":\"%s\","
                        "\"message\":\"%s from %s\",\"seq\":%u,"
                        "\"ts\":%llu,\"service\":\"gateway\","
                        "\"env\":\"prod\"}",
                        levels[rnd32() % 5], words[43 + rnd32() % 5],
                        words[rnd32() % 19], *id,
                        (unsigned long long) *ts);
    }
}


/*
 * Message i of the pool: {"type":...,"seq":i,"data":[records...]} padded
 * with a last record {"pad":"..."} to exactly size bytes (tiny sizes are
 * just letters): deterministic, varied keys, numbers and short strings.
 */

static void
json_message(unsigned char *out, size_t size, unsigned i)
{
    char      *p = (char *) out, rec[512];
    size_t     len, n;
    uint64_t   ts;
    unsigned   id;

    rng = 0x9e3779b97f4a7c15ULL ^ (i * 0x100000001b3ULL + 1);
    ts = 1733112000000ULL + i * 60000ULL;
    id = 100000 + i * 1000;
    len = snprintf(p, size + 1, "{\"type\":\"%s\",\"seq\":%u,\"data\":[",
                   words[i % NWORDS], i);

    if (len + 16 > size) {
        for (n = 0; n < size; n++) out[n] = 'a' + rnd32() % 26;
        return;
    }

    for ( ;; ) {
        n = json_record(rec, sizeof(rec), &ts, &id);
        if (len + n + 1 + 12 + 3 > size) break;
        memcpy(p + len, rec, n);
        len += n;
        p[len++] = ',';
    }

    /* {"pad":"..."}]} */
    len += snprintf(p + len, size + 1 - len, "{\"pad\":\"");
    while (len < size - 4) p[len++] = ' ';
    memcpy(p + len, "\"}]}", 4);
}


/* raw deflate of one message, Z_SYNC_FLUSH, the 00 00 ff ff tail cut */
static size_t
pmd_deflate(z_stream *z, int reset, const unsigned char *in, size_t n,
    unsigned char *out, size_t cap)
{
    if (reset) deflateReset(z);

    z->next_in = (unsigned char *) in;
    z->avail_in = n;
    z->next_out = out;
    z->avail_out = cap;

    if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0
        || z->avail_out == 0)
    {
        die("deflate");
    }

    n = cap - z->avail_out;
    if (n < 4 || memcmp(out + n - 4, "\0\0\xff\xff", 4) != 0) die("flush");

    return n - 4;
}


static z_stream *
pmd_deflater(int bits)
{
    z_stream  *z = calloc(1, sizeof(z_stream));

    /* zlib makes a raw window of 8 bits 9: ask for 9 at least */
    if (deflateInit2(z, 1, Z_DEFLATED, -(bits < 9 ? 9 : bits), 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
    {
        die("deflateInit2");
    }
    return z;
}


/* inflates one message (the tail appended); its length, -1 on an error */
static long
pmd_inflate(z_stream *z, const unsigned char *in, size_t n,
    unsigned char *out, size_t cap)
{
    static unsigned char  tail[4] = { 0, 0, 0xff, 0xff };
    int                   rc;

    z->next_out = out;
    z->avail_out = cap;
    z->next_in = (unsigned char *) in;
    z->avail_in = n;

    rc = inflate(z, Z_SYNC_FLUSH);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in) return -1;

    z->next_in = tail;
    z->avail_in = 4;
    rc = inflate(z, Z_SYNC_FLUSH);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || z->avail_in) return -1;

    return cap - z->avail_out;
}


static void
pool_init(void)
{
    z_stream  *z = pmd_deflater(15);
    size_t     cap = msg_size + msg_size / 8 + 64;
    unsigned   i;

    for (i = 0; i < POOL; i++) {
        pool_txt[i] = malloc(msg_size + 1);
        pool_z[i] = malloc(cap);
        json_message(pool_txt[i], msg_size, i);
        pool_zlen[i] = pmd_deflate(z, 1, pool_txt[i], msg_size, pool_z[i],
                                   cap);
    }

    deflateEnd(z);
    free(z);
}


static int
run_sample(size_t size)
{
    size_t    z = 0;
    unsigned  i;

    msg_size = size;
    pool_init();

    for (i = 0; i < POOL; i++) {
        fwrite(pool_txt[i], 1, msg_size, stdout);
        z += pool_zlen[i];
    }

    fprintf(stderr, "messages=%d size=%zu deflated=%.0f ratio=%.2f\n", POOL,
            msg_size, (double) z / POOL, (double) msg_size * POOL / z);
    return 0;
}


/* ------------------------------------------------------ permessage-deflate */

static char *
trim(char *s)
{
    char  *e;

    while (*s == ' ' || *s == '\t') s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
    if (*s == '"' && e > s + 1 && e[-1] == '"') {
        e[-1] = 0;
        s++;
    }
    return s;
}


/*
 * One permessage-deflate offer or answer, "permessage-deflate; a; b=N":
 * the four parameters of RFC 7692, -1 where absent, 0 for a
 * max_window_bits without a value.  Returns -1 if it is not a valid one.
 */

typedef struct {
    int  snt, cnt, swb, cwb;
} pmd_params_t;


static int
pmd_parse(char *s, pmd_params_t *pp)
{
    char  *tok, *save, *eq, *v;
    int    first = 1, *slot, n;

    pp->snt = pp->cnt = pp->swb = pp->cwb = -1;

    for (tok = strtok_r(s, ";", &save); tok; tok = strtok_r(NULL, ";", &save))
    {
        tok = trim(tok);

        if (first) {
            if (strcasecmp(tok, "permessage-deflate") != 0) return -1;
            first = 0;
            continue;
        }

        v = NULL;
        eq = strchr(tok, '=');
        if (eq) {
            *eq = 0;
            v = trim(eq + 1);
            tok = trim(tok);
        }

        if (strcasecmp(tok, "server_no_context_takeover") == 0) {
            slot = &pp->snt;
        } else if (strcasecmp(tok, "client_no_context_takeover") == 0) {
            slot = &pp->cnt;
        } else if (strcasecmp(tok, "server_max_window_bits") == 0) {
            slot = &pp->swb;
        } else if (strcasecmp(tok, "client_max_window_bits") == 0) {
            slot = &pp->cwb;
        } else {
            return -1;
        }

        if (*slot != -1) return -1;

        if (slot == &pp->snt || slot == &pp->cnt) {
            if (v) return -1;
            *slot = 1;
            continue;
        }

        if (v == NULL) {
            if (slot == &pp->swb) return -1;
            *slot = 0;
            continue;
        }

        n = atoi(v);
        if (n < 8 || n > 15 || strspn(v, "0123456789") != strlen(v)) {
            return -1;
        }
        *slot = n;
    }

    return first ? -1 : 0;
}


/* the values of every Sec-WebSocket-Extensions line, joined with ", " */
static void
ext_header(const char *head, char *buf, size_t size)
{
    const char  *p = head, *e;
    size_t       len = 0;

    buf[0] = 0;

    while ((p = strcasestr(p, "\r\nSec-WebSocket-Extensions:"))) {
        p += 27;
        e = strstr(p, "\r\n");
        if (e == NULL) e = p + strlen(p);
        len += snprintf(buf + len, size - len, "%s%.*s", len ? ", " : "",
                        (int) (e - p), p);
        if (len >= size) {
            buf[size - 1] = 0;
            return;
        }
        p = e;
    }
}


/*
 * The server's answer to the first offer it can echo compressed payloads
 * for: the client's window must not exceed the server's (so
 * server_max_window_bits needs client_max_window_bits), and whenever the
 * client drops the server's context it must drop its own.
 */

static void
server_pmd_answer(conn_t *c, const char *head, char *ext, size_t size)
{
    char          buf[2048], *offer, *save;
    pmd_params_t  pp;
    int           cwb, len;

    ext[0] = 0;
    ext_header(head, buf, sizeof(buf));

    for (offer = strtok_r(buf, ",", &save); offer;
         offer = strtok_r(NULL, ",", &save))
    {
        if (pmd_parse(offer, &pp) != 0) continue;

        cwb = -1;
        if (pp.swb > 0) {
            if (pp.cwb == -1) continue;
            cwb = pp.cwb > 0 && pp.cwb < pp.swb ? pp.cwb : pp.swb;
        } else if (pp.cwb > 0) {
            cwb = pp.cwb;
        }

        len = snprintf(ext, size, "Sec-WebSocket-Extensions: "
                       "permessage-deflate");
        if (pp.snt == 1) {
            len += snprintf(ext + len, size - len,
                            "; server_no_context_takeover");
        }
        if (pp.snt == 1 || pp.cnt == 1) {
            len += snprintf(ext + len, size - len,
                            "; client_no_context_takeover");
        }
        if (pp.swb > 0) {
            len += snprintf(ext + len, size - len,
                            "; server_max_window_bits=%d", pp.swb);
        }
        if (cwb > 0) {
            len += snprintf(ext + len, size - len,
                            "; client_max_window_bits=%d", cwb);
        }
        snprintf(ext + len, size - len, "\r\n");
        c->pmd = 1;
        return;
    }
}


/* ---------------------------------------------------------------- server */

static void
server_handshake(conn_t *c)
{
    char           *end, *k, *e, resp[256];
    unsigned char   sha[20];
    char            acc[64], buf[256];
    SHA_CTX         sctx;
    int             n;

    c->in = realloc(c->in, c->in_cap + 1);
    c->in[c->in_len] = 0;
    end = strstr((char *) c->in, "\r\n\r\n");
    if (end == NULL) {
        return;
    }

    k = strcasestr((char *) c->in, "Sec-WebSocket-Key:");
    if (k == NULL) {
        close(c->fd);
        c->fd = -1;
        return;
    }

    k += 18;
    while (*k == ' ') k++;
    e = strstr(k, "\r\n");
    n = snprintf(buf, sizeof(buf), "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11",
                 (int) (e - k), k);
    SHA1_Init(&sctx);
    SHA1_Update(&sctx, buf, n);
    SHA1_Final(sha, &sctx);
    EVP_EncodeBlock((unsigned char *) acc, sha, 20);

    char  ext[256];

    *end = 0;
    server_pmd_answer(c, (char *) c->in, ext, sizeof(ext));
    *end = '\r';

    n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n%s\r\n", acc, ext);
    out_add(c, resp, n);

    size_t  hl = end + 4 - (char *) c->in;
    memmove(c->in, c->in + hl, c->in_len - hl);
    c->in_len -= hl;
    c->state = 1;
}


static void
server_frames(conn_t *c)
{
    size_t          off = 0, n, plen, hl;
    int             opcode;
    unsigned char  *payload, h[14];

    /* a fragmented message is echoed back as one frame when complete */

    while ((n = frame_parse(c->in + off, c->in_len - off, &opcode, &payload,
                            &plen)))
    {
        int  fin = c->in[off] & 0x80;

        if (opcode == 8) {
            out_add(c, h, frame_header(h, 8, plen, NULL));
            out_add(c, payload, plen);
            flush_out(c);
            shutdown(c->fd, SHUT_WR);
            c->state = 2;

        } else if (opcode == 9) {
            out_add(c, h, frame_header(h, 10, plen, NULL));
            out_add(c, payload, plen);

        } else if (!fin || opcode == 0) {
            if (opcode) {
                c->frag_op = opcode;
                c->frag_rsv = c->in[off] & 0x40;
                c->frag_len = 0;
            }
            reserve(&c->frag, &c->frag_cap, c->frag_len + plen);
            memcpy(c->frag + c->frag_len, payload, plen);
            c->frag_len += plen;
            if (fin) {
                hl = frame_header(h, c->frag_op, c->frag_len, NULL);
                h[0] |= c->frag_rsv;
                out_add(c, h, hl);
                out_add(c, c->frag, c->frag_len);
            }

        } else if (opcode == 1 || opcode == 2) {
            /* RSV1 (a compressed message) is echoed as it came */
            hl = frame_header(h, opcode, plen, NULL);
            h[0] |= c->in[off] & 0x40;
            out_add(c, h, hl);
            out_add(c, payload, plen);
        }

        off += n;
    }

    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}


static int
run_server(int port)
{
    int                 lfd, one = 1, i, n;
    struct sockaddr_in  sa;
    struct epoll_event  ev, evs[256];
    conn_t              lconn;

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    lean = getenv("WSBENCH_LEAN") != NULL && atoi(getenv("WSBENCH_LEAN"));

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (void *) &sa, sizeof(sa)) < 0) die("bind");
    listen(lfd, 4096);
    set_nonblock(lfd);

    ep = epoll_create1(0);
    lconn.fd = lfd;
    ev.events = EPOLLIN;
    ev.data.ptr = &lconn;
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);

    for ( ;; ) {
        n = epoll_wait(ep, evs, 256, -1);

        for (i = 0; i < n; i++) {
            conn_t  *c = evs[i].data.ptr;

            if (c == &lconn) {
                int  fd;

                while ((fd = accept(lfd, NULL, NULL)) >= 0) {
                    conn_t  *nc = calloc(1, sizeof(conn_t));
                    set_nonblock(fd);
                    nc->fd = fd;
                    ev.events = EPOLLIN;
                    ev.data.ptr = nc;
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }

            if (evs[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) goto gone;
            }

            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                for ( ;; ) {
                    reserve(&c->in, &c->in_cap, c->in_len + 65536);
                    ssize_t  r = recv(c->fd, c->in + c->in_len, 65536, 0);
                    if (r > 0) {
                        c->in_len += r;
                        continue;
                    }
                    if (r < 0 && errno == EAGAIN) break;
                    goto gone;
                }

                if (c->state == 0) server_handshake(c);
                if (c->fd < 0) goto gone;
                if (c->state == 1) server_frames(c);
                if (flush_out(c) < 0) goto gone;
            }

            if (lean && c->state == 1) lean_buffers(c);

            continue;

        gone:
            if (c->fd >= 0) close(c->fd);
            free(c->in);
            free(c->out);
            free(c->frag);
            free(c);
        }
    }

    return 0;
}


/* ------------------------------------------------------------------ load */

static void
fill(unsigned char *p, size_t n, uint64_t id, uint64_t seq)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        p[i] = (unsigned char) (id * 31 + seq * 7 + i);

        if (text) {
            p[i] = (unsigned char) (0x20 + p[i] % 95);
        }
    }
}


/* which pool message a connection sends as its seq-th */
static unsigned
pool_index(uint64_t id, uint64_t seq)
{
    return (unsigned) ((id * 7 + seq) % POOL);
}


/*
 * A JSON-like text message, compressed if the connection negotiated
 * permessage-deflate: without the client's context kept and with a 15-bit
 * window, the pool's own compressed copy is what zlib would produce.
 */

static void
send_json(conn_t *c, uint64_t id, unsigned char *scratch)
{
    unsigned       idx = pool_index(id, c->seq_sent);
    unsigned char  h[14], key[4];
    size_t         i, len = msg_size, hl;
    uint32_t       r;

    if (!c->pmd) {
        memcpy(scratch, pool_txt[idx], len);

    } else if (c->cnt && c->cwb == 15) {
        len = pool_zlen[idx];
        memcpy(scratch, pool_z[idx], len);

    } else {
        if (c->dz == NULL) c->dz = pmd_deflater(c->cwb);
        len = pmd_deflate(c->dz, c->cnt, pool_txt[idx], msg_size, scratch,
                          msg_size * 2 + 1024);
    }

    r = rand();
    memcpy(key, &r, 4);
    for (i = 0; i < len; i++) {
        scratch[i] ^= key[i & 3];
    }

    hl = frame_header(h, 1, len, key);
    if (c->pmd) h[0] |= 0x40;
    out_add(c, h, hl);
    out_add(c, scratch, len);

    c->sent_at[c->seq_sent % 64] = now();
    c->seq_sent++;
    sent_msgs++;
}


/* checks an echoed JSON message (its frame's first byte is b0) */
static int
check_json(conn_t *c, uint64_t id, int b0, int opcode, unsigned char *payload,
    size_t plen, unsigned char *buf)
{
    unsigned  idx = pool_index(id, c->seq_recv);
    long      n;

    if (opcode != 1 || (b0 & 0x30)) return -1;

    if (!(b0 & 0x40)) {
        plain++;
        return plen == msg_size && memcmp(payload, pool_txt[idx], plen) == 0
               ? 0 : -1;
    }

    if (!c->pmd) return -1;

    /* the bytes sent, unchanged: they inflate to the text sent whatever
       the history, and without server context nothing else is to keep */
    if (c->snt && plen == pool_zlen[idx]
        && memcmp(payload, pool_z[idx], plen) == 0)
    {
        matched++;
        return 0;
    }

    if (c->iz == NULL) {
        c->iz = calloc(1, sizeof(z_stream));
        if (inflateInit2(c->iz, -15) != Z_OK) die("inflateInit2");
    } else if (c->snt) {
        inflateReset(c->iz);
    }

    inflated++;
    n = pmd_inflate(c->iz, payload, plen, buf, msg_size + 1);

    return n == (long) msg_size && memcmp(buf, pool_txt[idx], msg_size) == 0
           ? 0 : -1;
}


static void
pmd_free(conn_t *c)
{
    if (c->dz) {
        deflateEnd(c->dz);
        free(c->dz);
        c->dz = NULL;
    }

    if (c->iz) {
        inflateEnd(c->iz);
        free(c->iz);
        c->iz = NULL;
    }
}


/* the 101's Sec-WebSocket-Extensions, against the offer made */
static int
check_answer(conn_t *c, const char *head)
{
    char          buf[1024];
    pmd_params_t  pp;

    ext_header(head, buf, sizeof(buf));

    if (buf[0] == 0) {
        return 0;                           /* declined: plain frames */
    }

    if (!pmd_offer || strchr(buf, ',') || pmd_parse(buf, &pp) != 0) {
        return -1;
    }

    /* client_max_window_bits only if offered (the "deflatectx" offer) */
    if (pp.cwb == 0 || (pp.cwb > 0 && pmd_offer != 2)) {
        return -1;
    }

    c->pmd = 1;
    c->cnt = pmd_offer == 1 || pp.cnt == 1;
    c->snt = pp.snt == 1;
    c->cwb = pp.cwb > 0 ? pp.cwb : 15;
    pmd_conns++;

    return 0;
}


static void
send_msg(conn_t *c, uint64_t id, unsigned char *scratch)
{
    unsigned char  h[14], key[4];
    size_t         i, total, piece;
    int            f;
    uint32_t       r;

    if (json) {
        send_json(c, id, scratch);
        return;
    }

    /* a message is `fragments` frames of msg_size bytes each */

    total = msg_size * fragments;
    fill(scratch, total, id, c->seq_sent);

    for (f = 0; f < fragments; f++) {
        unsigned char  *p = scratch + f * msg_size;

        r = rand();
        memcpy(key, &r, 4);
        piece = msg_size;

        for (i = 0; i < piece; i++) {
            p[i] ^= key[i & 3];
        }

        size_t  hl = frame_header(h, f == 0 ? (text ? 1 : 2) : 0, piece,
                                  key);

        if (f != fragments - 1) {
            h[0] &= 0x7f;                       /* FIN = 0 */
        }

        out_add(c, h, hl);
        out_add(c, p, piece);
    }

    c->sent_at[c->seq_sent % 64] = now();
    c->seq_sent++;
    sent_msgs++;
}


static int
cmp(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}


/* idle: all connections are open (and JSON ones echoed their message) */
static void
idle_ready(int nconns)
{
    printf("ready conns=%d echoed=%lu pmd_conns=%lu errors=%lu "
           "open_ms=%.0f\n", nconns, (unsigned long) msgs,
           (unsigned long) pmd_conns, (unsigned long) errors,
           (now() - open_start) * 1000);
    fflush(stdout);
}


static int
run_load(int argc, char **argv)
{
    const char         *host = argv[2], *path = argv[4], *mode = argv[5];
    int                 port = atoi(argv[3]), nconns = atoi(argv[6]), i, n;
    double              seconds, start, end, t;
    conn_t             *conns;
    struct sockaddr_in  sa;
    struct epoll_event  ev, evs[512];
    unsigned char      *scratch, *expect;
    char                req[512];
    int                 idle, open_conns = 0, one = 1;
    const char         *src = getenv("WSBENCH_SRC");
    struct sockaddr_in  la;

    if (strncmp(mode, "text", 4) == 0) {
        /* "textecho", "textstream": the same with text frames */
        text = 1;
        mode += 4;

    } else if (strncmp(mode, "deflatectx", 10) == 0) {
        pmd_offer = 2;
        json = 1;
        mode += 10;

    } else if (strncmp(mode, "deflate", 7) == 0) {
        pmd_offer = 1;
        json = 1;
        mode += 7;

    } else if (strncmp(mode, "json", 4) == 0) {
        json = 1;
        mode += 4;
    }

    idle = strcmp(mode, "idle") == 0;

    msg_size = strtoul(argv[7], NULL, 10);

    if (argv[8][0] == 'm') {
        max_msgs = strtoull(argv[8] + 1, NULL, 10);
        seconds = 600;
    } else {
        seconds = atof(argv[8]);
    }
    if (argc > 9) inflight = atoi(argv[9]);
    if (strcmp(mode, "frag") == 0) {
        fragments = inflight > 0 ? inflight : 16;
        inflight = 1;
    }
    if (strcmp(mode, "echo") == 0) inflight = 1;
    if (inflight > 64) inflight = 64;
    if (json && fragments > 1) {
        fprintf(stderr, "frag mode has no JSON messages\n");
        return 2;
    }

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    srand(getpid());

    scratch = malloc(msg_size * 64 + 1024);
    expect = malloc(msg_size * 64 + 1024);
    if (json) pool_init();
    conns = calloc(nconns, sizeof(conn_t));
    ep = epoll_create1(0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);

    memset(&la, 0, sizeof(la));
    la.sin_family = AF_INET;
    if (src != NULL && inet_pton(AF_INET, src, &la.sin_addr) != 1) {
        fprintf(stderr, "WSBENCH_SRC: not an IPv4 address: %s\n", src);
        return 2;
    }
    lean = getenv("WSBENCH_LEAN") != NULL && atoi(getenv("WSBENCH_LEAN"));

    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "%s"
                 "Sec-WebSocket-Version: 13\r\n\r\n", path, host, port,
                 pmd_offer == 1 ? "Sec-WebSocket-Extensions: permessage-deflate"
                     "; server_no_context_takeover; client_no_context_takeover"
                     "\r\n"
                 : pmd_offer == 2 ? "Sec-WebSocket-Extensions: "
                     "permessage-deflate; client_max_window_bits\r\n"
                 : "");

    open_start = now();

    for (i = 0; i < nconns; i++) {
        conn_t  *c = &conns[i];

        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0) die("socket");
        if (src != NULL) {
            /* the port is chosen at connect(), by the whole 4-tuple */
            setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                       sizeof(one));
            if (bind(c->fd, (void *) &la, sizeof(la)) < 0) die("bind");
        }
        if (connect(c->fd, (void *) &sa, sizeof(sa)) < 0) die("connect");
        set_nonblock(c->fd);
        out_add(c, req, n);
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        if (flush_out(c) < 0) errors++;
    }

    start = now();
    end = start + seconds + 30;   /* handshakes first, then the clock */
    int  running = 0;

    while (now() < end) {
        n = epoll_wait(ep, evs, 512, 100);

        for (i = 0; i < n; i++) {
            conn_t    *c = evs[i].data.ptr;
            uint64_t   id = c - conns;

            if (evs[i].events & EPOLLOUT) {
                if (flush_out(c) < 0) { errors++; continue; }
            }

            if (!(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
                continue;
            }

            for ( ;; ) {
                reserve(&c->in, &c->in_cap, c->in_len + 65536);
                ssize_t  r = recv(c->fd, c->in + c->in_len, 65536, 0);
                if (r > 0) { c->in_len += r; continue; }
                if (r < 0 && errno == EAGAIN) break;
                if (!idle || running) errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                break;
            }

            if (c->state == 0) {
                char  *e;

                c->in = realloc(c->in, c->in_cap + 1);
                c->in[c->in_len] = 0;
                e = strstr((char *) c->in, "\r\n\r\n");
                if (!e) continue;
                *e = 0;
                if (strncmp((char *) c->in, "HTTP/1.1 101", 12) != 0
                    || !strstr((char *) c->in,
                               "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                    || check_answer(c, (char *) c->in) != 0)
                {
                    errors++;
                    fprintf(stderr, "bad handshake: %.300s\n", c->in);
                    c->state = 2;
                    continue;
                }
                *e = '\r';
                size_t  hl = e + 4 - (char *) c->in;
                memmove(c->in, c->in + hl, c->in_len - hl);
                c->in_len -= hl;
                c->state = 1;
                open_conns++;
                if (lean && idle && !json) lean_buffers(c);

                if (open_conns == nconns) {
                    running = 1;
                    start = now();
                    end = start + seconds;

                    if (idle && !json) idle_ready(nconns);

                    if (idle && json) {
                        /* idle JSON connections echo one message each,
                           one connection after the other (below) */
                        send_msg(&conns[0], 0, scratch);
                        flush_out(&conns[0]);

                    } else if (!idle) {
                        int  j, k;
                        for (j = 0; j < nconns; j++) {
                            for (k = 0; k < inflight; k++) {
                                send_msg(&conns[j], j, scratch);
                            }
                            flush_out(&conns[j]);
                        }
                    }
                }
            }

            if (c->state != 1 || (idle && !json)) continue;

            size_t          off = 0, fl, plen;
            int             opcode;
            unsigned char  *payload;

            while ((fl = frame_parse(c->in + off, c->in_len - off, &opcode,
                                     &payload, &plen)))
            {
                if (json) {
                    if (check_json(c, id, c->in[off], opcode, payload, plen,
                                   expect) != 0)
                    {
                        errors++;
                    }
                    wire_bytes += plen;
                    plen = msg_size;

                } else {
                    fill(expect, msg_size * fragments, id, c->seq_recv);
                    if (opcode != (text ? 1 : 2)
                        || plen != msg_size * fragments
                        || memcmp(payload, expect, plen) != 0)
                    {
                        errors++;
                    }
                }

                t = now();
                if (nlat == lat_cap) {
                    lat_cap = lat_cap ? lat_cap * 2 : 1 << 16;
                    lat = realloc(lat, lat_cap * sizeof(double));
                }
                lat[nlat++] = t - c->sent_at[c->seq_recv % 64];
                c->seq_recv++;
                msgs++;
                bytes += plen;
                off += fl;

                if (idle) {
                    pmd_free(c);            /* what an idle client holds */
                    if (msgs == (uint64_t) nconns) {
                        idle_ready(nconns);
                    } else if (id + 1 < (uint64_t) nconns) {
                        send_msg(&conns[id + 1], id + 1, scratch);
                        flush_out(&conns[id + 1]);
                    }
                } else if (t < end && (!max_msgs || sent_msgs < max_msgs)) {
                    send_msg(c, id, scratch);
                }
            }

            memmove(c->in, c->in + off, c->in_len - off);
            c->in_len -= off;
            if (flush_out(c) < 0) errors++;
        }

        if (running && (now() >= end || (max_msgs && msgs >= max_msgs))) {
            break;
        }
    }

    double  el = now() - start;

    if (idle) {
        printf("conns=%d open=%d errors=%lu echoed=%lu pmd_conns=%lu\n",
               nconns, open_conns, (unsigned long) errors,
               (unsigned long) msgs, (unsigned long) pmd_conns);
        fflush(stdout);
        return 0;
    }

    qsort(lat, nlat, sizeof(double), cmp);

    printf("msgs=%lu msgs_per_s=%.0f mb_per_s=%.1f p50_us=%.0f p99_us=%.0f "
           "errors=%lu\n", (unsigned long) msgs, msgs / el,
           bytes / el / 1e6, nlat ? lat[nlat / 2] * 1e6 : 0,
           nlat ? lat[nlat * 99 / 100] * 1e6 : 0, (unsigned long) errors);

    if (json) {
        printf("pmd_conns=%lu wire_b=%.0f matched=%lu inflated=%lu "
               "plain=%lu\n", (unsigned long) pmd_conns,
               msgs ? (double) wire_bytes / msgs : 0, (unsigned long) matched,
               (unsigned long) inflated, (unsigned long) plain);
    }

    return 0;
}


int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "server") == 0) {
        return run_server(atoi(argv[2]));
    }

    if (argc >= 3 && strcmp(argv[1], "sample") == 0) {
        return run_sample(strtoul(argv[2], NULL, 10));
    }

    if (argc >= 9 && strcmp(argv[1], "load") == 0) {
        return run_load(argc, argv);
    }

    fprintf(stderr, "usage: wsbench server PORT\n"
            "       wsbench load HOST PORT PATH echo|stream|idle CONNS SIZE "
            "SECONDS [INFLIGHT]\n");
    return 2;
}
