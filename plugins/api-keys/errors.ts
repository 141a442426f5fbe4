import createError from '@fastify/error'

/** Every error the api-keys plugin raises, keyed by its code; the HTTP error body carries the same `code`. */
export const ApiKeyErrors = {
  API_KEY_LOOKUPS_EXCEEDED: createError<'API_KEY_LOOKUPS_EXCEEDED', 429, [number, number, number]>('API_KEY_LOOKUPS_EXCEEDED',
    'Too many API keys this service has not verified from this address: %d per %d s; retry in %d s', 429)
} as const
