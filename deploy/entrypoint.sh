#!/bin/sh
# Lading container entrypoint.
#
#   serve [ARGS]   apply database migrations, then exec `lading serve` (the default)
#   anything else  exec'd as is (e.g. `lading migrate current`, `sh`)
#
# Secrets may come from files (compose/swarm secrets): LADING_DATABASE_URL_FILE,
# LADING_S3_ACCESS_KEY_FILE, LADING_S3_SECRET_KEY_FILE, LADING_AUTH_ADMIN_PASSWORD_FILE,
# POSTGRES_PASSWORD_FILE. Without LADING_DATABASE_URL but with POSTGRES_HOST, the
# PostgreSQL URL is built from POSTGRES_HOST/PORT/USER/PASSWORD/DB.
set -eu

for var in LADING_DATABASE_URL LADING_S3_ACCESS_KEY LADING_S3_SECRET_KEY \
           LADING_AUTH_ADMIN_PASSWORD POSTGRES_PASSWORD; do
    file_var="${var}_FILE"
    eval "file=\${$file_var:-}"
    if [ -n "$file" ]; then
        value=$(cat "$file")
        export "$var=$value"
        unset "$file_var"
    fi
done

if [ -z "${LADING_DATABASE_URL:-}" ] && [ -n "${POSTGRES_HOST:-}" ]; then
    LADING_DATABASE_URL=$(python3 -c '
import os
from urllib.parse import quote
env = os.environ
user = quote(env.get("POSTGRES_USER", "lading"), safe="")
password = quote(env.get("POSTGRES_PASSWORD", ""), safe="")
auth = user + ":" + password if password else user
host = env["POSTGRES_HOST"]
port = env.get("POSTGRES_PORT", "5432")
db = quote(env.get("POSTGRES_DB", "lading"), safe="")
print("postgresql+psycopg://" + auth + "@" + host + ":" + port + "/" + db)
')
    export LADING_DATABASE_URL
fi
# Lading itself never reads these.
unset POSTGRES_PASSWORD

if [ "$#" -eq 0 ]; then
    set -- serve
fi

if [ "$1" = "serve" ]; then
    shift
    if [ "${LADING_MIGRATE:-true}" = "true" ]; then
        # Retry: the database may still be starting, or another replica may be migrating.
        attempt=1
        until lading migrate upgrade; do
            if [ "$attempt" -ge "${LADING_MIGRATE_ATTEMPTS:-30}" ]; then
                echo "lading-entrypoint: migrations failed $attempt times, giving up" >&2
                exit 1
            fi
            attempt=$((attempt + 1))
            sleep 2
        done
    fi
    exec lading serve --host "${LADING_HOST:-0.0.0.0}" "$@"
fi

exec "$@"
