/*
 * Copyright (C) ngx_http_ws_proxy_module authors
 *
 * The parsing and checking half of the RFC 6455 opening handshake: the
 * search for the end of the upstream's response head, the parser of that
 * head, comma-separated token matching and the checks of a client's
 * upgrade request.
 *
 * Like ngx_wsp_frame.[ch], this depends on nothing but the C library, so
 * that it can be unit-tested and fuzzed without nginx.  Nothing here
 * allocates or copies: results point into the caller's bytes, errors are
 * static texts.  The SHA-1 of the accept key stays in the module (it uses
 * nginx's); the parser is given the expected value.
 *
 * Rules of the response head (RFC 9112 as a proxy reads it, strictly,
 * because a head the module misreads could be read differently by the
 * client it is relayed to):
 *
 *   - lines end in CR LF; the head ends at the first empty line.  A bare LF
 *     also ends a line for the end-of-head search, so that an LF-only head
 *     fails at once ("bad HTTP response ...") instead of waiting for a
 *     CR LF CR LF that never comes; the parser then rejects it;
 *   - a bare CR, a bare LF or a NUL byte anywhere is an error;
 *   - a line starting with SP or HTAB (obs-fold) is an error;
 *   - a header line without a colon, with an empty name, or with a name
 *     that is not an RFC 9110 token (so no space before the colon) is an
 *     error;
 *   - SP and HTAB around a value are not part of it;
 *   - Connection and Upgrade are lists: their lines are read as one list;
 *     a second Sec-WebSocket-Accept, Sec-WebSocket-Protocol or non-empty
 *     Sec-WebSocket-Extensions is an error (the module offers one
 *     extension at most); whether the extension answers the offer is the
 *     caller's check (ngx_wsp_pmd_check_answer());
 *   - the status line is "HTTP/1.<digit> <3 digits>", then SP and any
 *     reason, or nothing.  The header lines of a status other than 101 are
 *     read by the same rules (a refusal is relayed, and a head misread
 *     here could be read another way by the client), but only the ones
 *     that say where its body ends are interpreted.
 *
 * The head is parsed once, by ngx_wsp_response_parse(), with the one
 * splitter of header lines, ngx_wsp_header_next(); what the module relays
 * of it walks the header slice the parser returns with the same splitter.
 */


#ifndef _NGX_WSP_HANDSHAKE_H_INCLUDED_
#define _NGX_WSP_HANDSHAKE_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_WSP_ACCEPT_LEN       28     /* base64 of a SHA-1 */
#define NGX_WSP_KEY_LEN          24     /* base64 of 16 bytes */

/* results of ngx_wsp_response_parse() */
#define NGX_WSP_HEAD_OK          0      /* a valid 101 */
#define NGX_WSP_HEAD_STATUS      1      /* a valid status line, not 101 */
#define NGX_WSP_HEAD_ERROR       2      /* see error and error_arg */

/* how a refusal's body ends (ngx_wsp_response_t.body) */
#define NGX_WSP_BODY_NONE        0      /* 1xx, 204, 304 */
#define NGX_WSP_BODY_LENGTH      1      /* Content-Length */
#define NGX_WSP_BODY_CHUNKED     2      /* Transfer-Encoding: ..., chunked */
#define NGX_WSP_BODY_CLOSE       3      /* up to the close */
#define NGX_WSP_BODY_ERROR       4      /* a bad or conflicting length */

/* the list headers of a client's request, see ngx_wsp_list_header() */
#define NGX_WSP_LIST_PROTOCOL    0      /* Sec-WebSocket-Protocol */
#define NGX_WSP_LIST_EXTENSIONS  1      /* Sec-WebSocket-Extensions */

/* results of ngx_wsp_request_check() */
#define NGX_WSP_REQ_OK           0
#define NGX_WSP_REQ_BAD          400
#define NGX_WSP_REQ_VERSION      426    /* answer with Upgrade Required */


typedef struct {
    const unsigned char  *data;
    size_t                len;
} ngx_wsp_str_t;


typedef struct {
    ngx_wsp_str_t         name;
    ngx_wsp_str_t         value;        /* SP and HTAB around it left out */
} ngx_wsp_header_t;


typedef struct {
    unsigned              status;       /* 100 .. 599 */
    ngx_wsp_str_t         status_line;  /* without its CR LF */
    ngx_wsp_str_t         headers;      /* the header lines, CR LF ended */
    ngx_wsp_str_t         accept;
    ngx_wsp_str_t         protocol;     /* empty when absent */
    ngx_wsp_str_t         extensions;   /* empty when absent */

    /* not 101: how its body ends, NGX_WSP_BODY_*, and its Content-Length */
    int                   body;
    uint64_t              length;

    /*
     * On HEAD_ERROR and HEAD_STATUS: error is a static text and error_arg
     * the bytes it is about (possibly empty); the message is error followed
     * by error_arg.  The texts are the ones the module has always reported.
     */
    const char           *error;
    ngx_wsp_str_t         error_arg;
} ngx_wsp_response_t;


/* the state of ngx_wsp_request_header(): zero-initialise it */

typedef struct {
    ngx_wsp_str_t         upgrade;      /* the first value of each */
    ngx_wsp_str_t         connection;
    ngx_wsp_str_t         version;
    ngx_wsp_str_t         key;

    unsigned              upgrade_ok:1;     /* "websocket" in any line */
    unsigned              connection_ok:1;  /* "upgrade" in any line */
    unsigned              versions:2;       /* lines seen, up to 2 */
    unsigned              keys:2;

    const char           *error;        /* set by ngx_wsp_request_check() */
    ngx_wsp_str_t         error_arg;
} ngx_wsp_request_t;


/*
 * The incremental search for the end of a response head in buf[0, len),
 * where len only grows between calls and *scanned (0 before the first
 * call) carries the search over.  Returns the length of the head with its
 * empty line, or 0 when it has not ended yet.
 */
size_t ngx_wsp_head_end(const unsigned char *buf, size_t len,
    size_t *scanned);

/*
 * Parses the head[0, len) that ngx_wsp_head_end() delimited, empty line
 * included.  accept is the expected Sec-WebSocket-Accept value
 * (NGX_WSP_ACCEPT_LEN bytes, compared exactly).  Returns a NGX_WSP_HEAD_*
 * value and fills r: for a status other than 101 (NGX_WSP_HEAD_STATUS),
 * how its body ends (RFC 9112 6.3, from Transfer-Encoding and
 * Content-Length only) in r->body and r->length.
 */
int ngx_wsp_response_parse(const unsigned char *head, size_t len,
    const unsigned char *accept, ngx_wsp_response_t *r);

/*
 * 1 when the comma-separated list value[0, len) has an element equal to
 * token[0, tlen) case-insensitively, SP and HTAB around elements ignored.
 * An empty token matches nothing.
 */
int ngx_wsp_has_token(const unsigned char *value, size_t len,
    const char *token, size_t tlen);

/*
 * The header line at *pos, up to end: returns 1 with h filled and *pos
 * moved past the line, 0 at the empty line that ends the head (*pos moved
 * past it), -1 when the line breaks the rules above (h->name is then the
 * line, up to its first CR, LF or NUL).
 */
int ngx_wsp_header_next(const unsigned char **pos, const unsigned char *end,
    ngx_wsp_header_t *h);

/*
 * The chunked body src[0, len): returns 1 when it is complete (then *dlen
 * is the length of its data), 0 when more bytes are needed, -1 when it is
 * not a chunked body.  With dst not NULL the data of a complete body is
 * written there; dst may be src (the data never passes the bytes read).
 * Chunk extensions and trailers are read and left out.
 */
int ngx_wsp_chunked(const unsigned char *src, size_t len, unsigned char *dst,
    size_t *dlen);

/*
 * 1 when the comma-separated list value[0, len) has an element equal to
 * token[0, tlen) byte for byte (a subprotocol name), SP and HTAB around
 * elements ignored.  An empty token matches nothing.
 */
int ngx_wsp_has_element(const unsigned char *value, size_t len,
    const unsigned char *token, size_t tlen);

/*
 * Offers over several header lines are one offer (RFC 6455 4.1, 11.3.4;
 * RFC 9110 5.3: the lines of a list header combine, in order, into one
 * list).  ngx_wsp_list_header() says which list header name[0, nlen) is:
 * NGX_WSP_LIST_PROTOCOL, NGX_WSP_LIST_EXTENSIONS, or -1.
 * ngx_wsp_list_append() appends one line's value to the list dst[0, len)
 * as the lines combine ("foo" then "chat": "foo, chat"), SP and HTAB
 * around the value left out, an empty value adding nothing; it returns
 * the new length.  With dst NULL it only counts: a first pass over the
 * lines gives the size, a second one writes.
 */
int ngx_wsp_list_header(const unsigned char *name, size_t nlen);
size_t ngx_wsp_list_append(unsigned char *dst, size_t len,
    const unsigned char *value, size_t vlen);

/*
 * Gives one request header, as the HTTP parser split it, to the request
 * checks; headers the checks do not care about are ignored.
 */
void ngx_wsp_request_header(ngx_wsp_request_t *rq, const unsigned char *name,
    size_t nlen, const unsigned char *value, size_t vlen);

/*
 * After the last header: checks Upgrade, Connection, Sec-WebSocket-Version
 * (exactly one, "13") and Sec-WebSocket-Key (exactly one, 24 bytes of
 * base64 that decode to 16 bytes), in that order.  Returns NGX_WSP_REQ_OK
 * (rq->key is then the key), or the HTTP status to reject with and sets
 * rq->error and rq->error_arg.
 */
int ngx_wsp_request_check(ngx_wsp_request_t *rq);

/* 1 when k[0, len) is base64 (RFC 4648, padded) of exactly 16 bytes */
int ngx_wsp_key_valid(const unsigned char *k, size_t len);


/*
 * 1 when c may stand in an RFC 9110 token (tchar): header names, and the
 * names and values of Sec-WebSocket-Extensions' parameters (RFC 6455 9.1)
 */
int ngx_wsp_is_tchar(unsigned char c);


#endif /* _NGX_WSP_HANDSHAKE_H_INCLUDED_ */
