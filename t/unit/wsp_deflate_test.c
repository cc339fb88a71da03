/*
 * Unit tests of permessage-deflate (src/ngx_wsp_deflate.c), without
 * nginx: prints TAP.  Header values are parsed from heap copies of
 * exactly their length, so that ASan/valgrind see any read past the end.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_deflate.h"
#include "tap.h"


/* the answer to a client's offer; "" when none is accepted */

static size_t
accept_str(const char *offer, int ct, int bits, char *answer,
    ngx_wsp_pmd_params_t *p)
{
    size_t               n, len;
    unsigned char       *copy, out[NGX_WSP_PMD_MAX_VALUE + 1];
    ngx_wsp_pmd_conf_t   conf;

    conf.context_takeover = (uint8_t) ct;
    conf.window_bits = (uint8_t) bits;

    len = strlen(offer);
    copy = malloc(len ? len : 1);
    memcpy(copy, offer, len);

    memset(out, 0xaa, sizeof(out));
    n = ngx_wsp_pmd_accept(copy, len, &conf, p, out);
    free(copy);

    if (n > NGX_WSP_PMD_MAX_VALUE || out[NGX_WSP_PMD_MAX_VALUE] != 0xaa) {
        strcpy(answer, "(overflow)");
        return n;
    }

    memcpy(answer, out, n);
    answer[n] = '\0';

    return n;
}


static void
expect_accept(const char *offer, int ct, int bits, const char *answer,
    int sb, int cb, const char *name)
{
    char                  got[256];
    ngx_wsp_pmd_params_t  p;
    int                   good;

    accept_str(offer, ct, bits, got, &p);

    good = strcmp(got, answer) == 0 && p.on == (answer[0] != '\0');

    if (good && p.on) {
        good = p.server_bits == sb && p.client_bits == cb
               && p.server_nct == (strstr(answer, "server_no") != NULL)
               && p.client_nct == (strstr(answer, "client_no") != NULL);
    }

    ok(good, name);

    if (!good) {
        printf("#   offer \"%s\": expected \"%s\" %d/%d, got \"%s\" "
               "on %d s %d/%d nct %d/%d\n", offer, answer, sb, cb, got,
               p.on, p.server_bits, p.client_bits, p.server_nct,
               p.client_nct);
    }
}


#define PMD   "permessage-deflate"
#define SNCT  "; server_no_context_takeover"
#define CNCT  "; client_no_context_takeover"


static void
accept_tests(void)
{
    /* the parameters one by one, with context takeover allowed */

    expect_accept(PMD, 1, 15, PMD, 15, 15, "a bare offer");
    expect_accept(PMD "; server_no_context_takeover", 1, 15, PMD SNCT,
                  15, 15, "server_no_context_takeover");
    expect_accept(PMD "; client_no_context_takeover", 1, 15, PMD CNCT,
                  15, 15, "client_no_context_takeover");
    expect_accept(PMD "; server_max_window_bits=10", 1, 15,
                  PMD "; server_max_window_bits=10", 10, 15,
                  "server_max_window_bits=10");
    expect_accept(PMD "; client_max_window_bits", 1, 15,
                  PMD "; client_max_window_bits=15", 15, 15,
                  "client_max_window_bits without a value");
    expect_accept(PMD "; client_max_window_bits=9", 1, 15,
                  PMD "; client_max_window_bits=9", 15, 9,
                  "client_max_window_bits=9");

    /* conf asks for less */

    expect_accept(PMD, 0, 15, PMD SNCT CNCT, 15, 15,
                  "no context takeover asked of a bare offer");
    expect_accept(PMD, 1, 10, PMD, 10, 15,
                  "a smaller window, no way to ask the client for it");
    expect_accept(PMD "; client_max_window_bits", 1, 10,
                  PMD "; client_max_window_bits=10", 10, 10,
                  "a smaller window asked of the client");
    expect_accept(PMD "; client_max_window_bits=9", 1, 10,
                  PMD "; client_max_window_bits=9", 10, 9,
                  "the client's smaller window kept");
    expect_accept(PMD "; server_max_window_bits=12", 1, 10,
                  PMD "; server_max_window_bits=10", 10, 15,
                  "the server's window: the smaller of both");
    expect_accept(PMD "; server_max_window_bits=9; client_max_window_bits"
                  "; server_no_context_takeover; client_no_context_takeover",
                  0, 9,
                  PMD SNCT CNCT "; server_max_window_bits=9"
                  "; client_max_window_bits=9", 9, 9,
                  "everything, the longest answer");

    /* zlib cannot raw-deflate with 8: the server never compresses so */
    expect_accept(PMD "; server_max_window_bits=8", 1, 15, "", 0, 0,
                  "server_max_window_bits=8 declined");
    expect_accept(PMD "; server_max_window_bits=8, " PMD, 1, 15, PMD, 15, 15,
                  "server_max_window_bits=8 declined, the next offer taken");
    expect_accept(PMD "; client_max_window_bits", 1, 8,
                  PMD "; client_max_window_bits=9", 9, 9,
                  "a window of 8 configured is 9");
    expect_accept(PMD "; client_max_window_bits=8", 1, 15,
                  PMD "; client_max_window_bits=8", 15, 8,
                  "the client's own window of 8 kept (inflate has one)");
    expect_accept(PMD "; client_max_window_bits; server_max_window_bits=15"
                  "; client_no_context_takeover", 1, 15,
                  PMD CNCT "; server_max_window_bits=15"
                  "; client_max_window_bits=15", 15, 15,
                  "what Python's websockets client offers, more or less");

    /* syntax */

    expect_accept("Permessage-Deflate; Client_Max_Window_Bits", 1, 12,
                  PMD "; client_max_window_bits=12", 12, 12,
                  "names in another case");
    expect_accept("  permessage-deflate ;client_max_window_bits = \"11\"\t,"
                  " x", 1, 15, PMD "; client_max_window_bits=11", 15, 11,
                  "whitespace around ; = , and a quoted value");
    expect_accept(PMD "; server_max_window_bits=\"1\\2\"", 1, 15,
                  PMD "; server_max_window_bits=12", 12, 15,
                  "a quoted value with a quoted-pair");
    expect_accept(", ,permessage-deflate,", 1, 15, PMD, 15, 15,
                  "empty list elements");
    expect_accept("x-webkit-deflate-frame, foo; a=1; b=\"c\", " PMD, 1, 15,
                  PMD, 15, 15, "other extensions first");
    expect_accept("", 1, 15, "", 0, 0, "an empty value");
    expect_accept("foo, bar; baz", 1, 15, "", 0, 0, "no deflate offered");
    expect_accept(PMD "; client_max_window_bits=\"\"", 1, 15, "", 0, 0,
                  "bad syntax: an empty quoted value");
    expect_accept(PMD "; client_max_window_bits=\"1 0\"", 1, 15, "", 0, 0,
                  "bad syntax: a quoted value that is no token");
    expect_accept(PMD "; client_max_window_bits=\"10", 1, 15, "", 0, 0,
                  "bad syntax: an unterminated quoted value");
    expect_accept(PMD "; client_max_window_bits=\"10\\", 1, 15, "", 0, 0,
                  "bad syntax: a quoted-pair cut off");
    expect_accept(PMD "; client_max_window_bits=", 1, 15, "", 0, 0,
                  "bad syntax: = without a value");
    expect_accept(PMD ";", 1, 15, "", 0, 0, "bad syntax: ; without a name");
    expect_accept(PMD " x", 1, 15, "", 0, 0, "bad syntax: two tokens");
    expect_accept(PMD ", x y", 1, 15, "", 0, 0,
                  "bad syntax after a good offer declines it too");
    expect_accept(PMD "\r\n", 1, 15, "", 0, 0, "bad syntax: CR LF");
    expect_accept("\"" PMD "\"", 1, 15, "", 0, 0,
                  "bad syntax: a quoted extension name");
    expect_accept(PMD "; a=b=c", 1, 15, "", 0, 0, "bad syntax: a=b=c");

    /* declined offers, the next one taken */

    expect_accept(PMD "; foo, " PMD, 1, 15, PMD, 15, 15,
                  "an unknown parameter: the next offer");
    expect_accept(PMD "; server_no_context_takeover; "
                  "server_no_context_takeover, " PMD "; client_max_window_bits",
                  1, 15, PMD "; client_max_window_bits=15", 15, 15,
                  "a repeated parameter: the next offer");
    expect_accept(PMD "; client_max_window_bits; client_max_window_bits=9",
                  1, 15, "", 0, 0, "a repeated parameter, with a value");
    expect_accept(PMD "; server_no_context_takeover=1", 1, 15, "", 0, 0,
                  "server_no_context_takeover with a value");
    expect_accept(PMD "; client_no_context_takeover=\"x\"", 1, 15, "", 0, 0,
                  "client_no_context_takeover with a value");
    expect_accept(PMD "; server_max_window_bits", 1, 15, "", 0, 0,
                  "server_max_window_bits without a value");
    expect_accept(PMD "; server_max_window_bits=7", 1, 15, "", 0, 0,
                  "server_max_window_bits=7");
    expect_accept(PMD "; server_max_window_bits=16", 1, 15, "", 0, 0,
                  "server_max_window_bits=16");
    expect_accept(PMD "; server_max_window_bits=010", 1, 15, "", 0, 0,
                  "server_max_window_bits with a leading zero");
    expect_accept(PMD "; client_max_window_bits=16, " PMD "; "
                  "client_max_window_bits=8", 1, 15,
                  PMD "; client_max_window_bits=8", 15, 8,
                  "client_max_window_bits=16, then a good offer");
    expect_accept(PMD "; client_max_window_bits=x", 1, 15, "", 0, 0,
                  "client_max_window_bits=x");
    expect_accept(PMD "; server_max_window_bits=100000000000000000009", 1,
                  15, "", 0, 0, "a long number");
    expect_accept("foo; server_max_window_bits=99, " PMD, 1, 15, PMD, 15,
                  15, "the parameters of other extensions are theirs");
}


static int
check_str_n(const unsigned char *answer, size_t len,
    const ngx_wsp_pmd_conf_t *conf, ngx_wsp_pmd_params_t *p,
    const char **err)
{
    int             rc;
    unsigned char  *copy;

    copy = malloc(len ? len : 1);
    memcpy(copy, answer, len);

    *err = "";
    rc = ngx_wsp_pmd_check_answer(copy, len, conf, p, err);
    free(copy);

    return rc;
}


static int
check_str(const char *answer, int ct, int bits, ngx_wsp_pmd_params_t *p,
    const char **err)
{
    ngx_wsp_pmd_conf_t  conf;

    conf.context_takeover = (uint8_t) ct;
    conf.window_bits = (uint8_t) bits;

    return check_str_n((const unsigned char *) answer, strlen(answer),
                       &conf, p, err);
}


static void
expect_check(const char *answer, int ct, int bits, int on, int snct,
    int cnct, int sb, int cb, const char *name)
{
    int                    rc, good;
    const char            *err;
    ngx_wsp_pmd_params_t   p;

    rc = check_str(answer, ct, bits, &p, &err);

    good = rc == 0 && p.on == on;

    if (good && on) {
        good = p.server_nct == snct && p.client_nct == cnct
               && p.server_bits == sb && p.client_bits == cb;
    }

    ok(good, name);

    if (!good) {
        printf("#   \"%s\": rc %d (%s) on %d nct %d/%d bits %d/%d\n", answer,
               rc, err, p.on, p.server_nct, p.client_nct, p.server_bits,
               p.client_bits);
    }
}


static void
expect_check_fail(const char *answer, int ct, int bits, const char *err,
    const char *name)
{
    int                    rc;
    const char            *e;
    ngx_wsp_pmd_params_t   p;

    rc = check_str(answer, ct, bits, &p, &e);

    ok(rc == -1 && strcmp(e, err) == 0 && p.on == 0, name);

    if (rc != -1 || strcmp(e, err) != 0) {
        printf("#   \"%s\": rc %d \"%s\", expected \"%s\"\n", answer, rc, e,
               err);
    }
}


static void
offer_tests(void)
{
    size_t               n;
    unsigned char        out[NGX_WSP_PMD_MAX_VALUE];
    ngx_wsp_pmd_conf_t   conf;

    conf.context_takeover = 1;
    conf.window_bits = 15;
    n = ngx_wsp_pmd_offer(&conf, out);
    ok(n == sizeof(PMD "; client_max_window_bits") - 1
       && memcmp(out, PMD "; client_max_window_bits", n) == 0,
       "the offer with context takeover and the largest window");

    conf.context_takeover = 0;
    conf.window_bits = 10;
    n = ngx_wsp_pmd_offer(&conf, out);
    ok(n == sizeof(PMD "; client_max_window_bits=10; server_max_window_bits"
                   "=10" SNCT CNCT) - 1
       && memcmp(out, PMD "; client_max_window_bits=10; "
                 "server_max_window_bits=10" SNCT CNCT, n) == 0,
       "the offer without context takeover, a window of 10");

    /* answers, as Python's websockets server and others give them */

    expect_check(PMD, 1, 15, 1, 0, 0, 15, 15, "a bare answer");
    expect_check(PMD SNCT CNCT, 0, 15, 1, 1, 1, 15, 15,
                 "no context takeover both ways");
    expect_check(PMD SNCT, 0, 15, 1, 1, 1, 15, 15,
                 "client_no_context_takeover left out: we keep our word");
    expect_check(PMD CNCT, 1, 15, 1, 0, 1, 15, 15,
                 "client_no_context_takeover not asked for, allowed");
    expect_check(PMD SNCT, 1, 15, 1, 1, 0, 15, 15,
                 "server_no_context_takeover not asked for, allowed");
    expect_check(PMD "; server_max_window_bits=12", 1, 15, 1, 0, 0, 12, 15,
                 "server_max_window_bits not asked for, allowed");
    expect_check(PMD "; client_max_window_bits=9", 1, 15, 1, 0, 0, 15, 9,
                 "client_max_window_bits=9");
    expect_check(PMD "; server_max_window_bits=10; client_max_window_bits"
                 "=10" SNCT CNCT, 0, 10, 1, 1, 1, 10, 10,
                 "all asked for, all given");
    expect_check(PMD "; server_max_window_bits=9" SNCT, 0, 10, 1, 1, 1, 9,
                 10, "smaller windows than asked for");
    expect_check(" permessage-deflate ;server_max_window_bits = \"9\" "
                 ";SERVER_NO_CONTEXT_TAKEOVER ", 0, 10, 1, 1, 1, 9, 10,
                 "whitespace, quotes, case");
    expect_check("", 0, 15, 0, 0, 0, 0, 0, "an empty answer: no deflate");
    expect_check(" , ", 0, 15, 0, 0, 0, 0, 0, "empty elements: no deflate");

    expect_check_fail("x-foo", 1, 15, "an extension that was not offered",
                      "another extension");
    expect_check_fail(PMD ", " PMD, 1, 15, "more than one extension",
                      "two answers");
    expect_check_fail(PMD ", x-foo", 1, 15, "more than one extension",
                      "deflate and another");
    expect_check_fail(PMD "; x y", 1, 15, "bad syntax", "bad syntax");
    expect_check_fail(PMD ", x y", 1, 15, "bad syntax",
                      "bad syntax in a second element");
    expect_check_fail(PMD "; foo", 1, 15, "an unknown parameter",
                      "an unknown parameter");
    expect_check_fail(PMD CNCT CNCT, 1, 15, "a repeated parameter",
                      "a repeated parameter");
    expect_check_fail(PMD CNCT, 0, 15,
                      "no server_no_context_takeover, which was asked for",
                      "server_no_context_takeover missing");
    expect_check_fail(PMD "; server_no_context_takeover=1", 1, 15,
                      "a *_no_context_takeover with a value",
                      "server_no_context_takeover with a value");
    expect_check_fail(PMD "; server_max_window_bits", 1, 15,
                      "server_max_window_bits without a value",
                      "server_max_window_bits without a value");
    expect_check_fail(PMD "; server_max_window_bits=7", 1, 15,
                      "a *_max_window_bits value other than 8..15",
                      "server_max_window_bits=7");
    expect_check_fail(PMD "; server_max_window_bits=11", 1, 10,
                      "a server_max_window_bits larger than offered",
                      "server_max_window_bits larger than offered");
    expect_check_fail(PMD, 1, 10,
                      "no server_max_window_bits, which was asked for",
                      "server_max_window_bits missing");
    expect_check_fail(PMD "; client_max_window_bits", 1, 15,
                      "client_max_window_bits without a value",
                      "client_max_window_bits without a value");
    expect_check_fail(PMD "; client_max_window_bits=12; "
                      "server_max_window_bits=10", 1, 10,
                      "a client_max_window_bits larger than offered",
                      "client_max_window_bits larger than offered");
    expect_check_fail(PMD "; client_max_window_bits=8", 1, 15,
                      "a client_max_window_bits of 8, which zlib cannot "
                      "deflate with",
                      "client_max_window_bits=8: zlib cannot deflate so");
    expect_check(PMD "; server_max_window_bits=8", 1, 15, 1, 0, 0, 8, 15,
                 "server_max_window_bits=8: the server's, inflated");
}


/* every conf of the module's client against every conf of its server */

static void
round_trip_tests(void)
{
    int                    cct, sct, cb, sb, ecb, esb, good, rc;
    size_t                 n, m;
    const char            *err;
    unsigned char          offer[NGX_WSP_PMD_MAX_VALUE];
    unsigned char          answer[NGX_WSP_PMD_MAX_VALUE];
    ngx_wsp_pmd_conf_t     cc, sc;
    ngx_wsp_pmd_params_t   cp, sp;

    good = 1;

    for (cct = 0; cct < 2; cct++) {
        for (sct = 0; sct < 2; sct++) {
            for (cb = 8; cb <= 15; cb++) {
                for (sb = 8; sb <= 15; sb++) {
                    cc.context_takeover = (uint8_t) cct;
                    cc.window_bits = (uint8_t) cb;
                    sc.context_takeover = (uint8_t) sct;
                    sc.window_bits = (uint8_t) sb;

                    /* 8 is taken as 9, zlib's smallest raw deflate */
                    ecb = cb < 9 ? 9 : cb;
                    esb = sb < 9 ? 9 : sb;

                    n = ngx_wsp_pmd_offer(&cc, offer);
                    m = ngx_wsp_pmd_accept(offer, n, &sc, &sp, answer);
                    rc = check_str_n(answer, m, &cc, &cp, &err);

                    if (n > NGX_WSP_PMD_MAX_VALUE || m == 0 || rc != 0
                        || !cp.on || !sp.on
                        /* the client inflates what the server sends */
                        || cp.server_bits < sp.server_bits
                        /* the server inflates what the client sends */
                        || cp.client_bits > sp.client_bits
                        || cp.client_bits > ecb || sp.server_bits > ecb
                        || sp.server_bits > esb
                        || cp.client_bits < 9 || sp.server_bits < 9
                        || cp.server_nct != sp.server_nct
                        || (cp.client_nct == 0 && sp.client_nct == 1)
                        || (!cct && !(cp.server_nct && cp.client_nct))
                        || (!sct && !(sp.server_nct && sp.client_nct)))
                    {
                        printf("#   %d/%d %d/%d: \"%.*s\" -> \"%.*s\" "
                               "rc %d\n", cct, cb, sct, sb, (int) n,
                               offer, (int) m, answer, rc);
                        good = 0;
                    }
                }
            }
        }
    }

    ok(good, "offer -> accept -> check_answer, every conf of both ends");
}


/* inflates one message given as frames; returns its length or -1 */

static long
inflate_msg(z_stream *z, const unsigned char **frames, const size_t *lens,
    int nframes, unsigned char *buf, size_t size, size_t room)
{
    int             i, rc;
    size_t          used, off;
    unsigned char  *o, *end;

    o = buf;

    for (i = 0; i < nframes; i++) {
        off = 0;

        for ( ;; ) {
            end = o + room < buf + size ? o + room : buf + size;
            rc = ngx_wsp_inflate(z, frames[i] + off, lens[i] - off, &used,
                                 i == nframes - 1, &o, end);
            off += used;

            if (rc == NGX_WSP_Z_OK) {
                break;
            }

            if (rc == NGX_WSP_Z_ERROR || o == buf + size) {
                return rc == NGX_WSP_Z_ERROR ? -1 : -2;
            }
        }
    }

    return o - buf;
}


static long
inflate1(z_stream *z, const unsigned char *in, size_t n, unsigned char *buf,
    size_t size)
{
    return inflate_msg(z, &in, &n, 1, buf, size, size);
}


/* deflates one message in frames of at most fsize bytes, room at a time */

static long
deflate_msg(z_stream *z, const unsigned char *in, size_t n, size_t fsize,
    unsigned char *buf, size_t size, size_t room)
{
    int             rc, fin;
    size_t          used, off, chunk;
    unsigned char  *o, *end;

    o = buf;
    off = 0;

    do {
        chunk = n - off < fsize ? n - off : fsize;
        fin = off + chunk == n;

        for ( ;; ) {
            end = o + room < buf + size ? o + room : buf + size;
            rc = ngx_wsp_deflate(z, in + off, chunk, &used, fin, &o, end);
            off += used;
            chunk -= used;

            if (rc == NGX_WSP_Z_OK) {
                break;
            }

            if (rc == NGX_WSP_Z_ERROR || o == buf + size) {
                return -1;
            }
        }

    } while (off < n);

    return o - buf;
}


static void
rfc_tests(void)
{
    long            n;
    z_stream        z, d;
    unsigned char   buf[256], out[256];
    size_t          lens[2];
    const unsigned char  *frames[2];

    static const unsigned char  hello[] =
        { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
    static const unsigned char  hello2[] = { 0xf2, 0x00, 0x11, 0x00, 0x00 };
    static const unsigned char  stored[] =
        { 0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00 };
    static const unsigned char  bfinal[] =
        { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00 };
    static const unsigned char  finish[] =
        { 0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };
    static const unsigned char  garbage[] = { 0xff, 0xff, 0xff, 0xff, 0xff };

    memset(&z, 0, sizeof(z));
    ok(ngx_wsp_inflate_init(&z, 15) == Z_OK, "inflate_init");

    n = inflate1(&z, hello, sizeof(hello), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0, "7.2.3.1: \"Hello\"");

    n = inflate1(&z, hello2, sizeof(hello2), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "7.2.3.2: \"Hello\" again, from the shared window");

    frames[0] = hello;
    lens[0] = 3;
    frames[1] = hello + 3;
    lens[1] = 4;
    inflateReset(&z);
    n = inflate_msg(&z, frames, lens, 2, buf, sizeof(buf), sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "7.2.3.1: \"Hello\" in two frames");

    n = inflate1(&z, stored, sizeof(stored), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "7.2.3.3: a block with no compression");

    n = inflate1(&z, bfinal, sizeof(bfinal), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "7.2.3.4: a block with BFINAL set");

    n = inflate1(&z, hello2, sizeof(hello2), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "after BFINAL, the window is still there");

    n = inflate1(&z, finish, sizeof(finish), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "a Z_FINISH stream, no empty block after it");

    n = inflate1(&z, hello, sizeof(hello), buf, sizeof(buf));
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0, "then a message as usual");

    n = inflate1(&z, (const unsigned char *) "\0", 1, buf, sizeof(buf));
    ok(n == 0, "an empty message: 00");

    n = inflate1(&z, hello, sizeof(hello), buf, 3);
    ok(n == -2, "FULL when the room is too small");

    inflateReset(&z);
    n = inflate1(&z, hello, sizeof(hello), buf, 5);
    ok(n == 5 && memcmp(buf, "Hello", 5) == 0,
       "OK, not FULL, when the message fills the room exactly");

    {
        int             rc;
        size_t          used;
        unsigned char  *o;

        /* frame 1 fills the room exactly; the last frame, 00, has none */

        inflateReset(&z);
        o = buf;
        rc = ngx_wsp_inflate(&z, hello, 6, &used, 0, &o, buf + 5);
        ok(rc == NGX_WSP_Z_FULL && used == 6 && o == buf + 5,
           "a frame that fills the room: FULL, all taken");
        rc = ngx_wsp_inflate(&z, hello + 6, 1, &used, 1, &o, buf + 5);
        ok(rc == NGX_WSP_Z_OK && used == 1 && o == buf + 5,
           "the last frame, no room needed: OK");

        used = 99;
        o = buf;
        inflateReset(&z);
        rc = ngx_wsp_inflate(&z, garbage, sizeof(garbage), &used, 1, &o,
                             buf + sizeof(buf));
        ok(rc == NGX_WSP_Z_ERROR && used <= sizeof(garbage) && o == buf,
           "ERROR sets used and out");
    }

    inflateReset(&z);
    n = inflate1(&z, garbage, sizeof(garbage), buf, sizeof(buf));
    ok(n == -1, "garbage: ERROR");

    inflateReset(&z);
    n = inflate1(&z, hello, 5, buf, sizeof(buf));
    ok(n == -1, "a message cut short: ERROR at the tail");

    inflateEnd(&z);

    memset(&d, 0, sizeof(d));
    ok(ngx_wsp_deflate_init(&d, 6, 15, 8) == Z_OK, "deflate_init");

    n = deflate_msg(&d, (const unsigned char *) "Hello", 5, 5, out,
                    sizeof(out), sizeof(out));
    ok(n == (long) sizeof(hello) && memcmp(out, hello, n) == 0,
       "\"Hello\" deflates as in 7.2.3.1");

    n = deflate_msg(&d, (const unsigned char *) "Hello", 5, 5, out,
                    sizeof(out), sizeof(out));
    ok(n == (long) sizeof(hello2) && memcmp(out, hello2, n) == 0,
       "and again as in 7.2.3.2, with context takeover");

    n = deflate_msg(&d, (const unsigned char *) "", 0, 5, out, sizeof(out),
                    sizeof(out));
    ok(n == 1 && out[0] == 0x00, "an empty message deflates to 00");

    {
        size_t          used;
        unsigned char  *o = out;

        ok(ngx_wsp_deflate(&d, (const unsigned char *) "Hello", 5, &used, 1,
                           &o, out + NGX_WSP_DEFLATE_MIN_ROOM - 1)
           == NGX_WSP_Z_FULL && o == out && used == 0,
           "deflate: FULL, nothing done, with too little room");
    }

    n = deflate_msg(&d, (const unsigned char *) "Hello", 5, 5, out,
                    sizeof(out), NGX_WSP_DEFLATE_MIN_ROOM);
    memset(&z, 0, sizeof(z));
    ngx_wsp_inflate_init(&z, 15);
    inflate1(&z, hello, sizeof(hello), buf, sizeof(buf));
    ok(n > 0 && inflate1(&z, out, n, buf, sizeof(buf)) == 5
       && memcmp(buf, "Hello", 5) == 0,
       "deflate with the least room at a time");

    deflateReset(&d);
    inflateReset(&z);

    {
        size_t           used;
        unsigned char   *o;
        long             m;

        /* a fragmented message whose last frame is empty */

        o = out;
        ngx_wsp_deflate(&d, (const unsigned char *) "Hello", 5, &used, 0,
                        &o, out + sizeof(out));
        m = o - out;
        ngx_wsp_deflate(&d, (const unsigned char *) "", 0, &used, 1, &o,
                        out + sizeof(out));
        frames[0] = out;
        lens[0] = m;
        frames[1] = out + m;
        lens[1] = (o - out) - m;
        n = inflate_msg(&z, frames, lens, 2, buf, sizeof(buf), sizeof(buf));
        ok(lens[1] == 1 && n == 5 && memcmp(buf, "Hello", 5) == 0,
           "an empty last frame deflates to 00");
    }

    deflateEnd(&d);
    inflateEnd(&z);
}


/* deterministic text that compresses, with some repetition far back */

static void
fill_text(unsigned char *p, size_t n, unsigned seed)
{
    size_t       i;
    static const char  *words[] = { "alpha", "\"id\": ", "beta", ", ",
        "gamma", "{\"key\": \"value\"}", "delta", "0123456789", " ",
        "epsilon", "\n" };

    i = 0;

    while (i < n) {
        const char  *w;
        size_t       k;

        seed = seed * 1103515245 + 12345;
        w = words[(seed >> 16) % 11];

        for (k = 0; w[k] && i < n; k++) {
            p[i++] = (unsigned char) w[k];
        }

        if (((seed >> 8) & 7) == 0 && i < n) {
            p[i++] = (unsigned char) (seed >> 24);
        }
    }
}


static void
window_tests(void)
{
    int             bits, ct, msg, good, level;
    long            n, m;
    size_t          len, sizes[] = { 0, 1, 100, 3000, 70000 };
    z_stream        z, d;
    unsigned char  *src, *comp, *plain;

    src = malloc(70000);
    comp = malloc(80000);
    plain = malloc(70000);

    for (level = 1; level <= 9; level += 8) {
        for (ct = 0; ct < 2; ct++) {
            for (bits = 8; bits <= 15; bits++) {
                good = 1;

                memset(&z, 0, sizeof(z));
                memset(&d, 0, sizeof(d));
                ngx_wsp_deflate_init(&d, level, bits, 8);
                ngx_wsp_inflate_init(&z, bits);

                for (msg = 0; msg < 20 && good; msg++) {
                    len = sizes[msg % 5];
                    fill_text(src, len, msg % 3);

                    n = deflate_msg(&d, src, len, 1 + msg * 997 % 5000,
                                    comp, 80000,
                                    6 + msg * 331 % 9000);

                    if (n < 0) {
                        good = 0;
                        break;
                    }

                    m = inflate_msg(&z, (const unsigned char **) &comp,
                                    (size_t *) &n, 1, plain, 70000,
                                    1 + msg * 127 % 4096);

                    if (m != (long) len || memcmp(plain, src, len) != 0) {
                        printf("#   message %d: %ld of %zu\n", msg, m, len);
                        good = 0;
                    }

                    if (!ct) {
                        deflateReset(&d);
                        inflateReset(&z);
                    }
                }

                deflateEnd(&d);
                inflateEnd(&z);

                {
                    char  name[100];

                    snprintf(name, sizeof(name), "round trips, level %d, "
                             "window %d, context takeover %s", level, bits,
                             ct ? "on" : "off");
                    ok(good, name);
                }
            }
        }
    }

    free(src);
    free(comp);
    free(plain);
}


static void
bomb_tests(void)
{
    int             rc, loops;
    long            n;
    size_t          used, off, cap;
    z_stream        z, d;
    unsigned char  *zeros, *comp, *buf, *o;

    zeros = calloc(1, 1 << 20);
    comp = malloc(1 << 20);

    memset(&d, 0, sizeof(d));
    ngx_wsp_deflate_init(&d, 9, 15, 9);
    n = deflate_msg(&d, zeros, 1 << 20, 1 << 20, comp, 1 << 20, 1 << 20);
    deflateEnd(&d);
    ok(n > 0 && n < 2048, "1 MB of zeros deflates to little");

    /* an exact-size heap buffer: ASan sees any write past its end */

    cap = 65536;
    buf = malloc(cap);
    memset(&z, 0, sizeof(z));
    ngx_wsp_inflate_init(&z, 15);

    o = buf;
    off = 0;
    loops = 0;

    do {
        rc = ngx_wsp_inflate(&z, comp + off, n - off, &used, 1, &o,
                             o + 4096 < buf + cap ? o + 4096 : buf + cap);
        off += used;
        loops++;
    } while (rc == NGX_WSP_Z_FULL && o < buf + cap);

    ok(rc == NGX_WSP_Z_FULL && o == buf + cap && loops == 16,
       "the bomb stops with FULL at the cap");

    inflateEnd(&z);

    {
        size_t  room;

        /* tiny rooms: each call makes progress */

        memset(&z, 0, sizeof(z));
        ngx_wsp_inflate_init(&z, 15);
        o = buf;
        off = 0;
        room = 1;

        do {
            rc = ngx_wsp_inflate(&z, comp + off, n - off, &used, 1, &o,
                                 o + room < buf + cap ? o + room : buf + cap);
            off += used;
            room = room % 7 + 1;
        } while (rc == NGX_WSP_Z_FULL && o < buf + cap);

        ok(rc == NGX_WSP_Z_FULL && o == buf + cap,
           "the bomb, 1..7 bytes of room at a time");

        inflateEnd(&z);
    }

    free(buf);
    free(zeros);
    free(comp);
}


/* a zalloc that counts what zlib asks for */

static size_t  allocated;


static voidpf
count_alloc(voidpf opaque, uInt items, uInt size)
{
    (void) opaque;
    allocated += (size_t) items * size;
    return calloc(items, size);
}


static void
count_free(voidpf opaque, voidpf p)
{
    (void) opaque;
    free(p);
}


static void
memory_tests(void)
{
    int        bits, mem, good;
    size_t     est;
    z_stream   z;

    good = 1;

    for (bits = 8; bits <= 15; bits++) {
        memset(&z, 0, sizeof(z));
        z.zalloc = count_alloc;
        z.zfree = count_free;
        allocated = 0;
        ngx_wsp_inflate_init(&z, bits);

        {
            /* the window is allocated with the first output */
            unsigned char  out[16];
            size_t         used;
            unsigned char *o = out;
            static const unsigned char  hello[] =
                { 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00 };

            ngx_wsp_inflate(&z, hello, sizeof(hello), &used, 1, &o,
                            out + sizeof(out));
        }

        inflateEnd(&z);
        est = ngx_wsp_inflate_memory(bits);

        if (allocated > est || est - allocated > 1024) {
            printf("#   inflate %d: %zu, estimated %zu\n", bits, allocated,
                   est);
            good = 0;
        }

        for (mem = 1; mem <= 9; mem++) {
            memset(&z, 0, sizeof(z));
            z.zalloc = count_alloc;
            z.zfree = count_free;
            allocated = 0;
            ngx_wsp_deflate_init(&z, 6, bits, mem);
            deflateEnd(&z);
            est = ngx_wsp_deflate_memory(bits, mem);

            if (allocated > est || est - allocated > 1024) {
                printf("#   deflate %d/%d: %zu, estimated %zu\n", bits, mem,
                       allocated, est);
                good = 0;
            }
        }
    }

    ok(good, "the memory estimates are upper bounds within 1 KB");
}


int
main(void)
{
    accept_tests();
    offer_tests();
    round_trip_tests();
    rfc_tests();
    window_tests();
    bomb_tests();
    memory_tests();

    return done_testing();
}
