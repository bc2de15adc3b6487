# syntax=docker/dockerfile:1
# powertune as a container image (docs/install.md):
#
#   docker build -t powertune .
#   docker run --rm powertune --version
#   docker run --rm -p 4000:4000 -e OPENAI_API_KEY -e ANTHROPIC_API_KEY \
#     -v "$PWD/examples/gateway.toml:/etc/powertune/gateway.toml:ro" \
#     powertune gateway --config /etc/powertune/gateway.toml --listen 0.0.0.0:4000
#
# Stage 1 builds the release binary with the locked dependencies; stage 2 is a
# distroless runtime (glibc, CA certificates, no shell, no package manager) running
# as an unprivileged user.

FROM rust:1-bookworm AS build
WORKDIR /src
# The workspace, less what .dockerignore leaves out (sources read at compile time,
# such as docs/schema/ and examples/runbook.toml, are kept).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p powertune \
 && install -D -m 0755 target/release/powertune /out/powertune

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/powertune /usr/local/bin/powertune
COPY examples /usr/share/powertune/examples
USER nonroot:nonroot
WORKDIR /home/nonroot
ENV RUST_LOG=info
# gateway 4000, apm serve 4318 (OTLP/HTTP) and 4317 (OTLP/gRPC), target 8080
EXPOSE 4000 4318 4317 8080
ENTRYPOINT ["/usr/local/bin/powertune"]
CMD ["--help"]
