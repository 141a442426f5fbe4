/** The code of the process warning emitted when a telemetry library's version no longer has the part the chassis replaces. */
export const UNPATCHED_WARNING_CODE = 'LEAD_CHASSIS_TELEMETRY_UNPATCHED'

/**
 * The chassis replaces private parts of pinned OpenTelemetry packages (what they do per request, for less CPU). A
 * version without that part keeps the library's own behaviour: the service starts, slower, and says so once on
 * stderr as a process warning, instead of failing to start (a restart loop behind a supervisor).
 */
export function unpatchedWarning (what: string, consequence: string): void {
  process.emitWarning(`${what} (its version changed): ${consequence}`, { code: UNPATCHED_WARNING_CODE })
}
