#!/usr/bin/env perl
# The handshake parser's unit tests (t/unit/wsp_handshake_test.c), built by
# make unit.
use strict;
use warnings;

my $bin = ($ENV{TEST_NGINX_UNIT_DIR} || 'build') . '/wsp_handshake_test';

if (!-x $bin) {
    print "1..0 # SKIP unit test binary not built "
          . "(make build/wsp_handshake_test)\n";
    exit 0;
}

exec $bin or die "cannot run $bin: $!";
