import { composeSchema, loadConfig, type ConfigFragment, type ConfigOf, type LoadConfigOptions } from '@lead-chassis/plugins/chassis'
import { platformConfigFragments, type PlatformConfig } from '../platform/platform.js'

const dataServiceFragment = {
  properties: {
    PORT: { type: 'integer', default: 3001, minimum: 0, maximum: 65535, description: 'Port of the data-service' },
    IMPORT_MAX_BYTES: { type: 'integer', default: 104857600, minimum: 1024, description: 'Largest lead import (CSV or NDJSON) accepted; larger gets 413' },
    IMPORT_BATCH_SIZE: { type: 'integer', default: 1000, minimum: 1, maximum: 10000, description: 'Imported rows written per transaction' },
    IMPORT_MAX_REJECTIONS: { type: 'integer', default: 1000, minimum: 0, description: 'Rejected rows listed (line and reason) in an import report; all are counted' },
    IMPORT_MAX_RECORD_BYTES: { type: 'integer', default: 65536, minimum: 1024, maximum: 16777216, description: 'Bytes of one imported record (one line) at most; a longer one is rejected alone and never held whole' },
    IMPORT_MAX_CONCURRENT: { type: 'integer', default: 2, minimum: 1, maximum: 64, description: 'Imports running at once per instance; one more is answered 429 IMPORT_BUSY with Retry-After' },
    REPORT_CACHE_TTL: { type: 'integer', default: 300, minimum: 1, description: 'Seconds a report stays cached (changes to its data invalidate it sooner)' }
  }
} as const satisfies ConfigFragment

export const dataServiceConfigSchema = composeSchema(...platformConfigFragments, dataServiceFragment)

export type DataServiceConfig = PlatformConfig & ConfigOf<typeof dataServiceFragment>

export function loadDataServiceConfig (options?: LoadConfigOptions): Readonly<DataServiceConfig> {
  return loadConfig<DataServiceConfig>(dataServiceConfigSchema, options)
}
