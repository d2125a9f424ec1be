// The kernel's load average (kernel/sched/loadavg.c): fixed point with 11 fractional
// bits, sampled every 5 seconds, decayed with exp(-5s/1min), exp(-5s/5min), exp(-5s/15min).
export const FSHIFT = 11;
export const FIXED_1 = 1 << FSHIFT;
export const LOAD_FREQ_MS = 5000;
const EXP = [1884, 2014, 2037];

export type LoadTriple = [number, number, number];

function calcLoad(load: number, exp: number, active: number): number {
  let next = load * exp + active * (FIXED_1 - exp);
  if (active >= load) next += FIXED_1 - 1;
  return Math.floor(next / FIXED_1);
}

/** One 5-second step, with `active` = running + uninterruptible tasks. */
export function decayLoad(load: LoadTriple, active: number): LoadTriple {
  const a = active * FIXED_1;
  return [calcLoad(load[0], EXP[0], a), calcLoad(load[1], EXP[1], a), calcLoad(load[2], EXP[2], a)];
}

function fmt(x: number): string {
  // As loadavg_proc_show: round by FIXED_1/200, then integer and two decimals.
  const v = x + FIXED_1 / 200;
  const int = v >> FSHIFT;
  const frac = ((v & (FIXED_1 - 1)) * 100) >> FSHIFT;
  return `${int}.${String(frac).padStart(2, "0")}`;
}

export function renderLoadavg(load: LoadTriple, running: number, total: number, lastPid: number): string {
  return `${fmt(load[0])} ${fmt(load[1])} ${fmt(load[2])} ${running}/${total} ${lastPid}\n`;
}
