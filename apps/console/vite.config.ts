import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

// Served by the gateway under /console with a strict Content-Security-Policy: no inline script,
// no eval. Vue's runtime-only build (templates are compiled here) needs neither.
export default defineConfig({
  base: '/console/',
  plugins: [vue()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    // No inline `data:` fonts or images and no module-preload polyfill inlined in the page.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});
