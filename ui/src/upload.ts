// A file PUT to one of xapi's data handlers (/import_raw_vdi, /import) under a task of
// our own: the browser reports the bytes sent, the task the outcome and its result.
import { call, handlerUrl, type Ref } from './xapi'

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
