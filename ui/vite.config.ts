import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

// Served by the server itself at GET / (xapi_server/http/webui.py): assets under
// /assets/ with content hashes (cached for a year there), no inline script or style
// (the server's Content-Security-Policy forbids both), nothing from the network.
export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    assetsInlineLimit: 0,       // no data: URLs for assets: every file is a hashed file
    target: 'es2022',           // noVNC uses top-level await
    cssCodeSplit: false,
    modulePreload: { polyfill: false },   // evergreen browsers only; keeps the entry small
    chunkSizeWarningLimit: 700,
  },
})
