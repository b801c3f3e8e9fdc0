import { z } from 'zod';
import { AgentProfile, ToolReply } from './agents.js';
import { AUDIO_FORMAT_V1, FRAME_MS, TURN_HEADER } from './audio.js';
import { channels, requests, sessionRequests } from './channels.js';
import { STAGES } from './ids.js';
import { EVERY_STAGE, STAGE_ACCESS } from './permissions.js';
import { PREFIX } from './subjects.js';

/**
 * The protocol as an AsyncAPI 3 document (docs/asyncapi.yaml, written by `node scripts/asyncapi.mjs`): every
 * subject, its message schema (JSON Schema from the zod schemas), headers and request/reply, and which stages send
 * and receive it. It is what a stage written in another language implements; a test keeps the file equal to this.
 */
export function asyncApiDocument(version: string): Record<string, unknown> {
  const doc = new AsyncApiDoc(version);
  doc.jsonChannels();
  doc.requestChannels();
  doc.audioChannels();
  doc.toolServiceChannel();
  return doc.toJSON();
}

type Access = (typeof STAGE_ACCESS)[keyof typeof STAGE_ACCESS];
const stagesThat = (test: (a: Access) => boolean) => STAGES.filter((s) => test(STAGE_ACCESS[s]));
const SESSION_PARAM = { sessionId: { description: 'The session: `[A-Za-z0-9_-]{1,64}`.' } };

/** The document being built: its channels and operations, one kind of subject at a time. */
class AsyncApiDoc {
  private readonly channels: Record<string, Record<string, unknown>> = {};
  private readonly operations: Record<string, unknown> = {};

  constructor(private readonly version: string) {}

  private add(
    id: string,
    address: string | null,
    message: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ) {
    this.channels[id] = {
      address,
      ...(address?.includes('{sessionId}') ? { parameters: SESSION_PARAM } : {}),
      messages: { [messageId(id)]: message },
      ...extra,
    };
  }

  private sendAndReceive(id: string, senders: readonly string[], receivers: readonly string[]) {
    this.operations[`send_${id}`] = { action: 'send', channel: { $ref: `#/channels/${id}` }, 'x-va-stages': senders };
    this.operations[`receive_${id}`] = {
      action: 'receive',
      channel: { $ref: `#/channels/${id}` },
      'x-va-stages': receivers,
    };
  }

  private requestReply(id: string, replyId: string, action: 'send' | 'receive', stages: readonly string[]) {
    this.operations[`${action === 'send' ? 'request' : 'serve'}_${id}`] = {
      action,
      channel: { $ref: `#/channels/${id}` },
      reply: { channel: { $ref: `#/channels/${replyId}` } },
      'x-va-stages': stages,
    };
  }

  /** Every JSON channel: per-session ones with who sends and reads them, and the global ones. */
  jsonChannels(): void {
    for (const [id, ch] of Object.entries(channels)) {
      const message = jsonMessage(
        ch.schema,
        `${ch.name}: a ${ch.class} message${ch.class === 'data' ? ' (dropped once its turn is cancelled)' : ''}.`,
      );
      if (ch.scope === 'session') {
        this.add(id, sessionAddress(ch.name), message);
        const who = (every: readonly string[], own: (a: Access) => readonly string[]) =>
          every.includes(ch.name) ? ['every stage'] : stagesThat((a) => own(a).includes(ch.name));
        this.sendAndReceive(
          id,
          who(EVERY_STAGE.publishes, (a) => a.publishes),
          who(EVERY_STAGE.subscribes, (a) => a.subscribes),
        );
      } else {
        this.add(id, ch.subject, message);
        const opens = ch.name === 'session.open' || ch.name === 'session.close';
        this.sendAndReceive(
          id,
          opens
            ? stagesThat(
                (a) => a.opensSessions || (ch.name === 'session.close' && 'closesOrphans' in a && a.closesOrphans),
              )
            : ['every stage'],
          opens ? stagesThat((a) => a.actorHost) : [],
        );
      }
    }
  }

  /** Requests and their replies (answered only into the requester's inbox). */
  requestChannels(): void {
    for (const [id, r] of [...Object.entries(requests), ...Object.entries(sessionRequests)]) {
      const replyId = `${id}Reply`;
      this.add(replyId, null, jsonMessage(r.reply, `The answer to ${r.name}.`), {
        description: "The requester's inbox (`_INBOX…`): answers go only there.",
      });
      this.add(
        id,
        r.scope === 'request' ? r.subject : sessionAddress(r.name),
        jsonMessage(r.schema, `${r.name}: a request.`),
      );
      this.requestReply(
        id,
        replyId,
        'send',
        stagesThat((a) => (a.requests as readonly string[]).includes(r.name)),
      );
      this.requestReply(
        id,
        replyId,
        'receive',
        stagesThat((a) => (a.serves as readonly string[]).includes(r.name)),
      );
    }
  }

  /** The binary audio frames: one payload, a little-endian header then PCM16 samples (audio.ts). */
  audioChannels(): void {
    for (const [id, leaf, from, to] of [
      ['audioIn', 'audio.in', ['media-gateway'], ['stt', 'turn-detector']],
      ['audioOut', 'audio.out', ['tts'], ['media-gateway']],
    ] as const) {
      this.add(id, sessionAddress(leaf), {
        contentType: 'application/octet-stream',
        traits: [{ $ref: '#/components/messageTraits/traced' }],
        description:
          `A ${FRAME_MS} ms (at most 200 ms) PCM16 mono frame. Header (little-endian): u8 format 0x${AUDIO_FORMAT_V1.toString(16)}, ` +
          'u8 flags (1: textOffset, 2: text), u16 header length, u32 sample rate, u32 seq, f64 tsMs, u32 textOffset, ' +
          'u8 source (fast|filler|deep, 255 none), u8 turn id length, the turn id, then (flag 2) u16 length + UTF-8 text; ' +
          'padded to an even length; samples follow.',
        payload: { type: 'string', format: 'binary' },
      });
      this.sendAndReceive(id, from, to);
    }
  }

  /** Tool services: any process may serve one (docs/custom-stage.md). */
  toolServiceChannel(): void {
    this.add(
      'toolService',
      `${PREFIX}.tool.{toolName}`,
      jsonMessage(z.record(z.string(), z.unknown()), "A tool call: the model's JSON arguments."),
      { parameters: { toolName: { description: "The tool's name (`[a-zA-Z0-9_-]{1,64}`)." } } },
    );
    this.add('toolServiceReply', null, jsonMessage(ToolReply, "A tool's answer."));
    this.requestReply('toolService', 'toolServiceReply', 'send', ['deep-responder']);
    // The tool call's operation id kept as it was first published.
    this.operations.call_toolService = this.operations.request_toolService;
    delete this.operations.request_toolService;
  }

  toJSON(): Record<string, unknown> {
    return {
      asyncapi: '3.0.0',
      info: {
        title: 'voice-agent message bus',
        version: this.version,
        description:
          "The subjects, messages and headers the voice agent's stages exchange on NATS. Every JSON message is " +
          'checked against its schema by the receiver (unknown keys are refused). Each turn is one W3C trace: ' +
          '`traceparent` (and `tracestate`) ride in the NATS headers of every message. See docs/custom-stage.md.',
      },
      defaultContentType: 'application/json',
      servers: {
        nats: { host: '127.0.0.1:4222', protocol: 'nats', description: 'A NATS server (2.9+, JetStream on).' },
      },
      channels: this.channels,
      operations: this.operations,
      components: {
        messageTraits: {
          traced: {
            headers: {
              type: 'object',
              properties: {
                traceparent: { type: 'string', description: 'W3C trace context of the turn (one trace per turn).' },
                tracestate: { type: 'string' },
                [TURN_HEADER]: {
                  type: 'string',
                  description: 'The turn a data message belongs to (stale ones are dropped unparsed).',
                },
              },
            },
          },
        },
        schemas: { AgentProfile: jsonSchema(AgentProfile) },
      },
    };
  }
}

function messageId(channelId: string): string {
  return `${channelId}Message`;
}

function sessionAddress(leaf: string): string {
  return `${PREFIX}.sess.{sessionId}.${leaf}`;
}

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _drop, ...json } = z.toJSONSchema(schema, { unrepresentable: 'any', io: 'input' }) as Record<
    string,
    unknown
  >;
  return json;
}

function jsonMessage(schema: z.ZodType, description: string): Record<string, unknown> {
  return { traits: [{ $ref: '#/components/messageTraits/traced' }], description, payload: jsonSchema(schema) };
}
