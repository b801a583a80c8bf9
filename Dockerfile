# kube-event-watcher: the in-cluster image.
#   docker build -t kube-event-watcher:dev .
# Runs as UID 65532 with a read-only root file system: it writes only to /tmp and the state
# volume (/var/lib/kube-event-watcher). Pin the bases by digest in your registry mirror
# (--build-arg BASE=python:3.11.14-slim-bookworm@sha256:...) when you build for production.
# CI builds it from local Debian bases instead (.ci/build-image, docs/deploy.md): any pair
# of a build base and a final base with python3.11 at the same path works.

# The build base needs python3.11 with venv and headers, and gcc (mypyc); the final base
# only python3.11 (and CA certificates), at the same path (/usr/local/bin in the python
# images, /usr/bin in Debian's): the venv's python links to it.
ARG BUILD_BASE=python:3.11.14-bookworm
ARG BASE=python:3.11.14-slim-bookworm

# --- build: wheels for the package and every dependency, installed into a venv -----------
# With the `kafka` extra (aiokafka: a manylinux wheel, no compiler needed), so the image
# has every receiver type.
# With gcc, the pipeline modules are compiled with mypyc (setup.py; KEW_MYPYC=1 fails the
# build rather than fall back to pure Python). The final stage stays compiler-free.
# The venv's own pip builds the wheels: a Debian base has none outside a venv.
# The `nats` extra (nats-py, pure Python) makes the nats receiver work in the image.
FROM ${BUILD_BASE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEW_MYPYC=1
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY kube_event_watcher ./kube_event_watcher
RUN python3.11 -m venv /opt/kube-event-watcher \
    && /opt/kube-event-watcher/bin/pip wheel --no-cache-dir --wheel-dir /wheels '.[kafka,nats]' \
    && /opt/kube-event-watcher/bin/pip install --no-cache-dir --no-index --find-links /wheels 'kube-event-watcher[kafka,nats]' \
    && /opt/kube-event-watcher/bin/pip uninstall --yes pip setuptools \
    && /opt/kube-event-watcher/bin/python -m compileall -q /opt/kube-event-watcher/lib \
    && mkdir -p /state

# --- final: the venv on the runtime base; no compiler, no pip in the venv, no RUN ----------
# Nothing here or at run time needs a shell (exec-form ENTRYPOINT; the command is a Python
# script), so a base without one works: CI's has none.
FROM ${BASE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/kube-event-watcher/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    STATE_DIRECTORY=/var/lib/kube-event-watcher
COPY --from=build /opt/kube-event-watcher /opt/kube-event-watcher
COPY --from=build --chown=65532:65532 /state /var/lib/kube-event-watcher
USER 65532:65532
WORKDIR /tmp
VOLUME ["/var/lib/kube-event-watcher"]
EXPOSE 9464
ENTRYPOINT ["kube-event-watcher"]
CMD ["run"]
