package Test::Nginx::Util;

# Server side of the project's stand-in for OpenResty's Test::Nginx (see
# docs/testing.md): settings, the server root, nginx.conf, starting and
# stopping nginx (optionally under valgrind), and the block loop.  It is
# only used when the real Test::Nginx is not installed; the behaviour
# follows the real one's documented semantics, the code is our own.

use strict;
use warnings;

use Exporter 'import';
use Cwd qw(cwd);
use File::Path qw(make_path remove_tree);
use File::Spec;
use List::Util qw(shuffle);
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(
    add_block_preprocessor add_cleanup_handler add_test_cleanup_handler
    bail_out check_accum_error_log config_preamble env_to_nginx
    error_log_data access_log_data expand_env_in_text html_dir is_running
    log_level master_off master_on master_process_enabled no_long_string
    no_nginx_manager no_root_location no_shuffle parse_time repeat_each
    run_test run_tests server_addr server_name server_port
    server_port_for_client server_root sleep_time timeout use_hup workers
    worker_connections get_pid_from_pidfile get_nginx_version trim
    $ServerPort $ServerPortForClient $ServerAddr $ServerName $ServRoot
    $ConfFile $PidFile $ErrLogFile $AccLogFile $HtmlDir $LogDir $NginxVersion
    $NoLongString $RepeatEach $RunTestHelper $CheckErrorLog $UseValgrind
    $FilterHttpConfig $NoNginxManager $SlowFactor
);

# ---------------------------------------------------------------- settings

our $NginxBinary       = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $LoadModules       = $ENV{TEST_NGINX_LOAD_MODULES};
our $UseValgrind       = $ENV{TEST_NGINX_USE_VALGRIND};
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $NoNginxManager    = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $CheckAccumErrLog  = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep    = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $DaemonEnabled     = $UseValgrind ? 'off' : 'on';
our $Workers           = 1;
our $WorkerConnections = 64;
our $RepeatEach        = 1;
our $NoRootLocation    = 0;
our $NoLongString;
our $ConfigPreamble    = '';
our $ServerAddr        = '127.0.0.1';
our $ServerName        = 'localhost';
our $ServerPort        = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                         || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $WorkerUser        = $ENV{TEST_NGINX_WORKER_USER};

# TEST_NGINX_RANDOMIZE (random ports and server roots) is accepted and
# ignored: the suites run one file at a time on the fixed port.

our $ServRoot = File::Spec->rel2abs($ENV{TEST_NGINX_SERVROOT}
                                    || File::Spec->catdir('t', 'servroot'));
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

# the suite's one slowness factor (util/run-tests sets it: 10 under
# valgrind; raise it on a slow machine): every timeout and wait grows by it
our $SlowFactor = $ENV{TEST_NGINX_SLOW_FACTOR} || ($UseValgrind ? 10 : 1);

our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers,
     @TestCleanupHandlers);
our ($RunTestHelper, $CheckErrorLog, $FilterHttpConfig);
our ($NginxVersion, $OpenSSLVersion, $PrevConfig, $ErrLogFilePos);
our ($ChildPid, $RandPorts, $FirstTime, $InSubprocess) = (undef, {}, 1);

sub repeat_each (@)  { $RepeatEach = shift if @_; $RepeatEach }
sub workers (@)      { @_ ? ($Workers = shift) : $Workers }
sub worker_connections (@) {
    @_ ? ($WorkerConnections = shift) : $WorkerConnections
}
sub log_level (@)    { @_ ? ($LogLevel = shift) : $LogLevel }
sub timeout (@)      { @_ ? ($Timeout = shift) : $Timeout }
sub server_port (@)  { @_ ? ($ServerPort = shift) : $ServerPort }
sub server_port_for_client (@) {
    @_ ? ($ServerPortForClient = shift) : $ServerPortForClient
}
sub server_addr (@)  { @_ ? ($ServerAddr = shift) : $ServerAddr }
sub server_name (@)  { @_ ? ($ServerName = shift) : $ServerName }
sub server_root ()   { $ServRoot }
sub html_dir ()      { $HtmlDir }
sub sleep_time ()    { $TestNginxSleep }
sub no_long_string () { $NoLongString = 1 }
sub no_shuffle ()    { $NoShuffle = 1 }
sub no_root_location () { $NoRootLocation = 1 }
sub no_nginx_manager () { $NoNginxManager = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on ()     { $MasterProcessEnabled = 'on' }
sub master_off ()    { $MasterProcessEnabled = 'off' }
sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}
sub config_preamble ($) { $ConfigPreamble = shift }
sub use_hup () { warn "use_hup() is not supported by the stand-in; ignored\n" }
sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($) { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments specified\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# "10ms" -> 0.01, "2s" -> 2, "3" -> 3
sub parse_time ($) {
    my $t = shift;
    return undef unless defined $t;
    $t =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $t =~ /^([\d.]+)\s*ms$/;
    return $1 if $t =~ /^([\d.]+)\s*s$/;
    return $t;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\s+/ /g;
    return $s;
}

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# ------------------------------------------------------------ environment

# $TEST_NGINX_FOO becomes $ENV{TEST_NGINX_FOO} (a missing one aborts the
# file); $TEST_NGINX_RAND_PORT_N becomes a free port, the same one for the
# whole block.
sub expand_env_in_text ($$;$) {
    my ($text, $name, $ports) = @_;
    return $text unless defined $text;
    $ports //= $RandPorts;

    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $val = $ports->{$var} //= free_port($ports);
        } else {
            bail_out("$name - No environment $var defined.\n")
                unless defined $ENV{$var};
            $val = $ENV{$var};
        }
        $val;
    }ge;

    return $text;
}

sub free_port ($) {
    my $taken = shift;
    my %used = ($ServerPort => 1, map { $_ => 1 } values %$taken);
    require IO::Socket::INET;
    for (1 .. 1000) {
        my $port = 1988 + int rand 60000;
        next if $used{$port};
        my $s = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                      LocalPort => $port, Listen => 1,
                                      Proto => 'tcp', ReuseAddr => 1)
            or next;
        close $s;
        return $port;
    }
    bail_out("cannot find a free port for TEST_NGINX_RAND_PORT_*");
}

my $NginxV;

sub nginx_V () {
    $NginxV //= `$NginxBinary -V 2>&1`;
    return $NginxV;
}

sub get_nginx_version () {
    my $out = nginx_V();
    if ($? != 0 || !defined $out) {
        bail_out("cannot run \"$NginxBinary -V\" (TEST_NGINX_BINARY): "
                 . ($out // ''));
    }
    if ($out =~ /built with OpenSSL (\d+)\.(\d+)\.(\d+)([a-z])?/) {
        $OpenSSLVersion = sprintf '%d.%03d%03d%03d', $1, $2, $3,
                                  defined $4 ? ord($4) - ord('a') : 0;
    }
    if ($out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}) {
        return sprintf '%d.%03d%03d', $1, $2, $3;
    }
    bail_out("cannot parse the output of \"$NginxBinary -V\": $out");
}

# -------------------------------------------------------- the server root

sub setup_server_root () {
    if (-d $ServRoot) {
        remove_tree($ConfDir, $LogDir, $HtmlDir, "$ServRoot/cache",
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    }

    for my $d ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $d;
        make_path($d) or bail_out("cannot create $d: $!");
    }

    # the same default page as the real Test::Nginx, for blocks that GET /
    write_file("$HtmlDir/index.html", '<html><head><title>It works!</title>'
               . '</head><body>It works!</body></html>');
}

sub write_file ($$) {
    my ($path, $data) = @_;
    if ($path =~ m{^(.*)/[^/]+$} && !-d $1) {
        make_path($1) or bail_out("cannot create $1: $!");
    }
    open my $out, '>', $path or bail_out("cannot write $path: $!");
    binmode $out;
    print $out $data;
    close $out;
}

# --- user_files: ">>> name [date]" headers, or an array of [name, body, date]
sub write_user_files ($) {
    my $block = shift;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - --- user_files must be a string or an array");
    }

    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        write_file($path, expand_env_in_text($body // '', $name));
        if ($date) {
            system("TZ=GMT touch -t '$date' '$path'") == 0
                or bail_out("$name - cannot set the date of $path");
        }
    }
}

sub write_config_file ($$) {
    my ($block, $config) = @_;
    my $name = $block->name;

    my $level = $block->log_level // $LogLevel;
    $level =~ s/^\s+|\s+$//g;

    my $main = expand_env_in_text($block->main_config // '', $name);
    my $post_main = expand_env_in_text($block->post_main_config // '', $name);
    my $http = expand_env_in_text($block->http_config // '', $name);
    $http = $FilterHttpConfig->($http) if $FilterHttpConfig;
    my $server_name = $block->server_name // $ServerName;
    $server_name =~ s/^\s+|\s+$//g;
    $server_name =~ s/(['\\])/\\$1/g;

    my $modules = join '', map { "load_module $_;\n" }
                           grep { length } split ' ', $LoadModules // '';

    my $env = join '', map { /\s/ ? "env '$_';\n" : "env $_;\n" }
        qw(LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS), @EnvToNginx;

    # temp paths inside the server root, unless the block sets them or
    # nginx was built without the module
    my $V = nginx_V();
    my $temps = '';
    for my $t (qw(client_body proxy fastcgi scgi uwsgi)) {
        next if $V =~ /--without-http_${t}_module/;
        next if $http =~ /\b${t}_temp_path\b/;
        $temps .= "    ${t}_temp_path $ServRoot/${t}_temp;\n";
    }

    my $root = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    my $user = '';
    if (defined $WorkerUser) {
        $user = "user $WorkerUser;\n";
    } elsif ($> == 0) {
        $user = "user root;\n";
    }

    my $master = $MasterProcessEnabled;

    write_file($ConfFile, <<"_EOC_");
# written by t/lib/Test/Nginx/Util.pm for: $name
$modules
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $master;
error_log $ErrLogFile $level;
pid       $PidFile;
$env
$main

http {
    access_log $AccLogFile;
$temps
    default_type text/plain;
    keepalive_timeout  68000ms;

$http

    server {
        listen          $ServerPort;
        server_name     '$server_name';
        client_max_body_size 30M;

        # preamble
$ConfigPreamble

        # the block's config
$config
        # end of the block's config

$root    }
}

$post_main

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}

$user
_EOC_
}

# ------------------------------------------------------- nginx processes

sub get_pid_from_pidfile ($) {
    my $name = shift;
    open my $in, '<', $PidFile or return undef;
    my $pid = do { local $/; <$in> };
    close $in;
    return undef unless defined $pid && $pid =~ /^\s*(\d+)\s*$/;
    return $1;
}

our $ChildStatus;

# a zombie (a daemon whose reaper never reaps) counts as gone; our own
# child (nginx under valgrind) is reaped here and its status kept
sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid;
    if (defined $ChildPid && $pid == $ChildPid) {
        my $r = waitpid($pid, WNOHANG);
        if ($r == $pid) {
            $ChildStatus = $?;
            undef $ChildPid;
            return 0;
        }
        return 0 if $r < 0;
    }
    return 0 unless kill 0, $pid;
    if (open my $st, '<', "/proc/$pid/stat") {
        my $s = <$st> // '';
        close $st;
        return 0 if $s =~ /^\d+ \(.*\) [ZX]/s;
    }
    return 1;
}

# QUIT (TERM with TEST_NGINX_FAST_SHUTDOWN), wait, then KILL
sub kill_process ($$) {
    my ($pid, $name) = @_;
    return unless is_running($pid);

    kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? 'TERM' : 'QUIT', $pid);

    my $deadline = time + $Timeout * $SlowFactor;
    while (time < $deadline && is_running($pid)) {
        sleep 0.02;
    }

    if (is_running($pid)) {
        warn "$name - nginx $pid did not exit in time; killing it\n";
        kill 'KILL', $pid;
        my $until = time + 5;
        sleep 0.02 while time < $until && is_running($pid);
    }
}

sub stop_nginx ($) {
    my $name = shift;
    my $pid = get_pid_from_pidfile($name);

    kill_process($pid, $name) if $pid;

    if (defined $ChildPid) {
        my $child = $ChildPid;
        kill_process($child, $name);
        if (defined $ChildPid && waitpid($child, 0) == $child) {
            $ChildStatus = $?;
        }
        undef $ChildPid;
    }

    unlink $PidFile;
}

sub valgrind_command () {
    my @cmd = ('valgrind', '-q');

    if ($UseValgrind =~ /^\d+$/) {
        push @cmd, qw(--tool=memcheck --leak-check=full
                      --show-leak-kinds=definite --errors-for-leak-kinds=definite
                      --num-callers=30 --keep-debuginfo=yes
                      --gen-suppressions=all --error-exitcode=97);
        for my $s (File::Spec->rel2abs('t/valgrind.suppress'),
                   File::Spec->rel2abs('valgrind.suppress'),
                   split ' ', $ENV{TEST_NGINX_VALGRIND_SUPPRESS} // '')
        {
            push @cmd, "--suppressions=$s" if -f $s;
        }
    } else {
        # like the real one: a non-numeric value is the option list
        push @cmd, split ' ', $UseValgrind;
    }

    push @cmd, split ' ', $ENV{TEST_NGINX_VALGRIND_OPTS} // '';
    push @cmd, "--log-file=$LogDir/valgrind.%p.log";
    return @cmd;
}

sub child_env () {
    if (defined $ENV{TEST_NGINX_LD_PRELOAD}) {
        $ENV{LD_PRELOAD} = join ' ', grep { defined && length }
            $ENV{TEST_NGINX_LD_PRELOAD}, $ENV{LD_PRELOAD};
    }
}

# returns the exit status of nginx when it ran in the foreground (0 when it
# daemonized fine), or 0 once the valgrind child is forked
sub start_nginx ($) {
    my $block = shift;
    my $name = $block->name;
    my @cmd = ($NginxBinary, '-e', $ErrLogFile, '-p', "$ServRoot/",
               '-c', $ConfFile);

    if ($UseValgrind && !defined $block->must_die) {
        @cmd = (valgrind_command(), @cmd);
        warn "$name\n" if $ENV{TEST_NGINX_VERBOSE};

        my $pid = fork;
        bail_out("$name - fork() failed: $!") unless defined $pid;

        if ($pid == 0) {
            $InSubprocess = 1;
            setpgrp(0, 0);
            open STDIN, '<', '/dev/null';
            open STDOUT, '>', '/dev/null';
            child_env();
            exec @cmd or POSIX::_exit(127);
        }

        $ChildPid = $pid;
        sleep $TestNginxSleep;
        return 0;
    }

    my $pid = fork;
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        $InSubprocess = 1;
        open STDOUT, '>', '/dev/null';
        child_env();
        exec @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    return $?;
}

# ------------------------------------------------------------------- logs

# the error log lines since the previous call in this block (all of them
# with check_accum_error_log()); lines written just after the response
# are given a moment to arrive, as the real one does
sub error_log_data () {
    sleep $TestNginxSleep * 3 * $SlowFactor;

    open my $in, '<', $ErrLogFile or return [];
    if (!$CheckAccumErrLog && $ErrLogFilePos) {
        seek $in, $ErrLogFilePos, 0;
    }
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3 * $SlowFactor;
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    close $in;
    return \@lines;
}

sub tail_error_log ($) {
    my $n = shift;
    open my $in, '<', $ErrLogFile or return "(no $ErrLogFile)\n";
    my @lines = <$in>;
    close $in;
    splice @lines, 0, @lines - $n if @lines > $n;
    return join '', @lines;
}

# ------------------------------------------------------------------ valgrind

our $ValgrindErrorRe = qr{
    Invalid\ (?:read|write|free)
  | uninitialised
  | definitely\ lost
  | Mismatched\ free
  | Source\ and\ destination\ overlap
  | Syscall\ param
  | Jump\ to\ the\ invalid\ address
  | Process\ terminating
  | fishy
  | Illegal\ memory\ pool
}x;

# fails the block (an extra, failing assertion) when valgrind reported an
# error; a clean run adds no assertion, so "plan tests" stays exact
sub check_valgrind ($) {
    my $name = shift;
    my @bad;

    for my $f (sort glob "$LogDir/valgrind.*.log") {
        open my $in, '<', $f or next;
        my $text = do { local $/; <$in> };
        close $in;
        next unless defined $text && $text =~ $ValgrindErrorRe;
        push @bad, "$f:\n$text";
    }

    my $status = $ChildStatus;
    undef $ChildStatus;
    if (defined $status && ($status >> 8) == 97 && !@bad) {
        push @bad, "valgrind exited with its error exit code (see "
                   . "$LogDir/valgrind.*.log)";
    }

    return unless @bad;

    my $report = join "\n", @bad;
    $report = substr($report, 0, 20000) . "\n...(truncated)\n"
        if length $report > 20000;
    Test::More::diag($report);
    Test::More->builder->no_ending(1);
    Test::More::fail("$name - valgrind reports no error");
}

# -------------------------------------------------------------- the loop

sub cleanup () {
    return if $InSubprocess;
    $_->() for @CleanupHandlers;
    stop_nginx('cleanup') if defined $ChildPid;
}

sub run_tests () {
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;

    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
        $_->($block) for @TestCleanupHandlers;
    }

    cleanup();
}

# skip_nginx: "N: <op> x.y.z[: reason]", skip_eval: "N: perl code",
# skip_openssl: "N: <op> x.y.z[a][: reason]"; returns (count, reason)
sub skip_spec ($) {
    my $block = shift;
    my $name = $block->name;

    if (defined(my $s = $block->skip_eval)) {
        if ($s =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            my ($n, $code) = ($1, $2);
            my $yes = eval $code;
            bail_out("$name - skip_eval - failed to eval \"$code\": $@") if $@;
            return ($n, 'skip_eval') if $yes;
        }
    }

    if (defined(my $s = $block->skip_nginx)) {
        $s =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*?))?\s*$/s
            or bail_out("$name - Invalid --- skip_nginx spec: $s");
        my ($n, $op, $v) = ($1, $2, sprintf '%d.%03d%03d', $3, $4, $5);
        my $why = $6 || "nginx version $op $3.$4.$5";
        return ($n, $why) if eval "$NginxVersion $op $v";
    }

    if (defined(my $s = $block->skip_openssl)) {
        $s =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)([a-z])?(?:\s*:\s*(.*?))?\s*$/s
            or bail_out("$name - Invalid --- skip_openssl spec: $s");
        my ($n, $op) = ($1, $2);
        my $v = sprintf '%d.%03d%03d%03d', $3, $4, $5,
                        defined $6 ? ord($6) - ord('a') : 0;
        my $why = $7 || "OpenSSL version $op $3.$4.$5" . ($6 // '');
        return ($n, $why) if !defined $OpenSSLVersion
                             || eval "$OpenSSLVersion $op $v";
    }

    return;
}

sub run_test ($) {
    my $block = shift;
    my $name = $block->name;

    return if defined $block->SKIP;

    $RandPorts = {};

    my ($nskip, $why) = skip_spec($block);
    if (defined $nskip) {
        for (1 .. $RepeatEach) {
            SKIP: { Test::More::skip("$name - $why", $nskip); }
        }
        return;
    }

    my $config = $block->config;
    my $must_die = $block->must_die;

    if (!$NoNginxManager) {
        if (defined $config) {
            $config = expand_env_in_text($config, $name);
            # a fresh nginx for every block that has a config
            stop_nginx($name);
            setup_server_root();
            if (defined(my $code = $block->post_setup_server_root)) {
                eval $code;
                bail_out("$name - post_setup_server_root failed: $@") if $@;
            }
            write_user_files($block);
            write_config_file($block, $config);
            $PrevConfig = $config;

            if (defined $must_die) {
                return run_must_die($block, $must_die);
            }

            start_or_bail($block);

        } elsif (!defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        }
        # no config: the previous block's nginx serves this one too
    }

    if (defined(my $code = $block->init)) {
        eval $code;
        bail_out("$name - init failed: $@") if $@;
    }

    my ($todo, $todo_n);
    if (defined(my $t = $block->todo)) {
        $t =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $t");
        ($todo_n, $todo) = ($1, $2);
    }

    $ErrLogFilePos = 0;

    for my $i (0 .. $RepeatEach - 1) {
        write_user_files($block) if $i > 0;

        if (defined $todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo", $todo_n);
            }
            next;
        }

        $RunTestHelper->($block, undef, $i);
    }

    # like the real one: every block's error log appended to one file
    if (my $all = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile && open my $out, '>>', $all) {
            print $out "\n=== $name\n";
            open my $in, '<', $ErrLogFile;
            print $out $_ while <$in>;
            close $in;
            close $out;
        }
    }

    if ($UseValgrind && !$NoNginxManager) {
        stop_nginx($name);
        check_valgrind($name);
    }
}

sub start_or_bail ($) {
    my $block = shift;
    my $name = $block->name;
    my $waited = 0;

    while (1) {
        my $status = start_nginx($block);
        return if $status == 0;

        # the previous nginx may still hold the port for a moment
        my $log = tail_error_log(20);
        if ($log =~ /Address already in use/ && $waited < 10) {
            sleep 0.2;
            $waited += 0.2;
            truncate $ErrLogFile, 0;
            next;
        }

        bail_out("$name - Cannot start nginx using \"$NginxBinary -p "
                 . "$ServRoot/ -c $ConfFile\" (status code $status):\n$log");
    }
}

# --- must_die: nginx must fail to start (with that exit code, if numeric)
sub run_must_die ($$) {
    my ($block, $must_die) = @_;
    my $name = $block->name;
    $must_die =~ s/^\s+|\s+$//g;

    for my $i (0 .. $RepeatEach - 1) {
        $ErrLogFilePos = 0;
        my $status = start_nginx($block);
        my $code = $status >> 8;

        if ($status & 127) {
            Test::More::fail("$name - nginx died of signal " . ($status & 127));
        } elsif ($must_die =~ /^\d+$/) {
            Test::More::is($must_die, $code,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $CheckErrorLog->($block, undef, undef, $i, 0);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; "
                 . "killing it\n";
            sleep $TestNginxSleep * 5;
            stop_nginx($name);
        }
    }
}

END {
    return if $InSubprocess;
    cleanup();
    # like the real one: TEST_NGINX_NO_CLEAN leaves the last nginx running
    if ($UseValgrind || !$ENV{TEST_NGINX_NO_CLEAN}) {
        local $?;
        stop_nginx('END');
    }
}

1;
