const ENCODINGS = new Set(['linear16', 'flac', 'mulaw', 'alaw', 'amr-nb', 'amr-wb', 'opus', 'speex', 'g729']);
const BOOLEAN_PARAMS = ['interim_results', 'vad_events', 'smart_format', 'punctuate', 'diarize', 'numerals'];

/** Parses and checks the query as Deepgram would; returns the problem as Deepgram's 400 body would say it. */
export function validate(query: URLSearchParams): string | undefined {
  for (const name of BOOLEAN_PARAMS) {
    const v = query.get(name);
    if (v !== null && v !== 'true' && v !== 'false') return `${name} must be true or false, got "${v}"`;
  }
  const encoding = query.get('encoding');
  if (encoding !== null) {
    if (!ENCODINGS.has(encoding)) return `unknown encoding "${encoding}"`;
    if (encoding !== 'linear16') return `this test server only decodes linear16, not ${encoding}`;
    const rate = Number(query.get('sample_rate'));
    if (!Number.isInteger(rate) || rate < 8000 || rate > 48000) return 'sample_rate is required with encoding';
  }
  const channels = query.get('channels');
  if (channels !== null && channels !== '1') return 'this test server only decodes channels=1';
  const endpointing = query.get('endpointing');
  if (endpointing !== null && endpointing !== 'false' && !/^\d+$/.test(endpointing)) {
    return `endpointing must be false or milliseconds, got "${endpointing}"`;
  }
  const utteranceEnd = query.get('utterance_end_ms');
  if (utteranceEnd !== null) {
    if (!/^\d+$/.test(utteranceEnd)) return `utterance_end_ms must be milliseconds, got "${utteranceEnd}"`;
    if (query.get('interim_results') !== 'true') return 'utterance_end_ms requires interim_results=true';
  }
  return undefined;
}

/** What a (valid) query asks of the stream. */
export interface StreamQuery {
  sampleRate: number;
  interim: boolean;
  vadEvents: boolean;
  endpointingMs: number | undefined;
  utteranceEndMs: number | undefined;
  /** `model_info.name` in Results. */
  modelName: string;
}

export function readQuery(query: URLSearchParams): StreamQuery {
  const endpointing = query.get('endpointing');
  return {
    sampleRate: Number(query.get('sample_rate') ?? 16000),
    interim: query.get('interim_results') === 'true',
    vadEvents: query.get('vad_events') === 'true',
    // Deepgram's default endpointing is 10 ms; `false` turns it off.
    endpointingMs: endpointing === 'false' ? undefined : Number(endpointing ?? 10),
    utteranceEndMs: query.has('utterance_end_ms') ? Number(query.get('utterance_end_ms')) : undefined,
    modelName: `general-${query.get('model') ?? 'nova-3'}`,
  };
}
