export function inspect(pid: string, _o: { json: boolean }): string {
  return `${pid}\n`;
}
