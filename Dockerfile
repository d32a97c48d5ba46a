# ratelimitd: multi-stage build on Debian 12; the runtime image holds only the
# binary and its shared libraries, runs as a non-root user, and checks itself.
FROM debian:12-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libmicrohttpd-dev libhiredis-dev libjson-c-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY include ./include
COPY src ./src
RUN cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRL_TESTS=OFF \
 && cmake --build build -j"$(nproc)" --target ratelimitd \
 && strip build/ratelimitd

FROM debian:12-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libmicrohttpd12 libhiredis0.14 libjson-c5 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ratelimitd
COPY --from=build /src/build/ratelimitd /usr/local/bin/ratelimitd
COPY deploy/policies.example.json /etc/ratelimitd/config.json
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/ratelimitd"]
CMD ["--config", "/etc/ratelimitd/config.json", "--listen", "0.0.0.0:8080"]
