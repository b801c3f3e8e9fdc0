import { z } from 'zod';
import { defineToolService } from '@va/tools';

/** Each unit as a factor to its dimension's base unit (metre, kilogram, litre, metre per second). */
const LINEAR: Record<string, { dimension: string; toBase: number }> = {
  mm: { dimension: 'length', toBase: 0.001 },
  cm: { dimension: 'length', toBase: 0.01 },
  m: { dimension: 'length', toBase: 1 },
  km: { dimension: 'length', toBase: 1000 },
  in: { dimension: 'length', toBase: 0.0254 },
  ft: { dimension: 'length', toBase: 0.3048 },
  yd: { dimension: 'length', toBase: 0.9144 },
  mi: { dimension: 'length', toBase: 1609.344 },
  g: { dimension: 'weight', toBase: 0.001 },
  kg: { dimension: 'weight', toBase: 1 },
  oz: { dimension: 'weight', toBase: 0.028349523125 },
  lb: { dimension: 'weight', toBase: 0.45359237 },
  ml: { dimension: 'volume', toBase: 0.001 },
  l: { dimension: 'volume', toBase: 1 },
  cup: { dimension: 'volume', toBase: 0.2365882365 },
  gal: { dimension: 'volume', toBase: 3.785411784 },
  'm/s': { dimension: 'speed', toBase: 1 },
  'km/h': { dimension: 'speed', toBase: 1 / 3.6 },
  mph: { dimension: 'speed', toBase: 0.44704 },
};
/** Temperatures are not linear (an offset): to and from Celsius. */
const TEMPERATURE: Record<string, { toC: (v: number) => number; fromC: (c: number) => number }> = {
  C: { toC: (v) => v, fromC: (c) => c },
  F: { toC: (v) => ((v - 32) * 5) / 9, fromC: (c) => (c * 9) / 5 + 32 },
  K: { toC: (v) => v - 273.15, fromC: (c) => c + 273.15 },
};
export const UNITS = [...Object.keys(LINEAR), ...Object.keys(TEMPERATURE)] as [string, ...string[]];

/** `value` in `from`, in `to`, rounded to 4 significant digits (what is worth saying aloud). */
export function convert(value: number, from: string, to: string): number {
  const round = (x: number) => Number(x.toPrecision(4));
  const [t1, t2] = [TEMPERATURE[from], TEMPERATURE[to]];
  if (t1 && t2) return round(t2.fromC(t1.toC(value)));
  const [u1, u2] = [LINEAR[from], LINEAR[to]];
  if (!u1 || !u2 || u1.dimension !== u2.dimension) {
    throw new Error(
      `cannot convert ${from} to ${to}: ${from} is ${u1?.dimension ?? 'a temperature'}, ${to} is ${u2?.dimension ?? 'a temperature'}`,
    );
  }
  return round((value * u1.toBase) / u2.toBase);
}

export const convertUnits = defineToolService({
  name: 'convert_units',
  description:
    'Converts a quantity between units of length, weight, volume, speed or temperature, e.g. 5 km in mi or 70 F in C.',
  args: z
    .object({
      value: z.number().finite().describe('the quantity to convert'),
      from: z.enum(UNITS).describe('the unit it is in'),
      to: z.enum(UNITS).describe('the unit wanted'),
    })
    .strict(),
  timeoutMs: 1_000,
  run: async ({ value, from, to }) => ({ value, from, to, result: convert(value, from, to) }),
});
