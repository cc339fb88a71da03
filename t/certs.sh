#!/usr/bin/env bash
# Test certificates, made fresh by the suite (openssl CLI): a CA, a server
# certificate for "localhost", an expired one, a client certificate, an
# unrelated CA, and a "localhost" one issued by an intermediate CA (chain.crt:
# it and the intermediate's).  Output in $1 (default build/test-certs).
set -euo pipefail
d=${1:-build/test-certs}
mkdir -p "$d"
cd "$d"
# a set made before chain.crt was added is made again, all of it
[ -f done ] && [ -f chain.crt ] && exit 0

days() { openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" \
             -CAcreateserial -out "$1.crt" "${@:3}" 2>/dev/null; }
key() { openssl genrsa -out "$1.key" 2048 2>/dev/null; }

for ca in ca otherca; do
    key $ca
    openssl req -x509 -new -key $ca.key -days 3650 -subj "/CN=ws-proxy test $ca" \
        -out $ca.crt 2>/dev/null
done

printf 'subjectAltName=DNS:localhost\n' > san.ext

key server
openssl req -new -key server.key -subj /CN=localhost -out server.csr 2>/dev/null
days server ca -days 3650 -extfile san.ext

key expired
openssl req -new -key expired.key -subj /CN=localhost -out expired.csr 2>/dev/null
# -days -1: notAfter is a day before notBefore, so it has expired;
# OpenSSL 3.5 (Debian 13) refuses that and takes the dates instead
days expired ca -days -1 -extfile san.ext ||
    days expired ca -not_before 20200101000000Z -not_after 20200102000000Z \
        -extfile san.ext

key client
openssl req -new -key client.key -subj /CN=test-client -out client.csr 2>/dev/null
days client ca -days 3650

# an intermediate CA under ca, and a server certificate it issues
key inter
openssl req -new -key inter.key -subj "/CN=ws-proxy test inter" \
    -out inter.csr 2>/dev/null
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=keyCertSign\n' > ca.ext
days inter ca -days 3650 -extfile ca.ext

key leaf
openssl req -new -key leaf.key -subj /CN=localhost -out leaf.csr 2>/dev/null
days leaf inter -days 3650 -extfile san.ext
cat leaf.crt inter.crt > chain.crt

touch done
