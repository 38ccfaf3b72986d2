# The server's runtime image: the release binary, the libraries it loads that Debian's base lacks
# (libtorch's CPU libraries and ONNX Runtime, from the PyPI wheels set-up installs), the model
# repository, a non-root user. Built by scripts/image.sh, which stages its context in target/image
# (the binary is built on the host: no Rust toolchain in the image, and the same binary the tests ran).
# The base: debian:bookworm-slim where a registry is reachable; here scripts/base-images.sh builds
# food-api-base:bookworm from Debian's packages. Its glibc must be the build host's or newer.
ARG BASE=debian:bookworm-slim
FROM ${BASE}

RUN groupadd --system --gid 10001 food \
 && useradd --system --uid 10001 --gid food --home-dir /opt/food-api --no-create-home --shell /usr/sbin/nologin food
COPY lib/ /opt/food-api/lib/
COPY models/ /opt/food-api/models/
COPY food-api /opt/food-api/food-api
# The only folder the server writes (history, deployment log, staging of uploads): a volume in
# compose, an emptyDir under Kubernetes' read-only root filesystem.
RUN mkdir /opt/food-api/data && chown food:food /opt/food-api/data

# Which of the versions in models/ `stable` names at a first start (scripts/image.sh: the README's Lite0).
ARG STABLE_VERSION
ENV LD_LIBRARY_PATH=/opt/food-api/lib \
    ORT_DYLIB_PATH=/opt/food-api/lib/libonnxruntime.so \
    FOOD_API_STABLE_VERSION=${STABLE_VERSION} \
    FOOD_API_HOST=0.0.0.0 \
    FOOD_API_PORT=8000
WORKDIR /opt/food-api
USER food
EXPOSE 8000
# The model loads and warms up before the port opens; then /health every 2 s (the classic builder,
# which a local base needs, has no --start-interval: a short interval makes "healthy" come soon).
# The check is bash's /dev/tcp, not `food-api healthcheck`: starting the server's binary maps
# libtorch each time (0.17 s of CPU and 120 MB every 2 s per replica); bash takes a few ms.
HEALTHCHECK --interval=2s --timeout=3s --start-period=120s --retries=3 \
  CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${FOOD_API_PORT:-8000} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && read -r -t 3 status <&3 && [[ $status == 'HTTP/1.'?' 200 '* ]]"]
ENTRYPOINT ["/opt/food-api/food-api"]
