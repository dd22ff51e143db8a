# syntax=docker/dockerfile:1
FROM node:24-bookworm-slim AS build
WORKDIR /app
# patches/ holds the dependency patches that npm ci applies (postinstall).
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim
ENV NODE_ENV=production
# argon2 allocates its memory on libuv worker threads; fewer malloc arenas keep
# that memory from staying resident per thread after a reconnect storm.
ENV MALLOC_ARENA_MAX=2
# Each argon2 verification takes its memory cost (19 MiB) in one allocation.
# glibc serves the first from mmap and gives it back, then raises its mmap
# threshold past that size, so later ones come from an arena, which keeps the
# freed memory: a PSK storm ended at 199-201 MB. A fixed threshold of 4 MiB
# maps every such allocation on its own and returns it when freed (154-163 MB
# after the same storm), with the same CPU per request in paired rounds
# (authz, cached authn, telemetry: BENCH_COMPARE_ENV).
ENV MALLOC_MMAP_THRESHOLD_=4194304
# Node 24's V8 grows the young generation with the allocation rate: under
# telemetry load its new space reached 128 MB (Node 20: 32 MB) while the live
# heap stayed under 80 MB, and RSS rose from 187 to 246 MB. Semi-spaces of
# 16 MB, Node 20's size, kept it at 32 MB (RSS 160 MB in the same bench);
# 8 MB keeps a service that has imported devices and run a command job under
# 200 MB (telemetry 187 against 200-214 MB, commands 190 against 204-214),
# with the same CPU per request in paired rounds (authz +0.6 %, cached authn
# -1.5 %, telemetry +3.8 %, subscription -3.1 %: noise).
# V8's background threads (its compilers, and GC helpers) number 4 by default:
# on a 2-CPU container they compete with the main thread, which does all the
# service's work, and 2 made a cold reconnect storm about 8 % faster.
ENV NODE_OPTIONS="--max-semi-space-size=8 --v8-pool-size=2"
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
USER node
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# V8 lets the old generation grow to up to 4 times what survived the last
# full collection before it collects again. Under command load (the requests
# wait on Postgres, so more of their garbage outlives the young generation)
# that took RSS to 282 MB while the live heap stayed near 50 MB. A growth of
# 50 % kept it at 187 MB, and 172 / 177 MB under cached authn / telemetry
# (against 184 / 197), with the same CPU per request in paired rounds (npm
# run bench, BENCH_COMPARE_NODE). A V8 flag: NODE_OPTIONS cannot carry it.
# V8 also pretenures: once most objects of an allocation site outlive two
# scavenges, it allocates that site's objects straight in the old generation,
# and in our runs kept doing so for as long as the process ran (objects
# allocated there carry no survival feedback).
# A command job (requests waiting on Postgres) was enough for it to pretenure
# the objects of every later request; authz then filled the old generation
# with garbage, collected in full every 1-2 s, and measured 67 % of the bare
# handler instead of 82 % (cached authn 62 against 75 %), medians of three
# alternating runs of the import, the command job and both scenarios
# (docs/benchmarks.md). A V8 flag too.
CMD ["node", "--heap-growing-percent=50", "--no-allocation-site-pretenuring", "dist/main.js"]
