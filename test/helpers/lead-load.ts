import { setImmediate as yieldToLoop, setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, InjectOptions } from 'fastify'
import { SERVICE_HEADERS } from './database.js'

/** One answer seen by the load: when it was asked, how long it took, what came back. */
export interface Answer {
  phase: string
  /** The phase when the answer came. */
  answeredIn: string
  method: string
  /** performance.now() when it was asked and when it was answered. */
  startedAt: number
  endedAt: number
  ms: number
  status: number
  code: string | undefined
  retryAfter: string | undefined
}

export interface LeadLoad {
  answers: Answer[]
  /** Ids of the leads whose creation was acknowledged with 201. */
  acknowledged: string[]
  /** POSTs sent, whatever their answer. */
  attempted: () => number
  /** Requests sent and not answered yet. */
  inFlight: () => number
  /** Starts a phase; returns when (performance.now()). */
  setPhase: (phase: string) => number
  /** Stops the workers; rejects when a request is still unanswered after `ms`. */
  stop: (ms?: number) => Promise<void>
}

/**
 * `concurrency` workers each sending the api's lead routes in a loop (create, read it back, list) until stopped, so
 * that about that many requests are in flight at any moment. A failed answer makes the worker pause briefly, as a
 * client honouring Retry-After would, without letting the in-flight count drop to nothing.
 */
export function startLeadLoad (app: FastifyInstance, concurrency = 50): LeadLoad {
  const answers: Answer[] = []
  const acknowledged: string[] = []
  let phase = 'before'
  let running = true
  let attempted = 0
  let inFlight = 0
  let serial = 0

  const send = async (method: string, opts: InjectOptions): Promise<{ status: number, body: Record<string, unknown> }> => {
    const asked = phase
    const started = performance.now()
    inFlight++
    try {
      const res = await app.inject(opts)
      const body = res.headers['content-type']?.includes('json') === true ? res.json<Record<string, unknown>>() : {}
      const retryAfter = res.headers['retry-after']
      const ended = performance.now()
      answers.push({ phase: asked, answeredIn: phase, method, startedAt: started, endedAt: ended, ms: ended - started, status: res.statusCode, code: typeof body.code === 'string' ? body.code : undefined, retryAfter: retryAfter === undefined ? undefined : String(retryAfter) })
      return { status: res.statusCode, body }
    } finally {
      inFlight--
    }
  }

  const worker = async (): Promise<void> => {
    while (running) {
      const n = serial++
      attempted++
      const created = await send('POST', { method: 'POST', url: '/api/v1/leads', payload: { firstName: 'Fault', lastName: `Load${n}`, email: `fault.${process.pid}.${n}@example.com`, product: 'auto', state: 'CA' } })
      if (created.status === 201 && typeof created.body.id === 'string') {
        acknowledged.push(created.body.id)
        await send('GET', { url: `/api/v1/leads/${created.body.id}`, headers: SERVICE_HEADERS })
      }
      const listed = await send('LIST', { url: '/api/v1/leads?limit=5', headers: SERVICE_HEADERS })
      if (created.status >= 500 || listed.status >= 500) await sleep(20)
      else await yieldToLoop()
    }
  }
  const workers = Array.from({ length: concurrency }, worker)

  return {
    answers,
    acknowledged,
    attempted: () => attempted,
    inFlight: () => inFlight,
    setPhase: (next) => {
      phase = next
      return performance.now()
    },
    stop: async (ms = 15000) => {
      running = false
      let timer: NodeJS.Timeout | undefined
      const deadline = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`${inFlight} requests still unanswered ${ms} ms after the load stopped`)), ms)
      })
      try {
        await Promise.race([Promise.all(workers), deadline])
      } finally {
        clearTimeout(timer)
      }
    }
  }
}

/**
 * The answers a phase touched: asked during it or answered during it, so a request already in flight when a fault
 * begins counts for the fault (it is the one a hang would hold).
 */
export function touched (answers: Answer[], phase: string): Answer[] {
  return answers.filter((a) => a.phase === phase || a.answeredIn === phase)
}

/**
 * The longest a phase made any request wait: from the later of its start and the phase's start to its answer, so
 * work a request did before a fault began does not count against the fault.
 */
export function worstWait (answers: Answer[], phase: string, phaseStartedAt: number): number {
  return Math.max(0, ...touched(answers, phase).map((a) => a.endedAt - Math.max(a.startedAt, phaseStartedAt)))
}

/** Answers grouped by `status code`, e.g. { '201': 40, '503 DB_UNAVAILABLE': 12 }. */
export function tally (answers: Answer[]): Record<string, number> {
  const counts: Record<string, number> = {}
  for (const a of answers) {
    const key = a.status < 300 ? String(a.status) : `${a.status} ${a.code ?? ''}`
    counts[key] = (counts[key] ?? 0) + 1
  }
  return counts
}
