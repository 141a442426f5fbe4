/** The scopes an API key can carry. */
export const SCOPES = ['leads:create', 'leads:read', 'leads:write', 'leads:import', 'reports:read', 'routing', 'admin'] as const
