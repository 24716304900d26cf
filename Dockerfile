# syntax=docker/dockerfile:1
# voxplane: one image for every service; the command picks which one runs.
#   docker build -t voxplane .
#   docker run --rm -p 50051:50051 voxplane dev     # try it: migrates an embedded SQLite, prints a dev key, serves all
#   docker run --rm -e VOXPLANE_DATABASE_URL=postgresql://... voxplane migrate
#   docker run --rm -e VOXPLANE_DATABASE_URL=postgresql://... -p 50051:50051 voxplane   # serve all, on a migrated database
# docker-compose.yml runs one service per container this way.
# Generated gRPC code is committed, so the build needs no protoc and no dev extras.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fixed numeric ids so orchestrators can check runAsNonRoot without resolving names.
RUN groupadd --system --gid 10001 voxplane \
 && useradd --system --uid 10001 --gid voxplane --home-dir /var/lib/voxplane --create-home voxplane

# Dependencies first, read from pyproject.toml alone: editing the sources does not reinstall grpcio & co.
# The servers need the client's dependencies and the `server` extra's.
COPY pyproject.toml /src/
RUN python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['server']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY README.md /src/
COPY protos /src/protos
COPY clients/python /src/clients/python
COPY services /src/services
# The sources are removed once installed, so nothing but site-packages' `voxplane` is importable.
RUN pip install "/src[server]" && rm -rf /src

# Listen on every interface inside the container (so `serve` needs VOXPLANE_TLS_CERT and VOXPLANE_TLS_KEY,
# or --plaintext); the default SQLite database (no
# VOXPLANE_DATABASE_URL) lives under the user's home, which is the only writable place.
ENV VOXPLANE_HOST=0.0.0.0 \
    VOXPLANE_DATA_DIR=/var/lib/voxplane/data
WORKDIR /var/lib/voxplane
USER 10001:10001

EXPOSE 50051

# grpc.health.v1 Check of the server as a whole, on the default port. Plaintext: with VOXPLANE_TLS_CERT set,
# override it (`voxplane health --ca CA.pem --server-name NAME 127.0.0.1:50051`; README, "TLS").
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["voxplane", "health", "--timeout", "3", "127.0.0.1:50051"]

ENTRYPOINT ["voxplane"]
CMD ["serve", "all", "--host", "0.0.0.0", "--port", "50051"]
