import type { FastifyInstance } from 'fastify'
import { ChassisErrors } from './errors.js'

export interface OptionalDependency<K extends keyof FastifyInstance & string> {
  /** The dependent plugin's name, as its fastify-plugin `name`. */
  plugin: string
  /** The decorator the dependency adds. */
  decorator: K
  /** What registers it, for the message (`@lead-chassis/plugins/redis`). */
  provider: string
  /** The dependent's option for this dependency: `false` states that it runs without. */
  option: false | undefined
  /**
   * What the provider's decorator holds, for a decorator of that name that something else added: such a value is
   * refused at registration (instead of failing deep inside the dependent), and one added later is not reported as
   * the provider registered out of order.
   */
  accepts?: { check: (value: unknown) => boolean, what: string }
}

/**
 * An optional dependency found by its decorator, the way `fastify-plugin`'s `dependencies` finds a required one by
 * name: its value when its plugin was registered before the dependent, undefined when it is absent or refused with
 * `false`. When it is registered after the dependent, `app.ready()` fails naming both, because the dependent
 * would otherwise have booted without it and never said so.
 */
export function optionalDependency<K extends keyof FastifyInstance & string> (app: FastifyInstance, dependency: OptionalDependency<K>): FastifyInstance[K] | undefined {
  const { plugin, decorator, provider, option, accepts } = dependency
  if (option === false) return undefined
  const ours = (): boolean => accepts === undefined || accepts.check(app[decorator])
  if (app.hasDecorator(decorator)) {
    if (!ours()) throw new ChassisErrors.CHASSIS_DECORATOR_CONFLICT(plugin, decorator, accepts?.what ?? '', provider, decorator)
    return app[decorator]
  }
  app.addHook('onReady', async () => {
    if (app.hasDecorator(decorator) && ours()) throw new ChassisErrors.CHASSIS_PLUGIN_ORDER(plugin, decorator, provider, decorator)
  })
  return undefined
}
