# syntax=docker/dockerfile:1
# The production image: one image runs the API (`callpact serve`), the arq worker
# (`callpact worker`) and migrations (`callpact migrate upgrade`). See docs/deploy.md.
#
#   docker build -t callpact:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: install the project and its dependencies into a virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY tenants ./tenants
COPY reports ./reports
COPY migrations ./migrations
# A regular (not editable) install: the runtime stage gets the built package, with migrations
# and templates as package data, and no source tree. pip compiles the bytecode here, because
# the root filesystem is read-only at run time.
RUN --mount=type=cache,target=/root/.cache/pip pip install .

# --- runtime --------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# WeasyPrint's native libraries and the fonts reports are set in: DejaVu as the fallback,
# Noto for Latin, Turkish and Persian (Arabic script), Noto CJK for Chinese. The fontconfig
# package builds the system font cache at install time, so no process has to scan the fonts
# (or write a cache) at run time. Versions are not pinned: Debian stable only ships security
# fixes, and a pin would break the build on the next one.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b libfontconfig1 fontconfig \
      fonts-dejavu-core fonts-noto-core fonts-noto-cjk \
 && rm -rf /var/lib/apt/lists/*

# A fixed, numeric uid/gid: Kubernetes' runAsNonRoot can only verify a numeric user, and
# volume ownership (fsGroup) stays stable across image rebuilds.
RUN groupadd --system --gid 10001 callpact \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin callpact

COPY --from=build /opt/venv /opt/venv

# CALLPACT_VAR_DIR defaults to ./var: writable here for `docker run`; the Helm chart mounts an
# emptyDir over it because the root filesystem is read-only there. HOME and the caches point
# at /tmp, the other writable place.
WORKDIR /app
RUN mkdir var && chown 10001:10001 var

# CALLPACT_ENV=production makes the settings refuse the built-in development secrets: an image
# started without real configuration fails at once instead of running insecurely.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    CALLPACT_ENV=production

USER 10001:10001
EXPOSE 8000
# No init process: uvicorn and arq handle SIGTERM themselves, and the report renderer's child
# processes are reaped by multiprocessing.
ENTRYPOINT ["callpact"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
