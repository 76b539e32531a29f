const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: tz, timeZoneName: 'longOffset' });
    formatters.set(tz, f);
  }
  return f;
}

/** The zone's offset from UTC at `t`, in minutes (Asia/Kolkata: 330). */
export function offsetMinutes(tz: string, t: Date): number {
  const name = formatter(tz)
    .formatToParts(t)
    .find((p) => p.type === 'timeZoneName')?.value;
  const match = /GMT([+-])(\d{2}):?(\d{2})?/.exec(name ?? '');
  if (!match) return 0;
  const minutes = Number(match[2]) * 60 + Number(match[3] ?? 0);
  return match[1] === '-' ? -minutes : minutes;
}

/** `t` as RFC 3339 in the zone: "2026-11-23T18:00:00+08:00" (UTC as "Z"). */
export function localTimestamp(t: Date, tz: string): string {
  const offset = offsetMinutes(tz, t);
  const local = new Date(t.getTime() + offset * 60_000).toISOString().slice(0, 19);
  if (offset === 0) return `${local}Z`;
  const abs = Math.abs(offset);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  return `${local}${offset < 0 ? '-' : '+'}${hh}:${mm}`;
}

const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

/**
 * Whether every UTC hour between `from` and `to` is a whole local hour in the zone, so
 * hourly rollup rows fall into single local hours and days. False for zones with a
 * half-hour or 45-minute offset (Asia/Kolkata, Asia/Kathmandu) at any time in the range.
 */
export function wholeHourZone(tz: string, from: Date, to: Date): boolean {
  const span = to.getTime() - from.getTime();
  const step = Math.max(DAY_MS / 2, span / 800);
  for (let t = from.getTime(); t < to.getTime() + step; t += step) {
    if (offsetMinutes(tz, new Date(Math.min(t, to.getTime()))) % 60 !== 0) return false;
  }
  return true;
}

/**
 * The UTC hours in [start, end) that hold a local midnight: in a zone whose offset is not a
 * whole number of hours (Asia/Kolkata: the hour from 18:00 UTC holds 23:30 and 00:30 local)
 * such an hour belongs to two local days, every other hour to one.
 */
export function hoursAcrossMidnight(tz: string, start: Date, end: Date): Date[] {
  const out: Date[] = [];
  for (let t = start.getTime(); t < end.getTime(); t += HOUR_MS) {
    const local = (((t / 60_000 + offsetMinutes(tz, new Date(t))) % 1440) + 1440) % 1440;
    if (local > 23 * 60) out.push(new Date(t));
  }
  return out;
}
