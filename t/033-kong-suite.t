#!/usr/bin/env perl
# Kong's own lua-resty-websocket-proxy suite, unchanged, against this
# module: ../shared/peers/kong-suite.sh (its README) run against the nginx
# the suite runs against.  One TAP line per Kong assertion (140).
#
# From the suite's environment: TEST_NGINX_BINARY is kong-suite.sh's NGINX,
# TEST_NGINX_LOAD_MODULES without the project's .so (the last entry) its
# MODULES, TEST_NGINX_LUA_PATH (';'-separated ?.lua paths, may be unset)
# its LUA_EXTRA.  kong-suite.sh wants $PROJ/build/ngx_http_ws_proxy_module.so
# and $PROJ/lib: a temporary PROJ links them to the .so the suite loads and
# to the project's lib/.
use strict;
use warnings;
use Cwd qw(cwd);
use File::Temp qw(tempdir tempfile);

my $root = cwd();
my $peers = "$root/../shared/peers";
my $script = "$peers/kong-suite.sh";

if (!-x $script) {
    print "1..0 # SKIP no ../shared/peers/kong-suite.sh (Kong's suite is "
          . "not here)\n";
    exit 0;
}

if (($ENV{TEST_NGINX_USE_VALGRIND} // '') !~ /^0?$/) {
    print "1..0 # SKIP Kong's suite under valgrind (its timings are "
          . "Kong's)\n";
    exit 0;
}

my $mods = 'TEST_NGINX_LOAD_MODULES';
my @mods = split ' ', ($ENV{$mods} // '');
@mods = ('/usr/lib/nginx/modules/ndk_http_module.so',
         '/usr/lib/nginx/modules/ngx_http_lua_module.so',
         "$root/build/ngx_http_ws_proxy_module.so") unless @mods;
my $so = pop @mods;

if ($so !~ m{(^|/)ngx_http_ws_proxy_module\.so$} || !-f $so) {
    print "1..1\nnot ok 1 - Kong's suite: the module is not the last entry "
          . "of $mods, or is not built: $so\n";
    exit 1;
}

my $proj = tempdir("kong-proj.XXXXXX", TMPDIR => 1, CLEANUP => 1);
mkdir "$proj/build" or die "mkdir $proj/build: $!";
symlink($so, "$proj/build/ngx_http_ws_proxy_module.so")
    && symlink("$root/lib", "$proj/lib")
    or die "symlink in $proj: $!";

# the links go first: the directory's removal must not reach what they name
END { unlink "$proj/build/ngx_http_ws_proxy_module.so", "$proj/lib"
          if defined $proj; }

my (undef, $log) = tempfile("kong-log.XXXXXX", TMPDIR => 1, UNLINK => 1);

my %env = (
    PROJ => $proj,
    NGINX => $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx',
    MODULES => "@mods",
    KONG_SUITE_LOG => $log,
);
$env{LUA_EXTRA} = $ENV{TEST_NGINX_LUA_PATH}
    if defined $ENV{TEST_NGINX_LUA_PATH} && $ENV{TEST_NGINX_LUA_PATH} ne '';

# Kong's files run in kong-suite.sh's own directory, with its own server
# root and the real Test::Nginx, whatever this suite's runner set
my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    delete @ENV{qw(LUA_EXTRA TEST_NGINX_SERVROOT TEST_NGINX_NO_CLEAN
                   TEST_NGINX_USE_VALGRIND)};
    @ENV{keys %env} = values %env;
    open STDOUT, '>', "$log.out" or die "$log.out: $!";
    open STDERR, '>&', \*STDOUT or die "stderr: $!";
    exec $script or die "exec $script: $!";
}
waitpid($pid, 0);
my $status = $? >> 8;

# kong-suite.sh prints "<file> ok/planned" per file; prove -v's lines are
# in the log, file after file
open my $fh, '<', "$log.out" or die "$log.out: $!";
my @summary = <$fh>;
close $fh;
unlink "$log.out";
my %planned = map { /^(t\/\S+\.t)\s+(\d+)\/(\d+)$/ ? ($1 => $3) : () }
              @summary;

open $fh, '<', $log or die "$log: $!";
my ($file, %seen, @tap);
while (<$fh>) {
    if (/^(t\/\S+\.t) \.\. ?$/) {
        $file = $1;
    } elsif (defined $file && /^(not )?ok \d+(?: - (.*))?$/) {
        my $desc = $2 // "$file assertion";
        push @tap, [!$1, "kong $desc"];
        $seen{$file}++;
    }
}
close $fh;

for my $f (sort keys %planned) {
    for (($seen{$f} // 0) + 1 .. $planned{$f}) {
        push @tap, [0, "kong $f: assertion $_ of $planned{$f} never ran"];
    }
}

if (!@tap) {
    push @tap, [0, "Kong's suite ran (kong-suite.sh exit $status): "
                   . join('', @summary)];
} elsif ($status != 0 && !grep { !$_->[0] } @tap) {
    push @tap, [0, "kong-suite.sh exits 0 (exit $status)"];
}

my $n = 0;
for my $t (@tap) {
    $n++;
    (my $desc = $t->[1]) =~ s/#/\\#/g;
    print(($t->[0] ? "" : "not "), "ok $n - $desc\n");
}
print "# $_" for grep { /^kong suite:/ } @summary;
print "1..$n\n";
