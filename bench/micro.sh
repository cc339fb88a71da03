#!/usr/bin/env bash
# Builds and runs bench/mask_bench.c (masking and UTF-8 per-byte cost) and
# bench/deflate_bench.c (permessage-deflate per-byte cost).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build/bench
cc -O2 -Wall -Werror -Isrc/protocol -o build/bench/mask_bench \
    bench/mask_bench.c src/protocol/ngx_wsp_frame.c
taskset -c 1 build/bench/mask_bench 2>/dev/null || build/bench/mask_bench

echo

# permessage-deflate on 4 KiB JSON messages (bench/deflate_bench.c)
cc -O2 -Wall -Werror -Isrc/protocol -o build/bench/deflate_bench \
    bench/deflate_bench.c src/protocol/ngx_wsp_deflate.c \
    src/protocol/ngx_wsp_handshake.c -lz
# on W6's own messages when the load generator is built (bench/run does)
sample=
if [ -x build/bench/wsbench ]; then
    build/bench/wsbench sample 4096 >build/bench/w6-sample.json 2>/dev/null \
        && sample=build/bench/w6-sample.json
fi
taskset -c 1 build/bench/deflate_bench $sample 2>/dev/null \
    || build/bench/deflate_bench $sample
