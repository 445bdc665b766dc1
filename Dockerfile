# The tether worker (`npm run worker`) for docker-compose.yml or any container platform. It needs
# a Temporal cluster with the search attributes registered, and Redis, Postgres and RabbitMQ; all
# configuration comes from the environment (see .env.example).
FROM node:20-bookworm-slim

WORKDIR /app
ENV NODE_ENV=production

# tsx is a runtime dependency: the worker runs from the TypeScript sources, and the workflow code
# is bundled from them at start-up. `npm install` when `npm ci` refuses the lock file (it lacks
# @swc/core's entries for other platforms; versions stay those of the lock).
COPY package.json package-lock.json ./
RUN (npm ci --omit=dev || npm install --omit=dev --no-audit --no-fund) && npm cache clean --force

COPY tsconfig.json ./
COPY src ./src
COPY migrations ./migrations

USER node
# Health server: /healthz, /readyz, /metrics.
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.METRICS_PORT||9464)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"

# Node is PID 1 and loads tsx in-process: SIGTERM from `docker stop` reaches the worker itself (the
# tsx CLI would relay it and SIGKILL a busy child), so it drains and exits 0.
CMD ["node", "--import", "tsx", "src/worker-main.ts"]
