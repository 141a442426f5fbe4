export { createServiceClient, ServiceClient, type ServiceClientOptions, type ServiceRequest, type ServiceResponse } from './client.js'
export { HttpClientErrors, UpstreamAnswerError, UpstreamUnavailableError } from './errors.js'
export { resolveServiceClientOptions, serviceClientDefaults } from './options.js'
export { httpClientPlugin, type HttpClientPluginOptions } from './plugin.js'
