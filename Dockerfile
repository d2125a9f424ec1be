# One image for the node daemon (run as root, privileged, by the DaemonSet) and the
# webhook (non-root). The build runs the README's set-up command.
FROM node:20-bookworm-slim AS build
# A C compiler for the one native helper (native/shared_map.c: the crash journal's shared
# mapping), built by npm ci against the image's own Node headers.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json tsconfig.json binding.gyp ./
COPY native ./native
COPY src ./src
COPY bin ./bin
ENV npm_config_nodedir=/usr/local
RUN npm ci --no-audit --no-fund && npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# mount/umount (util-linux) mount the FUSE filesystem and bind into containers; jemalloc is
# the webhook's allocator (deploy/base/webhook.yaml preloads it).
RUN apt-get update && apt-get install -y --no-install-recommends mount util-linux libjemalloc2 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/procview
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/build/Release/shared_map.node ./build/Release/shared_map.node
COPY --from=build /src/bin ./bin
RUN ln -s /opt/procview/bin/procview /usr/local/bin/procview
USER 65532:65532
ENTRYPOINT ["procview"]
