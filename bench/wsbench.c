/*
 * wsbench: a WebSocket echo server and load generator on epoll, for the
 * benchmarks under bench/ (no such tool is packaged in Debian).
 *
 *   wsbench server PORT
 *   wsbench load HOST PORT PATH MODE CONNS SIZE SECONDS [INFLIGHT]
 *       MODE: echo (closed loop, one message in flight per connection),
 *             stream (INFLIGHT frames in flight per connection),
 *             idle (open CONNS connections, hold them SECONDS)
 *
 * The load side masks its frames, fills payloads with a pattern derived
 * from the connection and sequence number, and checks every echoed byte.
 * It prints one line: msgs= msgs_per_s= mb_per_s= p50_us= p99_us= errors=
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
} conn_t;


static int       ep;
static size_t    msg_size;
static int       inflight = 1;
static int       fragments = 1;    /* "frag" mode: fragments per message */
static int       text;             /* "text..." modes: printable ASCII text
                                      frames, which the proxy checks as
                                      UTF-8 */
static uint64_t  msgs, errors, bytes;
static uint64_t  max_msgs, sent_msgs;     /* "mN" as SECONDS: N messages */
static double   *lat;
static size_t    nlat, lat_cap;


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


/* ---------------------------------------------------------------- server */

static void
server_handshake(conn_t *c)
{
    char           *end, *k, *e, resp[256];
    unsigned char   sha[20];
    char            acc[64], buf[128];
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

    n = snprintf(resp, sizeof(resp), "HTTP/1.1 101 Switching Protocols\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Accept: %s\r\n\r\n", acc);
    out_add(c, resp, n);

    size_t  hl = end + 4 - (char *) c->in;
    memmove(c->in, c->in + hl, c->in_len - hl);
    c->in_len -= hl;
    c->state = 1;
}


static void
server_frames(conn_t *c)
{
    size_t          off = 0, n, plen;
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
                c->frag_len = 0;
            }
            reserve(&c->frag, &c->frag_cap, c->frag_len + plen);
            memcpy(c->frag + c->frag_len, payload, plen);
            c->frag_len += plen;
            if (fin) {
                out_add(c, h, frame_header(h, c->frag_op, c->frag_len, NULL));
                out_add(c, c->frag, c->frag_len);
            }

        } else if (opcode == 1 || opcode == 2) {
            out_add(c, h, frame_header(h, opcode, plen, NULL));
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


static void
send_msg(conn_t *c, uint64_t id, unsigned char *scratch)
{
    unsigned char  h[14], key[4];
    size_t         i, total, piece;
    int            f;
    uint32_t       r;

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
    int                 idle, open_conns = 0;

    if (strncmp(mode, "text", 4) == 0) {
        /* "textecho", "textstream": the same with text frames */
        text = 1;
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

    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    srand(getpid());

    scratch = malloc(msg_size * 64 + 1);
    expect = malloc(msg_size * 64 + 1);
    conns = calloc(nconns, sizeof(conn_t));
    ep = epoll_create1(0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);

    n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n", path, host, port);

    for (i = 0; i < nconns; i++) {
        conn_t  *c = &conns[i];

        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0) die("socket");
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
                if (strncmp((char *) c->in, "HTTP/1.1 101", 12) != 0
                    || !strstr((char *) c->in,
                               "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
                {
                    errors++;
                    fprintf(stderr, "bad handshake: %.60s\n", c->in);
                    c->state = 2;
                    continue;
                }
                size_t  hl = e + 4 - (char *) c->in;
                memmove(c->in, c->in + hl, c->in_len - hl);
                c->in_len -= hl;
                c->state = 1;
                open_conns++;

                if (open_conns == nconns) {
                    running = 1;
                    start = now();
                    end = start + seconds;

                    if (!idle) {
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

            if (c->state != 1 || idle) continue;

            size_t          off = 0, fl, plen;
            int             opcode;
            unsigned char  *payload;

            while ((fl = frame_parse(c->in + off, c->in_len - off, &opcode,
                                     &payload, &plen)))
            {
                fill(expect, msg_size * fragments, id, c->seq_recv);
                if (opcode != (text ? 1 : 2) || plen != msg_size * fragments
                    || memcmp(payload, expect, plen) != 0)
                {
                    errors++;
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

                if (t < end && (!max_msgs || sent_msgs < max_msgs)) {
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
        printf("conns=%d open=%d errors=%lu\n", nconns, open_conns,
               (unsigned long) errors);
        fflush(stdout);
        return 0;
    }

    qsort(lat, nlat, sizeof(double), cmp);

    printf("msgs=%lu msgs_per_s=%.0f mb_per_s=%.1f p50_us=%.0f p99_us=%.0f "
           "errors=%lu\n", (unsigned long) msgs, msgs / el,
           bytes / el / 1e6, nlat ? lat[nlat / 2] * 1e6 : 0,
           nlat ? lat[nlat * 99 / 100] * 1e6 : 0, (unsigned long) errors);

    return 0;
}


int
main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "server") == 0) {
        return run_server(atoi(argv[2]));
    }

    if (argc >= 9 && strcmp(argv[1], "load") == 0) {
        return run_load(argc, argv);
    }

    fprintf(stderr, "usage: wsbench server PORT\n"
            "       wsbench load HOST PORT PATH echo|stream|idle CONNS SIZE "
            "SECONDS [INFLIGHT]\n");
    return 2;
}
