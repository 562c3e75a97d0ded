// What a view's buttons share: one call at a time (`busy` disables them), its failure
// said in words (`error`), and `after` run whatever happened (a refresh).
import { ref } from 'vue'
import { describe } from './xapi'

export function useAction(after: () => void = () => undefined) {
  const busy = ref(false)
  const error = ref('')
  async function run(work: () => Promise<unknown>): Promise<boolean> {
    error.value = ''
    busy.value = true
    try {
      await work()
      return true
    } catch (e) {
      error.value = describe(e)
      return false
    } finally {
      busy.value = false
      after()
    }
  }
  return { busy, error, run }
}
