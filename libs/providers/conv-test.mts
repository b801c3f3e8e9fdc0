import { dither, Framer } from '@va/audio';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readWav } from '@va/audio';
import { SileroVAD } from './src/vad/index.js';
execFileSync('flite', ['-voice', 'slt', '-t', 'turn the lights off in the kitchen please', '-o', '/tmp/w.wav']);
const words = readWav(readFileSync('/tmp/w.wav')).samples;
const frames = (s: Int16Array) => new Framer(512).push(s);
const K = Number(process.env.K ?? 8);
for (const k of [16, 32, 64, 96, 200]) {
  const vad = await SileroVAD.create({ silenceGateDbfs: -Infinity });
  for (const f of frames(words)) await vad.speechProbability(f);
  const q = frames(dither(new Int16Array(512 * k), 6, 3));
  let prev: Float32Array | undefined;
  let d: Float32Array | undefined;
  for (const [i, f] of q.entries()) {
    if (i < K) {
      prev = Float32Array.from((vad as any).state);
      await vad.speechProbability(f);
      d = ((vad as any).state as Float32Array).map((v, j) => v - prev![j]!);
    }
  }
  const st = (vad as any).state as Float32Array;
  (vad as any).state = st.map((v, j) => v + (k - K) * d![j]!);
  const ctx = (vad as any).context;
  const ps: number[] = [];
  for (const f of frames(words).slice(6, 12)) ps.push(await vad.speechProbability(f));
  // truth
  const t = await SileroVAD.create({ silenceGateDbfs: -Infinity });
  for (const f of frames(words)) await t.speechProbability(f);
  for (const f of q) await t.speechProbability(f);
  const ts: number[] = [];
  for (const f of frames(words).slice(6, 12)) ts.push(await t.speechProbability(f));
  console.log(k, 'extrap', ps.map((p) => p.toFixed(2)).join(' '), ' truth', ts.map((p) => p.toFixed(2)).join(' '));
  await vad.close();
  await t.close();
}
