import {
  AudioStream,
  DisconnectReason,
  ParticipantKind,
  Room,
  RoomEvent,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  type AudioFrame,
} from '@livekit/rtc-node';
import { agentTrack, PIPELINE_RATE, type AudioSourceLike } from './audio.js';
import { AGENT_PREFIX, type PublishedTrack, type RemoteAudio, type RoomEvents, type RoomLike } from './room.js';

/** A web `ReadableStream` as a `RemoteAudio`: `close()` cancels it through its reader (it is locked). */
function remoteAudio(stream: ReadableStream<AudioFrame>): RemoteAudio {
  const reader = stream.getReader();
  async function* frames(): AsyncGenerator<AudioFrame> {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      yield value;
    }
  }
  return { frames: frames(), close: () => void reader.cancel().catch(() => {}) };
}

/** `RoomLike` over a real `@livekit/rtc-node` room. */
export class LiveKitRoom implements RoomLike {
  private leaving = false;

  /** `room`: tests pass a `Room` that needs no server. */
  constructor(
    readonly name: string,
    readonly room: Room = new Room(),
  ) {}

  async connect(url: string, token: string, events: RoomEvents): Promise<void> {
    const isAgent = (p: { identity: string; kind: ParticipantKind }) =>
      p.kind === ParticipantKind.AGENT || p.identity.startsWith(AGENT_PREFIX);
    this.room
      .on(RoomEvent.ParticipantConnected, (p) => {
        if (!isAgent(p)) events.participantConnected(p.identity);
      })
      .on(RoomEvent.ParticipantDisconnected, (p) => {
        if (!isAgent(p)) events.participantDisconnected(p.identity);
      })
      .on(RoomEvent.TrackSubscribed, (track, publication, p) => {
        if (isAgent(p) || track.kind !== TrackKind.KIND_AUDIO) return;
        if (publication.source !== undefined && publication.source !== TrackSource.SOURCE_MICROPHONE) return;
        // The SDK resamples to the pipeline's rate and downmixes natively; `micFrames` copes with anything.
        const stream = new AudioStream(track, { sampleRate: PIPELINE_RATE, numChannels: 1 });
        events.audioTrackSubscribed(p.identity, remoteAudio(stream));
      })
      .on(RoomEvent.Disconnected, (reason) => {
        // rtc-node reports its own disconnect() too (CLIENT_INITIATED), possibly while that call is under way.
        if (this.leaving || reason === DisconnectReason.CLIENT_INITIATED) return;
        events.disconnected(DisconnectReason[reason] ?? `reason ${String(reason)}`);
      });
    await this.room.connect(url, token, { autoSubscribe: true, dynacast: false });
    for (const p of this.room.remoteParticipants.values()) if (!isAgent(p)) events.participantConnected(p.identity);
  }

  async publishAudio(trackName: string, source: AudioSourceLike): Promise<PublishedTrack> {
    const local = this.room.localParticipant;
    if (!local) throw new Error('not connected to the room');
    const track = agentTrack(trackName, source);
    const publication = await local.publishTrack(
      track,
      new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }),
    );
    return {
      unpublish: async () => {
        if (publication.sid && this.room.isConnected) await local.unpublishTrack(publication.sid);
        await track.close(false);
      },
    };
  }

  async disconnect(): Promise<void> {
    this.leaving = true;
    await this.room.disconnect();
  }
}
