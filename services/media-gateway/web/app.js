// The talk page: microphone → AudioWorklet (16 kHz PCM16, 20 ms frames) → WebSocket /ws → gateway; agent frames
// (binary, PCM16 16 kHz) are scheduled back to back on the AudioContext; JSON events fill the transcript.

const RATE = 16000;
/** Audio scheduled this far ahead of now, to ride out network jitter (added to the agent's latency). */
const PLAY_LEAD_S = 0.06;
const RECONNECT_MAX_MS = 5000;

const $ = (id) => document.getElementById(id);
const startBtn = $('start');
const stopBtn = $('stop');
const statusEl = $('status');
const logEl = $('log');

let audio; // AudioContext: capture and playout share one clock
let stream; // MediaStream of the microphone
let worklet;
let ws;
let running = false;
/** The session behind the socket is open: microphone audio goes out only then. */
let ready = false;
let retryMs = 500;
let retryTimer;
/** The session's resume token (the gateway sends fresh ones): a lost socket reconnects to the same session. */
let resumeToken;
/**
 * Microphone audio captured while the socket is down, sent first once the session is resumed (what the user said
 * in the gap reaches the agent); at most ~2 s, the oldest dropped beyond.
 */
const GAP_BUFFER_MAX_BYTES = 2 * 16000 * 2;
let gapAudio = [];
let gapBytes = 0;
/** The gateway said the resume token was no good (its error comes just before the 1008 close). */
let resumeRefused = false;
/** Why the gateway last said it was busy (its error event comes just before the 1013 close). */
let busyReason = '';
let playAt = 0;
const playing = new Set();
/** Agent audio this page has played to the end (read by the browser test; handy in the console too). */
const stats = { agentFramesPlayed: 0, agentMsPlayed: 0, agentPeak: 0 };
window.talkPage = { stats };
/**
 * `?processing=off`: the microphone as captured, no echo cancellation, noise suppression or gain control
 * (headsets, where there is no echo; and test rigs feeding a recording as the microphone).
 */
const PROCESSING = new URLSearchParams(location.search).get('processing') !== 'off';
const turns = new Map(); // turnId → { el, opener, answer, latency }
let speaking; // the user's line being recognised (partial transcripts), until its final

function status(text, isError = false) {
  statusEl.textContent = text;
  statusEl.className = isError ? 'error' : '';
}

/**
 * Start: the audio context now (browsers allow audio only from a click), the connection next, and the
 * microphone once the session is ready, so no words are spoken into a session that is still opening.
 */
function start() {
  startBtn.disabled = true;
  audio = new AudioContext();
  running = true;
  stopBtn.disabled = false;
  connect();
}

async function openMicrophone() {
  if (stream || !audio) return;
  stream = await navigator.mediaDevices.getUserMedia({
    audio: {
      channelCount: 1,
      // On: the agent's voice comes out of the speakers; without echo cancellation the microphone hears it and
      // the gateway's VAD takes the agent's own words for the user barging in.
      echoCancellation: PROCESSING,
      // On: background noise (fans, keyboards) starts false VAD turns and false barge-ins; the mild artefacts
      // of the browser's suppressor cost the recogniser less than that.
      noiseSuppression: PROCESSING,
      // On: nothing downstream normalises the level; quiet laptop microphones otherwise fall under the VAD's
      // threshold, and the browser's AGC is tuned together with its echo canceller.
      autoGainControl: PROCESSING,
    },
  });
  if (!running) {
    // Stopped while the browser asked for the microphone.
    for (const t of stream.getTracks()) t.stop();
    stream = undefined;
    return;
  }
  await audio.audioWorklet.addModule('/mic-worklet.js');
  worklet = new AudioWorkletNode(audio, 'mic-16k', { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1 });
  worklet.port.onmessage = (e) => {
    if (ready && ws.readyState === WebSocket.OPEN) ws.send(e.data);
    else if (resumeToken && running) keepForResume(e.data);
  };
  audio.createMediaStreamSource(stream).connect(worklet);
  await audio.resume();
}

function keepForResume(bytes) {
  gapAudio.push(bytes);
  gapBytes += bytes.byteLength;
  while (gapBytes > GAP_BUFFER_MAX_BYTES && gapAudio.length > 1) gapBytes -= gapAudio.shift().byteLength;
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  status(resumeToken ? 'Reconnecting to the same conversation…' : 'Connecting…');
  // `/?agent=<name>` talks to that agent (a profile stored with `npm run agent -- put`); a lost socket resumes
  // its session (any gateway instance takes it up with the token).
  const agent = new URLSearchParams(location.search).get('agent');
  const query = resumeToken
    ? `?resume=${encodeURIComponent(resumeToken)}`
    : agent
      ? `?agent=${encodeURIComponent(agent)}`
      : '';
  ws = new WebSocket(`${scheme}://${location.host}/ws${query}`);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => (typeof e.data === 'string' ? onEvent(JSON.parse(e.data)) : play(e.data));
  ws.onclose = (e) => {
    ready = false;
    stopPlayback();
    if (!running) return;
    if (e.code === 1013) {
      // Try Again Later: the agent is full (the error event before the close said which part). The sessions it
      // serves are fine; the user decides when to try again.
      stop();
      status(`The agent is busy right now — please try again in a moment. (${busyReason || e.reason})`, true);
      return;
    }
    if (e.code === 1008 && resumeToken && resumeRefused) {
      // The session could not be taken up again (ended, or the token expired): a new one, right away.
      resumeToken = undefined;
      resumeRefused = false;
      gapAudio = [];
      gapBytes = 0;
      connect();
      return;
    }
    if (e.code === 4000 || e.code === 1008) {
      // Closed for this page's own doing (no microphone audio for a while, or too many messages): reconnecting
      // would only repeat it.
      stop();
      status(`Closed by the agent: ${e.reason || e.code}. Press Start to talk again.`, true);
      return;
    }
    // The gateway went away: try again, backing off.
    status(`Disconnected (${e.code}${e.reason ? `: ${e.reason}` : ''}); reconnecting in ${retryMs / 1000} s…`, true);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
  };
}

function stop() {
  running = false;
  ready = false;
  resumeToken = undefined;
  gapAudio = [];
  gapBytes = 0;
  clearTimeout(retryTimer);
  if (ws) ws.close(1000, 'user stopped');
  stopPlayback();
  if (stream) for (const t of stream.getTracks()) t.stop();
  stream = undefined;
  if (audio) void audio.close();
  audio = undefined;
  stopBtn.disabled = true;
  startBtn.disabled = false;
  status('Stopped.');
}

/** One agent frame: PCM16 at 16 kHz, queued right after the previous one (the context resamples it). */
function play(buf) {
  if (!audio) return;
  const pcm = new Int16Array(buf);
  const b = audio.createBuffer(1, pcm.length, RATE);
  const ch = b.getChannelData(0);
  let peak = 0;
  for (let i = 0; i < pcm.length; i++) {
    ch[i] = pcm[i] / 0x8000;
    peak = Math.max(peak, Math.abs(ch[i]));
  }
  const src = audio.createBufferSource();
  src.buffer = b;
  src.connect(audio.destination);
  // After a gap (the agent was silent, or the network late) start again a lead ahead of now.
  playAt = Math.max(playAt, audio.currentTime + PLAY_LEAD_S);
  src.start(playAt);
  playAt += b.duration;
  playing.add(src);
  src.onended = () => {
    // Cut short by stopPlayback (barge-in, disconnect) counts as not played.
    if (!playing.delete(src)) return;
    stats.agentFramesPlayed++;
    stats.agentMsPlayed += b.duration * 1000;
    stats.agentPeak = Math.max(stats.agentPeak, peak);
  };
}

function stopPlayback() {
  const cut = [...playing];
  playing.clear();
  for (const src of cut) src.stop();
  playAt = 0;
}

function turnOf(turnId) {
  let t = turns.get(turnId);
  if (!t) {
    const el = document.createElement('div');
    el.className = 'turn agent';
    el.innerHTML = '<span class="opener"></span> <span class="answer"></span><div class="latency"></div>';
    logEl.appendChild(el);
    t = {
      el,
      opener: el.querySelector('.opener'),
      answer: el.querySelector('.answer'),
      latency: el.querySelector('.latency'),
    };
    turns.set(turnId, t);
  }
  return t;
}

/** What each stage's first output means for the user, in the order a turn goes through them. */
const STEPS = [
  ['turnEndMs', 'end of turn'],
  ['audioReadyMs', 'first audio'],
  ['answerAudioMs', 'answer audio'],
  ['playedMs', 'played'],
];

/** The turn's latency: voice-to-voice, then when each stage's first output came, and a link to its trace. */
function showLatency(t, e) {
  t.latency.replaceChildren();
  const head = document.createElement('div');
  head.className = 'e2e';
  head.textContent =
    (e.e2eMs === null ? 'nothing played' : `answered ${e.e2eMs} ms after you stopped`) +
    `, played ${(e.playedMs / 1000).toFixed(1)} s${e.interrupted ? ', interrupted' : ''}`;
  t.latency.appendChild(head);
  if (e.timeline) {
    const list = document.createElement('ol');
    list.className = 'breakdown';
    // In time order: with preemptive generation the replies start before the end of turn.
    const steps = STEPS.filter(([key]) => typeof e.timeline[key] === 'number').sort(
      (a, b) => e.timeline[a[0]] - e.timeline[b[0]],
    );
    for (const [key, label] of steps) {
      const ms = e.timeline[key];
      const li = document.createElement('li');
      li.dataset.step = key;
      li.textContent = `${label} +${ms} ms`;
      list.appendChild(li);
    }
    t.latency.appendChild(list);
  }
  if (e.traceId) {
    const trace = e.traceUrl ? document.createElement('a') : document.createElement('span');
    trace.className = 'trace';
    trace.textContent = `trace ${e.traceId}`;
    if (e.traceUrl) {
      trace.href = e.traceUrl;
      trace.target = '_blank';
      trace.rel = 'noopener';
    }
    t.latency.appendChild(trace);
  }
}

function onEvent(e) {
  switch (e.type) {
    case 'ready':
      retryMs = 500;
      ready = true;
      resumeToken = e.resumeToken;
      window.talkPage.sessionId = e.sessionId;
      window.talkPage.resumes = (window.talkPage.resumes ?? 0) + (e.resumed ? 1 : 0);
      // What the user said while the socket was down goes first.
      for (const bytes of gapAudio) ws.send(bytes);
      gapAudio = [];
      gapBytes = 0;
      openMicrophone().then(
        () => status(`Connected (session ${e.sessionId}). Speak.`),
        (err) => {
          stop();
          status(`No microphone: ${err.message}`, true);
        },
      );
      break;
    case 'transcript':
      // The user's line appears with the first partial, so the agent's reply (which may start before the
      // final, with preemptive generation) lands below it.
      if (!speaking) {
        speaking = document.createElement('div');
        speaking.className = 'turn you partial';
        logEl.appendChild(speaking);
      }
      speaking.textContent = e.text;
      if (e.final) {
        speaking.classList.remove('partial');
        speaking = undefined;
      }
      break;
    case 'reply': {
      // Captions: the words of each frame as it is played (a preview never played shows nothing).
      const t = turnOf(e.turnId);
      const el = e.source === 'deep' ? t.answer : t.opener;
      // A frame's text may end mid-word: only a new voice (the filler after the opener) starts after a space.
      if (el.dataset.source && el.dataset.source !== e.source) el.textContent += ' ';
      el.dataset.source = e.source;
      el.textContent += e.text;
      break;
    }
    case 'playout': {
      const t = turnOf(e.turnId);
      if (e.interrupted) t.el.classList.add('interrupted');
      showLatency(t, e);
      break;
    }
    case 'flush':
      // The user barged in: drop what is scheduled (the gateway has already stopped sending this turn).
      stopPlayback();
      break;
    case 'resume-token':
      resumeToken = e.token;
      break;
    case 'error':
      if (e.code === 'busy') busyReason = e.message;
      if (e.code === 'resume-refused') resumeRefused = true;
      status(`Gateway: ${e.message}`, true);
      break;
    default:
      console.warn('unknown event', e);
  }
  window.scrollTo(0, document.body.scrollHeight);
}

startBtn.onclick = start;
stopBtn.onclick = stop;
