import { STATUS_CODES } from 'node:http'

/** The one JSON body of every 4xx and 5xx answer. */
export interface ErrorBody {
  statusCode: number
  code: string
  error: string
  message: string
}

export const errorBodySchema = {
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    code: { type: 'string' },
    error: { type: 'string' },
    message: { type: 'string' }
  },
  required: ['statusCode', 'code', 'error', 'message']
} as const

export function errorBody (statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message }
}
