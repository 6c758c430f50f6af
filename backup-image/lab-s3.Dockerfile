# An S3-protocol server for the lab (moto, from Debian's packages, over TLS: lab_s3.py says why), so
# backups and restores can be rehearsed on one machine. Never used in production.
ARG DEBIAN_IMAGE=pgdock/debian:trixie
FROM ${DEBIAN_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3-moto python3-flask python3-flask-cors tini \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY lab_s3.py /usr/local/lib/lab_s3.py
EXPOSE 5000
ENTRYPOINT ["/usr/bin/tini", "--", "python3", "/usr/local/lib/lab_s3.py"]
