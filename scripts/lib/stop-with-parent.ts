// Loaded (--import) into each service `npm start` runs, which it starts with an IPC channel and in a process group of
// its own: a group no terminal signals, so nothing else would tell the service that npm start is gone. The channel
// closes when npm start lets go of it or dies, SIGKILL included, with no polling; the service then stops as on
// SIGTERM, draining its requests. npm start stops its services by closing the channel for the same reason: a second
// SIGTERM, had it sent one and then died, would cut their shutdown short.
if (process.channel) {
  process.once('disconnect', () => { process.kill(process.pid, 'SIGTERM') })
}
