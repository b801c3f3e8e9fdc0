import type { ElevenLabs } from '@elevenlabs/elevenlabs-js';

// Client → server messages as they go on the wire. The SDK exports their types (`ElevenLabs.InitializeConnection`,
// `SendText`, `CloseConnection`) in camelCase only; its serializers, which rename to snake_case, are not exported
// from the package root, so the wire shapes are spelled out here from them.
export interface WireInit {
  text: ' ';
  voice_settings?: Record<string, number | boolean>;
  generation_config?: { chunk_length_schedule: number[] };
}
export interface WireText {
  text: string;
  flush?: boolean;
}
export interface WireClose {
  text: '';
}
export type WireSend = WireInit | WireText | WireClose;

type Alignment = ElevenLabs.NormalizedAlignment & { charsStartTimesMs?: number[]; charsDurationsMs?: number[] };
/**
 * Server → client: the SDK's `ReceiveMessage` (`AudioOutput | FinalOutput`, camelCase on the wire too), as real
 * captures show it (nulls), plus the error message the provider sends before closing 1008.
 */
export interface Received {
  audio?: ElevenLabs.AudioOutput['audio'] | null;
  isFinal?: boolean | null;
  alignment?: Alignment | null;
  normalizedAlignment?: Alignment | null;
  error?: string;
  message?: string;
  code?: number;
}

/** One audio message's alignment: its characters, each with start time and duration (ms). */
export interface CharTimes {
  chars: string[];
  starts: number[];
  durations: number[];
}

export function alignmentOf(msg: Received): CharTimes | undefined {
  // `alignment` is of the text as sent (it matches the input); `normalizedAlignment` of the provider's
  // normalized text ("42" → "forty two"), only a fallback.
  for (const al of [msg.alignment, msg.normalizedAlignment]) {
    if (!al?.chars?.length) continue;
    return {
      chars: al.chars,
      starts: al.charStartTimesMs ?? al.charsStartTimesMs ?? [],
      durations: al.charDurationsMs ?? al.charsDurationsMs ?? [],
    };
  }
  return undefined;
}

/** The first message of a connection: voice settings (snake_case) and the buffer schedule, when configured. */
export function initMessage(opts: {
  voiceSettings?: ElevenLabs.RealtimeVoiceSettings;
  chunkLengthSchedule?: number[];
}): WireInit {
  const msg: WireInit = { text: ' ' };
  const v = opts.voiceSettings;
  if (v) {
    const settings: Record<string, number | boolean> = {};
    if (v.stability !== undefined) settings.stability = v.stability;
    if (v.similarityBoost !== undefined) settings.similarity_boost = v.similarityBoost;
    if (v.style !== undefined) settings.style = v.style;
    if (v.useSpeakerBoost !== undefined) settings.use_speaker_boost = v.useSpeakerBoost;
    if (v.speed !== undefined) settings.speed = v.speed;
    msg.voice_settings = settings;
  }
  if (opts.chunkLengthSchedule) msg.generation_config = { chunk_length_schedule: opts.chunkLengthSchedule };
  return msg;
}
