// Demo page logic: upload or record a voice, list voices, stream speech and play it as it arrives.
// Streaming plays raw PCM through Web Audio while collecting it; at the end the whole result is
// wrapped in a WAV blob for the <audio> element and the download link.
"use strict";

const $ = (id) => document.getElementById(id);
let recordedWav = null;   // Blob of the last microphone recording (WAV), if any
let recorder = null;

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { Authorization: "Bearer " + key } : {};
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return `${body.error.code}: ${body.error.message}`;
  } catch (_) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

function setStatus(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", !!isError);
}

// ---------------------------------------------------------------- WAV helpers
function floatToWav(samples, sampleRate) {
  const buf = new ArrayBuffer(44 + samples.length * 2);
  const v = new DataView(buf);
  const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
  str(0, "RIFF"); v.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
  str(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, sampleRate, true); v.setUint32(28, sampleRate * 2, true);
  v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  str(36, "data"); v.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    v.setInt16(44 + i * 2, Math.round(s * 32767), true);
  }
  return new Blob([buf], { type: "audio/wav" });
}

function pcm16ToFloat(bytes) {
  const n = bytes.length >> 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, n * 2);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getInt16(i * 2, true) / 32767;
  return out;
}

// ------------------------------------------------------------------ recording
async function startRecording() {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setStatus("record-status", "Recording is not supported in this browser.", true);
    return;
  }
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  const parts = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = (e) => { if (e.data.size) parts.push(e.data); };
  recorder.onstop = async () => {
    stream.getTracks().forEach((t) => t.stop());
    // Browsers record webm/ogg-opus; decode here and upload WAV so the server needs no opus decoder.
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const audio = await ctx.decodeAudioData(await new Blob(parts).arrayBuffer());
    recordedWav = floatToWav(audio.getChannelData(0), audio.sampleRate);
    setStatus("record-status", `Recorded ${audio.duration.toFixed(1)} s (will be uploaded).`);
    ctx.close();
  };
  recorder.start();
  $("record-btn").disabled = true;
  $("stop-btn").disabled = false;
  setStatus("record-status", "Recording... speak for about a minute.");
}

function stopRecording() {
  if (recorder && recorder.state !== "inactive") recorder.stop();
  $("record-btn").disabled = false;
  $("stop-btn").disabled = true;
}

// --------------------------------------------------------------------- voices
async function uploadVoice() {
  const file = $("voice-file").files[0];
  const audio = file || recordedWav;
  if (!audio) { setStatus("upload-status", "Choose a file or record first.", true); return; }
  const form = new FormData();
  form.append("file", audio, file ? file.name : "recording.wav");
  if ($("voice-name").value.trim()) form.append("name", $("voice-name").value.trim());
  form.append("language", $("voice-lang").value);
  if ($("voice-transcript").value.trim()) form.append("transcript", $("voice-transcript").value.trim());
  setStatus("upload-status", "Uploading and analysing...");
  const resp = await fetch("/v1/voices", { method: "POST", body: form, headers: authHeaders() });
  if (!resp.ok) { setStatus("upload-status", await errorText(resp), true); return; }
  const voice = await resp.json();
  const notes = (voice.warnings || []).map((w) => w.message || w.code).join(" ");
  setStatus("upload-status", `Created voice "${voice.name}" (${voice.id}). ${notes}`);
  await refreshVoices(voice.id);
}

async function refreshVoices(selectId) {
  const resp = await fetch("/v1/voices", { headers: authHeaders() });
  if (!resp.ok) { setStatus("upload-status", await errorText(resp), true); return; }
  const { voices } = await resp.json();
  const list = $("voices");
  const select = $("voice-select");
  const keep = selectId || select.value;
  list.replaceChildren();
  select.replaceChildren();
  for (const v of voices) {
    const li = document.createElement("li");
    li.textContent = `${v.name} (${v.id})`;
    const del = document.createElement("button");
    del.textContent = "Delete";
    del.onclick = () => deleteVoice(v.id);
    li.appendChild(del);
    list.appendChild(li);
    const opt = document.createElement("option");
    opt.value = v.id;
    opt.textContent = v.name;
    select.appendChild(opt);
  }
  if (keep && voices.some((v) => v.id === keep)) select.value = keep;
  if (!voices.length) list.innerHTML = "<li>No voices yet.</li>";
}

async function deleteVoice(id) {
  const resp = await fetch(`/v1/voices/${encodeURIComponent(id)}`, { method: "DELETE", headers: authHeaders() });
  if (!resp.ok && resp.status !== 404) setStatus("upload-status", await errorText(resp), true);
  await refreshVoices();
}

// ---------------------------------------------------------------------- speak
class StreamPlayer {
  // Schedules PCM pieces back to back on an AudioContext; silently does nothing if audio is blocked.
  // A piece that arrives after the audio before it has finished (an underrun: on a slow CPU the
  // early chunks can come later than real time) starts `lead` seconds ahead instead of at once,
  // and each underrun doubles `lead` (up to MAX_LEAD): a slow server then makes one or two longer
  // pauses instead of a stutter at every chunk. The first piece plays at once.
  constructor(rate) {
    this.lead = StreamPlayer.FIRST_LEAD;
    this.underruns = 0;
    this.started = false;
    try {
      this.ctx = new (window.AudioContext || window.webkitAudioContext)({ sampleRate: rate });
      this.at = 0;
    } catch (_) { this.ctx = null; }
  }
  schedule(duration) {
    // Where a piece of `duration` seconds starts; advances the play head past it.
    const now = this.ctx.currentTime;
    if (!this.started) {
      this.at = now + StreamPlayer.FIRST_LEAD;
      this.started = true;
    } else if (this.at < now) {
      this.underruns += 1;
      this.lead = Math.min(StreamPlayer.MAX_LEAD, this.lead * 2);
      this.at = now + this.lead;
    }
    const start = this.at;
    this.at += duration;
    return start;
  }
  play(samples) {
    if (!this.ctx || !samples.length) return;
    try {
      const buf = this.ctx.createBuffer(1, samples.length, this.ctx.sampleRate);
      buf.copyToChannel(samples, 0);
      const src = this.ctx.createBufferSource();
      src.buffer = buf;
      src.connect(this.ctx.destination);
      src.start(this.schedule(buf.duration));
    } catch (_) { /* playback is best effort; the result still goes to <audio> */ }
  }
}
StreamPlayer.FIRST_LEAD = 0.05;
StreamPlayer.MAX_LEAD = 0.8;

async function speak() {
  const voiceId = $("voice-select").value;
  if (!voiceId) { setStatus("speak-status", "Create or pick a voice first.", true); return; }
  const body = { voice_id: voiceId, text: $("tts-text").value, language: $("tts-lang").value,
                 format: "pcm", stream: true, speed: parseFloat($("tts-speed").value) || 1.0 };
  const seed = $("tts-seed").value.trim();
  if (seed) body.seed = parseInt(seed, 10);
  $("speak-btn").disabled = true;
  $("download-link").hidden = true;
  setStatus("speak-status", "Synthesizing...");
  const t0 = performance.now();
  try {
    const resp = await fetch("/v1/tts", { method: "POST", body: JSON.stringify(body),
                                          headers: { "Content-Type": "application/json", ...authHeaders() } });
    if (!resp.ok) { setStatus("speak-status", await errorText(resp), true); return; }
    const rate = parseInt(resp.headers.get("X-Sample-Rate") || "32000", 10);
    const player = new StreamPlayer(rate);
    const reader = resp.body.getReader();
    const pieces = [];
    let carry = new Uint8Array(0);
    let firstMs = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (firstMs === null) firstMs = performance.now() - t0;
      const bytes = new Uint8Array(carry.length + value.length);
      bytes.set(carry); bytes.set(value, carry.length);
      const even = bytes.length & ~1;
      carry = bytes.slice(even);
      const samples = pcm16ToFloat(bytes.subarray(0, even));
      pieces.push(samples);
      player.play(samples);
    }
    const total = pieces.reduce((n, p) => n + p.length, 0);
    const all = new Float32Array(total);
    let off = 0;
    for (const p of pieces) { all.set(p, off); off += p.length; }
    const url = URL.createObjectURL(floatToWav(all, rate));
    $("player").src = url;
    $("download-link").href = url;
    $("download-link").hidden = false;
    setStatus("speak-status", `${(total / rate).toFixed(2)} s of audio; first audio after ${Math.round(firstMs || 0)} ms.`);
  } catch (e) {
    setStatus("speak-status", String(e), true);
  } finally {
    $("speak-btn").disabled = false;
  }
}

// ----------------------------------------------------------------------- init
async function init() {
  $("record-btn").onclick = () => startRecording().catch((e) => setStatus("record-status", String(e), true));
  $("stop-btn").onclick = stopRecording;
  $("upload-btn").onclick = () => uploadVoice().catch((e) => setStatus("upload-status", String(e), true));
  $("refresh-btn").onclick = () => refreshVoices();
  $("speak-btn").onclick = speak;
  $("api-key").value = localStorage.getItem("gsv-api-key") || "";
  $("api-key").onchange = () => { localStorage.setItem("gsv-api-key", $("api-key").value.trim()); refreshVoices(); };
  const resp = await fetch("/v1/info");
  if (resp.ok) {
    const info = await resp.json();
    $("random-banner").hidden = !info.random_weights;
    $("key-section").hidden = !info.auth_required;
  }
  await refreshVoices();
}

init();
