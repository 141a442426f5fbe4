export { loadQueryParser, normalizeQuery, type NormalizedQuery } from './query-normalizer.js'
export { QueryOptimizer, QueryTracking, globalQueryOptimizer, type QueryOptimizerOptions, type QuerySample, type QueryStat, type SlowQuery } from './query-optimizer.js'
export { trackQueries, type QueryTrackingOptions } from './query-tracking.js'
export { queryStatsConfigFragment, queryStatsPlugin, type QueryStatsConfig } from './query-stats-plugin.js'
