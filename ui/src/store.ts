// Every record the console shows, kept live by `event.from` in a loop (as XO Lite does):
// the first call, from the empty token, brings every object of the classes at once. Records are frozen plain objects replaced
// whole on each event, in shallow-reactive maps: a thousand VMs cost a thousand map
// entries, not a thousand deep proxies.
import { shallowReactive, reactive } from 'vue'
import { callWith, XapiError, type Ref, type XRecord } from './xapi'

export const CLASSES = ['pool', 'host', 'VM', 'SR', 'VDI', 'VBD', 'VIF', 'network', 'PBD',
  'console', 'task'] as const
export type ClassName = typeof CLASSES[number]

const tables = Object.fromEntries(
  CLASSES.map(c => [c, shallowReactive(new Map<Ref, XRecord>())])) as Record<ClassName, Map<Ref, XRecord>>
const byLower = Object.fromEntries(CLASSES.map(c => [c.toLowerCase(), c])) as Record<string, ClassName>

export const status = reactive({ loaded: false, error: '' })

export function table(cls: ClassName): Map<Ref, XRecord> {
  return tables[cls]
}

export function get(cls: ClassName, ref: Ref | undefined): XRecord | undefined {
  return ref ? tables[cls].get(ref) : undefined
}

let running: AbortController | null = null

/** Follow the server's objects until stop(); resolves once the first batch is in. */
export function start(): Promise<void> {
  stop()
  const control = new AbortController()
  running = control
  return new Promise(resolve => follow(control, resolve))
}

export function stop() {
  running?.abort()
  running = null
  for (const c of CLASSES) tables[c].clear()
  status.loaded = false
}

async function follow(control: AbortController, loaded: () => void) {
  const classes = CLASSES.map(c => c.toLowerCase())
  let token = ''
  while (!control.signal.aborted) {
    try {
      const batch = await callWith(control.signal, 'event.from', classes, token,
                                   token ? 30.0 : 0.0)
      if (control.signal.aborted) return
      if (!token) for (const c of CLASSES) tables[c].clear()
      token = batch.token
      for (const ev of batch.events) apply(ev)
      if (!status.loaded) {
        status.loaded = true
        loaded()
      }
      status.error = ''
    } catch (e) {
      if (control.signal.aborted || (e instanceof XapiError && e.code === 'SESSION_INVALID')) return
      if (e instanceof XapiError && e.code === 'EVENTS_LOST') {   // too far behind: reload
        token = ''
        continue
      }
      status.error = 'Live updates interrupted; retrying.'
      await new Promise(r => setTimeout(r, 2000))
    }
  }
}

function apply(ev: { class: string; operation: string; ref: Ref; snapshot?: XRecord }) {
  const cls = byLower[ev.class.toLowerCase()]
  if (!cls) return
  if (ev.operation === 'del') tables[cls].delete(ev.ref)
  else if (ev.snapshot) tables[cls].set(ev.ref, Object.freeze(ev.snapshot))
}

export type Row = XRecord & { ref: Ref }

// One Row per record object: an unchanged record keeps its Row, so the components
// showing it are not re-rendered when another object changes.
const rowOf = new WeakMap<XRecord, Row>()

/** The class's records (with their refs) that pass `keep`. */
export function rows(cls: ClassName, keep: (r: XRecord) => boolean = () => true): Row[] {
  const out: Row[] = []
  for (const [ref, r] of tables[cls]) {
    if (!keep(r)) continue
    let row = rowOf.get(r)
    if (!row) rowOf.set(r, row = Object.freeze(Object.assign({ ref }, r)))
    out.push(row)
  }
  return out
}
