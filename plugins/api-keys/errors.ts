import createError from '@fastify/error'

/** Every error the api-keys plugin raises, keyed by its code; the HTTP error body carries the same `code`. */
export const ApiKeyErrors = {
  API_KEY_LOOKUPS_EXCEEDED: createError<'API_KEY_LOOKUPS_EXCEEDED', 429, [number, number, number]>('API_KEY_LOOKUPS_EXCEEDED',
    'Too many API keys this service has not verified from this address: %d per %d s; retry in %d s', 429),
  INVALID_API_KEY: createError<'INVALID_API_KEY', 401, []>('INVALID_API_KEY', 'The API key is not valid or has been revoked', 401),
  INVALID_SERVICE_KEY: createError<'INVALID_SERVICE_KEY', 401, []>('INVALID_SERVICE_KEY', 'The service key in x-service-key is not valid', 401),
  API_KEY_REQUIRED: createError<'API_KEY_REQUIRED', 401, [string, string]>('API_KEY_REQUIRED', 'This route needs an API key with scope "%s" in the %s header', 401),
  MISSING_SCOPE: createError<'MISSING_SCOPE', 403, [string]>('MISSING_SCOPE', 'The API key lacks the scope "%s"', 403)
} as const
