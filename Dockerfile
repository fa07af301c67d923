# gitmesh image: slim, non-root, no build tools in the final stage.
# Pin the base by digest in your registry mirror; the tag below is pinned to a patch release.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gitmesh ./gitmesh
COPY example-repo ./example-repo
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
# pip compiles bytecode as it installs: the root filesystem is read-only at run time, and
# compiling every import on each start cost 2.9-3.7 s against 1.2-1.4 s.
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 65532:65532
ENV HOME=/tmp PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["gitmesh"]
CMD ["run"]
