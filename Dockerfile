# Arka OS HCM service image: the program only, never HCM data.
# The client's HCM, config and logs are mounted at /hcm, /config and /logs (see docker-compose.yml).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Python 3.11 from Debian, git (the HCM is a git repository), curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb

# Non-root service user; its uid/gid (10001) is what the mounted folders must be writable by
# (or run the container with `user: "<uid>:<gid>"` matching the owner of the host folders).
RUN groupadd --system --gid 10001 arka \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/arka --create-home \
      --shell /usr/sbin/nologin arka \
 && mkdir -p /hcm /config /logs \
 && chown 10001:10001 /hcm /config /logs \
 && git config --system safe.directory /hcm

# Dependencies first (their own layer, rebuilt only when pyproject.toml changes),
# then the package itself without dependencies.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml requirements.lock /src/
RUN python3 -c 'import tomllib; d = tomllib.load(open("/src/pyproject.toml", "rb")); \
print("\n".join(d["build-system"]["requires"] + d["project"]["dependencies"]))' >/tmp/requirements.txt \
 && pip install -c /src/requirements.lock -r /tmp/requirements.txt \
 && rm -f /tmp/requirements.txt

COPY docker/entrypoint.sh /usr/local/bin/arka-entrypoint
RUN chmod 0755 /usr/local/bin/arka-entrypoint

COPY arka_git_hcm /src/arka_git_hcm
COPY pyproject.toml README.md* /src/
RUN pip install --no-deps --no-build-isolation /src \
 && rm -rf /src \
 && arka-hcm --help >/dev/null

ENV ARKA_HCM_PATH=/hcm \
    ARKA_CONFIG_PATH=/config \
    ARKA_LOG_PATH=/logs \
    ARKA_ENV=production \
    ARKA_TENANT_ID=default \
    ARKA_WORKERS=1

USER 10001:10001
WORKDIR /home/arka
VOLUME ["/hcm", "/config", "/logs"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS -m 4 http://127.0.0.1:8080/health >/dev/null || exit 1

ENTRYPOINT ["/usr/local/bin/arka-entrypoint"]
CMD []
