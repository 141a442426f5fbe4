import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { RequestLineMode } from './config-schema.js'

/**
 * The request lines of a service. `answered`: one line per request, `request completed`, written when it is answered,
 * with the request as the request serializer shows it, its status and its time. `received-and-answered`: Fastify's
 * two lines, `incoming request` with the request and `request completed` with the status. `off`: none. A request's
 * errors are logged in every mode.
 *
 * One line is the default: on a cached route the second line was about a sixth of the api's instructions per request
 * (docs/benchmarks.md), and a line written when the request is answered carries its trace ids when it is sampled,
 * where the received line is written before the request's trace context exists.
 */
export class RequestLines extends LogController {
  readonly #mode: RequestLineMode

  constructor (mode: RequestLineMode) {
    super()
    this.#mode = mode
  }

  override incomingRequest (request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (this.#mode === 'received-and-answered') super.incomingRequest(request, reply, metadata)
  }

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (this.#mode === 'received-and-answered') {
      super.requestCompleted(error, request, reply, metadata)
    } else if (error) {
      reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored')
    } else if (this.#mode === 'answered') {
      reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed')
    }
  }
}
