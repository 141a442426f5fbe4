import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts'
import type { LeadSchemaOptions } from '../domain/lead-schemas.js'

/**
 * The services' Fastify type provider: a route's body, params, query string and answers are typed from its JSON
 * schemas (json-schema-to-ts), as the domain's types are, so a route declares each shape once. Use it with
 * `app.withTypeProvider<SchemaTypes>()`.
 */
export type SchemaTypes = JsonSchemaToTsProvider<{ SerializerSchemaOptions: LeadSchemaOptions }>
