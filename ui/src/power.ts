// A VM's power state as a word and a shape, so colour is never the only signal.
export const POWER: Record<string, { symbol: string; word: string }> = {
  Running: { symbol: '▶', word: 'Running' },
  Halted: { symbol: '■', word: 'Halted' },
  Paused: { symbol: '❚❚', word: 'Paused' },
  Suspended: { symbol: '◐', word: 'Suspended' },
}

export function power(state: string | undefined) {
  return POWER[state ?? ''] ?? { symbol: '?', word: state ?? 'Unknown' }
}

// One collator for every sort: localeCompare with options builds one per call, which
// made sorting a thousand VMs the page's longest task.
const collator = new Intl.Collator(undefined, { numeric: true })

export function byName(a: { [field: string]: any }, b: { [field: string]: any }): number {
  return collator.compare(a.name_label ?? '', b.name_label ?? '')
}

export function bytes(n: number | string | undefined): string {
  let v = Number(n ?? 0)
  for (const unit of ['B', 'KiB', 'MiB', 'GiB', 'TiB']) {
    if (Math.abs(v) < 1024 || unit === 'TiB') return `${+v.toFixed(v < 10 && unit !== 'B' ? 1 : 0)} ${unit}`
    v /= 1024
  }
  return `${v}`
}
