# videoteller: one image, built with the same setup script as a developer machine and CI.
# The mediasoup worker is compiled from the sources in mediasoup's npm tarball against Debian's
# libraries (no binary downloads), so the image builds in an air-gapped bank network that mirrors
# only the npm registry and Debian's archive.
FROM node:20-bookworm

WORKDIR /app
# Build tools for the mediasoup worker come from Debian (installed by the script).
COPY package.json package-lock.json ./
COPY scripts ./scripts
ENV VIDEOTELLER_CACHE=/opt/videoteller-cache
RUN bash scripts/build-mediasoup-worker.sh

COPY . .
RUN bash scripts/setup.sh && npm prune --omit=dev --no-audit --no-fund \
 && mkdir -p /var/lib/videoteller && chown node:node /var/lib/videoteller

ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 DATA_DIR=/var/lib/videoteller
# Media: UDP/TCP ports for WebRTC. RTC_ANNOUNCED_ADDRESS must be set at run time to the address
# phones reach (the host's public IP or DNS name): browsers cannot use 0.0.0.0 as a candidate.
ENV RTC_LISTEN_IP=0.0.0.0 RTC_MIN_PORT=40000 RTC_MAX_PORT=40099
EXPOSE 8080 40000-40099/udp 40000-40099/tcp
VOLUME /var/lib/videoteller
USER node
CMD ["node", "--import", "tsx", "src/main.ts"]
