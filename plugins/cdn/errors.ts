import createError from '@fastify/error'

/** Every error the CDN purger raises, keyed by its code. */
export const CdnErrors = {
  CDN_INVALID_OPTIONS: createError<'CDN_INVALID_OPTIONS', [string]>('CDN_INVALID_OPTIONS', 'Invalid CDN options: %s'),
  CDN_UNSUPPORTED_PURGE: createError<'CDN_UNSUPPORTED_PURGE', [string, string]>('CDN_UNSUPPORTED_PURGE', '%s cannot purge %s'),
  CDN_PURGE_FAILED: createError<'CDN_PURGE_FAILED', [string, string]>('CDN_PURGE_FAILED', '%s refused the purge: %s')
} as const
