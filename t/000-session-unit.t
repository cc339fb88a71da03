#!/usr/bin/env perl
# The session core's unit tests (t/unit/wsp_session_test.c), built by
# make unit, and the check that the core's objects (the unit build's and
# the module's) reference no nginx symbol.
use strict;
use warnings;

my $dir = $ENV{TEST_NGINX_UNIT_DIR} || 'build';
my $bin = "$dir/wsp_session_test";

if (!-x $bin) {
    print "1..0 # SKIP unit test binary not built "
          . "(make build/wsp_session_test)\n";
    exit 0;
}

my @objs = grep { -f }
           ("$dir/ngx_wsp_session.o",
            "$dir/nginx/objs/addon/src/ngx_wsp_session.o");

# the unit test prints its own plan at its end: ours comes after it
my $out = `$bin`;
my $rc = $?;
my ($n) = $out =~ /^1\.\.(\d+)$/m;
$out =~ s/^1\.\.\d+\n//m;
print $out;

for my $o (@objs) {
    $n++;
    my @ngx = grep { /\b_?ngx_/ && !/\bngx_wsp_/ } `nm -u $o`;
    print((@ngx ? "not ok" : "ok") . " $n - $o references no nginx symbol"
          . (@ngx ? ": " . join(' ', map { (split)[-1] } @ngx) : "") . "\n");
    $rc ||= @ngx;
}

print "1..$n\n";
exit($rc ? 1 : 0);
