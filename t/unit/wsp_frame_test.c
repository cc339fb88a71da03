/*
 * Unit tests of the frame codec, without nginx: prints TAP.
 * The references here are deliberately naive, byte-at-a-time versions.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_frame.h"
#include "tap.h"




static uint32_t  seed = 12345;

static unsigned
rnd(void)
{
    seed = seed * 1103515245 + 12345;
    return (seed >> 16) & 0x7fff;
}


/* reference: a straightforward decoder (RFC 3629) */

static int
utf8_ref(const unsigned char *p, size_t n)
{
    size_t    i = 0, k, len;
    uint32_t  cp, min;

    while (i < n) {
        unsigned char  c = p[i];

        if (c < 0x80) { i++; continue; }
        else if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;

        if (i + len > n) return 0;

        for (k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }

        i += len;
    }

    return 1;
}


static int
utf8_split(const unsigned char *p, size_t n, size_t cut)
{
    uint32_t  st;

    st = ngx_wsp_utf8_validate(NGX_WSP_UTF8_ACCEPT, p, cut);
    st = ngx_wsp_utf8_validate(st, p + cut, n - cut);

    return st == NGX_WSP_UTF8_ACCEPT;
}


int
main(void)
{
    int              i, all, role;
    size_t           n, off, cut, len, lens[] = { 0, 1, 125, 126, 65535,
                                                  65536, 4294967301ULL };
    unsigned         code;
    const char      *reason;
    unsigned char    buf2[700];
    unsigned char    buf[300], out[300], ref[300], hdr[14], key[4] = {
                         0x12, 0x34, 0x56, 0x78 };
    ngx_wsp_frame_t  f;
    ngx_wsp_msg_state_t  st;

    /* header round trips, every length encoding, masked or not */

    all = 1;
    for (i = 0; i < 7; i++) {
        for (role = 0; role < 2; role++) {
            n = ngx_wsp_frame_write_header(hdr, 1, 2, lens[i],
                                           role ? key : NULL);
            if (ngx_wsp_frame_parse_header(hdr, n, &f) != NGX_WSP_PARSE_OK
                || f.payload_len != lens[i] || f.header_len != n
                || f.masked != role || f.opcode != 2 || !f.fin
                || (role && memcmp(f.mask, key, 4) != 0))
            {
                all = 0;
            }

            for (cut = 0; cut < n; cut++) {
                if (ngx_wsp_frame_parse_header(hdr, cut, &f)
                    != NGX_WSP_PARSE_AGAIN)
                {
                    all = 0;
                }
            }
        }
    }
    ok(all, "header round trips and truncations for all length encodings");

    memset(hdr, 0, sizeof(hdr));
    hdr[0] = 0x82; hdr[1] = 127; hdr[2] = 0x80;
    ok(ngx_wsp_frame_parse_header(hdr, 10, &f) == NGX_WSP_PARSE_ERROR,
       "64-bit length with the MSB set is an error");

    /* rules */

#define CHECK(b0, b1, r, want, name)                                         \
    do {                                                                     \
        unsigned char h[14] = { b0, b1, 1, 2, 3, 4 };                        \
        ngx_wsp_frame_parse_header(h, 14, &f);                               \
        ok(ngx_wsp_frame_check(&f, r, &st, &reason) == want, name);          \
    } while (0)

    memset(&st, 0, sizeof(st));
    CHECK(0x81, 0x85, NGX_WSP_ROLE_CLIENT, 0, "masked client text ok");
    CHECK(0x81, 0x05, NGX_WSP_ROLE_CLIENT, 1002, "unmasked client frame");
    CHECK(0x81, 0x85, NGX_WSP_ROLE_UPSTREAM, 1002, "masked upstream frame");
    CHECK(0xc1, 0x85, NGX_WSP_ROLE_CLIENT, 1002, "rsv1");
    CHECK(0x83, 0x85, NGX_WSP_ROLE_CLIENT, 1002, "opcode 3");
    CHECK(0x8b, 0x85, NGX_WSP_ROLE_CLIENT, 1002, "opcode 0xb");
    CHECK(0x89, 0xfe, NGX_WSP_ROLE_CLIENT, 1002, "long ping");
    CHECK(0x09, 0x81, NGX_WSP_ROLE_CLIENT, 1002, "fragmented ping");
    CHECK(0x80, 0x81, NGX_WSP_ROLE_CLIENT, 1002, "orphan continuation");
    CHECK(0x01, 0x81, NGX_WSP_ROLE_CLIENT, 0, "first fragment");
    CHECK(0x89, 0x81, NGX_WSP_ROLE_CLIENT, 0, "ping inside a message");
    CHECK(0x81, 0x81, NGX_WSP_ROLE_CLIENT, 1002, "text inside a message");
    CHECK(0x80, 0x81, NGX_WSP_ROLE_CLIENT, 0, "last fragment");
    CHECK(0x80, 0x81, NGX_WSP_ROLE_CLIENT, 1002, "no message after it");

    /* RSV1 with permessage-deflate (RFC 7692 6.1) */

    memset(&st, 0, sizeof(st));
    st.deflate = 1;
    CHECK(0xc1, 0x85, NGX_WSP_ROLE_CLIENT, 0, "deflate: rsv1 text ok");
    ok(st.compressed != 0, "deflate: the message is compressed");
    CHECK(0x81, 0x85, NGX_WSP_ROLE_CLIENT, 0, "deflate: plain text ok");
    ok(st.compressed == 0, "deflate: the next one is not");
    CHECK(0xa1, 0x85, NGX_WSP_ROLE_CLIENT, 1002, "deflate: rsv2 still bad");
    CHECK(0x91, 0x85, NGX_WSP_ROLE_CLIENT, 1002, "deflate: rsv3 still bad");
    CHECK(0xc9, 0x81, NGX_WSP_ROLE_CLIENT, 1002, "deflate: rsv1 on a ping");
    CHECK(0xc8, 0x82, NGX_WSP_ROLE_CLIENT, 1002, "deflate: rsv1 on a close");
    CHECK(0x42, 0x81, NGX_WSP_ROLE_CLIENT, 0, "deflate: rsv1 first fragment");
    CHECK(0x89, 0x81, NGX_WSP_ROLE_CLIENT, 0, "deflate: a ping between");
    ok(st.compressed != 0, "deflate: a ping leaves the message compressed");
    CHECK(0x40, 0x81, NGX_WSP_ROLE_CLIENT, 1002,
          "deflate: rsv1 on a continuation");
    memset(&st, 0, sizeof(st));
    st.deflate = 1;
    CHECK(0x42, 0x81, NGX_WSP_ROLE_CLIENT, 0, "deflate: first fragment");
    CHECK(0x80, 0x81, NGX_WSP_ROLE_CLIENT, 0, "deflate: plain continuation");
    ok(st.compressed != 0, "deflate: the continuation's message is");

    n = ngx_wsp_frame_write_header(hdr, 1, NGX_WSP_OP_TEXT | NGX_WSP_RSV1,
                                   5, NULL);
    ok(n == 2 && hdr[0] == 0xc1 && hdr[1] == 5, "write_header with RSV1");

    /* masking against a byte-at-a-time reference */

    all = 1;
    for (i = 0; i < 300; i++) {
        buf[i] = (unsigned char) rnd();
    }
    for (off = 0; off < 8; off++) {
        for (len = 0; len < 120; len++) {
            for (i = 0; i < (int) len; i++) {
                ref[i] = buf[i + 3] ^ key[(off + i) & 3];
            }
            ngx_wsp_mask(out + 1, buf + 3, len, key, off);
            if (memcmp(out + 1, ref, len) != 0) {
                all = 0;
            }
            memcpy(out, buf, sizeof(buf));
            ngx_wsp_mask(out + 3, out + 3, len, key, off);
            if (memcmp(out + 3, ref, len) != 0) {
                all = 0;
            }
        }
    }
    ok(all, "masking: all offsets, lengths, misaligned and in place");

    /* close payloads */

    {
        unsigned  codes[] = { 999, 1000, 1003, 1004, 1005, 1006, 1007, 1014,
                              1015, 1016, 2999, 3000, 4999, 5000 };
        int       valid[] = { 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0 };

        all = 1;
        for (i = 0; i < 14; i++) {
            unsigned char  p[2] = { codes[i] >> 8, codes[i] & 0xff };

            if ((ngx_wsp_close_check(p, 2, &code, &reason) == 0) != valid[i]) {
                all = 0;
            }
        }
        ok(all, "close status codes");
    }

    ok(ngx_wsp_close_check((unsigned char *) "", 0, &code, &reason) == 0
       && code == 1005, "empty close payload");
    ok(ngx_wsp_close_check((unsigned char *) "\x03", 1, &code, &reason)
       == 1002, "1-byte close payload");
    ok(ngx_wsp_close_check((unsigned char *) "\x03\xe8\xff", 3, &code,
                           &reason) == 1007, "close reason not UTF-8");

    /* UTF-8 against the reference, random strings split everywhere */

    all = 1;
    for (i = 0; i < 200000; i++) {
        size_t  k;

        n = rnd() % 12;
        for (k = 0; k < n; k++) {
            unsigned  r = rnd() % 8;
            buf[k] = r < 3 ? (unsigned char) (rnd() % 0x80)
                   : r < 5 ? (unsigned char) (0x80 + rnd() % 0x40)
                           : (unsigned char) (0xc0 + rnd() % 0x40);
        }
        cut = n ? rnd() % (n + 1) : 0;
        if (utf8_split(buf, n, cut) != utf8_ref(buf, n)) {
            all = 0;
        }
    }
    ok(all, "UTF-8 validator agrees with the reference on 200000 strings");

    {
        const char  *cases[] = {
            "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xed\x9f\xbf", "\xc2\x80",
            "\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xed\xa0\x80",
            "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\x80", "\xe2\x82",
            "plain ascii text, long enough for the 8-byte path \xc3\xa9!",
        };
        int  expect[] = { 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1 };

        all = 1;
        for (i = 0; i < 13; i++) {
            n = strlen(cases[i]);
            for (cut = 0; cut <= n; cut++) {
                if (utf8_split((const unsigned char *) cases[i], n, cut)
                    != expect[i])
                {
                    all = 0;
                }
            }
        }
        ok(all, "UTF-8 boundaries, overlongs, surrogates, every split");
    }

    /* through the mask: random text, masked, split, any offset */

    all = 1;
    for (i = 0; i < 20000; i++) {
        size_t         k;
        uint32_t       st;
        unsigned char  key[4], mbuf[700];

        n = rnd() % sizeof(mbuf);
        for (k = 0; k < n; k++) {
            unsigned  r = rnd() % 16;
            buf2[k] = r < 12 ? (unsigned char) (rnd() % 0x80)
                    : (unsigned char) (0x80 + rnd() % 0x80);
        }
        for (k = 0; k < 4; k++) {
            key[k] = (unsigned char) rnd();
        }
        ngx_wsp_mask(mbuf, buf2, n, key, 0);
        cut = n ? rnd() % (n + 1) : 0;
        st = ngx_wsp_utf8_validate_masked(NGX_WSP_UTF8_ACCEPT, mbuf, cut,
                                          key, 0);
        st = ngx_wsp_utf8_validate_masked(st, mbuf + cut, n - cut, key, cut);
        if ((st == NGX_WSP_UTF8_ACCEPT) != utf8_ref(buf2, n)) {
            all = 0;
        }
    }
    ok(all, "UTF-8 through the mask agrees with the reference, any split");

    return done_testing();
}
