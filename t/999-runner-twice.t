#!/usr/bin/env perl
# The runner twice in a row (issue 27): util/run-tests on t/027 (an nginx
# with a master and two workers, a Prometheus server) and t/028 (Test::Nginx
# blocks in the same server root), two runs back to back with the stand-in
# Test::Nginx and two with the real one (../shared/peers/test-nginx/lib,
# when it is there).  Each run passes, finds nothing left by the one before,
# and leaves no process behind (util/test-strays).
use strict;
use warnings;
use Cwd qw(cwd);
use Test::More;

if (($ENV{TEST_NGINX_USE_VALGRIND} // '') !~ /^0?$/) {
    plan skip_all => 'the runner twice under valgrind (twice the suite)';
}

my $root = cwd();
my @files = ('t/027-metrics.t', 't/028-ws-proxy-ssl.t');
my $real = "$root/../shared/peers/test-nginx/lib";
my @runners = (['the stand-in', '']);
push @runners, ['the real Test::Nginx', $real]
    if -f "$real/Test/Nginx/Socket/Lua.pm";

for my $r (@runners) {
    my ($name, $lib) = @$r;

    for my $i (1, 2) {
        # the stand-in when PERL5LIB has no Test::Nginx: util/run-tests
        # adds t/lib itself
        local $ENV{PERL5LIB} = $lib;
        my $out = `util/run-tests @files 2>&1`;
        my $status = $? >> 8;
        my @ran = $out =~ /^(t\/\S+\.t) \.+ /mg;

        ok($status == 0 && "@ran" eq "@files",
           "$name, run $i: @files pass")
            or diag($out);
        ok($out !~ /stray process/, "$name, run $i: nothing of an earlier "
           . "run was there, nothing outlived its file")
            or diag(join "\n", grep { /stray|outlived/ } split /\n/, $out);

        my $left = `util/test-strays 2>&1`;
        ok($? == 0, "$name, run $i: no process of it is left")
            or diag($left);
    }
}

done_testing();
