#!/bin/sh
# Key-only sshd for the key in $AUTHORIZED_KEY, then the Docker engine in the foreground.
set -eu
printf '%s\n' "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
ssh-keygen -A
# PerSourcePenalties off: a test's refused login must not lock the operator out of the next tests
/usr/sbin/sshd -e -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password -o PerSourcePenalties=no
exec dockerd --host=unix:///var/run/docker.sock --cgroup-parent=/pgdock-test-host
