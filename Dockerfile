# syntax=docker/dockerfile:1
# chatsvc container image: multi-stage, slim, non-root, read-only-root friendly.
#
#   docker build -t chatsvc:local .
#   docker run --rm --read-only -p 8080:8080 -e CHATSVC_JWT_SECRET=... chatsvc:local
#
# The only writable path the process needs is CHATSVC_DATA_DIR (/var/lib/chatsvc, a volume:
# the embedded SQLite history and the development JWT secret live there); with ScyllaDB
# and CHATSVC_JWT_SECRET set it writes nothing at all. Bytecode is compiled at build time.

# --- build: install chatsvc and its pinned dependencies into a virtualenv ---------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1
WORKDIR /src
RUN python -m venv /opt/chatsvc
# Dependencies first (exact pins in pyproject.toml), so a code change reuses this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p chatsvc && touch chatsvc/__init__.py \
    && /opt/chatsvc/bin/pip install . \
    && /opt/chatsvc/bin/pip uninstall -y chatsvc
COPY chatsvc ./chatsvc
# The package ships its generated gRPC modules (chatsvc/admin/...): fail the build if they
# are missing rather than at the first admin call.
RUN /opt/chatsvc/bin/pip install --no-deps . \
    && /opt/chatsvc/bin/python -c "import pathlib, sys, chatsvc; \
root = pathlib.Path(chatsvc.__file__).parent; \
sys.exit(0 if any(root.rglob('*_pb2_grpc.py')) else 'generated gRPC code missing from the package')" \
    && /opt/chatsvc/bin/python -m compileall -q /opt/chatsvc \
    && /opt/chatsvc/bin/chatsvc --version

# --- runtime -----------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="chatsvc" \
      org.opencontainers.image.description="ST00CK real-time chat backend (Socket.IO, Kafka fan-out, ScyllaDB history, gRPC admin)"
ENV PATH=/opt/chatsvc/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CHATSVC_HOST=0.0.0.0 \
    CHATSVC_PORT=8080 \
    CHATSVC_GRPC_PORT=50051 \
    CHATSVC_DATA_DIR=/var/lib/chatsvc
RUN groupadd --system --gid 10001 chatsvc \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin chatsvc \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/chatsvc
COPY --from=build /opt/chatsvc /opt/chatsvc
USER 10001:10001
WORKDIR /var/lib/chatsvc
VOLUME ["/var/lib/chatsvc"]
# 8080: Socket.IO + /healthz /readyz /metrics (plain HTTP; TLS ends at the proxy).
# 50051: gRPC admin API (keep it internal).
EXPOSE 8080 50051
# No curl in the slim image: Python checks /healthz (https when CHATSVC_TLS_CERT is set).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, ssl, sys, urllib.request as u; tls = bool(os.environ.get('CHATSVC_TLS_CERT')); ctx = ssl._create_unverified_context() if tls else None; url = ('https' if tls else 'http') + '://127.0.0.1:' + os.environ.get('CHATSVC_PORT', '8080') + '/healthz'; sys.exit(0 if u.urlopen(url, timeout=4, context=ctx).status == 200 else 1)"]
# chatsvc drains on SIGTERM: sockets get session_end {reconnect: true}, then it exits.
STOPSIGNAL SIGTERM
CMD ["chatsvc", "serve"]
