"""Container HEALTHCHECK: exit 0 when Lading's /readyz answers 200, else 1."""

import os
import sys
import urllib.error
import urllib.request

port = os.environ.get("LADING_PORT", "5000")
path = os.environ.get("LADING_HEALTHCHECK_PATH", "/readyz")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=4) as response:
        sys.exit(0 if response.status == 200 else 1)
except (OSError, urllib.error.URLError) as exc:
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
