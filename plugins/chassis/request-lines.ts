import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { RequestLineMode } from './config-schema.js'

/**
 * The request lines of a service. `answered`: one line per request, `request completed`, written when it is answered,
 * with the request as the request serializer shows it, its status and its time. `received-and-answered`: Fastify's
 * two lines, `incoming request` with the request and `request completed` with the status. `off`: none. A request's
 * errors are logged in every mode.
 *
 * One line is the default: with the pino child each line was written through, the second line was 4-7% of the api's
 * instructions on a cached request (docs/benchmarks.md), and a line written when the request is answered carries its
 * trace ids when it is sampled, where the received line is written before the request's trace context exists.
 */
export class RequestLines extends LogController {
  readonly #mode: RequestLineMode

  constructor (mode: RequestLineMode) {
    super()
    this.#mode = mode
  }

  override incomingRequest (request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (this.#mode === 'received-and-answered') super.incomingRequest(request, reply, metadata)
    // An upgrade (a WebSocket) is never answered through Fastify's reply: its one line is written when it arrives.
    else if (this.#mode === 'answered' && request.raw.headers.upgrade !== undefined) request.log.info({ req: request }, 'incoming request')
  }

  /** The line of a request its client hung up on before it was answered (an `onRequestAbort` hook), which writes no other. */
  requestAborted (request: FastifyRequest): void {
    if (this.#mode === 'answered') request.log.info({ req: request }, 'request aborted')
  }

  override streamError (error: Error, request: FastifyRequest, reply: FastifyReply, metadata?: Record<string, unknown>): void {
    if (this.#mode !== 'answered') {
      super.streamError(error, request, reply, metadata)
    } else if ((error as { code?: unknown }).code === 'ERR_STREAM_PREMATURE_CLOSE') {
      // The request's one line then, since its answer was cut off before `request completed`.
      reply.log.info({ req: request, res: reply, responseTime: reply.elapsedTime }, 'stream closed prematurely')
    } else {
      reply.log.warn({ req: request, err: error }, 'response terminated with an error with headers already sent')
    }
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
