const HEADER = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority";

/**
 * /proc/swaps consistent with the container's meminfo: no device when it may not swap,
 * otherwise one line carrying its SwapTotal and the swap it uses (in kB), laid out as the
 * kernel lays out its own lines.
 */
export function renderSwaps(totalKb: number, usedKb: number): string {
  if (totalKb <= 0) return `${HEADER}\n`;
  const tab = (n: number) => (n < 10000000 ? "\t" : "");
  return `${HEADER}\nnone${" ".repeat(36)}virtual\t${totalKb}\t${tab(totalKb)}${usedKb}\t${tab(usedKb)}-1\n`;
}
