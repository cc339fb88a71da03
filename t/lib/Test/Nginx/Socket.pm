package Test::Nginx::Socket;

# The project's stand-in for OpenResty's Test::Nginx::Socket, used by
# util/run-tests only when the real one is not installed (Debian does not
# package it).  Same block format, sections, defaults, environment and
# assertion counts as the real one for what it supports; docs/testing.md
# lists the differences.  Written from the real one's documentation and
# behaviour; no code is shared.
#
# Every named sub here has a prototype: "use Test::Base -Base" runs
# Spiffy's source filter, which would add "my $self = shift;" to the others.

use Test::Base -Base;

use IO::Select;
use IO::Socket::INET;
use POSIX qw(EAGAIN EINTR EINPROGRESS);
use Time::HiRes qw(sleep time);
use Test::LongString;
use Digest::MD5 ();
use Digest::SHA ();
use JSON::PP ();

use Test::Nginx::Util;

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_test_cleanup_handler
    add_cleanup_handler add_response_body_check
);

our @ResponseBodyChecks;

$Test::Nginx::Util::RunTestHelper = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog = \&check_error_log;

sub set_http_config_filter ($) {
    $Test::Nginx::Util::FilterHttpConfig = shift;
}

sub add_response_body_check ($) {
    push @ResponseBodyChecks, shift;
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    return Test::More::like($got, $expected, $desc)
        if ref $expected && ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return is_string($got, $expected, $desc);
}

sub fmt_str ($) {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub unsupported ($$) {
    my ($block, $what) = @_;
    bail_out($block->name . " - $what is not supported by the project's "
             . "Test::Nginx stand-in (t/lib); install the real Test::Nginx");
}

# ---------------------------------------------------------------- request

# "--- more_headers": one "Key: value" a line, "#" lines ignored
sub more_headers_text ($) {
    my $in = shift;
    my ($out, $chunked) = ('', 0);
    for my $h (split /\n+/, $in // '') {
        next if $h =~ /^\s*#/;
        my ($k, $v) = split /:\s*/, $h, 2;
        next unless defined $k && length $k;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# "--- request": "METHOD [URI [VERSION]]" and an optional body below it;
# Host and Connection: close are added unless more_headers has them, and
# Content-Length for a body (which is then trimmed of surrounding blanks)
sub build_request ($) {
    my $block = shift;
    my $name = $block->name;

    my $raw = $block->raw_request;
    if (defined $raw) {
        return ref $raw eq 'ARRAY' ? [@$raw] : [$raw];
    }

    unsupported($block, '--- pipelined_requests')
        if defined $block->pipelined_requests;

    my $req = $block->request;
    bail_out("$name - request empty") unless defined $req;
    unsupported($block, 'an array of requests') if ref $req;

    1 while $req =~ s/^\s*#[^\n]+\s+|^\s+//s;

    my ($first, $body) = split /\n/, $req, 2;
    $body //= '';
    $first //= '';
    my ($meth, $uri, $ver) = split ' ', $first;
    bail_out("$name - Request line should be non-empty") unless defined $meth;
    $uri //= '/';
    $ver //= 'HTTP/1.1';

    my $more = $block->more_headers // '';
    unsupported($block, 'an array of more_headers') if ref $more;
    my ($hdrs, $chunked) = more_headers_text($more);

    my $head = '';
    $head .= "Host: $ServerName\r\n" unless $hdrs =~ /(?:^|\n)Host:/i;
    $head .= "Connection: close\r\n" unless $hdrs =~ /(?:^|\n)Connection/i;
    $head .= $hdrs;

    if (!$chunked && length $body && $hdrs !~ /(?:^|\n)Content-Length:/) {
        $body =~ s/^\s+|\s+$//gs;
        $head .= 'Content-Length: ' . length($body) . "\r\n";
    }

    return ["$meth $uri $ver\r\n$head\r\n$body"];
}

sub connect_server ($$) {
    my ($block, $timeout) = @_;
    my $name = $block->name;
    my $addr = $block->server_addr_for_client // $ServerAddr;
    my $deadline = time + 12 * $SlowFactor;
    my $tries = 0;

    while (1) {
        my $sock = IO::Socket::INET->new(PeerAddr => $addr,
                                         PeerPort => $ServerPortForClient,
                                         Proto => 'tcp',
                                         Timeout => $timeout);
        return $sock if $sock;

        my $err = $!;
        my $gone;
        if (defined $Test::Nginx::Util::ChildPid) {
            $gone = !is_running($Test::Nginx::Util::ChildPid);
        } elsif (!$NoNginxManager) {
            my $pid = get_pid_from_pidfile($name);
            $gone = !$pid || !is_running($pid);
        }

        if ($gone || time >= $deadline) {
            Test::More->builder->no_ending(1);
            Test::More::fail("$name - Can't connect to $addr:"
                             . "$ServerPortForClient: $err (aborted)\n");
            Test::More::diag(Test::Nginx::Util::tail_error_log(20));
            return undef;
        }

        $tries++;
        my $wait = sleep_time() * $tries;
        sleep($wait > 0.5 ? 0.5 : $wait);
    }
}

# sends the pieces and reads until the server closes the connection or
# stays silent for $timeout seconds; returns the raw response
sub send_request ($$$) {
    my ($block, $pieces, $timeout) = @_;
    my $name = $block->name;

    my $sock = connect_server($block, $timeout) or return undef;
    $sock->blocking(0);

    my $delay = parse_time($block->raw_request_middle_delay);
    my $sel = IO::Select->new($sock);
    my $resp = '';
    my $timed_out;

    my @out = @$pieces;
    my $first = 1;
  WRITE:
    while (@out) {
        my $buf = shift @out;
        sleep $delay if !$first && $delay;
        $first = 0;
        my $off = 0;
        while ($off < length $buf) {
            if (!$sel->can_write($timeout)) {
                $timed_out = 1;
                last WRITE;
            }
            my $n = syswrite($sock, $buf, length($buf) - $off, $off);
            if (!defined $n) {
                next if $! == EAGAIN || $! == EINTR;
                warn "$name - write failed: $!\n";
                $resp = "write failed: $!";
                last WRITE;
            }
            $off += $n;
        }
    }

    if (!$timed_out && defined(my $how = $block->shutdown)) {
        $how =~ s/^\s+|\s+$//g;
        shutdown($sock, length $how ? $how : 1);
    }

    while (!$timed_out) {
        if (!$sel->can_read($timeout)) {
            $timed_out = 1;
            last;
        }
        my $n = sysread($sock, my $chunk, 65536);
        if (!defined $n) {
            next if $! == EAGAIN || $! == EINTR;
            warn "WARNING: $name - HTTP response read failure: $!\n";
            last;
        }
        last if $n == 0;
        $resp .= $chunk;
    }

    close $sock;

    if ($timed_out) {
        if (defined $block->abort) {
            sleep 0.005;
        } else {
            Test::More->builder->no_ending(1);
            Test::More::fail("ERROR: client socket timed out - $name\n");
        }
    }

    return $resp;
}

# ---------------------------------------------------------------- response

# a minimal response object: code, header(name), content, raw head
sub parse_response ($$$) {
    my ($name, $raw, $head_req) = @_;
    my %res = (code => undef, headers => [], content => '', raw_headers => '');
    my $left;

    my ($head, $body);
    my $i = index($raw, "\r\n\r\n");
    if ($i >= 0) {
        $head = substr($raw, 0, $i);
        $body = substr($raw, $i + 4);
        $res{raw_headers} = substr($raw, 0, $i + 2);
    } else {
        ($head, $body) = ($raw, '');
    }

    my @lines = split /\r?\n/, $head;
    my $status = shift(@lines) // '';
    if ($status =~ m{^HTTP/\d+(?:\.\d+)?\s+(\d+)}) {
        $res{code} = $1;
    }

    for my $l (@lines) {
        if ($l =~ /^[ \t]/ && @{ $res{headers} }) {
            $res{headers}[-1][1] .= " $l";      # folded line
            next;
        }
        my ($k, $v) = $l =~ /^([^:]+?)\s*:\s*(.*?)\s*$/ or next;
        push @{ $res{headers} }, [$k, $v];
    }

    my $res = bless \%res, 'Test::Nginx::Socket::Response';
    $res->{content} = $body;

    my $code = $res{code} // 0;
    return ($res, $left) if $code == 101 || $code == 304;

    my $te = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');

    if (defined $te && $te eq 'chunked') {
        my @trailers = map { split /\s*,\s*/ } $res->header_all('Trailer');
        my $decoded = '';
        pos($body) = 0;

        while (1) {
            if ($body =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    if ($body !~ /\G\Q$t\E: [^\n]*\r\n/gc) {
                        Test::More->builder->no_ending(1);
                        Test::More::fail("$name - invalid trailer data "
                                         . "received (expected $t).");
                        return;
                    }
                }
                if ($body !~ /\G\r\n/gc) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(expected CRLF).");
                    return;
                }
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }

            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*(?:;[^\r\n]*)?\r\n/gc) {
                my $size = hex $1;
                my $at = pos $body;
                if (length($body) - $at < $size) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(not enough octets for the data "
                                     . "section)");
                    return;
                }
                $decoded .= substr($body, $at, $size);
                pos($body) = $at + $size;
                if ($body !~ /\G\r\n/gc) {
                    Test::More->builder->no_ending(1);
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(expected CRLF).");
                    return;
                }
                next;
            }

            Test::More->builder->no_ending(1);
            if ($body =~ /\G(.+)/gcs) {
                Test::More::fail("$name - invalid chunked body received: $1");
            } else {
                Test::More::fail("$name - no last chunk found - $body");
            }
            return;
        }

        $res->{content} = $decoded;

    } elsif (defined $len && $len =~ /^\d+$/) {
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got " . length($body) . "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr($body, $len);
            $res->{content} = substr($body, 0, $len);
        }
    }

    return ($res, $left);
}

# one element of an array-valued section per request (one request here)
sub indexed ($) {
    my $v = shift;
    return ref $v eq 'ARRAY' ? $v->[0] : $v;
}

sub check_error_code ($$) {
    my ($block, $res) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';

    if (defined $block->error_code_like) {
        my $pat = indexed($block->error_code_like);
        Test::More::like($got, qr/$pat/sm, "$name - status code ok");
    } elsif (defined $block->error_code) {
        Test::More::is($got, indexed($block->error_code),
                       "$name - status code ok");
    } else {
        Test::More::is($got, 200, "$name - status code ok");
    }
}

sub check_raw_response_headers ($$) {
    my ($block, $res) = @_;
    my $name = $block->name;
    my $raw = $res ? $res->{raw_headers} : '';

    if (defined(my $p = $block->raw_response_headers_like)) {
        $p = indexed($p);
        Test::More::like($raw, qr/$p/s, "$name - raw resp headers like");
    }
    if (defined(my $p = $block->raw_response_headers_unlike)) {
        $p = indexed($p);
        Test::More::unlike($raw, qr/$p/s, "$name - raw resp headers unlike");
    }
}

# "Key: value" a line, "!Key" for a header that must be absent; a key
# given twice counts once (the last wins), as in the real one
sub expected_headers ($) {
    my $text = shift;
    my (@order, %h);
    for my $l (split /\n/, $text // '') {
        $l =~ s/^\s+|\s+$//g;
        my ($key, $val);
        if ($l =~ s/^!\s*//) {
            $key = $l;
        } else {
            ($key, $val) = split /\s*:\s*/, $l, 2;
            $key //= '';
        }
        push @order, $key unless exists $h{$key};
        $h{$key} = $val;
    }
    return map { [$_, $h{$_}] } @order;
}

sub check_response_headers ($$) {
    my ($block, $res) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        for my $kv (expected_headers(indexed($block->response_headers))) {
            my ($key, $val) = @$kv;
            if (!defined $val) {
                my $raw = $res ? $res->{raw_headers} : '';
                Test::More::unlike($raw, qr/^\s*\Q$key\E\s*:/ms,
                    "$name - header $key not present in the raw headers");
                next;
            }
            $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $val =~ s/\$ServerPort\b/$ServerPort/g;
            my $got = $res ? $res->header($key) : undef;
            Test::More::is($got // '', $val, "$name - header $key ok");
        }

    } elsif (defined $block->response_headers_like) {
        for my $kv (expected_headers(indexed($block->response_headers_like))) {
            my ($key, $val) = @$kv;
            $val //= '';
            my $got = $res ? $res->header($key) : undef;
            Test::More::like($got // '', qr/^$val$/,
                             "$name - header $key like ok");
        }
    }
}

sub run_body_filter ($$$) {
    my ($block, $f, $s) = @_;
    return $f->($s) if ref $f eq 'CODE';
    my %named = (
        md5_hex => sub { Digest::MD5::md5_hex($_[0]) },
        sha1_hex => sub { Digest::SHA::sha1_hex($_[0]) },
        uc => sub { uc $_[0] }, lc => sub { lc $_[0] },
        ucfirst => sub { ucfirst $_[0] }, lcfirst => sub { lcfirst $_[0] },
        length => sub { length $_[0] },
    );
    my $code = !ref $f && $named{$f}
        or bail_out($block->name . " - unknown filter, \"$f\", specified "
                    . "in the --- response_body_filters section");
    return $code->($s);
}

sub transform_response_body ($$) {
    my ($block, $res) = @_;
    my $filters = $block->response_body_filters;
    return unless $res && defined $filters;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//g;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    $filters = $filters->[0] if ref $filters->[0] eq 'ARRAY';

    my $s = $res->content;
    $s = run_body_filter($block, $_, $s) for @$filters;
    $res->{content} = $s;
}

sub check_response_body ($$$) {
    my ($block, $res, $rep) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;

    if (defined $content) {
        # what an LWP-era client may have echoed back; kept for parity
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        if (defined $content && defined $block->response_body_json_sort) {
            my $js = JSON::PP->new->canonical(1)->loose(1);
            my $obj = eval { $js->decode($content) };
            $content = $js->encode($obj) . "\n" if !$@ && ref $obj;
        }

        my $expected;
        if ($block->response_body_eval) {
            $expected = eval indexed($block->response_body_eval);
            warn $@ if $@;
        } else {
            $expected = indexed($block->response_body);
        }

        if (defined $block->charset && defined $expected) {
            require Encode;
            Encode::from_to($expected, 'UTF-8', $block->charset);
        }

        if (defined $expected && !ref $expected) {
            $expected =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $expected =~ s/\$ServerPort\b/$ServerPort/g;
            $expected = expand_env_in_text($expected, $name);
        }

        my $desc = "$name - response_body - response is expected "
                   . "(repeated req $rep, req 0)";
        if (ref $expected) {
            Test::More::like($content, $expected,
                "$name - response_body - like (repeated req $rep, req 0)");
        } elsif ($NoLongString) {
            is($content, $expected, $desc);
        } else {
            is_string($content, $expected, $desc);
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $like = defined $block->response_body_like;
        my $pat = indexed($like ? $block->response_body_like
                                : $block->response_body_unlike);
        if (!ref $pat) {
            $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $pat =~ s/\$ServerPort\b/$ServerPort/g;
        }
        my $type = $like ? 'like' : 'unlike';
        my $summary = trim($content) // '';
        my $desc = "$name - response_body_$type - response is expected "
                   . "($summary)";
        if ($like) {
            Test::More::like($content, qr/$pat/s, $desc);
        } else {
            Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $content, 0, $rep, undef);
    }
}

# ---------------------------------------------------------------- the logs

sub as_patterns ($) {
    my $pats = shift;
    return [] unless defined $pats;
    if (!ref $pats) {
        chomp $pats;
        return [grep { length } split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub line_matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

sub value_contains ($$);

sub value_contains ($$) {
    my ($val, $s) = @_;
    return 0 unless defined $val;
    return scalar grep { value_contains($_, $s) } @$val
        if ref $val eq 'ARRAY';
    return index("$val", $s) >= 0;
}

# one assertion per pattern: passes when a line matches
sub check_log_has ($$$$$) {
    my ($block, $pats, $lines, $what, $rep) = @_;
    my $name = $block->name;
    for my $pat (@{ as_patterns($pats) }) {
        next unless defined $pat;
        if (grep { line_matches($_, $pat) } @$lines) {
            Test::More::pass("$name - pattern \"$pat\" matches a line in "
                             . "$what (req $rep)");
        } else {
            Test::More::fail("$name - pattern \"$pat\" should match a line "
                             . "in $what (req $rep)");
        }
    }
}

# one assertion per pattern when it matches nothing; one failure per
# matching line otherwise (the plan is then off, as in the real one)
sub check_log_lacks ($$$$$) {
    my ($block, $pats, $lines, $what, $rep) = @_;
    my $name = $block->name;
    for my $pat (@{ as_patterns($pats) }) {
        next unless defined $pat;
        my @hits = grep { line_matches($lines->[$_], $pat) } 0 .. $#$lines;
        if (!@hits) {
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in $what (req $rep)");
            next;
        }
        Test::More->builder->no_ending(1) if @hits > 1;
        for my $i (@hits) {
            my $end = $i + 10 < $#$lines ? $i + 10 : $#$lines;
            Test::More::fail("$name - pattern \"" . fmt_str($pat)
                . "\" should not match any line in $what but matches line \""
                . fmt_str($lines->[$i]) . "\" (req $rep)\n"
                . join('', @$lines[$i + 1 .. $end]));
        }
    }
}

# under valgrind nginx is slow: wait (up to the socket timeout) for the
# lines an error_log / grep_error_log_out check expects
sub await_log ($$) {
    my ($block, $lines) = @_;
    return $lines unless $SlowFactor > 1;

    my $pats = as_patterns($block->error_log);
    my $deadline = time + timeout() * $SlowFactor;
    my @all = @$lines;

    while (time < $deadline) {
        my $missing = grep {
            my $p = $_;
            !grep { line_matches($_, $p) } @all
        } @$pats;
        return \@all unless $missing;
        sleep 0.2;
        push @all, @{ error_log_data() };
    }
    return \@all;
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $rep, $need_array) = @_;
    my $name = $block->name;
    my $lines;

    my $grep = $block->grep_error_log;
    $grep = $grep->[$rep] if ref $grep eq 'ARRAY';

    if (!defined $block->grep_error_log && defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but "
                 . "--- grep_error_log_out is defined");
    }

    if (defined $grep) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but "
                 . "--- grep_error_log is defined") unless defined $expected;
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        $expected = expand_env_in_text($expected, $name) unless ref $expected;

        $lines ||= await_log($block, error_log_data());

        # the first match of each line, if it holds no newline
        my $out = '';
        for my $line (@$lines) {
            my $m;
            if (ref $grep) {
                $m = $& if $line =~ $grep;
            } elsif (index($line, $grep) >= 0) {
                $m = $grep;
            }
            $out .= "$m\n" if defined $m && $m !~ /\n/;
        }

        my $desc = "$name - grep_error_log_out (req $rep)";
        if (ref $expected eq 'Regexp') {
            Test::More::like($out, $expected, $desc);
        } elsif ($NoLongString) {
            is($out, $expected, $desc);
        } else {
            is_string($out, $expected, $desc);
        }
    }

    my %warn = map { $_ => 1 } ('[alert]', '[crit]', '[emerg]',
                                'writing a global lua variable');
    for my $sec ($block->error_log, $block->no_error_log) {
        next unless defined $sec;
        for my $k (keys %warn) {
            (my $prefix = $k) =~ s/\]$//;
            delete $warn{$k} if value_contains($sec, $prefix);
        }
    }

    if (defined $block->error_log) {
        $lines ||= await_log($block, error_log_data());
        check_log_has($block, $block->error_log, $lines, 'error.log', $rep);
    }

    if (defined $block->no_error_log) {
        $lines ||= error_log_data();
        check_log_lacks($block, $block->no_error_log, $lines, 'error.log',
                        $rep);
    }

    $lines ||= error_log_data();

    # not assertions in the real one either: warnings on stderr
    for my $k (sort keys %warn) {
        for my $line (@$lines) {
            warn "WARNING: $name - " . fmt_str($line) . "\n"
                if index($line, $k) >= 0;
        }
    }

    for my $line (@$lines) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            Test::More->builder->no_ending(1);
            chomp(my $l = $line);
            Test::More::fail("$name - $l\n");
        }
    }
}

sub check_access_log ($$) {
    my ($block, $rep) = @_;
    return unless defined $block->access_log || defined $block->no_access_log;
    my $lines = access_log_data();
    check_log_has($block, $block->access_log, $lines, 'access.log', $rep)
        if defined $block->access_log;
    check_log_lacks($block, $block->no_access_log, $lines, 'access.log', $rep)
        if defined $block->no_access_log;
}

# ---------------------------------------------------------------- a block

# one request of a block (one of its repeat_each() runs): status, headers,
# body, then after --- wait the error (and access) log
sub run_test_helper ($$$) {
    my ($block, $dry_run, $rep) = @_;
    my $name = $block->name;

    for my $s (qw(http2 http3 tcp_listen udp_listen)) {
        unsupported($block, "--- $s") if defined $block->$s;
    }

    my $pieces = build_request($block);

    my $timeout = parse_time($block->timeout) // timeout();
    $timeout *= $SlowFactor;

    my $head_req = join('', @$pieces) =~ /^\s*HEAD\s+/ ? 1 : 0;
    my $raw = send_request($block, $pieces, $timeout) // '';

    if (!defined $block->ignore_response) {
        my ($res, $left) = parse_response($name, $raw, $head_req);

        if (defined $left && length $left) {
            (my $l = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
            warn "WARNING: $name - unexpected extra bytes after last chunk "
                 . "in response: \"$l\"\n";
        }

        check_error_code($block, $res);
        check_raw_response_headers($block, $res);
        check_response_headers($block, $res);
        transform_response_body($block, $res);
        check_response_body($block, $res, $rep);
    }

    if (defined(my $w = parse_time($block->wait))) {
        sleep $w if $w;
    }

    check_error_log($block, undef, undef, $rep, 0);
    check_access_log($block, $rep) unless defined $block->ignore_response;
}

package Test::Nginx::Socket::Response;

sub code ($) { $_[0]{code} }
sub content ($) { $_[0]{content} }

sub header_all ($$) {
    my ($self, $name) = @_;
    return map { $_->[1] } grep { lc $_->[0] eq lc $name } @{ $self->{headers} };
}

# like HTTP::Headers: the values of a repeated header joined with ", "
sub header ($$) {
    my ($self, $name) = @_;
    my @v = $self->header_all($name);
    return @v ? join(', ', @v) : undef;
}

1;
