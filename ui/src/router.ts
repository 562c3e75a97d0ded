// Hash routing (as XO Lite): the server only ever serves "/" and hashed assets, and the
// view is in the fragment: #/vm/<ref>/<tab>, #/host/<ref>, #/sr/<ref>, #/network/<ref>,
// #/pool/<ref>.
import { reactive } from 'vue'

export const route = reactive({ kind: '', ref: '', tab: '' })

function parse() {
  const [kind = '', ref = '', tab = ''] = location.hash.replace(/^#\/?/, '').split('/')
    .map(decodeURIComponent)
  Object.assign(route, { kind, ref, tab })
}

export function href(kind: string, ref: string, tab?: string): string {
  return `#/${kind}/${encodeURIComponent(ref)}${tab ? '/' + tab : ''}`
}

export function go(kind: string, ref: string, tab?: string) {
  location.hash = href(kind, ref, tab)
}

window.addEventListener('hashchange', parse)
parse()
