#!/usr/bin/env perl
# The codec's unit tests (t/unit/wsp_frame_test.c), built by make.
use strict;
use warnings;

my $bin = ($ENV{TEST_NGINX_UNIT_DIR} || 'build') . '/wsp_frame_test';

if (!-x $bin) {
    print "1..0 # SKIP unit test binary not built (make build/wsp_frame_test)\n";
    exit 0;
}

exec $bin or die "cannot run $bin: $!";
