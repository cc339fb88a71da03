#!/usr/bin/env perl
# The Debian package installed into the system: make deb, apt-get install
# ./<deb>, Debian's stock /etc/nginx/nginx.conf with a site that proxies a
# session, a reload, apt-get remove, nginx -t and nginx still serving
# (t/e2e/debian_package.py).  Skipped, with the reason, when it cannot run
# (not root, port in use, an nginx of /etc/nginx running, ...).
use strict;
use warnings;

exec '/usr/bin/timeout', '-k', '15', '110', '/usr/bin/python3',
    't/e2e/debian_package.py'
    or die "cannot run python3: $!";
