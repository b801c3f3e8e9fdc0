import { appendFile, writeFile } from 'node:fs/promises';
import { formatSpeakerVoice } from '@va/testkit';
import { cpus } from 'node:os';
import { runEot } from './eot.js';
import { eotMarkdown, eotSvg } from './report.js';
import type { Recogniser, StreamedTake } from './stream.js';

export interface EotArgs {
  corpus?: string | undefined;
  voices?: string | undefined;
  seed?: string | undefined;
  limit?: string | undefined;
  recognisers?: string | undefined;
  json?: string | undefined;
  svg?: string | undefined;
  markdown?: string | undefined;
  /** JSON lines, one per take: its words, pauses and what stt and the turn detector said of it, when. */
  takes?: string | undefined;
}

async function appendTakes(file: string, recogniser: Recogniser, takes: StreamedTake[]): Promise<void> {
  const lines = takes.map((t) =>
    JSON.stringify({
      recogniser,
      voice: formatSpeakerVoice(t.take.voice),
      text: t.take.text,
      offsetMs: t.offsetMs,
      speechEndMs: t.heard.speechEndMs,
      pauses: t.heard.pauses,
      transcripts: t.transcripts,
      turns: t.turns,
      cancelled: [...t.cancelled],
    }),
  );
  await appendFile(file, `${lines.join('\n')}\n`);
}

/** `npm run bench -- --eot …`: runs the end-of-turn bench and writes what was asked for. */
export async function eotBench(args: EotArgs): Promise<void> {
  const started = Date.now();
  const recognisers = (args.recognisers ?? 'exact,pocketsphinx').split(',').map((r) => r.trim());
  const bad = recognisers.filter((r) => r !== 'exact' && r !== 'pocketsphinx');
  const seed = Number(args.seed ?? '1');
  const limit = args.limit === undefined ? undefined : Number(args.limit);
  if (bad.length > 0 || !Number.isInteger(seed) || (limit !== undefined && !(Number.isInteger(limit) && limit > 0))) {
    console.error(
      '--eot: --recognisers takes exact and/or pocketsphinx, --seed a whole number, --limit a whole number > 0',
    );
    process.exit(2);
  }
  console.log(
    `voice-agent end-of-turn bench on ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}`,
  );
  const result = await runEot({
    ...(args.corpus ? { corpus: args.corpus } : {}),
    ...(args.voices ? { voices: args.voices } : {}),
    seed,
    ...(limit !== undefined ? { limit } : {}),
    recognisers: recognisers as Recogniser[],
    onProgress: (line) => console.log(line),
    ...(args.takes ? { onStreamed: (recogniser, takes) => appendTakes(args.takes!, recogniser, takes) } : {}),
  });
  const markdown = eotMarkdown(result);
  console.log(`\n${markdown}`);
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version };
  if (args.json) await writeFile(args.json, `${JSON.stringify({ machine, seed, ...result }, null, 2)}\n`);
  if (args.svg) await writeFile(args.svg, eotSvg(result));
  if (args.markdown) await writeFile(args.markdown, `${markdown}\n`);
  console.log(`\ndone in ${Math.round((Date.now() - started) / 1000)} s`);
}
