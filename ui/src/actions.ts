// The VM lifecycle buttons: each is offered when the VM's allowed_operations has its
// operation (the server's own view of what the VM's state permits) and the user's
// roles have the call's permission.
import { call, type Ref, type XRecord } from './xapi'
import { can } from './session'

export interface VmAction {
  label: string
  op: string                       // in VM.allowed_operations
  method: string                   // the XenAPI call (its permission, lower-cased)
  busy: string                     // what the button says while the call runs
  run: (vm: Ref, rec: XRecord) => Promise<unknown>
}

const simple = (label: string, op: string, busy: string, ...extra: unknown[]): VmAction =>
  ({ label, op, method: `VM.${op}`, busy, run: vm => call(`VM.${op}`, vm, ...extra) })

export const LIFECYCLE: VmAction[] = [
  simple('Start', 'start', 'Starting…', false, false),
  simple('Shut down', 'clean_shutdown', 'Shutting down…'),
  simple('Force shut down', 'hard_shutdown', 'Shutting down…'),
  simple('Reboot', 'clean_reboot', 'Rebooting…'),
  simple('Suspend', 'suspend', 'Suspending…'),
  simple('Resume', 'resume', 'Resuming…', false, false),
  simple('Pause', 'pause', 'Pausing…'),
  simple('Unpause', 'unpause', 'Unpausing…'),
  { label: 'Snapshot', op: 'snapshot', method: 'VM.snapshot', busy: 'Snapshotting…',
    run: (vm, rec) => call('VM.snapshot', vm, `${rec.name_label} ${stamp()}`) },
]

export function stamp(): string {
  return new Date().toISOString().slice(0, 19).replace('T', ' ')
}

export function allowed(rec: XRecord | undefined, op: string, method: string): boolean {
  return !!rec && (rec.allowed_operations ?? []).includes(op) && can(method)
}

/** Destroy a halted VM and, if asked, the disks only it uses (not CDs, not shared ones). */
export async function destroyVm(vm: Ref, withDisks: boolean) {
  const vdis: Ref[] = []
  if (withDisks) {
    for (const vbd of await call('VM.get_VBDs', vm) as Ref[]) {
      const rec = await call('VBD.get_record', vbd)
      if (rec.type === 'Disk' && rec.VDI !== 'OpaqueRef:NULL') {
        const users: Ref[] = await call('VDI.get_VBDs', rec.VDI)
        if (users.length === 1) vdis.push(rec.VDI)
      }
    }
  }
  await call('VM.destroy', vm)
  for (const vdi of vdis) await call('VDI.destroy', vdi)
}
