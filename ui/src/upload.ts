// A file PUT to one of xapi's data handlers (/import_raw_vdi, /import) under a task of
// our own: the browser reports the bytes sent, the task the outcome and its result.
import { ref } from 'vue'
import { call, describe, handlerUrl, type Ref } from './xapi'

function put(url: string, body: File, progress: (sent: number, total: number) => void) {
  return new Promise<number>((resolve, reject) => {
    const xhr = new XMLHttpRequest()
    xhr.open('PUT', url)
    xhr.upload.onprogress = e => progress(e.loaded, e.total || body.size)
    xhr.onload = () => resolve(xhr.status)
    xhr.onerror = () => reject(new Error('the connection failed'))
    xhr.send(body)
  })
}

/** The refs in the task's result (an XML-RPC value) once the upload succeeded. */
export async function upload(path: string, params: Record<string, string>, file: File,
                             progress: (sent: number, total: number) => void): Promise<Ref[]> {
  const task: Ref = await call('task.create', `Upload ${file.name}`, '')
  try {
    const status = await put(handlerUrl(path, { ...params, task_id: task }), file, progress)
    const rec = await call('task.get_record', task)
    if (rec.status !== 'success') throw new Error(rec.error_info?.join(' ') || `HTTP ${status}`)
    return String(rec.result).match(/OpaqueRef:[0-9a-f-]+/g) ?? []
  } finally {
    await call('task.destroy', task).catch(() => undefined)
  }
}

/** A file into an SR through PUT /import_raw_vdi (as xe vdi-import does): an ISO SR keeps
 *  it as an ISO under its file name, any other SR gets a raw disk image as a new VDI
 *  named after the file. The new VDI. */
export async function uploadIntoSr(sr: Ref, iso: boolean, file: File,
                                   progress: (sent: number, total: number) => void): Promise<Ref> {
  const params: Record<string, string> = { sr_id: sr, format: 'raw' }
  if (iso) params.filename = file.name
  const [vdi] = await upload('/import_raw_vdi', params, file, progress)
  if (!vdi) throw new Error('the server named no disk')
  if (!iso) await call('VDI.set_name_label', vdi, file.name)
  return vdi
}

/** The state an upload form shows (bytes sent of total, busy, outcome) around
 *  uploadIntoSr; used by the SR page and the New VM wizard. */
export function useSrUpload() {
  const sent = ref(0)
  const total = ref(0)
  const busy = ref(false)
  const message = ref('')
  async function send(sr: Ref, iso: boolean, file: File): Promise<Ref | null> {
    busy.value = true
    message.value = ''
    sent.value = 0
    total.value = file.size
    try {
      const vdi = await uploadIntoSr(sr, iso, file, (done, all) => {
        sent.value = done
        total.value = all
      })
      sent.value = total.value
      message.value = `Uploaded ${file.name}.`
      return vdi
    } catch (e) {
      message.value = `Upload failed: ${describe(e)}`
      return null
    } finally {
      busy.value = false
    }
  }
  return { sent, total, busy, message, send }
}
