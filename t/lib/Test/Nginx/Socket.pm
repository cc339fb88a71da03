package Test::Nginx::Socket;

# A small stand-in for OpenResty's Test::Nginx::Socket, used by util/run-tests
# only when the real one is not installed (Debian does not package it).  It
# reads the same block format and keeps the same semantics for the sections
# this project's suites use; see docs/testing.md for what it does not do.

use strict;
use warnings;

use Test::Base -Base;
use Time::HiRes qw(sleep time);
use IO::Socket::INET;
use IO::Select;
use POSIX qw(:sys_wait_h);
use File::Path qw(make_path remove_tree);
use File::Spec;
use Cwd qw(cwd);

our @EXPORT = qw(
    run_tests run_test repeat_each no_long_string no_shuffle log_level
    workers master_on master_off master_process_enabled
    add_block_preprocessor server_root html_dir server_port no_root_location
    env_to_nginx worker_connections check_accum_error_log
    $ServerPort $ServerPortForClient $ServRoot $LogLevel
);

our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                  || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                    || File::Spec->catdir(cwd(), 't',
                                                          'servroot'));
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';

my $RepeatEach = 1;
my $Workers = 1;
my $MasterOn = 0;
my $WorkerConnections = 64;
my $NoRootLocation = 0;
my @BlockPreprocessors;
my @EnvToNginx;
my $UseValgrind = $ENV{TEST_NGINX_USE_VALGRIND};
my $Binary = $ENV{TEST_NGINX_BINARY} || 'nginx';
my $NginxPid;

$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
$ENV{TEST_NGINX_HTML_DIR} = "$ServRoot/html";

sub repeat_each (@) {
    $RepeatEach = shift if @_;
    return $RepeatEach;
}

sub no_long_string () { }
sub no_shuffle () { }
sub check_accum_error_log () { }
sub no_root_location () { $NoRootLocation = 1 }
sub log_level ($) { $LogLevel = shift }
sub workers ($) { $Workers = shift }
sub worker_connections ($) { $WorkerConnections = shift }
sub master_on () { $MasterOn = 1 }
sub master_off () { $MasterOn = 0 }
sub master_process_enabled (@) { $MasterOn = shift if @_; $MasterOn }
sub server_root () { $ServRoot }
sub html_dir () { "$ServRoot/html" }
sub server_port () { $ServerPort }
sub env_to_nginx (@) { push @EnvToNginx, @_ }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }


# $TEST_NGINX_FOO in config sections becomes the environment's value
sub expand_env ($) {
    my $s = shift;
    return $s unless defined $s;
    $s =~ s/\$(TEST_NGINX_[_A-Z0-9]+)/
            defined $ENV{$1} ? $ENV{$1}
                             : die "environment variable $1 not set\n"/ge;
    return $s;
}


sub section ($$) {
    my ($block, $name) = @_;
    return undef unless $block->can($name);
    my $v = $block->$name;
    return $v;
}


sub as_list ($) {
    my $v = shift;
    return () unless defined $v;
    return @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return grep { length } split /\n/, $v;
}


sub write_config ($) {
    my $block = shift;

    remove_tree($ServRoot) unless $ENV{TEST_NGINX_NO_CLEAN};
    make_path("$ServRoot/conf", "$ServRoot/logs", "$ServRoot/html");

    my $level = section($block, 'log_level') // $LogLevel;
    chomp $level;

    my $modules = '';
    for my $m (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} || '') {
        $modules .= "load_module $m;\n";
    }

    my $main = expand_env(section($block, 'main_config') // '');
    my $http = expand_env(section($block, 'http_config') // '');
    my $config = expand_env(section($block, 'config') // '');
    my $env = join '', map { "env $_;\n" } @EnvToNginx;
    my $root = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $ServRoot/html;
            index index.html index.htm;
        }
_EOC_

    my $master = ($MasterOn || $Workers > 1) ? 'on' : 'off';
    my $daemon = $UseValgrind ? 'off' : 'on';

    my $user_files = section($block, 'user_files');
    if (defined $user_files) {
        my @files = ref $user_files eq 'ARRAY' ? @$user_files : ();
        if (!@files) {
            while ($user_files =~ /^>>> (\S+)\n(.*?)(?=^>>> |\z)/msg) {
                push @files, [$1, $2];
            }
        }
        for my $f (@files) {
            my ($name, $body) = @$f;
            my $path = "$ServRoot/html/$name";
            (my $dir = $path) =~ s{/[^/]+$}{};
            make_path($dir);
            open my $fh, '>', $path or die "$path: $!";
            print $fh $body;
            close $fh;
        }
    }

    open my $out, '>', "$ServRoot/conf/nginx.conf"
        or die "cannot write nginx.conf: $!";

    print $out <<"_EOC_";
$modules
worker_processes $Workers;
daemon $daemon;
master_process $master;
error_log $ServRoot/logs/error.log $level;
pid $ServRoot/logs/nginx.pid;
$env
$main

events {
    worker_connections $WorkerConnections;
}

http {
    access_log $ServRoot/logs/access.log;
    default_type text/plain;
    keepalive_timeout 68;
    client_body_temp_path $ServRoot/client_body_temp;
    proxy_temp_path $ServRoot/proxy_temp;
    fastcgi_temp_path $ServRoot/fastcgi_temp;
    uwsgi_temp_path $ServRoot/uwsgi_temp;
    scgi_temp_path $ServRoot/scgi_temp;

$http

    server {
        listen $ServerPort;
        server_name localhost;
        client_max_body_size 30M;

$root
$config
    }
}
_EOC_

    close $out;
}


sub stop_nginx () {
    my $pidfile = "$ServRoot/logs/nginx.pid";
    my $pid = $NginxPid;

    if (!$pid && -f $pidfile) {
        open my $in, '<', $pidfile or return;
        $pid = <$in>;
        close $in;
        chomp $pid if defined $pid;
    }

    return unless $pid && $pid =~ /^\d+$/;

    kill 'QUIT', $pid;

    my $deadline = time + ($UseValgrind ? 30 : 5);
    while (time < $deadline) {
        waitpid($pid, WNOHANG);
        last unless kill 0, $pid;
        sleep 0.02;
    }

    if (kill 0, $pid) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }

    undef $NginxPid;
}


# listening, seen from /proc so that no probe connection shows in the log
sub port_open () {
    my $hex = sprintf '%04X', $ServerPort;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $in, '<', $f or next;
        while (<$in>) {
            return 1 if /^\s*\d+: [0-9A-F]+:$hex [0-9A-F]+:0000 0A /;
        }
        close $in;
    }
    return 0;
}


sub start_nginx ($) {
    my $block = shift;
    my $conf = "$ServRoot/conf/nginx.conf";
    my @cmd = ($Binary, '-p', "$ServRoot/", '-c', $conf);

    if ($UseValgrind) {
        my @vg = ('valgrind', '-q', '--tool=memcheck', '--leak-check=full',
                  '--show-leak-kinds=definite',
                  '--errors-for-leak-kinds=definite', '--num-callers=30',
                  "--log-file=$ServRoot/logs/valgrind.%p.log");
        my $supp = File::Spec->catfile(cwd(), 't', 'valgrind.suppress');
        push @vg, "--suppressions=$supp" if -f $supp;
        @cmd = (@vg, @cmd);

        my $pid = fork;
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            open STDOUT, '>>', "$ServRoot/logs/stdout.log";
            open STDERR, '>>', "$ServRoot/logs/stderr.log";
            exec @cmd or die "exec: $!";
        }

        $NginxPid = $pid;

        my $deadline = time + 60;
        while (time < $deadline) {
            return 1 if port_open();
            if (waitpid($pid, WNOHANG) == $pid) {
                undef $NginxPid;
                return 0;
            }
            sleep 0.1;
        }

        return 0;
    }

    my $rc = system(@cmd);
    return 0 if $rc != 0;

    my $deadline = time + 5;
    while (time < $deadline) {
        return 1 if port_open();
        sleep 0.01;
    }

    return 0;
}


# sends the request, returns (status, headers hashref, body, raw, error)
sub send_request ($$) {
    my ($block, $timeout) = @_;

    my $raw = section($block, 'raw_request');
    my $req;

    if (defined $raw) {
        $req = ref $raw eq 'ARRAY' ? join('', @$raw) : $raw;

    } else {
        my $r = section($block, 'request');
        $r = join '', @$r if ref $r eq 'ARRAY';
        $r =~ s/^\s+//;
        my ($line, $body) = split /\n/, $r, 2;
        $body //= '';
        $line =~ s/\s+$//;
        $line .= ' HTTP/1.1' unless $line =~ m{ HTTP/\d};

        my $headers = "Host: localhost\r\nConnection: close\r\n";
        my $more = section($block, 'more_headers');
        if (defined $more) {
            for my $h (split /\n/, expand_env($more)) {
                next unless $h =~ /\S/;
                $headers .= "$h\r\n";
            }
        }

        if (length $body) {
            chomp $body if $block->{chomp_body};
            $headers .= "Content-Length: " . length($body) . "\r\n";
        }

        $req = "$line\r\n$headers\r\n$body";
    }

    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ServerPortForClient,
                                     Proto => 'tcp', Timeout => 5)
        or return (undef, {}, '', '', "connect: $!");

    $sock->autoflush(1);
    print $sock $req;

    my $sel = IO::Select->new($sock);
    my $data = '';
    my $deadline = time + $timeout;
    my $timed_out = 0;

    while (1) {
        my $left = $deadline - time;
        if ($left <= 0) {
            $timed_out = 1;
            last;
        }

        last if response_complete($data);

        my @ready = $sel->can_read($left);
        if (!@ready) {
            $timed_out = 1;
            last;
        }

        my $n = sysread($sock, my $buf, 65536);
        last if !$n;
        $data .= $buf;
    }

    close $sock;

    my ($status, $headers, $body) = parse_response($data);
    return ($status, $headers, $body, $data,
            $timed_out ? 'timeout' : undef);
}


sub response_complete ($) {
    my $data = shift;
    my $i = index($data, "\r\n\r\n");
    return 0 if $i < 0;

    my $head = substr($data, 0, $i);
    my $body = substr($data, $i + 4);

    return 0 if $head =~ m{^HTTP/1\.\d 101}; # a 101 lasts until closed

    if ($head =~ /^Content-Length:\s*(\d+)/mi) {
        return length($body) >= $1;
    }

    if ($head =~ /^Transfer-Encoding:\s*chunked/mi) {
        return $body =~ /(?:^|\r\n)0\r\n(?:.*?\r\n)?\r\n\z/s;
    }

    return 0;
}


sub parse_response ($) {
    my $data = shift;
    my $i = index($data, "\r\n\r\n");
    return (undef, {}, '') if $i < 0;

    my $head = substr($data, 0, $i);
    my $body = substr($data, $i + 4);
    my @lines = split /\r\n/, $head;
    my $sl = shift @lines;
    my ($status) = $sl =~ m{^HTTP/\d\.\d (\d+)};
    my %h;

    for my $l (@lines) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*)$/ or next;
        $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
    }

    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($body =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($body, 0, $n);
            $body = substr($body, $n + 2);
        }
        $body = $out;
    }

    return ($status, \%h, $body);
}


sub read_log () {
    my $f = "$ServRoot/logs/error.log";
    open my $in, '<', $f or return ();
    my @lines = <$in>;
    close $in;
    return @lines;
}


sub matches ($$) {
    my ($line, $pat) = @_;
    return ref $pat eq 'Regexp' ? $line =~ $pat : index($line, $pat) >= 0;
}


sub check_block ($$) {
    my ($block, $rep) = @_;
    my $name = $block->name;
    $name .= " (repeat $rep)" if $RepeatEach > 1;

    write_config($block);

    if (!start_nginx($block)) {
        Test::More::fail("$name - nginx started");
        my @log = read_log();
        Test::More::diag(join '', grep { /emerg|alert|crit/ } @log);
        stop_nginx();
        return;
    }

    my $timeout = section($block, 'timeout') // 3;
    $timeout =~ s/\s+//g;
    $timeout *= 10 if $UseValgrind;

    my ($status, $headers, $body, $raw, $err);

    if (defined section($block, 'request')
        || defined section($block, 'raw_request'))
    {
        ($status, $headers, $body, $raw, $err) =
            send_request($block, $timeout);
    }

    my $abort = defined section($block, 'abort');

    if ($err && !($err eq 'timeout' && $abort)) {
        Test::More::fail("$name - request: $err");
    }

    my $wait = section($block, 'wait');
    if (defined $wait) {
        $wait =~ s/\s+//g;
        sleep($UseValgrind ? $wait * 5 : $wait);
    } else {
        sleep($UseValgrind ? 0.5 : 0.05);
    }

    if (!defined section($block, 'ignore_response')) {
        my $code = section($block, 'error_code') // 200;
        $code =~ s/\s+//g;
        my $like = section($block, 'error_code_like');

        if (defined $like) {
            Test::More::like($status // '', qr/$like/,
                             "$name - status code ok");
        } else {
            Test::More::is($status, $code, "$name - status code ok");
        }

        my $rh = section($block, 'response_headers');
        for my $l (as_list(expand_env($rh // ''))) {
            my ($k, $v) = $l =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or next;
            my $got = $headers->{lc $k};
            if ($v eq '') {
                Test::More::ok(!defined $got || $got eq '',
                               "$name - header $k absent");
            } else {
                Test::More::is($got, $v, "$name - header $k ok");
            }
        }

        my $rhl = section($block, 'response_headers_like');
        for my $l (as_list($rhl // '')) {
            my ($k, $v) = $l =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/ or next;
            Test::More::like($headers->{lc $k} // '', qr/$v/,
                             "$name - header $k like");
        }

        if (!defined section($block, 'ignore_response_body')) {
            my $exp = section($block, 'response_body');
            my $like = section($block, 'response_body_like');
            my $unlike = section($block, 'response_body_unlike');

            if (defined $exp) {
                $exp = expand_env($exp) unless ref $exp;
                Test::More::is($body, $exp, "$name - response_body - "
                                            . "response is expected");
            }

            if (defined $like) {
                my $re = ref $like eq 'Regexp' ? $like : qr/$like/s;
                Test::More::like($body, $re, "$name - response_body_like - "
                                             . "response is expected");
            }

            if (defined $unlike) {
                my $re = ref $unlike eq 'Regexp' ? $unlike : qr/$unlike/s;
                Test::More::unlike($body, $re, "$name - response_body_unlike");
            }
        }
    }

    # lines may be logged just after the response: give them a moment

    my @pats = map { ref $_ ? $_ : $_ } as_list(section($block, 'error_log'));
    my @log = read_log();
    my $deadline = time + ($UseValgrind ? 10 : 1);

    while (@pats && time < $deadline) {
        my $missing = 0;
        for my $p (@pats) {
            $missing++ unless grep { matches($_, $p) } @log;
        }
        last unless $missing;
        sleep 0.05;
        @log = read_log();
    }

    for my $p (@pats) {
        my $found = grep { matches($_, $p) } @log;
        Test::More::ok($found, "$name - pattern \"$p\" should match a line "
                               . "in error.log");
    }

    for my $p (as_list(section($block, 'no_error_log'))) {
        my @hits = grep { matches($_, $p) } @log;
        Test::More::ok(!@hits, "$name - pattern \"$p\" does not match a "
                               . "line in error.log");
        Test::More::diag("  $hits[0]") if @hits;
    }

    my $grep = section($block, 'grep_error_log');
    if (defined $grep) {
        my $re = ref $grep eq 'Regexp' ? $grep : qr/\Q$grep\E/;
        my $out = '';
        for my $l (@log) {
            while ($l =~ /($re)/g) {
                $out .= "$1\n";
            }
        }

        my $exp = section($block, 'grep_error_log_out');
        if (ref $exp eq 'Regexp') {
            Test::More::like($out, $exp, "$name - grep_error_log_out");
        } elsif (defined $exp) {
            Test::More::is($out, $exp, "$name - grep_error_log_out");
        }
    }

    stop_nginx();

    if ($UseValgrind) {
        check_valgrind($name);
    }
}


sub check_valgrind ($) {
    my $name = shift;
    my @reports;

    for my $f (glob "$ServRoot/logs/valgrind.*.log") {
        open my $in, '<', $f or next;
        local $/;
        my $text = <$in>;
        close $in;
        push @reports, $text if $text =~ /\S/;
    }

    Test::More::ok(!@reports, "$name - valgrind reports no error");
    Test::More::diag(substr(join("\n", @reports), 0, 8000)) if @reports;
}


sub run_test ($) {
    my $block = shift;
    for my $pp (@BlockPreprocessors) {
        $pp->($block);
    }

    for my $rep (1 .. $RepeatEach) {
        check_block($block, $rep);
    }
}


sub run_tests () {
    my @blocks = Test::Base::blocks();
    my @only = grep { defined section($_, 'ONLY') } @blocks;

    @blocks = @only if @only;

    for my $block (@blocks) {
        next if defined section($block, 'SKIP');
        run_test($block);
        last if defined section($block, 'LAST');
    }
}


END {
    stop_nginx();
}

1;
