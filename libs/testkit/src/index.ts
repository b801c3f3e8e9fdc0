export { waitFor, freePort, type WaitForOptions } from './wait.js';
export {
  startNatsServer,
  startNatsCluster,
  findNatsServerBinary,
  type NatsServerOptions,
  type NatsServerHandle,
  type NatsClusterOptions,
  type NatsClusterHandle,
} from './nats-server.js';
export {
  startOtlpReceiver,
  flattenTraces,
  flattenMetrics,
  decodeAnyValue,
  decodeAttributes,
  type AttrValue,
  type ReceivedSpan,
  type ReceivedMetric,
  type OtlpReceiver,
} from './otlp-receiver.js';
export {
  spawnNode,
  type SpawnNodeOptions,
  type ChildHandle,
  type ChildExit,
  type JsonLinePredicate,
} from './spawn-node.js';
export { speak, utterances, wordAccuracy, type SpeakOptions, type Turn } from './speech.js';
export {
  speakMarked,
  parseSpeakerVoices,
  formatSpeakerVoice,
  EOT_VOICES,
  MIN_PAUSE_MS,
  type SpeakerVoice,
  type PauseStyle,
  type MarkedPause,
  type MarkedUtterance,
  type SpeakMarkedOptions,
} from './utterance-speech/index.js';
export {
  startStagesInProcess,
  detachedActorContext,
  ActorInstances,
  type StageUnderTest,
  type InProcessStages,
  type ActorInstance,
} from './actors.js';
export * from './servers/deepgram-server.js';
export * from './servers/elevenlabs-server.js';
export * from './servers/openai-tts-server.js';
