# syntax=docker/dockerfile:1
#
# ip-masq-agent image: one `deno compile`d binary on top of Kubernetes' distroless-iptables.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t <registry>/ip-masq-agent:0.1.0 .
#
# Needs BuildKit (the default builder since Docker 23): the build stage runs on the build
# machine's own platform and cross-compiles with `deno compile --target`, so no emulation is
# needed for arm64. The agent needs only NET_ADMIN and NET_RAW at run time (see
# examples/ip-masq-agent.yaml).

# Keep in step with the Deno that .ci/run installs (tests/examples_test.ts checks it).
ARG DENO_VERSION=2.9.6
# v0.7.x is built on gcr.io/distroless/base-debian12 (bookworm glibc, iptables 1.8 with the
# legacy/nft iptables-wrapper, nft, ipset). Pin the digest as well when you publish.
ARG DISTROLESS_IPTABLES_VERSION=v0.7.8

# ---- build: compile the agent with the permission set from deno.json baked in -------------
FROM --platform=$BUILDPLATFORM denoland/deno:${DENO_VERSION} AS build
ARG TARGETARCH
WORKDIR /src
# Dependencies first, so that a code change does not download them again.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY main.ts ./
COPY lib/ ./lib/
# The tasks carry `--no-prompt -P=agent` (read /etc/config, run the ten tools of the two
# iptables backends and `nft`, as deno.json's "permissions.agent" lists them, nothing else);
# the compiled binary enforces exactly that set. They also carry the agent's V8
# flags (`--v8-flags=--lite-mode,--expose-gc`: flat memory over reconciles, docs/benchmarks.md),
# which the binary bakes in the same way.
RUN case "${TARGETARCH}" in \
      amd64) deno task compile && cp dist/ip-masq-agent /ip-masq-agent ;; \
      arm64) deno task compile:arm64 && cp dist/ip-masq-agent-arm64 /ip-masq-agent ;; \
      *) echo "unsupported TARGETARCH '${TARGETARCH}': use linux/amd64 or linux/arm64" \
           "with BuildKit" >&2; exit 1 ;; \
    esac

# ---- libgcc: the one shared library distroless-iptables is missing -------------------------
# Deno binaries (denort, which `deno compile` wraps) are Rust programs linked against glibc AND
# libgcc_s.so.1 (stack unwinding). distroless-iptables is built on distroless/base, which has
# glibc but not libgcc_s (only the distroless "cc" images ship it), so the binary would fail to
# start with "libgcc_s.so.1: cannot open shared object file". Copy just that file from the
# cc image of the same Debian release, into the multiarch directory where the dynamic linker
# looks. This stage is pulled for the target platform, so the library matches the binary.
FROM gcr.io/distroless/cc-debian12 AS cc

FROM scratch AS libgcc-amd64
COPY --from=cc /lib/x86_64-linux-gnu/libgcc_s.so.1 /lib/x86_64-linux-gnu/libgcc_s.so.1

FROM scratch AS libgcc-arm64
COPY --from=cc /lib/aarch64-linux-gnu/libgcc_s.so.1 /lib/aarch64-linux-gnu/libgcc_s.so.1

FROM libgcc-${TARGETARCH} AS libgcc

# ---- runtime ---------------------------------------------------------------------------------
FROM registry.k8s.io/build-image/distroless-iptables:${DISTROLESS_IPTABLES_VERSION}
# distroless-iptables is assembled FROM scratch and declares no PATH; the agent runs the
# iptables tools by name, so do not rely on the container runtime's default.
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY --from=libgcc /lib/ /lib/
COPY --from=build /ip-masq-agent /ip-masq-agent
# Exec form: the agent is PID 1 itself and handles SIGTERM/SIGINT (exit 0, rules left in place)
# and SIGHUP (reconcile now); no shell or init is involved.
ENTRYPOINT ["/ip-masq-agent"]
