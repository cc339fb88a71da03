# vim:set ts=4 sts=4 sw=4 et ft=:

# The dashboard (issue 25, item 5): html/ws_proxy_status.html, compiled
# into the module (src/ops/ngx_http_ws_proxy_page.h, util/embed-page),
# served by a ws_proxy_status location for ?format=html or to a browser
# (Accept: text/html) that names no format and none of the console's JSON
# answers; the Prometheus text and ?format=json stay as they were.  The
# page in Chromium, closing a session from it: t/e2e/dashboard.mjs
# (t/038-dashboard-browser.t).

use lib '.';
use t::WsProxy;

plan 'no_plan';

our $page = do {
    local $/;
    open my $f, '<', 'html/ws_proxy_status.html' or die "html/: $!";
    <$f>;
};

# the header compiled in is the page (util/embed-page after an edit)
Test::More::is(`util/embed-page --check`,
               "src/ops/ngx_http_ws_proxy_page.h matches "
               . "html/ws_proxy_status.html\n",
               'the compiled-in page is html/ws_proxy_status.html');

# self-contained: nothing loaded from anywhere (no CDN, no font, no image)
Test::More::unlike($page, qr{<(?:link|img|iframe|object|embed)\b|<script[^>]*\bsrc=|\@import|url\(|https?://}i,
                   'the page loads no external asset');

# what the page reads: the location's own answers (docs/api.md, "Sessions")
Test::More::like($page, qr/'format=json'/, 'the page polls ?format=json');
Test::More::like($page, qr/'\?tap=' \+ encodeURIComponent/,
                 'the page opens ?tap=<id>');

our $Status = q{
    location /status { ws_proxy_status; }
    location = /exact { ws_proxy_status; }
};

add_block_preprocessor(sub {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config",
                          $t::WsProxy::HttpConfig . "ws_proxy_zone wsp 64k;\n");
    }

    if (!defined $block->config) {
        $block->set_value("config", $Status);
    }
});

run_tests();

__DATA__

=== TEST 1: ?format=html: the page, byte for byte, with headers that keep it to its own origin
--- request
GET /status?format=html
--- response_headers
Content-Type: text/html; charset=utf-8
Cache-Control: no-store
X-Content-Type-Options: nosniff
Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'
--- response_body eval
$::page
--- no_error_log
[error]



=== TEST 2: a browser's Accept (text/html) without format= gets the page, in an exact location too
--- request
GET /exact
--- more_headers
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8
--- response_headers
Content-Type: text/html; charset=utf-8
--- response_body_like eval
qr{^<!DOCTYPE html>.*<title>ws_proxy sessions</title>.*</html>\n\z}s
--- no_error_log
[error]



=== TEST 3: format=json wins over Accept: text/html
--- request
GET /status?format=json
--- more_headers
Accept: text/html
--- response_headers
Content-Type: application/json
--- response_body_like eval
qr/^\{"zone":"wsp","keys":\{/
--- no_error_log
[error]



=== TEST 4: without Accept: text/html, the Prometheus text as before
--- request
GET /status
--- more_headers
Accept: */*
--- response_headers
Content-Type: text/plain; version=0.0.4
--- response_body_like eval
qr/^# HELP ws_proxy_sessions_open /
--- no_error_log
[error]



=== TEST 5: a browser on one of the console's answers (?sessions) does not get the page
--- request
GET /status?sessions&key=a
--- more_headers
Accept: text/html
--- response_headers_like
Content-Type: (?!text/html).*
--- no_error_log
[error]



=== TEST 6: nor on a session's (?session=<id>): the console's 404 in JSON
--- request
GET /status?session=x
--- more_headers
Accept: text/html
--- error_code: 404
--- response_headers_like
Content-Type: (?!text/html).*
--- no_error_log
[error]



=== TEST 7: HEAD ?format=html: the page's headers and length, no body
--- request
HEAD /status?format=html
--- response_headers eval
"Content-Type: text/html; charset=utf-8\nContent-Length: " . length($::page)
--- response_body eval
""
--- no_error_log
[error]



=== TEST 8: another format, or an argument that only ends as format, is not the page
--- request
GET /status?xformat=html&format=htmlx
--- response_headers
Content-Type: text/plain; version=0.0.4
--- no_error_log
[error]
