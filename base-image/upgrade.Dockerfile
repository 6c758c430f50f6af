# pgdock upgrade image (`pgdock-gen upgrade`): the new major's base image plus the old major's server
# binaries, for pg_upgrade, which needs both. Debian ships one PostgreSQL major per release (bookworm 15,
# trixie 17), so the old binaries come from the old major's own base image (bookworm's postgresql-15 and
# postgresql-15-repmgr packages, as installed there). They need bookworm's libraries (libicu72, its libssl3,
# libxml2 ...): those go to a private folder beside them, and every old program and module gets a RUNPATH to
# it (patchelf), so the new major's programs never load an old library and the old ones never a new one.
# glibc is not copied: trixie's is newer, and one process has one C library.
ARG BASE_IMAGE
ARG OLD_IMAGE
FROM ${OLD_IMAGE} AS old
ARG OLD_VERSION=15
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends patchelf \
 && old="/usr/lib/postgresql/${OLD_VERSION}" out="/opt/old" \
 && private="${old}/private-lib" \
 && mkdir -p "${out}${old}" "${out}${private}" "${out}/usr/share/postgresql" \
 && cp -a "${old}/bin" "${old}/lib" "${out}${old}/" \
 && cp -a "/usr/share/postgresql/${OLD_VERSION}" "${out}/usr/share/postgresql/" \
 && elves() { find "$1" -type f -exec sh -c 'head -c4 "$1" | grep -q ELF' _ {} \; -print; } \
 && elves "${out}${old}" > /tmp/elves \
 && { xargs -a /tmp/elves -d '\n' ldd 2>/dev/null || true; } | awk '$2 == "=>" && $3 ~ /^\// {print $3}' \
      | sort -u \
      | grep -Ev '/(ld-linux[^/]*|libc|libm|libdl|libpthread|librt|libresolv|libutil|libanl|libmvec)\.so[^/]*$' \
      | xargs -r cp -L -t "${out}${private}" \
 && xargs -a /tmp/elves -d '\n' -n1 patchelf --set-rpath "${private}" \
 && for lib in "${out}${private}"/*; do patchelf --set-rpath '$ORIGIN' "$lib"; done \
 && rm -rf /var/lib/apt/lists/*

FROM ${BASE_IMAGE}
ARG OLD_VERSION=15
COPY --from=old /opt/old/ /
# the old programs run here, with their own libraries only (nothing "not found"), and report their version
RUN old="/usr/lib/postgresql/${OLD_VERSION}/bin" \
 && for program in postgres pg_ctl pg_controldata initdb; do \
      ! ldd "${old}/${program}" | grep -q 'not found' && "${old}/${program}" --version >/dev/null || exit 1; done
ENV PGDOCK_OLD_VERSION=${OLD_VERSION}
