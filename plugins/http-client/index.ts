export { createServiceClient, ServiceClient, type ServiceClientOptions, type ServiceRequest, type ServiceResponse } from './client.js'
export { UpstreamUnavailableError } from './errors.js'
export { httpClientPlugin, type HttpClientPluginOptions } from './plugin.js'
