#!/bin/sh
# deploy/certs/gen-certs.sh -- the docker-compose `certs` one-shot service: a throwaway
# development PKI made with openssl, written into three volumes so that each container
# sees only what it needs:
#
#   $PKI_BROKER_DIR  ca.pem broker.pem broker.key   -> redpanda  (mTLS Kafka listener)
#   $PKI_CLIENT_DIR  ca.pem client.pem client.key   -> chatsvc   (KAFKA_SSL_* files)
#   $PKI_EDGE_DIR    ca.pem server.pem server.key   -> nginx     (https/wss on the laptop)
#
# The CA key exists only inside this run and is then deleted: nothing can sign further
# certificates with it. Idempotent: when every file is present, chains to the CA and stays
# valid for another RENEW_DAYS days, the run changes nothing; otherwise (or FORCE=1) the
# whole set is made again, so files never mix two CAs. Never use these outside a laptop.
#
# Environment (defaults in brackets):
#   PKI_BROKER_DIR [/pki/broker]  PKI_CLIENT_DIR [/pki/chatsvc]  PKI_EDGE_DIR [/pki/edge]
#   BROKER_HOSTS   [redpanda,localhost]   DNS names in the broker certificate
#   EDGE_HOSTS     [localhost]            DNS names in the nginx certificate (+127.0.0.1)
#   CLIENT_CN      [chatsvc]              the Kafka principal chatsvc authenticates as
#   DAYS [365]  RENEW_DAYS [7]  FORCE [0]
#   BROKER_UID/BROKER_GID [101/101]       redpanda's user in its image
#   CHATSVC_UID/CHATSVC_GID [10001/10001] chatsvc's user in its image
# Ownership is changed only when run as root (as the compose service is).
set -eu

BROKER_DIR=${PKI_BROKER_DIR:-/pki/broker}
CLIENT_DIR=${PKI_CLIENT_DIR:-/pki/chatsvc}
EDGE_DIR=${PKI_EDGE_DIR:-/pki/edge}
BROKER_HOSTS=${BROKER_HOSTS:-redpanda,localhost}
EDGE_HOSTS=${EDGE_HOSTS:-localhost}
CLIENT_CN=${CLIENT_CN:-chatsvc}
DAYS=${DAYS:-365}
RENEW_DAYS=${RENEW_DAYS:-7}
FORCE=${FORCE:-0}
BROKER_UID=${BROKER_UID:-101}
BROKER_GID=${BROKER_GID:-101}
CHATSVC_UID=${CHATSVC_UID:-10001}
CHATSVC_GID=${CHATSVC_GID:-10001}
ORG="chatsvc development"

say() { echo "gen-certs: $*" >&2; }

up_to_date() {
    for f in "$BROKER_DIR/ca.pem" "$BROKER_DIR/broker.pem" "$BROKER_DIR/broker.key" \
             "$CLIENT_DIR/ca.pem" "$CLIENT_DIR/client.pem" "$CLIENT_DIR/client.key" \
             "$EDGE_DIR/ca.pem" "$EDGE_DIR/server.pem" "$EDGE_DIR/server.key"; do
        [ -s "$f" ] || return 1
    done
    cmp -s "$BROKER_DIR/ca.pem" "$CLIENT_DIR/ca.pem" || return 1
    cmp -s "$BROKER_DIR/ca.pem" "$EDGE_DIR/ca.pem" || return 1
    for cert in "$BROKER_DIR/broker.pem" "$CLIENT_DIR/client.pem" "$EDGE_DIR/server.pem"; do
        openssl verify -CAfile "$BROKER_DIR/ca.pem" "$cert" >/dev/null 2>&1 || return 1
        openssl x509 -noout -checkend $((RENEW_DAYS * 86400)) -in "$cert" >/dev/null || return 1
    done
    openssl x509 -noout -checkend $((RENEW_DAYS * 86400)) -in "$BROKER_DIR/ca.pem" >/dev/null || return 1
}

# "a,b" -> "DNS:a,DNS:b"
dns_sans() { echo "$1" | tr ',' '\n' | sed '/^$/d; s/^/DNS:/' | paste -sd, -; }

# leaf NAME CN SANS EKU: key + certificate signed by the CA, in $WORK
leaf() {
    cat >"$WORK/$1.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = $4
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
    [ -n "$3" ] && echo "subjectAltName = $3" >>"$WORK/$1.ext"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$WORK/$1.key" -out "$WORK/$1.csr" \
        -subj "/O=$ORG/CN=$2" 2>/dev/null
    openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -sha256 \
        -extfile "$WORK/$1.ext" -out "$WORK/$1.pem" 2>/dev/null
}

# install SRC DEST MODE UID GID: write beside, then rename (readers never see half a file)
put() {
    cp "$1" "$2.tmp"
    chmod "$3" "$2.tmp"
    if [ "$(id -u)" = 0 ]; then chown "$4:$5" "$2.tmp"; fi
    mv -f "$2.tmp" "$2"
}

if [ "$FORCE" != 1 ] && up_to_date; then
    say "certificates are up to date (FORCE=1 makes new ones)"
    exit 0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT INT TERM
umask 077

say "creating a development CA and the broker, client and edge certificates"
openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$WORK/ca.key" -out "$WORK/ca.pem" \
    -days "$DAYS" -sha256 -subj "/O=$ORG/CN=chatsvc development CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" 2>/dev/null
leaf broker redpanda "$(dns_sans "$BROKER_HOSTS"),IP:127.0.0.1" serverAuth
leaf client "$CLIENT_CN" "" clientAuth
leaf server "${EDGE_HOSTS%%,*}" "$(dns_sans "$EDGE_HOSTS"),IP:127.0.0.1" serverAuth
for c in broker client server; do
    openssl verify -CAfile "$WORK/ca.pem" "$WORK/$c.pem" >/dev/null
done

mkdir -p "$BROKER_DIR" "$CLIENT_DIR" "$EDGE_DIR"
put "$WORK/ca.pem" "$BROKER_DIR/ca.pem" 0444 "$BROKER_UID" "$BROKER_GID"
put "$WORK/broker.pem" "$BROKER_DIR/broker.pem" 0444 "$BROKER_UID" "$BROKER_GID"
put "$WORK/broker.key" "$BROKER_DIR/broker.key" 0400 "$BROKER_UID" "$BROKER_GID"
put "$WORK/ca.pem" "$CLIENT_DIR/ca.pem" 0444 "$CHATSVC_UID" "$CHATSVC_GID"
put "$WORK/client.pem" "$CLIENT_DIR/client.pem" 0444 "$CHATSVC_UID" "$CHATSVC_GID"
put "$WORK/client.key" "$CLIENT_DIR/client.key" 0400 "$CHATSVC_UID" "$CHATSVC_GID"
put "$WORK/ca.pem" "$EDGE_DIR/ca.pem" 0444 0 0
put "$WORK/server.pem" "$EDGE_DIR/server.pem" 0444 0 0
put "$WORK/server.key" "$EDGE_DIR/server.key" 0400 0 0
say "done: CA subject $(openssl x509 -noout -subject -in "$WORK/ca.pem")"
