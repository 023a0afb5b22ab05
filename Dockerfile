# syntax=docker/dockerfile:1
#
# The operator image: one statically linked binary (musl) on
# distroless/static, running as the distroless "nonroot" user (uid 65532).
#
#   docker build -t collibra-oauth-operator:0.1.0 .
#
# Expected size: about 19 MB uncompressed, about 8 MB compressed in the
# registry: distroless/static is ~2 MB, the stripped release binary ~16.5 MB
# (measured on x86_64 for 0.1.0: 16.4 MB stripped, 6.6 MB gzipped).
# The image holds the binary, CA roots (from distroless, used for Collibra
# when no --collibra-ca-file is given) and /etc/passwd for uid 65532; no
# shell, no package manager.

FROM rust:1.95-alpine AS build
# ring (rustls' crypto) compiles some C and assembly.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY . .
# Static musl binary (the default for Rust on Alpine), stripped.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    RUSTFLAGS="-C target-feature=+crt-static -C strip=symbols" \
    cargo build --release --locked --bin collibra-oauth-operator \
 && cp target/release/collibra-oauth-operator /collibra-oauth-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /collibra-oauth-operator /usr/local/bin/collibra-oauth-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/collibra-oauth-operator"]
CMD ["run"]
