#!/bin/sh
# Development TLS material for EMQX's 8883 listener: a throw-away CA and a
# server certificate it signs. Never use these in production.
#
#   sh deploy/emqx/dev-certs.sh [output directory]     (default: deploy/emqx/certs)
#
# Writes ca.crt (give it to MQTT clients, e.g. mosquitto_pub --cafile),
# server.crt and server.key. Does nothing when they already exist; delete the
# directory to start over. The CA's private key is deleted once it has signed
# the server certificate.
#
#   DEV_CERTS_SAN    subjectAltName of the server certificate
#                    (default: DNS:localhost,DNS:emqx,IP:127.0.0.1)
#   DEV_CERTS_OWNER  uid:gid to give the files (docker-compose.yml sets the
#                    EMQX container's user, 1000:1000)
set -eu

out="${1:-deploy/emqx/certs}"
san="${DEV_CERTS_SAN:-DNS:localhost,DNS:emqx,IP:127.0.0.1}"
days=825

if [ -s "$out/ca.crt" ] && [ -s "$out/server.crt" ] && [ -s "$out/server.key" ]; then
  echo "dev-certs: $out already holds ca.crt, server.crt and server.key"
  exit 0
fi

mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
umask 077

openssl req -x509 -new -newkey rsa:2048 -nodes -sha256 -days "$days" \
  -subj "/CN=device-link-mqtt development CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null

openssl req -new -newkey rsa:2048 -nodes -sha256 \
  -subj "/CN=localhost" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null

printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' \
  "$san" > "$work/server.ext"

openssl x509 -req -sha256 -days "$days" -in "$work/server.csr" \
  -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -CAserial "$work/ca.srl" \
  -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null

openssl verify -CAfile "$work/ca.crt" "$work/server.crt" >/dev/null

cp "$work/ca.crt" "$work/server.crt" "$work/server.key" "$out/"
chmod 0644 "$out/ca.crt" "$out/server.crt"
chmod 0600 "$out/server.key"
if [ -n "${DEV_CERTS_OWNER:-}" ]; then
  chown "$DEV_CERTS_OWNER" "$out/ca.crt" "$out/server.crt" "$out/server.key"
fi
echo "dev-certs: wrote $out/ca.crt, $out/server.crt and $out/server.key ($san)"
