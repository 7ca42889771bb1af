# An S3-compatible server for the container test on machines that cannot pull MinIO:
# moto_server (PyPI moto, S3 only) in a virtual environment, with boto3 for the bucket set-up
# (docker/compose.podman.yaml runs it as the minio service). MinIO stays the production choice.
#
# The build context is a directory of wheels that the host downloaded with pip (containers may
# not reach PyPI the way the host does: scripts/container-test runs
#   pip download --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
#       --dest DIR 'moto[s3]==5.2.1' flask flask-cors
# and builds with `podman build -f docker/podman/moto.Dockerfile DIR`).
ARG BASE_IMAGE=localhost/debian:bookworm
FROM ${BASE_IMAGE}

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends python3 python3-venv \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10002 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin moto
COPY *.whl /tmp/wheels/
RUN python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install --no-cache-dir --quiet --no-index --find-links /tmp/wheels 'moto[s3]' flask flask-cors \
    && rm -rf /tmp/wheels

ENV PATH=/opt/moto/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER moto
EXPOSE 9000
CMD ["moto_server", "-H", "0.0.0.0", "-p", "9000"]
