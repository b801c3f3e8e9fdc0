import { createHash } from 'node:crypto';
import type { AudioFrame } from '@livekit/rtc-node';
import { FRAME_MS, sessionId as parseSessionId, type SessionId } from '@va/protocol';
import { MicQueue } from '../mic-queue.js';
import { runClock, micSilence } from '@va/audio';
import { AgentVoice, micFrames, newAgentSource, PIPELINE_FRAME_SAMPLES, type AudioSourceLike } from './audio.js';

/** A subscribed remote audio track: its frames, and a way to stop reading them. */
export interface RemoteAudio {
  frames: AsyncIterable<AudioFrame>;
  close(): void;
}

/** What the room reports to the transport. Identities of other agents are never reported. */
export interface RoomEvents {
  participantConnected(identity: string): void;
  participantDisconnected(identity: string): void;
  audioTrackSubscribed(identity: string, audio: RemoteAudio): void;
  /**
   * The agent is out of the room for good, not by its own `disconnect()`: the room was deleted or closed, the
   * agent was removed, or the connection was lost beyond the SDK's reconnects. `reason` names why (e.g.
   * `ROOM_DELETED`). Reported at most once, and never during or after `disconnect()`.
   */
  disconnected(reason: string): void;
}

export interface PublishedTrack {
  unpublish(): Promise<void>;
}

/** The little of a LiveKit room the transport uses; `LiveKitRoom` is the real one, tests use a fake. */
export interface RoomLike {
  readonly name: string;
  /** Joins; participants already in the room are reported as connected once joined. */
  connect(url: string, token: string, events: RoomEvents): Promise<void>;
  publishAudio(trackName: string, source: AudioSourceLike): Promise<PublishedTrack>;
  disconnect(): Promise<void>;
}

/** The gateway side of one participant's session (a `GatewaySession` on the bus, or a stub). */
export interface SessionHandle {
  /** One 20 ms step: the user's 16 kHz frame in, the agent's frame to play out (undefined: silence). */
  tick(mic: Int16Array): Int16Array | undefined;
  close(): void | Promise<void>;
  /** Leaves the session to be resumed by another gateway instance (this one stops: SIGTERM). */
  detach?(): Promise<void>;
}
export type SessionFactory = (sessionId: SessionId, identity: string) => Promise<SessionHandle>;
export type Clock = (frameMs: number, step: (i: number) => boolean, signal: AbortSignal) => Promise<number>;

export interface TransportLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface LiveKitTransportOptions {
  room: RoomLike;
  openSession: SessionFactory;
  log?: TransportLog;
  /** The agent's audio source per session (default: a real 16 kHz `AudioSource`). */
  newSource?: () => AudioSourceLike;
  /** The session clock (default: the real-time 20 ms clock). */
  clock?: Clock;
  /** Microphone frames kept when the network delivers faster than the clock plays (oldest dropped). */
  maxMicFrames?: number;
  /**
   * Called once when the room reports the agent out of it (never after `stop()`), as its sessions start
   * closing; `stop()` then waits for them, without disconnecting again.
   */
  onLost?: (reason: string) => void;
}

export const AGENT_PREFIX = 'agent-';

/**
 * The session id of one participant in a room: readable prefixes of both names, then a hash of the exact
 * (room, identity) pair — length-prefixed, so `a` + `b-c` and `a-b` + `c` differ, and every byte counts, so
 * names that clean up to the same prefix differ too. 132 bits of SHA-256: no two participants share a session.
 * The identity is the one LiveKit verified from the participant's token.
 */
export function sessionIdFor(room: string, identity: string): SessionId {
  const r = Buffer.from(room, 'utf8');
  const i = Buffer.from(identity, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(r.length);
  const hash = createHash('sha256').update(len).update(r).update(i).digest('base64url').slice(0, 22);
  const readable = (s: string) => s.replace(/[^A-Za-z0-9]/g, '').slice(0, 16) || 'x';
  return parseSessionId(`${readable(room)}-${readable(identity)}-${hash}`);
}

interface Participant {
  identity: string;
  sessionId: SessionId;
  mic: MicQueue;
  stop: AbortController;
  audio?: RemoteAudio;
  done: Promise<void>;
}

/**
 * The LiveKit transport: one `GatewaySession` per remote participant. Each runs on its own 20 ms clock: the
 * next microphone frame from the participant's track (comfort noise when there is none yet) goes to
 * `tick`, whose agent frame goes to the session's published audio track. When the participant leaves, the
 * clock stops, the session closes and the track is unpublished.
 */
export class LiveKitTransport {
  private readonly participants = new Map<string, Participant>();
  private readonly log: TransportLog;
  private readonly clock: Clock;
  private readonly newSource: () => AudioSourceLike;
  private readonly maxMicFrames: number;
  private stopped = false;
  /** Stopping to hand the room over (SIGTERM): sessions are left to be resumed, not closed. */
  private handingOver = false;
  /** Set when the room was lost: the sessions closing (or closed) since. */
  private lost: Promise<void> | undefined;

  constructor(private readonly opts: LiveKitTransportOptions) {
    this.log = opts.log ?? { info: () => {}, warn: () => {}, error: () => {} };
    this.clock = opts.clock ?? runClock;
    this.newSource = opts.newSource ?? newAgentSource;
    this.maxMicFrames = opts.maxMicFrames ?? 10;
  }

  /** Joins the room and serves every participant in it until `stop()`. */
  async start(url: string, token: string): Promise<void> {
    await this.opts.room.connect(url, token, {
      participantConnected: (identity) => void this.join(identity),
      participantDisconnected: (identity) => void this.leave(identity),
      audioTrackSubscribed: (identity, audio) => this.subscribed(identity, audio),
      disconnected: (reason) => this.roomLost(reason),
    });
    this.log.info({ room: this.opts.room.name }, 'joined LiveKit room');
  }

  /** Identities being served now. */
  get identities(): string[] {
    return [...this.participants.keys()];
  }

  /**
   * Closes every session, then leaves the room (a lost room is not left again: this waits for its sessions).
   * `handOver`: the sessions are left to be resumed by the gateway instance that takes the room over.
   */
  async stop(handOver = false): Promise<void> {
    if (this.lost) return this.lost;
    this.stopped = true;
    this.handingOver = handOver;
    await this.closeAll();
    await this.opts.room.disconnect();
    this.log.info({ room: this.opts.room.name }, 'left LiveKit room');
  }

  private async closeAll(): Promise<void> {
    await Promise.all([...this.participants.keys()].map((identity) => this.leave(identity)));
  }

  /** The room put the agent out: every session closes, and the owner hears of it. */
  private roomLost(reason: string): void {
    if (this.stopped) return; // our own leave (or a second report) is no loss
    this.stopped = true;
    this.log.info({ room: this.opts.room.name, reason }, 'LiveKit room lost');
    this.lost = this.closeAll();
    this.opts.onLost?.(reason);
  }

  private join(identity: string): Participant | undefined {
    if (this.stopped || identity.startsWith(AGENT_PREFIX)) return undefined;
    const existing = this.participants.get(identity);
    if (existing) return existing;
    const p: Participant = {
      identity,
      sessionId: sessionIdFor(this.opts.room.name, identity),
      mic: new MicQueue(this.maxMicFrames),
      stop: new AbortController(),
      done: Promise.resolve(),
    };
    this.participants.set(identity, p);
    p.done = this.serve(p);
    return p;
  }

  /** Resolves once the participant's session is closed and its track unpublished. */
  async leave(identity: string): Promise<void> {
    const p = this.participants.get(identity);
    if (!p) return;
    p.stop.abort();
    p.audio?.close();
    await p.done;
  }

  private subscribed(identity: string, audio: RemoteAudio): void {
    const p = this.join(identity);
    if (!p) {
      audio.close();
      return;
    }
    p.audio?.close(); // a republished microphone replaces the old one
    p.audio = audio;
    void this.pump(p, audio);
  }

  /** Reads the participant's track into its microphone queue until the track or the participant ends. */
  private async pump(p: Participant, audio: RemoteAudio): Promise<void> {
    try {
      for await (const frame of micFrames(audio.frames)) {
        if (p.stop.signal.aborted || p.audio !== audio) break;
        p.mic.push(frame.samples);
      }
    } catch (err) {
      this.log.warn({ sessionId: p.sessionId, err: String(err) }, 'microphone track failed');
    }
  }

  private async serve(p: Participant): Promise<void> {
    const log = { sessionId: p.sessionId, identity: p.identity };
    let session: SessionHandle | undefined;
    let source: AudioSourceLike | undefined;
    let published: PublishedTrack | undefined;
    try {
      session = await this.opts.openSession(p.sessionId, p.identity);
      if (p.stop.signal.aborted) return;
      source = this.newSource();
      published = await this.opts.room.publishAudio(`${AGENT_PREFIX}voice-${p.identity}`, source);
      if (p.stop.signal.aborted) return;
      this.log.info(log, 'participant session started');
      const voice = new AgentVoice(source, (err) => this.log.warn({ ...log, err: String(err) }, 'agent audio failed'));
      const s = session;
      await this.clock(
        FRAME_MS,
        (i) => {
          const mic = p.mic.take() ?? micSilence(PIPELINE_FRAME_SAMPLES, i + 1);
          voice.play(s.tick(mic));
          return true;
        },
        p.stop.signal,
      );
      await voice.drained();
    } catch (err) {
      this.log.error({ ...log, err: String(err) }, 'participant session failed');
    } finally {
      this.participants.delete(p.identity);
      p.audio?.close();
      const detach = this.handingOver ? session?.detach : undefined;
      if (detach) await this.settle(log, 'detach session', () => detach.call(session));
      else await this.settle(log, 'close session', () => session?.close());
      await this.settle(log, 'unpublish agent track', () => published?.unpublish());
      await this.settle(log, 'close agent source', () => source?.close());
      this.log.info(log, 'participant session ended');
    }
  }

  private async settle(log: object, what: string, f: () => unknown): Promise<void> {
    try {
      await f();
    } catch (err) {
      this.log.warn({ ...log, err: String(err) }, `${what} failed`);
    }
  }
}

export { LiveKitRoom } from './sdk-room.js';
