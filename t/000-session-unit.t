#!/usr/bin/env perl
# The session core's unit tests (t/unit/wsp_session_test.c), built by
# make unit, and the check that the objects of the nginx-free layers,
# src/protocol and src/session (the unit build's, build/free/<layer>/, and
# the module's, objs/addon/<layer>/), reference no nginx symbol; and that
# no layer of the module calls a layer above it (util/layers).
use strict;
use warnings;

my $dir = $ENV{TEST_NGINX_UNIT_DIR} || 'build';
my $bin = "$dir/wsp_session_test";

if (!-x $bin) {
    print "1..0 # SKIP unit test binary not built "
          . "(make build/wsp_session_test)\n";
    exit 0;
}

# every object of the folders, not a list of names: a file added to a
# layer is checked as soon as it is built
my @layers = qw(protocol session);
my @objs = map { (glob("$dir/free/$_/*.o"),
                  glob("$dir/nginx/objs/addon/$_/*.o")) } @layers;

# the unit test prints its own plan at its end: ours comes after it
my $out = `$bin`;
my $rc = $?;
my ($n) = $out =~ /^1\.\.(\d+)$/m;
$out =~ s/^1\.\.\d+\n//m;
print $out;

# the unit build has an object of each source of each layer (else the
# check below would pass on nothing)
for my $l (@layers) {
    my @src = map { m{([^/]+)\.c$} } glob("src/$l/*.c");
    my @miss = grep { !-f "$dir/free/$l/$_.o" } @src;
    $n++;
    print((@src && !@miss ? "ok" : "not ok")
          . " $n - $dir/free/$l/ has the objects of src/$l/*.c"
          . (@miss ? ": @miss missing" : "") . "\n");
    $rc ||= !@src || @miss;
}

for my $o (@objs) {
    $n++;
    my @ngx = grep { /\b_?ngx_/ && !/\bngx_wsp_/ } `nm -u $o`;
    print((@ngx ? "not ok" : "ok") . " $n - $o references no nginx symbol"
          . (@ngx ? ": " . join(' ', map { (split)[-1] } @ngx) : "") . "\n");
    $rc ||= @ngx;
}

# the layers of the module's build: no call goes up (docs/design.md)
if (-d "$dir/nginx/objs/addon") {
    my $layers = `util/layers $dir/nginx/objs/addon 2>&1`;
    my $bad = $?;
    my @up = $layers =~ /^(up .*)$/mg;
    $n++;
    print(($bad ? "not ok" : "ok") . " $n - util/layers: no layer calls up"
          . ($bad ? ": " . (@up ? join('; ', @up) : $layers) : "") . "\n");
    $rc ||= $bad;
}

print "1..$n\n";
exit($rc ? 1 : 0);
