# PostgreSQL 15 from Debian's packages, for machines that cannot pull the official postgres:15
# image (docker/compose.podman.yaml). It honours what docker/compose.yaml gives the official one:
# POSTGRES_USER, POSTGRES_DB, POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD), the data directory
# /var/lib/postgresql/data and the init scripts (*.sql, *.sh) in /docker-entrypoint-initdb.d.
ARG BASE_IMAGE=localhost/debian:bookworm
FROM ${BASE_IMAGE}

RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get -q update \
    && apt-get -q install -y --no-install-recommends postgresql-15 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 700 /var/lib/postgresql/data

COPY docker/podman/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh

ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
USER postgres
STOPSIGNAL SIGINT
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
CMD ["postgres"]
