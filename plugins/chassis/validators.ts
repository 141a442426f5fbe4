import { AjvCompiler } from '@fastify/ajv-compiler'

type BuildValidator = ReturnType<typeof AjvCompiler>

/**
 * Fastify's Ajv compiler, with one difference by part of the request: a query string, params and headers arrive as
 * text, so their values are coerced to the declared types; a JSON body carries its own types, so it is validated as
 * sent. Coercing a body stored `true` as the name "true" and a null score as 0, what an import of the same record
 * refuses. Both instances take the same options (plugins, formats, keywords) but for `coerceTypes`.
 */
export function validatorsByPart (): BuildValidator {
  const pool = AjvCompiler()
  return (externalSchemas, options) => {
    const coercing = pool(externalSchemas, options)
    const strict = pool(externalSchemas, { ...options, customOptions: { ...options?.customOptions, coerceTypes: false } } as typeof options)
    return (route) => route.httpPart === 'body' ? strict(route) : coercing(route)
  }
}
