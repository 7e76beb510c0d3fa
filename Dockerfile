# The orchestrator's image: API, dashboard and session engine in one process, with the
# OpenCode binary its internal agents run (ARCHITECTURE.md §6). docker-compose.yml builds
# it; .env.example lists its settings. The image is x86-64 only: OpenCode's npm package
# is the linux-x64 build. Its command, `orchestrator container serve`, needs no secret
# from outside: unset ones are generated on the first start and kept in the
# ORCHESTRATOR_HOME volume (cli/container.py; docker-compose's `secrets` service does it
# before PostgreSQL starts, so that PostgreSQL gets the same password).

# OpenCode from the npm registry, installed as the Makefile does. Keep the version equal
# to the Makefile's OPENCODE_VERSION (tests/deploy/test_compose.py checks it).
FROM node:20-bookworm-slim AS opencode
ARG OPENCODE_VERSION=1.18.33
WORKDIR /opt/opencode
RUN npm install --ignore-scripts --no-audit --no-fund --no-save \
        opencode-linux-x64@${OPENCODE_VERSION} \
    && test -x node_modules/opencode-linux-x64/bin/opencode

FROM python:3.11-slim

# git: session workspaces are git worktrees. ripgrep: OpenCode's search tools use the one
# on PATH instead of downloading their own at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git ripgrep \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY pyproject.toml README.md /tmp/build/
COPY src /tmp/build/src
RUN pip install /tmp/build && rm -rf /tmp/build

COPY --from=opencode /opt/opencode/node_modules/opencode-linux-x64/bin/opencode /usr/local/bin/opencode
ENV OPENCODE_BIN=/usr/local/bin/opencode

# A new named volume starts as a copy of these directories, owner included, so the
# non-root user can write to the volumes docker-compose mounts here.
RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin orchestrator \
    && mkdir -p /var/lib/orchestrator /workspaces \
    && chown orchestrator:orchestrator /var/lib/orchestrator /workspaces
ENV ORCHESTRATOR_HOME=/var/lib/orchestrator \
    WORKSPACE_ROOTS=/workspaces

USER 10001:10001
WORKDIR /home/orchestrator

EXPOSE 8000

# /ready answers 200 once the database is reachable and migrated (it migrates first).
# urlopen raises on a 503 or no answer, so the exit status says whether it is ready.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]

# Fills in the kept secrets, applies the migrations, prints the first operator token
# once (`docker-compose logs orchestrator`), then serves as `orchestrator serve` does.
CMD ["orchestrator", "container", "serve", "--host", "0.0.0.0", "--port", "8000"]
