# Lading container image.
#
#   docker build -t lading .
#   docker build --build-arg BASE_IMAGE=registry.example.com/python:3.11-slim-bookworm -t lading .
#
# Offline builds: put wheels of every dependency (and of setuptools and wheel) into
# ./wheelhouse/ and pass --build-arg PIP_NO_INDEX=1.
#
# No secret is baked in: configuration comes from LADING_* variables at run time
# (see docs/deployment.md and deploy/lading.env.example).

ARG BASE_IMAGE=python:3.11-slim-bookworm

# --- builder: build wheels of Lading and its dependencies, install them into a venv ---
FROM ${BASE_IMAGE} AS builder
ARG PIP_INDEX_URL
ARG PIP_NO_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_FIND_LINKS=/src/wheelhouse
WORKDIR /src
COPY . /src
RUN python3 -m venv /opt/lading \
 && /opt/lading/bin/pip wheel --wheel-dir /wheels /src \
 && /opt/lading/bin/pip install --no-index --find-links /wheels lading \
 && /opt/lading/bin/lading --help > /dev/null

# --- runtime: the venv only, run as an unprivileged user ---
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --system --gid 10001 lading \
 && useradd --system --uid 10001 --gid lading --home-dir /var/lib/lading \
      --no-create-home --shell /usr/sbin/nologin lading \
 && mkdir -p /var/lib/lading \
 && chown lading:lading /var/lib/lading
COPY --from=builder /opt/lading /opt/lading
COPY deploy/entrypoint.sh /usr/local/bin/lading-entrypoint
COPY deploy/healthcheck.py /usr/local/lib/lading-healthcheck.py
# Two uvicorn workers, where bare `lading serve` starts one: the image is meant for the
# PostgreSQL stack (docs/deployment.md, "Worker processes"). LADING_WORKERS changes it.
ENV PATH=/opt/lading/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LADING_HOST=0.0.0.0 \
    LADING_PORT=5000 \
    LADING_DATA_DIR=/var/lib/lading \
    LADING_LOG_FORMAT=json \
    LADING_WORKERS=2 \
    LADING_SHUTDOWN_TIMEOUT=30
USER lading:lading
WORKDIR /var/lib/lading
VOLUME ["/var/lib/lading"]
EXPOSE 5000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/lading/bin/python", "/usr/local/lib/lading-healthcheck.py"]
ENTRYPOINT ["/bin/sh", "/usr/local/bin/lading-entrypoint"]
CMD ["serve"]
