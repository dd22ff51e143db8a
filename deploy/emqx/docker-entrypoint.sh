#!/bin/sh
# Start-up of the EMQX container: renders the device-link EMQX configuration
# with this deployment's secrets, then runs the given command (the image's own
# entrypoint and `emqx foreground`, see docker-compose.yml).
#
#   DEVICE_LINK_HOOK_TOKEN  the service's EMQX_HOOK_TOKEN; EMQX sends it as
#                           "Authorization: Bearer <token>" on every call
#   DEVICE_LINK_API_KEY     the service's EMQX_API_KEY
#   DEVICE_LINK_API_SECRET  the service's EMQX_API_SECRET
#
# The names carry no EMQX_ prefix on purpose: EMQX reads every EMQX_* variable
# as a configuration override, and EMQX_API_KEY would replace its own api_key
# settings. DEVICE_LINK_EMQX_TEMPLATE and DEVICE_LINK_EMQX_ETC move the input
# and output (the repository's tests render into a temporary directory).
set -eu

template="${DEVICE_LINK_EMQX_TEMPLATE:-/opt/device-link/emqx.conf}"
etc="${DEVICE_LINK_EMQX_ETC:-/opt/emqx/etc}"
placeholder='@DEVICE_LINK_HOOK_TOKEN@'

fail() {
  echo "device-link emqx start-up: $*" >&2
  exit 78
}

token="${DEVICE_LINK_HOOK_TOKEN:-}"
api_key="${DEVICE_LINK_API_KEY:-}"
api_secret="${DEVICE_LINK_API_SECRET:-}"

[ -n "$token" ] || fail "DEVICE_LINK_HOOK_TOKEN is not set"
[ "${#token}" -ge 16 ] || fail "DEVICE_LINK_HOOK_TOKEN must be at least 16 characters"
# Bearer token characters (RFC 7235 token68): they need no escaping in the
# header, in a HOCON string or in the sed replacement below.
case "$token" in
  *[!A-Za-z0-9._~+/=-]*) fail "DEVICE_LINK_HOOK_TOKEN may hold only letters, digits and . _ ~ + / = -" ;;
esac
[ -n "$api_key" ] || fail "DEVICE_LINK_API_KEY is not set"
case "$api_key" in
  *[!A-Za-z0-9._-]*) fail "DEVICE_LINK_API_KEY may hold only letters, digits and . _ -" ;;
esac
[ -n "$api_secret" ] || fail "DEVICE_LINK_API_SECRET is not set"
# EMQX splits each bootstrap line at ':' into key, secret and role.
case "$api_secret" in
  *[!A-Za-z0-9._~+/=-]*) fail "DEVICE_LINK_API_SECRET may hold only letters, digits and . _ ~ + / = -" ;;
esac

[ -r "$template" ] || fail "cannot read the configuration template $template"
grep -q "$placeholder" "$template" || fail "$template has no $placeholder placeholder"

umask 077
rendered="$etc/emqx.conf"
sed "s|$placeholder|$token|g" "$template" > "$rendered.tmp"
if grep -q "$placeholder" "$rendered.tmp"; then
  rm -f "$rendered.tmp"
  fail "the hook token placeholder is still in the rendered configuration"
fi
mv "$rendered.tmp" "$rendered"

# EMQX (re)creates these keys from the file at every start, so a changed
# secret takes effect on restart.
printf '%s:%s:administrator\n' "$api_key" "$api_secret" > "$etc/device-link-api-keys.bootstrap"

exec "$@"
