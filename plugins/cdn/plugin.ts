import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { CdnPurger } from './purger.js'
import type { CdnPurgerOptions } from './options.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Purges paths and cache tags from the configured CDN (`provider: 'none'` purges nothing). */
    cdn: CdnPurger
  }
}

/** Decorates `app.cdn`; bad options fail registration, not the first purge. */
export const cdnPlugin = fp(async (app: FastifyInstance, opts: CdnPurgerOptions) => {
  app.decorate('cdn', new CdnPurger(opts))
}, { name: 'cdn', fastify: '5.x' })
