import type { AudioFrame } from '@livekit/rtc-node';
import type { AudioSourceLike } from '../src/livekit/audio.js';
import type { PublishedTrack, RoomEvents, RoomLike } from '../src/livekit/room.js';

/** An agent audio source that keeps every frame it is given. */
export class FakeSource implements AudioSourceLike {
  constructor(readonly sampleRate = 16000) {}
  readonly frames: AudioFrame[] = [];
  closed = false;
  async captureFrame(frame: AudioFrame): Promise<void> {
    this.frames.push(frame);
  }
  clearQueue(): void {}
  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * A room with no server: tests drive participants through `events`, and read what was connected and published.
 * `failWith` makes `connect` fail; `lose` puts the agent out as LiveKit would.
 */
export class FakeRoom implements RoomLike {
  events: RoomEvents | undefined;
  connected = false;
  /** Connects tried, failed ones included. */
  connects = 0;
  failWith: Error | undefined;
  /** What the last `connect` was given. */
  url: string | undefined;
  token: string | undefined;
  readonly published: { name: string; source: AudioSourceLike; unpublished: boolean }[] = [];
  constructor(readonly name: string) {}
  async connect(url: string, token: string, events: RoomEvents): Promise<void> {
    this.connects++;
    if (this.failWith) throw this.failWith;
    this.url = url;
    this.token = token;
    this.events = events;
    this.connected = true;
  }
  async publishAudio(name: string, source: AudioSourceLike): Promise<PublishedTrack> {
    const entry = { name, source, unpublished: false };
    this.published.push(entry);
    return { unpublish: async () => void (entry.unpublished = true) };
  }
  async disconnect(): Promise<void> {
    this.connected = false;
  }
  /** LiveKit removes the agent (room deleted, agent kicked, connection gone): reported once, as a real room does. */
  lose(reason = 'ROOM_DELETED'): void {
    if (!this.connected || !this.events) throw new Error(`fake room ${this.name} is not connected`);
    this.connected = false;
    this.events.disconnected(reason);
  }
}
