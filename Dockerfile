# syntax=docker/dockerfile:1
# voxplane: one image for every service; the command picks which one runs.
#   docker build -t voxplane .
#   docker run --rm -p 50051:50051 voxplane dev     # try it: migrates an embedded SQLite, prints a dev key, serves all
#   docker run --rm -e VOXPLANE_DATABASE_URL=postgresql://... voxplane migrate
#   docker run --rm -e VOXPLANE_DATABASE_URL=postgresql://... -p 50051:50051 voxplane   # serve all, on a migrated database
# docker-compose.yml runs one service per container this way, and the edge from the `edge` stage below
# (docker build --target edge -t voxplane-edge .).
# Generated gRPC code is committed, so the build needs no protoc and no dev extras.
# Debian 12, whose Kamailio (5.6) and rtpengine (10.5) packages the edge stage installs: the ones the tests
# run against (`.ci/run` installs them on Debian 12 too).
FROM python:3.11-slim-bookworm AS voxplane

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Fixed numeric ids so orchestrators can check runAsNonRoot without resolving names.
RUN groupadd --system --gid 10001 voxplane \
 && useradd --system --uid 10001 --gid voxplane --home-dir /var/lib/voxplane --create-home voxplane

# Dependencies first, exactly as requirements.lock pins them (hashes checked; `make lock` writes it from
# pyproject.toml's dependencies and `server` extra, and setuptools, the build backend): editing the sources
# does not reinstall grpcio & co.
COPY requirements.lock /src/
RUN pip install --require-hashes -r /src/requirements.lock

COPY pyproject.toml README.md /src/
COPY protos /src/protos
COPY clients/python /src/clients/python
COPY services /src/services
# Built with the locked setuptools and nothing fetched: every dependency is there already (pip check says
# so). The sources are removed once installed, so nothing but site-packages' `voxplane` is importable.
RUN pip install --no-deps --no-build-isolation "/src" && pip check && rm -rf /src

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

# The edge: Kamailio and rtpengine from Debian's packages (running.PACKAGES), run by `voxplane edge run`,
# which renders kamailio.cfg from the VOXPLANE_EDGE_* settings. SIP, not gRPC: no grpc.health.v1 check.
FROM voxplane AS edge
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends kamailio kamailio-sqlite-modules kamailio-postgres-modules \
    rtpengine-daemon \
 && rm -rf /var/lib/apt/lists/*
USER 10001:10001
HEALTHCHECK NONE
EXPOSE 5060/udp 5060/tcp
CMD ["edge", "run"]

# The default target (`docker build .`): the services' image, without the edge's packages.
FROM voxplane
