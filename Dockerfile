# The tether worker for docker-compose.yml or any container platform. It needs a Temporal cluster
# with the search attributes registered, and Redis, Postgres and RabbitMQ; all configuration comes
# from the environment (see .env.example).
#
# Two stages: `build` compiles the TypeScript (npm run build: tsc to dist/, and the workflow code
# bundled once into dist/workflows.bundle.js); the image runs that compiled JavaScript with the
# production dependencies only (no tsx, no TypeScript, no bundling at start-up).

FROM node:20-bookworm-slim AS build
WORKDIR /app
# `npm install` when `npm ci` refuses the lock file (it lacks @swc/core's entries for other
# platforms; versions stay those of the lock).
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund || npm install --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN (npm ci --omit=dev --no-audit --no-fund || npm install --omit=dev --no-audit --no-fund) && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY migrations ./migrations
# `docker exec <container> npx tether sessions ...`: bin/tether runs dist/cli.js here (no sources).
COPY bin ./bin

USER node
# Health server: /healthz, /readyz, /metrics.
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.METRICS_PORT||9464)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"

# Node is PID 1 (no npm or shell in between): SIGTERM from `docker stop` reaches the worker itself,
# so it drains and exits 0. It loads dist/workflows.bundle.js instead of bundling.
CMD ["node", "dist/service/worker-main.js"]
