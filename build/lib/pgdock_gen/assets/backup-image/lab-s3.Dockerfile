# An S3-protocol server for the lab (moto, from Debian's packages), so backups and
# restores can be rehearsed on one machine. Never used in production.
ARG DEBIAN_IMAGE=pgdock/debian:trixie
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-moto python3-flask python3-flask-cors tini \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
EXPOSE 5000
ENTRYPOINT ["/usr/bin/tini", "--", "python3", "-m", "moto.server", "-H", "0.0.0.0", "-p", "5000"]
