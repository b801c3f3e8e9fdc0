#!/bin/sh
# docker-compose.yml runs this once before NATS starts (service nats-passwords): a random password per NATS user,
# kept across restarts. NATS gets auth.conf with the passwords filled in ($OUT/nats/auth.conf; nats-server's
# variables do not cross include files); each stage's volume gets its own password only ($OUT/<stage>/password).
set -eu
OUT=${OUT:-/out}
TEMPLATE=${TEMPLATE:-/etc/nats/auth.conf}
USERS="media-gateway stt turn-detector fast-responder deep-responder tts session-context observer admin debug agents tools"
conf="$OUT/nats/auth.conf"
if [ -s "$conf" ]; then
  echo "NATS passwords exist ($conf)"
  exit 0
fi
umask 077
cp "$TEMPLATE" "$conf.tmp"
for user in $USERS; do
  password=$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | cut -c1-32)
  variable="NATS_PASSWORD_$(echo "$user" | tr 'a-z-' 'A-Z_')"
  sed -i "s/password: \$$variable\$/password: \"$password\"/" "$conf.tmp"
  if [ -d "$OUT/$user" ]; then
    # The stage runs as a non-root user; the volume is its alone.
    printf %s "$password" > "$OUT/$user/password"
    chmod 0444 "$OUT/$user/password"
  fi
done
if grep -q 'password: \$' "$conf.tmp"; then
  echo "a user in $TEMPLATE has no password here: update USERS" >&2
  exit 1
fi
mv "$conf.tmp" "$conf"
echo "NATS passwords written for: $USERS"
