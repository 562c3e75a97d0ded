// A XenAPI client over JSON-RPC 2.0 to this origin's /jsonrpc: the same calls any other
// client makes (no UI-only API). The session lives in this module's memory only (never
// in localStorage): a reload asks for the password again, as a closed tab should.

export class XapiError extends Error {
  constructor(public code: string, public params: string[] = []) {
    super([code, ...params].join(' '))
  }
}

export type Ref = string
export type XRecord = Record<string, any>
export const NULL_REF = 'OpaqueRef:NULL'

let session: Ref | null = null
let nextId = 1
const expiredListeners: Array<() => void> = []

export function currentSession(): Ref | null {
  return session
}

/** Called once when a call finds the session gone (idle expiry, logout elsewhere). */
export function onSessionExpired(listener: () => void) {
  expiredListeners.push(listener)
}

async function rpc(method: string, params: unknown[], signal?: AbortSignal): Promise<any> {
  const id = nextId++
  const reply = await fetch('/jsonrpc', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', method, params, id }),
    signal,
  })
  if (!reply.ok) throw new XapiError('HTTP_ERROR', [String(reply.status), reply.statusText])
  const body = await reply.json()
  if (body.error) {
    const e = body.error
    throw new XapiError(String(e.message), (e.data ?? []).map(String))
  }
  return body.result
}

export async function login(username: string, password: string): Promise<Ref> {
  session = await rpc('session.login_with_password',
    [username, password, '1.0', 'xapi-py web console'])
  return session!
}

export async function logout() {
  const s = session
  session = null
  if (s) await rpc('session.logout', [s]).catch(() => undefined)
}

/** `method` with the session as its first parameter. */
export async function call(method: string, ...args: unknown[]): Promise<any> {
  return callWith(undefined, method, ...args)
}

export async function callWith(signal: AbortSignal | undefined, method: string,
                               ...args: unknown[]): Promise<any> {
  if (!session) throw new XapiError('SESSION_INVALID')
  const sent = session
  try {
    return await rpc(method, [sent, ...args], signal)
  } catch (e) {
    if (e instanceof XapiError && e.code === 'SESSION_INVALID' && session === sent) {
      session = null
      expiredListeners.forEach(f => f())
    }
    throw e
  }
}

/** A data handler's URL with the session in the query (browsers send no header of ours
 *  on a WebSocket or a download by navigation). */
export function handlerUrl(path: string, params: Record<string, string>, ws = false): string {
  const query = new URLSearchParams({ ...params, session_id: session ?? '' })
  const scheme = ws ? (location.protocol === 'https:' ? 'wss:' : 'ws:') : location.protocol
  return `${scheme}//${location.host}${path}?${query}`
}

/** A short sentence for an error shown to a person. */
export function describe(e: unknown): string {
  if (e instanceof XapiError) return e.params.length ? `${e.code}: ${e.params.join(', ')}` : e.code
  if (e instanceof Error) return e.message
  return String(e)
}
