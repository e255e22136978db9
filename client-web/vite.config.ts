import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The browser pages, built as a multi-page app: `customer/index.html` → /customer/,
 * `teller/index.html` → /teller/, `compliance/index.html` → /compliance/. The server (src/app.ts) serves client-web/dist at `/`.
 *
 * `npx vite build --config client-web/vite.config.ts` builds; `npx vite --config client-web/vite.config.ts`
 * serves the pages with hot reload and proxies the API and socket.io to a server on VIDEOTELLER_URL
 * (default http://127.0.0.1:8080).
 */
const root = path.dirname(fileURLToPath(import.meta.url));
const backend = process.env.VIDEOTELLER_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root,
  base: '/',
  // No public/ folder: everything the pages load goes through the bundle.
  publicDir: false,
  build: {
    outDir: path.join(root, 'dist'),
    emptyOutDir: true,
    // Phones from the last few years; WebRTC needs them anyway.
    target: 'es2020',
    sourcemap: true,
    rolldownOptions: {
      input: {
        customer: path.join(root, 'customer/index.html'),
        teller: path.join(root, 'teller/index.html'),
        compliance: path.join(root, 'compliance/index.html'),
        supervisor: path.join(root, 'supervisor/index.html'),
      },
    },
  },
  server: {
    // protocol.ts lives outside the Vite root, in ../signaling.
    fs: { allow: [path.join(root, '..')] },
    proxy: {
      '/api': backend,
      '/socket.io': { target: backend, ws: true },
    },
  },
});
