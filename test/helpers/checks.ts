// What a user checks inside a container, as numbers: the same list runs against procview
// and against LXCFS so the two can be compared line by line.
import type { Container } from "./runc";

export interface Seen {
  freeTotal: number;
  topMemTotalMiB: number;
  cpuinfoProcessors: number;
  pythonCpuCount: number;
  nodeTotalmem: number;
  nodeCpus: number;
  getconfOnln: number;
  getconfConf: number;
  statCpuLines: string;
  statIdleTicks: number;
  uptimeSeconds: number;
  loadavgLastPid: number;
  swapsDevices: number;
  diskstatsLines: number;
  cpuDirCpus: string;
}

export function seenIn(c: Container): Seen {
  const out = c.sh(
    [
      "free -b | awk '/^Mem:/{print $2}'",
      "top -bn1 | awk '/^MiB Mem/{print $4}'",
      "grep -c ^processor /proc/cpuinfo",
      "python3 -c 'import os; print(os.cpu_count())'",
      `node -e 'const os=require("os"); console.log(os.totalmem()); console.log(os.cpus().length)'`,
      "getconf _NPROCESSORS_ONLN",
      "getconf _NPROCESSORS_CONF",
      "grep ^cpu /proc/stat | cut -d' ' -f1 | tr '\\n' ,; echo",
      "head -1 /proc/stat | awk '{print $5}'",
      "cut -d' ' -f1 /proc/uptime",
      "cut -d' ' -f5 /proc/loadavg",
      "tail -n +2 /proc/swaps | wc -l",
      "wc -l < /proc/diskstats",
      "ls /sys/devices/system/cpu | grep -E '^cpu[0-9]+$' | tr '\\n' ,; echo",
    ].join("; "),
  );
  const v = out.trim().split("\n");
  const n = (i: number) => Number(v[i]);
  return {
    freeTotal: n(0),
    topMemTotalMiB: n(1),
    cpuinfoProcessors: n(2),
    pythonCpuCount: n(3),
    nodeTotalmem: n(4),
    nodeCpus: n(5),
    getconfOnln: n(6),
    getconfConf: n(7),
    statCpuLines: v[8],
    statIdleTicks: n(9),
    uptimeSeconds: n(10),
    loadavgLastPid: n(11),
    swapsDevices: n(12),
    diskstatsLines: n(13),
    cpuDirCpus: v[14],
  };
}
