#!/bin/sh
# Entrypoint of the alertmanager container (docker-compose.yml). Alertmanager cannot read
# environment variables in its config, so the webhook URLs (secrets) are written to files on
# a tmpfs that alertmanager.yml reads with `api_url_file`. Nothing is printed or persisted.
set -eu
dir=/run/alertmanager
mkdir -p "$dir"
umask 077
page="${ALERT_WEBHOOK_URL:-}"
ticket="${ALERT_TICKET_WEBHOOK_URL:-$page}"
if [ -z "$page" ]; then
  echo "alertmanager: ALERT_WEBHOOK_URL is not set; notifications will fail until it is" >&2
  # A syntactically valid URL that goes nowhere, so the config still loads.
  page="http://127.0.0.1:9/alert-webhook-not-configured"
  ticket="${ALERT_TICKET_WEBHOOK_URL:-$page}"
fi
printf '%s' "$page" > "$dir/page_webhook_url"
printf '%s' "$ticket" > "$dir/ticket_webhook_url"
exec /bin/alertmanager "$@"
