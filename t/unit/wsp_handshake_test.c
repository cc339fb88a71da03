/*
 * Unit tests of the handshake parser and checks (src/ngx_wsp_handshake.c),
 * without nginx: prints TAP.  Each response case is also parsed after the
 * end-of-head search has been fed the bytes one at a time, and from a
 * heap copy of exactly its length, so that ASan/valgrind see any read
 * past the end.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_wsp_handshake.h"
#include "tap.h"


#define ACCEPT  "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="




/* parses a head given as a C string; returns the result, fills msg */

static int
parse(const char *head, char *msg, size_t msize, ngx_wsp_response_t *out)
{
    int                  rc;
    size_t               len, end, scanned, i;
    unsigned char       *copy;
    ngx_wsp_response_t   r;

    len = strlen(head);
    copy = malloc(len ? len : 1);
    memcpy(copy, head, len);

    /* the search, one byte at a time, must agree with the whole search */

    scanned = 0;
    end = 0;
    for (i = 1; i <= len && end == 0; i++) {
        end = ngx_wsp_head_end(copy, i, &scanned);
    }

    scanned = 0;
    if (end != ngx_wsp_head_end(copy, len, &scanned)) {
        snprintf(msg, msize, "(search disagrees)");
        free(copy);
        return -1;
    }

    if (end == 0) {
        snprintf(msg, msize, "(no end)");
        free(copy);
        return -2;
    }

    rc = ngx_wsp_response_parse(copy, end, (const unsigned char *) ACCEPT,
                                &r);

    if (rc != NGX_WSP_HEAD_OK) {
        snprintf(msg, msize, "%s%.*s", r.error, (int) r.error_arg.len,
                 (const char *) r.error_arg.data);
    } else {
        snprintf(msg, msize, "ok");
    }

    if (out) {
        /* offsets only: the copy goes away */
        *out = r;
        out->protocol.data = r.protocol.data
                             ? (const unsigned char *) head
                               + (r.protocol.data - copy)
                             : NULL;
        out->extensions.data = r.extensions.data
                               ? (const unsigned char *) head
                                 + (r.extensions.data - copy)
                               : NULL;
    }

    free(copy);

    return rc;
}


static void
expect_response(const char *head, int rc, const char *message,
    const char *name)
{
    char  msg[512], full[600];
    int   got;

    got = parse(head, msg, sizeof(msg), NULL);

    snprintf(full, sizeof(full), "%s: %s", name, msg);
    ok(got == rc && strcmp(msg, message) == 0, full);

    if (got != rc || strcmp(msg, message) != 0) {
        printf("#   expected %d \"%s\", got %d \"%s\"\n", rc, message, got,
               msg);
    }
}


#define OK_HEAD  "HTTP/1.1 101 Switching Protocols\r\n"                   \
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"           \
                 "Sec-WebSocket-Accept: " ACCEPT "\r\n"


static void
response_tests(void)
{
    size_t              scanned, n;
    ngx_wsp_response_t  r;
    char                msg[512];
    const char         *h;

    /* accepted */

    expect_response(OK_HEAD "\r\n", NGX_WSP_HEAD_OK, "ok", "a plain 101");
    expect_response("HTTP/1.1 101\r\nupgrade:WebSocket\r\n"
                    "connection: keep-alive,  UPGRADE \r\n"
                    "sec-websocket-accept:\t" ACCEPT "\t\r\n\r\n",
                    NGX_WSP_HEAD_OK, "ok",
                    "no reason, case, OWS, a token list");
    expect_response("HTTP/1.1 101 OK\r\nConnection: keep-alive\r\n"
                    "Connection: upgrade\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_OK, "ok", "Connection over two lines");
    expect_response(OK_HEAD "Sec-WebSocket-Extensions: \r\n"
                    "X-Empty:\r\nSet-Cookie: a=b\r\n\r\n",
                    NGX_WSP_HEAD_OK, "ok",
                    "an empty extensions header, other headers");

    h = OK_HEAD "Sec-WebSocket-Protocol:  chat \r\n\r\n";
    ok(parse(h, msg, sizeof(msg), &r) == NGX_WSP_HEAD_OK
       && r.protocol.len == 4
       && memcmp(r.protocol.data, "chat", 4) == 0
       && r.accept.len == 28 && r.status == 101,
       "the protocol, the accept value and the status are returned");

    /* status */

    expect_response("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: x\r\n"
                    "\r\n", NGX_WSP_HEAD_STATUS,
                    "bad HTTP response status line: HTTP/1.1 401 Unauthorized",
                    "a refusal: the status, for the relay");
    expect_response("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: x\r\n"
                    "broken line\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: broken line",
                    "a refusal's headers are read by the same rules: a "
                    "broken line is not relayed");
    expect_response("HTTP/1.0 302 Found\r\n\r\n", NGX_WSP_HEAD_STATUS,
                    "bad HTTP response status line: HTTP/1.0 302 Found",
                    "HTTP/1.0 302");

    /* rejected: the status line */

    expect_response("HTTP/1.1 10\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: HTTP/1.1 10",
                    "a short status line");
    expect_response("HTTP/2.0 101 OK\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: HTTP/2.0 101 OK",
                    "HTTP/2.0");
    expect_response("HTTP/1.1 1x1 OK\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: HTTP/1.1 1x1 OK",
                    "a status that is not digits");
    expect_response("HTTP/1.1 1011\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: HTTP/1.1 1011",
                    "four digits");
    expect_response("HTTP/1.1 601 X\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: HTTP/1.1 601 X",
                    "status 601");
    expect_response("\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: ",
                    "an empty status line");
    expect_response("SSH-2.0-OpenSSH\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: SSH-2.0-OpenSSH",
                    "not HTTP");

    /* rejected: line ends, NUL, obs-fold, colons, names */

    expect_response("HTTP/1.1 101 OK\nUpgrade: websocket\n\n",
                    NGX_WSP_HEAD_ERROR,
                    "bad HTTP response status line: HTTP/1.1 101 OK",
                    "LF-only line ends: found at once, then refused");
    expect_response(OK_HEAD "X-A: b\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: X-A: b",
                    "one LF-only header line");
    expect_response(OK_HEAD "X-A: b\rc\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: X-A: b",
                    "a bare CR");
    expect_response(OK_HEAD "X-Folded: a\r\n  b\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header:   b", "obs-fold");
    expect_response(OK_HEAD "no colon here\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: no colon here",
                    "a line without a colon");
    expect_response(OK_HEAD ": value\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: : value", "an empty name");
    expect_response(OK_HEAD "Upgrade : websocket\r\n\r\n",
                    NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: Upgrade : websocket",
                    "a space before the colon");
    expect_response(OK_HEAD "X(y): z\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad HTTP response header: X(y): z",
                    "a name that is not a token");

    {
        /* NUL bytes: strlen() cannot carry them, so by hand */
        static const unsigned char  nul[] =
            "HTTP/1.1 101 OK\r\nX: a\0b\r\n\r\n";
        static const unsigned char  nul1[] = "HTTP/1.1 1\0001 OK\r\n\r\n";

        ok(ngx_wsp_response_parse(nul, sizeof(nul) - 1,
                                  (const unsigned char *) ACCEPT, &r)
           == NGX_WSP_HEAD_ERROR
           && strcmp(r.error, "bad HTTP response header: ") == 0
           && r.error_arg.len == 4,
           "a NUL in a header value");

        ok(ngx_wsp_response_parse(nul1, sizeof(nul1) - 1,
                                  (const unsigned char *) ACCEPT, &r)
           == NGX_WSP_HEAD_ERROR && r.error_arg.len == 10,
           "a NUL in the status line");
    }

    /* rejected: the WebSocket headers */

    expect_response("HTTP/1.1 101 OK\r\nConnection: upgrade\r\n"
                    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_ERROR, "bad \"upgrade\" response header",
                    "no Upgrade");
    expect_response("HTTP/1.1 101 OK\r\nUpgrade: websocket, h2c\r\n"
                    "Connection: upgrade\r\n"
                    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_ERROR, "bad \"upgrade\" response header",
                    "Upgrade with a second protocol");
    expect_response(OK_HEAD "Upgrade: websocket\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "bad \"upgrade\" response header", "Upgrade twice");
    expect_response("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                    "Connection: noupgrade\r\n"
                    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_ERROR, "bad \"connection\" response header",
                    "Connection: noupgrade (a substring, not a token)");
    expect_response("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                    "Connection: upgraded, close\r\n"
                    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_ERROR, "bad \"connection\" response header",
                    "Connection: upgraded");
    expect_response("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_ERROR, "bad \"connection\" response header",
                    "no Connection");
    expect_response("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                    "Connection: upgrade\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "missing \"sec-websocket-accept\" response header",
                    "no accept");
    expect_response("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                    "Connection: upgrade\r\n"
                    "Sec-WebSocket-Accept: S3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                    "\r\n", NGX_WSP_HEAD_ERROR,
                    "bad \"sec-websocket-accept\" response header: "
                    "S3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
                    "a wrong accept (case matters)");
    expect_response(OK_HEAD "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
                    NGX_WSP_HEAD_ERROR,
                    "bad \"sec-websocket-accept\" response header: " ACCEPT,
                    "accept twice");
    expect_response(OK_HEAD "Sec-WebSocket-Protocol: a\r\n"
                    "Sec-WebSocket-Protocol: b\r\n\r\n", NGX_WSP_HEAD_ERROR,
                    "duplicate \"sec-websocket-protocol\" response header: b",
                    "two protocols");
    expect_response(OK_HEAD "Sec-WebSocket-Extensions: permessage-deflate\r\n"
                    "Sec-WebSocket-Extensions: x\r\n\r\n",
                    NGX_WSP_HEAD_ERROR,
                    "duplicate \"sec-websocket-extensions\" response "
                    "header: x", "two extensions lines");

    h = OK_HEAD "Sec-WebSocket-Extensions:  permessage-deflate; a \r\n\r\n";
    ok(parse(h, msg, sizeof(msg), &r) == NGX_WSP_HEAD_OK
       && r.extensions.len == 21
       && memcmp(r.extensions.data, "permessage-deflate; a", 21) == 0,
       "the extensions value is the caller's to check");

    /* the search */

    h = OK_HEAD "\r\n\x81\x02hi";
    scanned = 0;
    n = ngx_wsp_head_end((const unsigned char *) h, strlen(h), &scanned);
    ok(n == strlen(OK_HEAD) + 2, "the head ends before the frames after it");

    scanned = 0;
    ok(ngx_wsp_head_end((const unsigned char *) "HTTP/1.1 101\r\n\r", 15,
                        &scanned) == 0
       && ngx_wsp_head_end((const unsigned char *) "HTTP/1.1 101\r\n\r\n",
                           16, &scanned) == 16,
       "an end split between two reads");

    scanned = 0;
    ok(ngx_wsp_head_end((const unsigned char *) "\n", 1, &scanned) == 0
       && ngx_wsp_head_end((const unsigned char *) "", 0, &scanned) == 0,
       "one byte, no byte");

    ok(parse("HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n", msg, sizeof(msg),
             NULL) == -2, "no empty line: the head has not ended");

    /* a head given with trailing bytes (not from the search) */

    h = OK_HEAD "\r\nxx";
    ok(ngx_wsp_response_parse((const unsigned char *) h, strlen(h),
                              (const unsigned char *) ACCEPT, &r)
       == NGX_WSP_HEAD_ERROR, "bytes after the empty line are refused");
}


static int
request(const char **pairs, char *msg, size_t msize)
{
    int                rc;
    size_t             i;
    ngx_wsp_request_t  rq;

    memset(&rq, 0, sizeof(rq));

    for (i = 0; pairs[i]; i += 2) {
        ngx_wsp_request_header(&rq, (const unsigned char *) pairs[i],
                               strlen(pairs[i]),
                               (const unsigned char *) pairs[i + 1],
                               strlen(pairs[i + 1]));
    }

    rc = ngx_wsp_request_check(&rq);

    if (rc != NGX_WSP_REQ_OK) {
        snprintf(msg, msize, "%s%.*s", rq.error, (int) rq.error_arg.len,
                 rq.error_arg.data ? (const char *) rq.error_arg.data : "");
    } else {
        snprintf(msg, msize, "ok %.*s", (int) rq.key.len,
                 (const char *) rq.key.data);
    }

    return rc;
}


#define KEY  "dGhlIHNhbXBsZSBub25jZQ=="

static void
expect_request(const char **pairs, int rc, const char *message,
    const char *name)
{
    int   got;
    char  msg[512];

    got = request(pairs, msg, sizeof(msg));
    ok(got == rc && strcmp(msg, message) == 0, name);

    if (got != rc || strcmp(msg, message) != 0) {
        printf("#   expected %d \"%s\", got %d \"%s\"\n", rc, message, got,
               msg);
    }
}


static void
request_tests(void)
{
    const char  *good[] = { "Host", "x", "Upgrade", "websocket",
                            "Connection", "Upgrade",
                            "Sec-WebSocket-Version", "13",
                            "Sec-WebSocket-Key", KEY, NULL };
    const char  *lists[] = { "upgrade", "h2c, WebSocket",
                             "connection", "keep-alive", "CONNECTION",
                             "x ,\tupgrade\t, y",
                             "sec-websocket-version", "13",
                             "sec-websocket-key", KEY, NULL };
    const char  *noupgrade[] = { "Upgrade", "websocket",
                                 "Connection", "noupgrade",
                                 "Sec-WebSocket-Version", "13",
                                 "Sec-WebSocket-Key", KEY, NULL };
    const char  *ws2[] = { "Upgrade", "websocket2",
                           "Connection", "upgrade", NULL };
    const char  *none[] = { "Host", "x", NULL };
    const char  *ka[] = { "Upgrade", "websocket",
                          "Connection", "keep-alive", NULL };
    const char  *v8[] = { "Upgrade", "websocket", "Connection", "upgrade",
                          "Sec-WebSocket-Version", "8", NULL };
    const char  *v2[] = { "Upgrade", "websocket", "Connection", "upgrade",
                          "Sec-WebSocket-Version", "13",
                          "Sec-WebSocket-Version", "13",
                          "Sec-WebSocket-Key", KEY, NULL };
    const char  *short_key[] = { "Upgrade", "websocket",
                                 "Connection", "upgrade",
                                 "Sec-WebSocket-Version", "13",
                                 "Sec-WebSocket-Key", "c2hvcnQ=", NULL };
    const char  *no_key[] = { "Upgrade", "websocket",
                              "Connection", "upgrade",
                              "Sec-WebSocket-Version", "13", NULL };
    const char  *two_keys[] = { "Upgrade", "websocket",
                                "Connection", "upgrade",
                                "Sec-WebSocket-Version", "13",
                                "Sec-WebSocket-Key", KEY,
                                "Sec-WebSocket-Key", KEY, NULL };
    const char  *after_pad[] = { "Upgrade", "websocket",
                                 "Connection", "upgrade",
                                 "Sec-WebSocket-Version", "13",
                                 "Sec-WebSocket-Key",
                                 "dGhlIHNhbXBsZSBub25jZQ=x", NULL };
    const char  *bad_char[] = { "Upgrade", "websocket",
                                "Connection", "upgrade",
                                "Sec-WebSocket-Version", "13",
                                "Sec-WebSocket-Key",
                                "dGhlIHNhbXBsZSBub25jZ-==", NULL };

    expect_request(good, NGX_WSP_REQ_OK, "ok " KEY, "a good request");
    expect_request(lists, NGX_WSP_REQ_OK, "ok " KEY,
                   "token lists, a second Connection line, case");
    expect_request(noupgrade, NGX_WSP_REQ_BAD,
                   "bad \"connection\" request header: noupgrade",
                   "Connection: noupgrade");
    expect_request(ws2, NGX_WSP_REQ_BAD,
                   "bad \"upgrade\" request header: websocket2",
                   "Upgrade: websocket2");
    expect_request(none, NGX_WSP_REQ_BAD,
                   "bad \"upgrade\" request header: (missing)",
                   "no Upgrade: \"(missing)\" in the message");
    expect_request(ka, NGX_WSP_REQ_BAD,
                   "bad \"connection\" request header: keep-alive",
                   "Connection: keep-alive");
    expect_request(v8, NGX_WSP_REQ_VERSION,
                   "bad \"sec-websocket-version\" request header: 8",
                   "version 8: 426");
    expect_request(v2, NGX_WSP_REQ_VERSION,
                   "duplicate \"sec-websocket-version\" request header: 13",
                   "two version headers: duplicate, not bad");
    expect_request(short_key, NGX_WSP_REQ_BAD,
                   "bad \"sec-websocket-key\" request header: c2hvcnQ=",
                   "a key of 5 bytes");
    expect_request(no_key, NGX_WSP_REQ_BAD,
                   "bad \"sec-websocket-key\" request header: (missing)",
                   "no key");
    expect_request(two_keys, NGX_WSP_REQ_BAD,
                   "duplicate \"sec-websocket-key\" request header: " KEY,
                   "two keys: duplicate, not bad");
    expect_request(after_pad, NGX_WSP_REQ_BAD,
                   "bad \"sec-websocket-key\" request header: "
                   "dGhlIHNhbXBsZSBub25jZQ=x", "a byte after the padding");
    expect_request(bad_char, NGX_WSP_REQ_BAD,
                   "bad \"sec-websocket-key\" request header: "
                   "dGhlIHNhbXBsZSBub25jZ-==", "a URL-safe base64 digit");

    ok(ngx_wsp_key_valid((const unsigned char *) "AAAAAAAAAAAAAAAAAAAAAB==",
                         24),
       "non-zero unused bits are tolerated (as nginx's decoder did)");

    ok(ngx_wsp_has_token((const unsigned char *) ",,upgrade,,", 11,
                         "upgrade", 7)
       && !ngx_wsp_has_token((const unsigned char *) "up grade", 8,
                             "upgrade", 7)
       && !ngx_wsp_has_token((const unsigned char *) "", 0, "upgrade", 7)
       && !ngx_wsp_has_token((const unsigned char *) "upgrade;q=1", 11,
                             "upgrade", 7),
       "token matching: empty elements, inner spaces, parameters");
}


/*
 * The lines of a list header combined as one list, as a request that
 * offers "foo" on one Sec-WebSocket-Protocol line and "chat" on the next
 * is read: the count pass must agree with the writing pass.
 */

static size_t
combine(const char **lines, size_t n, unsigned char *dst)
{
    size_t  i, len, counted;

    counted = 0;
    for (i = 0; i < n; i++) {
        counted = ngx_wsp_list_append(NULL, counted,
                                      (const unsigned char *) lines[i],
                                      strlen(lines[i]));
    }

    len = 0;
    for (i = 0; i < n; i++) {
        len = ngx_wsp_list_append(dst, len, (const unsigned char *) lines[i],
                                  strlen(lines[i]));
    }

    return len == counted ? len : (size_t) -1;
}


static void
list_tests(void)
{
    size_t          len;
    unsigned char   buf[128];

    static const char  *two[] = { "foo", "chat" };
    static const char  *ows[] = { " \tfoo, bar ", "", "  ", "chat\t" };
    static const char  *one[] = { "chat" };

    ok(ngx_wsp_list_header((const unsigned char *) "sec-websocket-protocol",
                           22) == NGX_WSP_LIST_PROTOCOL
       && ngx_wsp_list_header((const unsigned char *)
                              "SEC-WEBSOCKET-EXTENSIONS", 24)
          == NGX_WSP_LIST_EXTENSIONS
       && ngx_wsp_list_header((const unsigned char *) "Sec-WebSocket-Key",
                              17) == -1
       && ngx_wsp_list_header((const unsigned char *)
                              "Sec-WebSocket-Protocols", 23) == -1,
       "list headers: Sec-WebSocket-Protocol and -Extensions, any case");

    len = combine(two, 2, buf);
    ok(len == 9 && memcmp(buf, "foo, chat", 9) == 0,
       "two Sec-WebSocket-Protocol lines are one offer: \"foo, chat\"");

    ok(ngx_wsp_has_element(buf, len, (const unsigned char *) "chat", 4)
       && ngx_wsp_has_element(buf, len, (const unsigned char *) "foo", 3),
       "both lines' subprotocols are offered");

    len = combine(ows, 4, buf);
    ok(len == 14 && memcmp(buf, "foo, bar, chat", 14) == 0,
       "OWS around a line's value and empty lines add nothing");

    len = combine(one, 1, buf);
    ok(len == 4 && memcmp(buf, "chat", 4) == 0, "one line is itself");

    ok(combine(NULL, 0, buf) == 0, "no line: an empty list");

    ok(ngx_wsp_has_element((const unsigned char *) "foo, chat", 9,
                           (const unsigned char *) "chat", 4)
       && !ngx_wsp_has_element((const unsigned char *) "foo, chat", 9,
                               (const unsigned char *) "Chat", 4)
       && !ngx_wsp_has_element((const unsigned char *) "foo, chat", 9,
                               (const unsigned char *) "cha", 3)
       && !ngx_wsp_has_element((const unsigned char *) "foo, chat", 9,
                               (const unsigned char *) "", 0),
       "subprotocol names match byte for byte, whole elements only");
}


/* how a refusal's body ends, from its head */

/* how the body of the response head ends, as the parser of the head says */

static int
framing(const char *head, unsigned status, uint64_t *length)
{
    ngx_wsp_response_t  r;

    if (ngx_wsp_response_parse((const unsigned char *) head, strlen(head),
                               (const unsigned char *) "", &r)
        != NGX_WSP_HEAD_STATUS || r.status != status)
    {
        return -1;
    }

    *length = r.length;

    return r.body;
}


static void
body_tests(void)
{
    int             rc, every;
    size_t          i, len, dlen;
    uint64_t        n;
    unsigned char   buf[256];

    static const char  chunked[] =
        "5;ext=1\r\nhello\r\n"
        "B\r\n, the world\r\n"
        "0\r\nX-Trailer: yes\r\n\r\n";

    ok(framing("HTTP/1.1 403 Forbidden\r\nContent-Length: 22\r\n\r\n",
               403, &n) == NGX_WSP_BODY_LENGTH && n == 22,
       "Content-Length: the body is that long");

    ok(framing("HTTP/1.1 403 Forbidden\r\ncontent-length:0\r\n\r\n",
               403, &n) == NGX_WSP_BODY_LENGTH && n == 0,
       "Content-Length: 0, any case, no OWS");

    ok(framing("HTTP/1.1 401 No\r\nContent-Length: 5\r\n"
               "Transfer-Encoding: gzip, chunked\r\n\r\n", 401, &n)
       == NGX_WSP_BODY_CHUNKED,
       "Transfer-Encoding ending in chunked wins over Content-Length");

    ok(framing("HTTP/1.1 401 No\r\nTransfer-Encoding: chunked, gzip\r\n"
               "\r\n", 401, &n) == NGX_WSP_BODY_CLOSE,
       "a coding after chunked: the body ends with the connection");

    ok(framing("HTTP/1.1 400 Bad\r\nX-A: b\r\n\r\n", 400, &n)
       == NGX_WSP_BODY_CLOSE, "no length: the body ends with the connection");

    ok(framing("HTTP/1.1 400 Bad\r\nContent-Length: 5\r\n"
               "Content-Length: 6\r\n\r\n", 400, &n) == NGX_WSP_BODY_ERROR
       && framing("HTTP/1.1 400 Bad\r\nContent-Length: 5x\r\n\r\n", 400,
                  &n) == NGX_WSP_BODY_ERROR
       && framing("HTTP/1.1 400 Bad\r\nContent-Length: 5\r\n"
                  "Content-Length: 5\r\n\r\n", 400, &n)
          == NGX_WSP_BODY_LENGTH,
       "conflicting or bad lengths are errors, a repeated one is not");

    ok(framing("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
               204, &n) == NGX_WSP_BODY_NONE
       && framing("HTTP/1.1 304 Not Modified\r\n\r\n", 304, &n)
          == NGX_WSP_BODY_NONE,
       "204 and 304 have no body");

    len = sizeof(chunked) - 1;

    every = 1;
    for (i = 0; i < len; i++) {
        if (ngx_wsp_chunked((const unsigned char *) chunked, i, NULL, &dlen)
            != 0)
        {
            every = 0;
        }
    }

    ok(every, "a chunked body cut anywhere needs more bytes");

    memcpy(buf, chunked, len);
    rc = ngx_wsp_chunked(buf, len, NULL, &dlen);
    ok(rc == 1 && dlen == 16, "a whole chunked body is complete");

    rc = ngx_wsp_chunked(buf, len, buf, &dlen);
    ok(rc == 1 && dlen == 16 && memcmp(buf, "hello, the world", 16) == 0,
       "decoded in place: extensions and trailers left out");

    ok(ngx_wsp_chunked((const unsigned char *) "x\r\n", 3, NULL, &dlen) == -1
       && ngx_wsp_chunked((const unsigned char *) "3\r\nabcd\r\n0\r\n\r\n",
                          15, NULL, &dlen) == -1
       && ngx_wsp_chunked((const unsigned char *) "3x\r\n", 4, NULL, &dlen)
          == -1,
       "not chunked: no size, data longer than its size, junk after it");
}


int
main(void)
{
    response_tests();
    request_tests();
    list_tests();
    body_tests();

    return done_testing();
}
