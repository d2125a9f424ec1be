/** /proc/uptime: seconds since the container started, and the idle seconds of its CPUs. */
export function renderUptime(uptime: number, idle: number): string {
  return `${Math.max(0, uptime).toFixed(2)} ${Math.max(0, idle).toFixed(2)}\n`;
}
