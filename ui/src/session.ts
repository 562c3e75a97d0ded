// Who is logged in and what their roles allow: the union of their roles' permissions
// (`role.get_permissions_name_label`, lower-case names such as "vm.start" and
// "http/connect_console_ws"); the local superuser may do everything. The console offers
// only what the role allows, and the server checks again on every call.
import { reactive } from 'vue'
import * as xapi from './xapi'
import * as store from './store'

export const user = reactive({
  name: '',
  loggedIn: false,
  expired: false,
  superuser: false,
  permissions: new Set<string>(),
})

export function can(permission: string): boolean {
  return user.superuser || user.permissions.has(permission.toLowerCase())
}

async function loadPermissions() {
  const s = xapi.currentSession()!
  user.superuser = await xapi.call('session.get_is_local_superuser', s)
  if (user.superuser) return
  const subject = await xapi.call('session.get_subject', s)
  const roles: string[] = await xapi.call('subject.get_roles', subject)
  const lists = await Promise.all(roles.map(r => xapi.call('role.get_permissions_name_label', r)))
  user.permissions = new Set(lists.flat().map((p: string) => p.toLowerCase()))
}

export async function login(name: string, password: string) {
  await xapi.login(name, password)
  try {
    await loadPermissions()
    await store.start()
  } catch (e) {
    await xapi.logout()
    throw e
  }
  Object.assign(user, { name, loggedIn: true, expired: false })
}

export async function logout() {
  store.stop()
  await xapi.logout()
  Object.assign(user, { loggedIn: false, expired: false, superuser: false,
                        permissions: new Set() })
}

xapi.onSessionExpired(() => {
  store.stop()
  Object.assign(user, { loggedIn: false, expired: true, superuser: false,
                        permissions: new Set() })
})
