// Kotoba web client: text chat, hold-to-talk (AudioWorklet → 16 kHz PCM16), 24 kHz playback that stops on
// "interrupted", live transcripts, a furigana/romaji display toggle, and a token box for local use.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, sessionId: null, mode: "text", tutorEl: null, tutorText: "", display: "plain",
  play: {ctx: null, cursor: 0, sources: []}, mic: null, recording: false,
};
// Exposed for tests and debugging.
window.kotoba = {state, stats: {audioChunksIn: 0, audioBytesIn: 0, audioChunksOut: 0, micRms: 0, micPeakRms: 0, interrupted: 0,
                                turns: 0, errors: []}};

function setStatus(text) { $("status").textContent = text; }

function addMessage(cls, text) {
  const el = document.createElement("div");
  el.className = "msg " + cls;
  el.textContent = text;
  $("log").appendChild(el);
  $("log").scrollTop = $("log").scrollHeight;
  return el;
}

// ---------------------------------------------------------------- display: plain / furigana / romaji
const KANA = {"きゃ":"kya","きゅ":"kyu","きょ":"kyo","しゃ":"sha","しゅ":"shu","しょ":"sho","ちゃ":"cha","ちゅ":"chu",
  "ちょ":"cho","にゃ":"nya","にゅ":"nyu","にょ":"nyo","ひゃ":"hya","ひゅ":"hyu","ひょ":"hyo","みゃ":"mya","みゅ":"myu",
  "みょ":"myo","りゃ":"rya","りゅ":"ryu","りょ":"ryo","ぎゃ":"gya","ぎゅ":"gyu","ぎょ":"gyo","じゃ":"ja","じゅ":"ju",
  "じょ":"jo","びゃ":"bya","びゅ":"byu","びょ":"byo","ぴゃ":"pya","ぴゅ":"pyu","ぴょ":"pyo",
  "あ":"a","い":"i","う":"u","え":"e","お":"o","か":"ka","き":"ki","く":"ku","け":"ke","こ":"ko","さ":"sa","し":"shi",
  "す":"su","せ":"se","そ":"so","た":"ta","ち":"chi","つ":"tsu","て":"te","と":"to","な":"na","に":"ni","ぬ":"nu",
  "ね":"ne","の":"no","は":"ha","ひ":"hi","ふ":"fu","へ":"he","ほ":"ho","ま":"ma","み":"mi","む":"mu","め":"me",
  "も":"mo","や":"ya","ゆ":"yu","よ":"yo","ら":"ra","り":"ri","る":"ru","れ":"re","ろ":"ro","わ":"wa","を":"o",
  "ん":"n","が":"ga","ぎ":"gi","ぐ":"gu","げ":"ge","ご":"go","ざ":"za","じ":"ji","ず":"zu","ぜ":"ze","ぞ":"zo",
  "だ":"da","ぢ":"ji","づ":"zu","で":"de","ど":"do","ば":"ba","び":"bi","ぶ":"bu","べ":"be","ぼ":"bo","ぱ":"pa",
  "ぴ":"pi","ぷ":"pu","ぺ":"pe","ぽ":"po","ぁ":"a","ぃ":"i","ぅ":"u","ぇ":"e","ぉ":"o","ゃ":"ya","ゅ":"yu","ょ":"yo",
  "ー":"-"};

function toHiragana(s) {
  return s.replace(/[\u30a1-\u30f6]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0x60));
}

function romaji(kana) {
  const s = toHiragana(kana);
  let out = "";
  for (let i = 0; i < s.length; i++) {
    if (s[i] === "っ" && i + 1 < s.length) {
      const next = KANA[s.slice(i + 1, i + 3)] || KANA[s[i + 1]] || "";
      out += next ? next[0] : "";
      continue;
    }
    const two = KANA[s.slice(i, i + 2)];
    if (two) { out += two; i++; continue; }
    out += KANA[s[i]] !== undefined ? KANA[s[i]] : s[i];
  }
  return out;
}

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

// Answers quote words as 漢字 (かな, romaji) — that pair becomes ruby in furigana mode.
const WORD_READING = /([\u3400-\u9fff\u3005\u3041-\u3096\u30a1-\u30fa\u30fc]*[\u3400-\u9fff\u3005][\u3041-\u3096]*)\s*[（(]([\u3041-\u3096\u30fc]+)/g;
const KANA_RUN = /[\u3041-\u3096\u30a1-\u30fa\u30fc]+/g;

function render(text, display) {
  const safe = escapeHtml(text);
  if (display === "furigana") {
    return safe.replace(WORD_READING, (m, word, reading) => `<ruby>${word}<rt>${reading}</rt></ruby> (${reading}`);
  }
  if (display === "romaji") {
    return safe.replace(KANA_RUN, (run) => `<ruby>${run}<rt>${romaji(run)}</rt></ruby>`);
  }
  return safe;
}

function rerender() {
  for (const el of document.querySelectorAll(".msg.tutor")) {
    el.innerHTML = render(el.dataset.text || "", state.display);
  }
}

function tutorAppend(delta) {
  if (!state.tutorEl) {
    state.tutorEl = addMessage("tutor", "");
    state.tutorText = "";
  }
  state.tutorText += delta;
  state.tutorEl.dataset.text = state.tutorText;
  state.tutorEl.innerHTML = render(state.tutorText, state.display);
  $("log").scrollTop = $("log").scrollHeight;
}

// ---------------------------------------------------------------- playback (24 kHz PCM16)
function playerContext() {
  if (!state.play.ctx) {
    state.play.ctx = new AudioContext({sampleRate: 24000});
    state.play.cursor = 0;
  }
  if (state.play.ctx.state === "suspended") state.play.ctx.resume();
  return state.play.ctx;
}

function playPcm(buffer) {
  const ctx = playerContext();
  const pcm = new Int16Array(buffer);
  if (!pcm.length) return;
  const audio = ctx.createBuffer(1, pcm.length, 24000);
  const ch = audio.getChannelData(0);
  for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 0x8000;
  const src = ctx.createBufferSource();
  src.buffer = audio;
  src.connect(ctx.destination);
  const at = Math.max(ctx.currentTime + 0.02, state.play.cursor);
  src.start(at);
  state.play.cursor = at + audio.duration;
  state.play.sources.push(src);
  src.onended = () => { state.play.sources = state.play.sources.filter((s) => s !== src); };
}

function stopPlayback() {
  for (const src of state.play.sources) { try { src.stop(); } catch (e) { /* already stopped */ } }
  state.play.sources = [];
  state.play.cursor = 0;
}

// ---------------------------------------------------------------- socket
function send(obj) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(obj));
}

function connect() {
  const token = $("token").value.trim();
  if (!token) { setStatus("paste a token first"); return; }
  localStorage.setItem("kotoba-token", token);
  if (state.ws) state.ws.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The token travels as a subprotocol, not in the URL (URLs end up in logs and history).
  const ws = new WebSocket(`${scheme}://${location.host}/v1/chat`, ["kotoba.v1", `bearer.${token}`]);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  setStatus("connecting…");
  ws.onopen = () => {
    const start = {type: "start", mode: state.mode};
    const resume = sessionStorage.getItem("kotoba-session");
    if (resume) start.resume = resume;
    send(start);
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {
      window.kotoba.stats.audioChunksIn++;
      window.kotoba.stats.audioBytesIn += ev.data.byteLength;
      playPcm(ev.data);
      return;
    }
    const msg = JSON.parse(ev.data);
    switch (msg.type) {
      case "session":
        state.sessionId = msg.session_id;
        state.mode = msg.mode || state.mode;
        sessionStorage.setItem("kotoba-session", msg.session_id);
        setStatus(`connected · ${state.mode} · ${msg.language || ""}`);
        for (const id of ["message", "send", "talk"]) $(id).disabled = false;
        break;
      case "text": tutorAppend(msg.text); break;
      case "transcript":
        if (msg.role === "tutor") tutorAppend(msg.text);
        else addMessage("learner transcript", msg.text);
        break;
      // msg.text: the status in the learner's words ("looking up 水…", services/gateway/citations.tool_status)
      case "tool": addMessage("tool", msg.text || "checking…"); break;
      case "interrupted":
        window.kotoba.stats.interrupted++;
        stopPlayback();
        state.tutorEl = null;
        break;
      case "turn_complete":
        window.kotoba.stats.turns++;
        state.tutorEl = null;
        break;
      case "error":
        window.kotoba.stats.errors.push(msg.code);
        addMessage("error", `${msg.code}: ${msg.message}`);
        break;
      case "pong": break;
      default: break;
    }
  };
  ws.onclose = (ev) => {
    setStatus(`disconnected (${ev.code}${ev.reason ? " " + ev.reason : ""})`);
    for (const id of ["message", "send", "talk"]) $(id).disabled = true;
  };
}

function switchMode(mode) {
  if (state.mode !== mode) {
    state.mode = mode;
    send({type: "start", mode});
  }
}

// ---------------------------------------------------------------- microphone (hold to talk)
async function micStart() {
  if (state.recording) return;
  state.recording = true;
  $("talk").classList.add("recording");
  playerContext();  // created inside the gesture so playback is allowed
  stopPlayback();
  switchMode("audio");
  if (!state.mic) {
    const stream = await navigator.mediaDevices.getUserMedia({audio: {
      channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    const ctx = new AudioContext({sampleRate: 16000});
    await ctx.audioWorklet.addModule("/static/mic-worklet.js");
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, "mic-capture");
    node.port.onmessage = (ev) => {
      window.kotoba.stats.micRms = ev.data.rms;
      window.kotoba.stats.micPeakRms = Math.max(window.kotoba.stats.micPeakRms, ev.data.rms);
      if (state.recording && state.ws && state.ws.readyState === WebSocket.OPEN) {
        state.ws.send(ev.data.pcm);
        window.kotoba.stats.audioChunksOut++;
      }
    };
    source.connect(node);
    state.mic = {ctx, stream, node};
  } else if (state.mic.ctx.state === "suspended") {
    await state.mic.ctx.resume();
  }
}

function micStop() {
  if (!state.recording) return;
  state.recording = false;
  $("talk").classList.remove("recording");
  send({type: "audio_end"});
}

// ---------------------------------------------------------------- wiring
$("connect").addEventListener("click", connect);
$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("message").value.trim();
  if (!text) return;
  switchMode("text");
  addMessage("learner", text);
  send({type: "text", text});
  $("message").value = "";
});
$("talk").addEventListener("pointerdown", (ev) => { ev.preventDefault(); micStart(); });
$("talk").addEventListener("pointerup", micStop);
$("talk").addEventListener("pointerleave", micStop);
for (const radio of document.querySelectorAll("input[name=display]")) {
  radio.addEventListener("change", () => { state.display = radio.value; rerender(); });
}
// ---------------------------------------------------------------- privacy settings
async function privacyCall(method, path, body) {
  const token = $("token").value.trim();
  if (!token) throw new Error("paste a token first");
  const headers = {"Authorization": `Bearer ${token}`};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
  return data;
}
function privacyStatus(text) { $("privacy-status").textContent = text; }
async function privacyLoad() {
  try {
    const s = await privacyCall("GET", "/api/v1/me/privacy");
    $("logging_enabled").checked = s.logging_enabled;
    $("pseudonymize").checked = s.pseudonymize;
    privacyStatus("loaded");
  } catch (e) { privacyStatus(e.message); }
}
$("privacy").addEventListener("toggle", () => { if ($("privacy").open) privacyLoad(); });
$("privacy-save").addEventListener("click", async () => {
  try {
    await privacyCall("PUT", "/api/v1/me/privacy",
                      {logging_enabled: $("logging_enabled").checked, pseudonymize: $("pseudonymize").checked});
    privacyStatus("saved");
  } catch (e) { privacyStatus(e.message); }
});
$("privacy-export").addEventListener("click", async () => {
  try {
    const data = await privacyCall("GET", "/api/v1/me/data");
    $("privacy-export-out").textContent = JSON.stringify(data, null, 2);
    $("privacy-export-out").hidden = false;
    privacyStatus("exported");
  } catch (e) { privacyStatus(e.message); }
});
$("privacy-delete").addEventListener("click", async () => {
  if (!window.confirm("Delete all your stored conversations? This cannot be undone.")) return;
  try {
    const r = await privacyCall("DELETE", "/api/v1/me/data");
    privacyStatus(`deleted ${r.deleted_turns} stored turns`);
  } catch (e) { privacyStatus(e.message); }
});

const params = new URLSearchParams(location.search);
$("token").value = params.get("token") || localStorage.getItem("kotoba-token") || "";
if (params.has("token")) history.replaceState(null, "", location.pathname);  // keep it out of history
if ($("token").value) connect();
