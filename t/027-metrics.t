#!/usr/bin/env perl
# ws_proxy_zone and ws_proxy_status: counters summed over two workers,
# promtool, a real Prometheus, the zone full.  t/e2e/metrics.py runs its own
# nginx with a master process (Test::Nginx runs without one).
use strict;
use warnings;

if (system('/usr/bin/python3 -c "import websockets" 2>/dev/null') != 0) {
    print "1..0 # SKIP python3-websockets missing (make deps)\n";
    exit 0;
}

for my $tool ('promtool', 'prometheus') {
    if (system("command -v $tool >/dev/null 2>&1") != 0) {
        print "1..0 # SKIP $tool missing (Debian's prometheus package: "
              . "make deps)\n";
        exit 0;
    }
}

exec '/usr/bin/python3', 't/e2e/metrics.py' or die "cannot run python3: $!";
