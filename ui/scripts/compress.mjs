// After `vite build`: a gzip sibling (.gz) of every text asset, which the server sends
// to clients that accept gzip (xapi_server/http/webui.py), so nothing is compressed per
// request. Only Node's own zlib: no extra dependency.
import { readdirSync, readFileSync, writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync, constants } from 'node:zlib'

const TEXT = /\.(js|css|html|svg|json|map)$/
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) walk(path)
    else if (TEXT.test(name) && name !== 'index.html') {   // index.html is filled in at serve time
      const data = readFileSync(path)
      const packed = gzipSync(data, { level: constants.Z_BEST_COMPRESSION })
      if (packed.length < data.length) writeFileSync(path + '.gz', packed)
    }
  }
}
walk(new URL('../dist', import.meta.url).pathname)
