# syntax=docker/dockerfile:1
#
# The operator image: one statically linked binary (glibc, crt-static), CA roots and an
# /etc/passwd entry for uid 65532 on an empty base. No shell, no package
# manager, no base image to pull or patch.
#
# The binary is built outside this file (goreleaser/ko style), so that the
# same Dockerfile serves `make image` here (podman) and `docker buildx` in a
# release pipeline: `hack/image/rootfs.sh ARCH` assembles
# dist/image/linux-ARCH/ (binary, CA roots, passwd, group), then
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .
#
# picks each platform's tree by TARGETARCH (set by BuildKit and by
# podman/buildah). `make image` does both steps for the host's architecture.

FROM scratch
ARG TARGETARCH
COPY dist/image/linux-${TARGETARCH}/ /
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/collibra-oauth-operator"]
CMD ["run"]
