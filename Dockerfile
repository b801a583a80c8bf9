# kube-event-watcher: the in-cluster image.
#   docker build -t kube-event-watcher:dev .
# Runs as UID 65532 with a read-only root file system: it writes only to /tmp and the state
# volume (/var/lib/kube-event-watcher). Pin the base by digest in your registry mirror
# (python:3.11.14-slim-bookworm@sha256:...) when you build for production.

# --- build: wheels for the package and every dependency, installed into a venv -----------
# The full (not slim) image of the same Python and Debian release: it has gcc, so the
# pipeline modules are compiled with mypyc (setup.py; KEW_MYPYC=1 fails the build rather
# than fall back to pure Python). The final stage stays slim and compiler-free.
FROM python:3.11.14-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    KEW_MYPYC=1
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY kube_event_watcher ./kube_event_watcher
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && python -m venv /opt/kube-event-watcher \
    && /opt/kube-event-watcher/bin/pip install --no-cache-dir --no-index --find-links /wheels kube-event-watcher \
    && /opt/kube-event-watcher/bin/pip uninstall --yes pip setuptools \
    && /opt/kube-event-watcher/bin/python -m compileall -q /opt/kube-event-watcher/lib \
    && mkdir -p /state

# --- final: the venv on the same slim base; no compiler, no pip use, no package manager ----
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/kube-event-watcher/bin:$PATH \
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
