import { RecentMap } from '@va/actor';
import type { Reply, ReplyReplayReply } from '@va/protocol';

/** Turns whose replies a session remembers: the one tts may be speaking, and the one before. */
const REMEMBERED_REPLIES = 4;

/**
 * What this responder has streamed for its session's latest turns, in seq order: a tts instance that takes the
 * session over mid-turn asks for it (`reply.*.replay`) and speaks on from where its predecessor's audio stopped.
 */
export class ReplyLog {
  private readonly turns = new RecentMap<string, ReplyReplayReply>(REMEMBERED_REPLIES);

  /** A reply message as sent. Deltas arrive in seq order; one out of order (never sent so) is not recorded. */
  sent(msg: Reply): void {
    const turn = this.turns.get(msg.turnId) ?? { text: '', nextSeq: 0, done: false };
    if (msg.seq === turn.nextSeq) {
      turn.text += msg.delta;
      turn.nextSeq++;
    }
    if (msg.done) turn.done = true;
    this.turns.set(msg.turnId, turn);
  }

  replay(turnId: string): ReplyReplayReply {
    return this.turns.get(turnId) ?? { text: '', nextSeq: 0, done: false };
  }
}
