import { readFile } from 'node:fs/promises';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

interface Sample {
  at: number;
  cpuTicks: number;
  rssKb: number;
}

async function sample(pid: number): Promise<Sample | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start at ") ".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cpuTicks = Number(fields[11]) + Number(fields[12]); // utime + stime
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return { at: performance.now(), cpuTicks, rssKb };
  } catch {
    return undefined; // the process has exited
  }
}

/** A process's resident memory now, in MB (0 once it has exited). */
export async function residentMb(pid: number): Promise<number> {
  return Math.round(((await sample(pid))?.rssKb ?? 0) / 1024);
}

export interface ProcessUsage {
  name: string;
  pid: number;
  cpuPercent: number;
  /** CPU time (user + system) used over the window, in ms. */
  cpuMs: number;
  /** The window the CPU was measured over, in seconds. */
  seconds: number;
  maxRssMb: number;
}

/** Samples CPU and memory of named processes until stopped: CPU % over the whole window, peak RSS. */
export function watchProcesses(procs: readonly { name: string; pid: number }[], everyMs = 500) {
  const first = new Map<number, Sample>();
  const last = new Map<number, Sample>();
  const peak = new Map<number, number>();
  const tick = async () => {
    for (const { pid } of procs) {
      const s = await sample(pid);
      if (!s) continue;
      if (!first.has(pid)) first.set(pid, s);
      last.set(pid, s);
      peak.set(pid, Math.max(peak.get(pid) ?? 0, s.rssKb));
    }
  };
  void tick();
  const timer = setInterval(() => void tick(), everyMs);
  return {
    async stop(): Promise<ProcessUsage[]> {
      clearInterval(timer);
      await tick();
      return procs.map(({ name, pid }) => {
        const a = first.get(pid);
        const b = last.get(pid);
        const seconds = a && b ? (b.at - a.at) / 1000 : 0;
        const cpu = a && b && seconds > 0 ? ((b.cpuTicks - a.cpuTicks) / TICKS_PER_SECOND / seconds) * 100 : NaN;
        const cpuMs = a && b ? ((b.cpuTicks - a.cpuTicks) * 1000) / TICKS_PER_SECOND : NaN;
        return {
          name,
          pid,
          cpuPercent: Math.round(cpu * 10) / 10,
          cpuMs,
          seconds,
          maxRssMb: Math.round((peak.get(pid) ?? 0) / 102.4) / 10,
        };
      });
    },
  };
}
