#!/usr/bin/env perl
# The README's example nginx.conf, run as written (t/e2e/readme.py).
use strict;
use warnings;

if (system('/usr/bin/python3 -c "import websockets" 2>/dev/null') != 0) {
    print "1..0 # SKIP python3-websockets missing (make deps)\n";
    exit 0;
}

exec '/usr/bin/python3', 't/e2e/readme.py' or die "cannot run python3: $!";
