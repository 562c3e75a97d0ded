// What the New VM wizard does, in XenAPI calls any client could make (xe vm-install's
// order): clone the template; size its vCPUs and memory; ask for one system disk of the
// chosen size on the chosen SR through the template's other_config:disks and
// VM.provision; put the install ISO in a CD drive and boot from it first; one network
// interface; then start it.
import { call, type Ref } from './xapi'
import { get } from './store'

export interface NewVm {
  template: Ref
  name: string
  vcpus: number
  memoryMiB: number
  iso: Ref            // '' for none
  diskGiB: number     // 0 for no disk
  sr: Ref
  network: Ref        // '' for none
  start: boolean
}

export async function createVm(spec: NewVm, progress: (step: string) => void): Promise<Ref> {
  progress('Copying the template')
  const vm: Ref = await call('VM.clone', spec.template, spec.name)
  await call('VM.set_name_description', vm, '')
  progress('Setting vCPUs and memory')
  const vcpus = String(spec.vcpus)
  if (spec.vcpus > Number(await call('VM.get_VCPUs_max', vm))) {
    await call('VM.set_VCPUs_max', vm, vcpus)
    await call('VM.set_VCPUs_at_startup', vm, vcpus)
  } else {
    await call('VM.set_VCPUs_at_startup', vm, vcpus)
    await call('VM.set_VCPUs_max', vm, vcpus)
  }
  const memory = String(spec.memoryMiB * 1024 * 1024)
  const staticMin = Math.min(Number(await call('VM.get_memory_static_min', vm)), Number(memory))
  await call('VM.set_memory_limits', vm, String(staticMin), memory, memory, memory)
  progress('Creating the disk')
  await call('VM.remove_from_other_config', vm, 'disks')
  if (spec.diskGiB > 0) {
    const size = String(Math.round(spec.diskGiB * 1024 ** 3))
    const sr = get('SR', spec.sr)?.uuid ?? ''
    await call('VM.add_to_other_config', vm, 'disks',
      `<provision><disk device="0" size="${size}" sr="${sr}" bootable="true" type="system"/></provision>`)
  }
  await call('VM.provision', vm)
  await call('VM.set_is_a_template', vm, false)
  if (spec.iso) {
    progress('Inserting the install media')
    await insertIso(vm, spec.iso)
    const params = await call('VM.get_HVM_boot_params', vm)
    await call('VM.set_HVM_boot_params', vm, { ...params, order: 'dc' })
  }
  if (spec.network) {
    progress('Adding the network interface')
    await call('VIF.create', { device: '0', network: spec.network, VM: vm, MAC: '', MTU: '1500',
      other_config: {}, qos_algorithm_type: '', qos_algorithm_params: {} })
  }
  if (spec.start) {
    progress('Starting')
    await call('VM.start', vm, false, false)
  }
  return vm
}

async function insertIso(vm: Ref, iso: Ref) {
  for (const vbd of await call('VM.get_VBDs', vm) as Ref[]) {
    if (await call('VBD.get_type', vbd) === 'CD') {
      if (!await call('VBD.get_empty', vbd)) await call('VBD.eject', vbd)
      await call('VBD.insert', vbd, iso)
      return
    }
  }
  const used: string[] = await call('VM.get_allowed_VBD_devices', vm)
  await call('VBD.create', { VM: vm, VDI: iso, userdevice: used.includes('3') ? '3' : used[0],
    bootable: true, mode: 'RO', type: 'CD', empty: false, unpluggable: true,
    other_config: {}, qos_algorithm_type: '', qos_algorithm_params: {}, device: '' })
}

