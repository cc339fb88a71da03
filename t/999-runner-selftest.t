# vim:set ts=4 sts=4 sw=4 et ft=:
#
# Self-test of the Test::Nginx runner (the real one or the stand-in in
# t/lib): sections, eval values, repeat_each() and exact assertion counts.
# Every block makes exactly 6 assertions, so the plan below only holds if
# the runner counts them the way the real Test::Nginx::Socket does.

use Test::Nginx::Socket::Lua;

$ENV{TEST_NGINX_SELFTEST_WORD} = 'wordy';

repeat_each(2);

plan tests => repeat_each() * (blocks() * 6);

run_tests();

__DATA__

=== TEST 1: plain return, $TEST_NGINX_* substitution
--- config
    location = /t {
        return 200 "hello $TEST_NGINX_SELFTEST_WORD\n";
    }
--- request
GET /t
--- response_body
hello wordy
--- no_error_log
[error]
[alert]
[crit]
[emerg]



=== TEST 2: a line in the error log (string pattern)
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.ERR, "selftest: marker one")
            ngx.say("logged")
        }
    }
--- request
GET /t
--- response_body_like: ^logged$
--- error_log
selftest: marker one
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 3: error code, eval'd regex in error_log
--- config
--- request
GET /nope.html
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log eval
qr{open\(\) ".*/html/nope\.html" failed}
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 4: more_headers, response_headers
--- config
    location = /t {
        add_header X-Echo $http_x_foo;
        return 200 "port $TEST_NGINX_SERVER_PORT got $http_x_foo\n";
    }
--- request
GET /t
--- more_headers
X-Foo: bar
--- response_headers
X-Echo: bar
--- response_body
port $TEST_NGINX_SERVER_PORT got bar
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 5: raw_request (HTTP/1.0), a header that must be absent
--- config
    location = /raw {
        content_by_lua_block {
            ngx.say("raw ", ngx.req.http_version())
        }
    }
--- raw_request eval
"GET /raw HTTP/1.0\r\nHost: localhost\r\n\r\n"
--- response_headers
!Transfer-Encoding
--- response_body
raw 1
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 6: grep_error_log with a string
--- config
    location = /t {
        content_by_lua_block {
            for i = 1, 3 do
                ngx.log(ngx.WARN, "selftest: tick")
            end
            ngx.say("ticked")
        }
    }
--- request
GET /t
--- response_body
ticked
--- grep_error_log chop
selftest: tick
--- grep_error_log_out
selftest: tick
selftest: tick
selftest: tick
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 7: grep_error_log with a regex, exact output
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.INFO, "selftest: counter=1 (first)")
            ngx.log(ngx.INFO, "selftest: counter=2 (second)")
            ngx.say("counted")
        }
    }
--- request
GET /t
--- response_body
counted
--- grep_error_log eval: qr/selftest: counter=\d+/
--- grep_error_log_out
selftest: counter=1
selftest: counter=2
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 8: a chunked response, grep_error_log_out as a regex
--- config
    location = /t {
        content_by_lua_block {
            ngx.say("one")
            ngx.flush(true)
            ngx.log(ngx.INFO, "selftest: chunk one")
            ngx.say("two")
            ngx.log(ngx.INFO, "selftest: chunk two")
        }
    }
--- request
GET /t
--- response_body
one
two
--- grep_error_log eval: qr/selftest: chunk \w+/
--- grep_error_log_out eval
qr/\Aselftest: chunk one\nselftest: chunk two\n\z/
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 9: timeout with abort and ignore_response, then wait
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.WARN, "selftest: before sleep")
            ngx.sleep(0.5)
            ngx.log(ngx.WARN, "selftest: slept")
        }
    }
--- request
GET /t
--- timeout: 0.2
--- abort
--- ignore_response
--- wait: 0.6
--- error_log eval
[qr/selftest: slept\b/, "selftest: before sleep"]
--- no_error_log
[error]
[alert]
[crit]
[emerg]



=== TEST 10: --- log_level
--- config
    location = /t {
        content_by_lua_block {
            ngx.log(ngx.INFO, "selftest: quiet")
            ngx.log(ngx.WARN, "selftest: loud")
        }
    }
--- log_level: warn
--- request
GET /t
--- error_log
selftest: loud
--- no_error_log
selftest: quiet
[alert]
[crit]
[emerg]



=== TEST 11: request body; response_body eval regex wins over _unlike
--- config
    location = /echo {
        content_by_lua_block {
            ngx.req.read_body()
            local body = ngx.req.get_body_data()
            ngx.log(ngx.WARN, "selftest: body length ", #body)
            ngx.print("got: ", body)
        }
    }
--- request
POST /echo
hello body
--- response_body eval
qr/^got: hello body$/
--- response_body_unlike: .
--- error_log
selftest: body length 10
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 12: a line logged after the response, --- wait
--- config
    location = /t {
        content_by_lua_block {
            ngx.timer.at(0.2, function ()
                ngx.log(ngx.WARN, "selftest: timer fired")
            end)
            ngx.say("ok")
        }
    }
--- request
GET /t
--- wait: 0.5
--- response_body
ok
--- error_log
selftest: timer fired
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 13: error_code_like, response_body_unlike
--- config
    location = /t {
        return 204;
    }
--- request
GET /t
--- error_code_like: ^2\d\d$
--- response_body_unlike: .
--- no_error_log
[error]
[alert]
[crit]
[emerg]



=== TEST 14: user_files, response_headers_like
--- config
--- user_files
>>> static.txt
static content
--- request
GET /static.txt
--- response_headers_like
Content-Length: \d+
--- response_body
static content
--- no_error_log
[alert]
[crit]
[emerg]
