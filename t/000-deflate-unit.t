#!/usr/bin/env perl
# The permessage-deflate unit tests (t/unit/wsp_deflate_test.c), built by
# make unit.
use strict;
use warnings;

my $bin = ($ENV{TEST_NGINX_UNIT_DIR} || 'build') . '/wsp_deflate_test';

if (!-x $bin) {
    print "1..0 # SKIP unit test binary not built "
          . "(make build/wsp_deflate_test)\n";
    exit 0;
}

exec $bin or die "cannot run $bin: $!";
