import type { Redis } from 'ioredis'

/**
 * Records the commands `client` sends from now on, each as its name and its keys (`get k`), until `stop`. The
 * server's INFO commandstats would also count what the test files running beside this one send.
 */
export function recordCommands (client: Redis): { sent: () => string[], stop: () => void } {
  const sent: string[] = []
  const send = client.sendCommand.bind(client)
  client.sendCommand = ((...args: Parameters<Redis['sendCommand']>) => {
    sent.push([args[0].name, ...args[0].getKeys().map(String)].join(' '))
    return send(...args)
  }) as Redis['sendCommand']
  return { sent: () => [...sent], stop: () => { client.sendCommand = send } }
}
