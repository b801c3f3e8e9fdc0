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
const partialEl = $('partial');

let audio; // AudioContext: capture and playout share one clock
let stream; // MediaStream of the microphone
let worklet;
let ws;
let running = false;
let retryMs = 500;
let retryTimer;
let playAt = 0;
const playing = new Set();
const turns = new Map(); // turnId → { el, opener, answer, latency }

function status(text, isError = false) {
  statusEl.textContent = text;
  statusEl.className = isError ? 'error' : '';
}

async function start() {
  startBtn.disabled = true;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: {
        channelCount: 1,
        // On: the agent's voice comes out of the speakers; without echo cancellation the microphone hears it and
        // the gateway's VAD takes the agent's own words for the user barging in.
        echoCancellation: true,
        // On: background noise (fans, keyboards) starts false VAD turns and false barge-ins; the mild artefacts
        // of the browser's suppressor cost the recogniser less than that.
        noiseSuppression: true,
        // On: nothing downstream normalises the level; quiet laptop microphones otherwise fall under the VAD's
        // threshold, and the browser's AGC is tuned together with its echo canceller.
        autoGainControl: true,
      },
    });
  } catch (err) {
    status(`No microphone: ${err.message}`, true);
    startBtn.disabled = false;
    return;
  }
  audio = new AudioContext();
  await audio.audioWorklet.addModule('/mic-worklet.js');
  worklet = new AudioWorkletNode(audio, 'mic-16k', { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1 });
  worklet.port.onmessage = (e) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(e.data);
  };
  audio.createMediaStreamSource(stream).connect(worklet);
  await audio.resume();
  running = true;
  stopBtn.disabled = false;
  connect();
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  status('Connecting…');
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  ws.onmessage = (e) => (typeof e.data === 'string' ? onEvent(JSON.parse(e.data)) : play(e.data));
  ws.onclose = (e) => {
    stopPlayback();
    if (!running) return;
    // The gateway went away or refused us (1013: too many sessions): try again, backing off.
    status(`Disconnected (${e.code}${e.reason ? `: ${e.reason}` : ''}); reconnecting in ${retryMs / 1000} s…`, true);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, RECONNECT_MAX_MS);
  };
}

function stop() {
  running = false;
  clearTimeout(retryTimer);
  if (ws) ws.close(1000, 'user stopped');
  stopPlayback();
  if (stream) for (const t of stream.getTracks()) t.stop();
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
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 0x8000;
  const src = audio.createBufferSource();
  src.buffer = b;
  src.connect(audio.destination);
  // After a gap (the agent was silent, or the network late) start again a lead ahead of now.
  playAt = Math.max(playAt, audio.currentTime + PLAY_LEAD_S);
  src.start(playAt);
  playAt += b.duration;
  playing.add(src);
  src.onended = () => playing.delete(src);
}

function stopPlayback() {
  for (const src of playing) src.stop();
  playing.clear();
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

function onEvent(e) {
  switch (e.type) {
    case 'ready':
      retryMs = 500;
      status(`Connected (session ${e.sessionId}). Speak.`);
      break;
    case 'transcript':
      if (e.final) {
        const el = document.createElement('div');
        el.className = 'turn you';
        el.textContent = e.text;
        logEl.appendChild(el);
        partialEl.textContent = '';
      } else {
        partialEl.textContent = e.text;
      }
      break;
    case 'reply': {
      const t = turnOf(e.turnId);
      (e.source === 'fast' ? t.opener : t.answer).textContent += e.delta;
      break;
    }
    case 'playout': {
      const t = turnOf(e.turnId);
      if (e.interrupted) t.el.classList.add('interrupted');
      t.latency.textContent =
        (e.e2eMs === null ? 'nothing played' : `answered ${e.e2eMs} ms after you stopped`) +
        `, played ${(e.playedMs / 1000).toFixed(1)} s${e.interrupted ? ', interrupted' : ''}`;
      break;
    }
    case 'error':
      status(`Gateway: ${e.message}`, true);
      break;
    default:
      console.warn('unknown event', e);
  }
  window.scrollTo(0, document.body.scrollHeight);
}

startBtn.onclick = () => void start();
stopBtn.onclick = stop;
