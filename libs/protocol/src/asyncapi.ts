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
  const doc = {
    asyncapi: '3.0.0',
    info: {
      title: 'voice-agent message bus',
      version,
      description:
        "The subjects, messages and headers the voice agent's stages exchange on NATS. Every JSON message is " +
        'checked against its schema by the receiver (unknown keys are refused). Each turn is one W3C trace: ' +
        '`traceparent` (and `tracestate`) ride in the NATS headers of every message. See docs/custom-stage.md.',
    },
    defaultContentType: 'application/json',
    servers: { nats: { host: '127.0.0.1:4222', protocol: 'nats', description: 'A NATS server (2.9+, JetStream on).' } },
    channels: {} as Record<string, unknown>,
    operations: {} as Record<string, unknown>,
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
    },
  };
  const sessionParam = { sessionId: { description: 'The session: `[A-Za-z0-9_-]{1,64}`.' } };
  const add = (
    id: string,
    address: string | null,
    message: Record<string, unknown>,
    extra: Record<string, unknown> = {},
  ) => {
    doc.channels[id] = {
      address,
      ...(address?.includes('{sessionId}') ? { parameters: sessionParam } : {}),
      messages: { [messageId(id)]: message },
      ...extra,
    };
  };
  const stagesThat = (test: (a: (typeof STAGE_ACCESS)[keyof typeof STAGE_ACCESS]) => boolean) =>
    STAGES.filter((s) => test(STAGE_ACCESS[s]));
  const operations = (id: string, senders: readonly string[], receivers: readonly string[]) => {
    doc.operations[`send_${id}`] = { action: 'send', channel: { $ref: `#/channels/${id}` }, 'x-va-stages': senders };
    doc.operations[`receive_${id}`] = {
      action: 'receive',
      channel: { $ref: `#/channels/${id}` },
      'x-va-stages': receivers,
    };
  };

  for (const [key, ch] of Object.entries(channels)) {
    const id = key;
    const message = jsonMessage(
      ch.schema,
      `${ch.name}: a ${ch.class} message${ch.class === 'data' ? ' (dropped once its turn is cancelled)' : ''}.`,
    );
    if (ch.scope === 'session') {
      add(id, sessionAddress(ch.name), message);
      const every = (list: readonly string[]) => list.includes(ch.name);
      operations(
        id,
        every(EVERY_STAGE.publishes)
          ? ['every stage']
          : stagesThat((a) => (a.publishes as readonly string[]).includes(ch.name)),
        every(EVERY_STAGE.subscribes)
          ? ['every stage']
          : stagesThat((a) => (a.subscribes as readonly string[]).includes(ch.name)),
      );
    } else {
      add(id, ch.subject, message);
      const opens = ch.name === 'session.open' || ch.name === 'session.close';
      operations(
        id,
        opens ? stagesThat((a) => a.opensSessions) : ['every stage'],
        opens ? stagesThat((a) => a.actorHost) : [],
      );
    }
  }
  for (const [key, r] of [...Object.entries(requests), ...Object.entries(sessionRequests)]) {
    const address = r.scope === 'request' ? r.subject : sessionAddress(r.name);
    const replyId = `${key}Reply`;
    add(replyId, null, jsonMessage(r.reply, `The answer to ${r.name}.`));
    (doc.channels[replyId] as Record<string, unknown>).description =
      "The requester's inbox (`_INBOX…`): answers go only there.";
    add(key, address, jsonMessage(r.schema, `${r.name}: a request.`));
    const askers = stagesThat((a) => (a.requests as readonly string[]).includes(r.name));
    const servers = stagesThat((a) => (a.serves as readonly string[]).includes(r.name));
    doc.operations[`request_${key}`] = {
      action: 'send',
      channel: { $ref: `#/channels/${key}` },
      reply: { channel: { $ref: `#/channels/${replyId}` } },
      'x-va-stages': askers,
    };
    doc.operations[`serve_${key}`] = {
      action: 'receive',
      channel: { $ref: `#/channels/${key}` },
      reply: { channel: { $ref: `#/channels/${replyId}` } },
      'x-va-stages': servers,
    };
  }
  // The binary audio frames: one payload, a little-endian header then PCM16 samples (libs/protocol/src/audio.ts).
  for (const [id, leaf, from, to] of [
    ['audioIn', 'audio.in', ['media-gateway'], ['stt', 'turn-detector']],
    ['audioOut', 'audio.out', ['tts'], ['media-gateway']],
  ] as const) {
    add(id, sessionAddress(leaf), {
      contentType: 'application/octet-stream',
      traits: [{ $ref: '#/components/messageTraits/traced' }],
      description:
        `A ${FRAME_MS} ms (at most 200 ms) PCM16 mono frame. Header (little-endian): u8 format 0x${AUDIO_FORMAT_V1.toString(16)}, ` +
        'u8 flags (1: textOffset, 2: text), u16 header length, u32 sample rate, u32 seq, f64 tsMs, u32 textOffset, ' +
        'u8 source (fast|filler|deep, 255 none), u8 turn id length, the turn id, then (flag 2) u16 length + UTF-8 text; ' +
        'padded to an even length; samples follow.',
      payload: { type: 'string', format: 'binary' },
    });
    operations(id, from, to);
  }
  // Tool services: any process may serve one (docs/custom-stage.md).
  add(
    'toolService',
    `${PREFIX}.tool.{toolName}`,
    jsonMessage(z.record(z.string(), z.unknown()), "A tool call: the model's JSON arguments."),
    {
      parameters: { toolName: { description: "The tool's name (`[a-zA-Z0-9_-]{1,64}`)." } },
    },
  );
  add('toolServiceReply', null, jsonMessage(ToolReply, "A tool's answer."));
  doc.operations.call_toolService = {
    action: 'send',
    channel: { $ref: '#/channels/toolService' },
    reply: { channel: { $ref: '#/channels/toolServiceReply' } },
    'x-va-stages': ['deep-responder'],
  };
  doc.components = { ...doc.components, schemas: { AgentProfile: jsonSchema(AgentProfile) } } as typeof doc.components;
  return doc;
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
