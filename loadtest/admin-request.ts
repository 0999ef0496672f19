import { demoAdminToken } from '../gateway/admin-auth.js';

// Headers of the load tester's calls to the gateway's admin API (/admin/gray,
// /admin/ha). The bearer token comes from ADMIN_TOKEN, or is the demo token when
// it is unset, the same default as the gateway's; changes are audited as made
// by "loadtest".

export function adminHeaders(): Record<string, string> {
  return { authorization: `Bearer ${process.env['ADMIN_TOKEN'] ?? demoAdminToken}`, 'x-operator': 'loadtest' };
}
