// Kotoba web client: sign-in (demo learners locally, the app's token in prod), text chat with readings drawn
// from the gateway's dictionary pipeline (turn_complete.display), hold-to-talk (button or Space; AudioWorklet →
// 16 kHz PCM16) with a level meter, 24 kHz playback with stop/replay, and reconnect-with-resume after a drop.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  ws: null, token: "", sessionId: null, mode: "text", tutorEl: null, tutorText: "",
  display: localStorage.getItem("kotoba-display") || "plain",
  language: localStorage.getItem("kotoba-language") || "en",
  play: {ctx: null, cursor: 0, sources: [], last: [], collecting: false}, mic: null, recording: false,
  reconnect: {attempt: 0, timer: null, droppedAt: 0}, closingOnPurpose: false, pendingText: null,
  sentAt: 0, retryTimer: null,
};
// Exposed for tests and debugging.
window.kotoba = {state, timings: {}, stats: {audioChunksIn: 0, audioBytesIn: 0, audioChunksOut: 0, micRms: 0,
                                               micPeakRms: 0, interrupted: 0, turns: 0, errors: [], reconnects: 0,
                                               thinkingShown: 0}};

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = cls || "";
}

function clock(date) {
  return (date || new Date()).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function addMessage(cls, text, when) {
  const el = document.createElement("div");
  el.className = "msg " + cls;
  const body = document.createElement("div");
  body.className = "body";
  if (cls.startsWith("tutor")) text = text.replace(CITATION, "");
  body.innerHTML = render(text, null, "plain");
  el.appendChild(body);
  el.dataset.text = text;
  const meta = document.createElement("div");
  meta.className = "meta";
  const time = document.createElement("time");
  time.textContent = when === null ? "earlier" : clock(when);
  meta.appendChild(time);
  el.appendChild(meta);
  $("log").appendChild(el);
  scrollDown();
  return el;
}

function scrollDown() { $("log").scrollTop = $("log").scrollHeight; }

function setBusy(on, words) {
  if (on && $("thinking").hidden) window.kotoba.stats.thinkingShown++;
  $("thinking-text").textContent = words || "Kotoba is thinking…";
  $("thinking").hidden = !on;
}

// ---------------------------------------------------------------- display: plain / furigana / romaji
// Readings come from the gateway (display.furigana / display.romaji, the dictionary pipeline); the page
// never guesses them. Japanese spans get lang="ja" so screen readers and fonts treat them right.
const JA_SPAN = /[\u3041-\u3096\u309d\u309e\u30a1-\u30fa\u30fc-\u30fe\u3400-\u4dbf\u4e00-\u9fff\u3005\u3006\uf900-\ufaff][\u3041-\u3096\u309d\u309e\u30a1-\u30fa\u30fc-\u30fe\u3400-\u4dbf\u4e00-\u9fff\u3005\u3006\uf900-\ufaff。、「」『』・！？～]*/g;
// Citations the gateway did not strip (it moves them into turn_complete.sources): never shown raw.
const CITATION = /\s?\[[a-z_]+:[^\]\s]*\]/g;

function escapeHtml(s) {
  return s.replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}

function markJapanese(s) {
  return escapeHtml(s).replace(JA_SPAN, (run) => `<span lang="ja">${run}</span>`);
}

function render(text, display, mode) {
  if (display && mode === "furigana" && display.furigana) {
    return display.furigana.map(([s, r]) => r
      ? `<ruby lang="ja">${escapeHtml(s)}<rp>(</rp><rt>${escapeHtml(r)}</rt><rp>)</rp></ruby>`
      : markJapanese(s)).join("");
  }
  if (display && mode === "romaji" && display.romaji) {
    return display.romaji.map(([s, r]) => r
      ? `<ruby><span lang="ja">${escapeHtml(s)}</span><rp>(</rp><rt lang="en">${escapeHtml(r)}</rt><rp>)</rp></ruby>`
      : markJapanese(s)).join("");
  }
  return markJapanese(text);
}

function drawTutor(el) {
  const display = el.dataset.display ? JSON.parse(el.dataset.display) : null;
  el.querySelector(".body").innerHTML = render(el.dataset.text || "", display, state.display);
}

function rerender() {
  for (const el of document.querySelectorAll(".msg.tutor")) drawTutor(el);
}

function tutorAppend(delta) {
  setBusy(false);
  if (!state.tutorEl) {
    state.tutorEl = addMessage("tutor", "");
    state.tutorText = "";
    if (state.sentAt && window.kotoba.timings.firstAnswerMs === undefined) {
      window.kotoba.timings.firstAnswerMs = Math.round(performance.now() - state.sentAt);
    }
  }
  state.tutorText += delta;
  state.tutorEl.dataset.text = state.tutorText.replace(CITATION, "");
  drawTutor(state.tutorEl);
  scrollDown();
}

function finishTutor(msg) {
  const el = state.tutorEl;
  state.tutorEl = null;
  if (!el) return;
  if (msg.display) {
    // The display lists cover the final text (citations already moved out by the gateway).
    el.dataset.text = msg.display.furigana.map(([s]) => s).join("").replace(CITATION, "");
    el.dataset.display = JSON.stringify(msg.display);
  }
  drawTutor(el);
  const meta = el.querySelector(".meta");
  if (Array.isArray(msg.sources) && msg.sources.length) {
    const list = document.createElement("span");
    list.className = "sources";
    list.append("Sources: ");
    for (const src of msg.sources) {
      if (!src || !src.id) continue;
      const a = document.createElement("a");
      a.href = `#${encodeURIComponent(src.id)}`;
      a.className = "source";
      a.textContent = sourceLabel(src);
      a.title = `${src.kind || "item"} ${src.id}`;
      if (JA_SPAN.test(a.textContent)) a.lang = "ja";
      JA_SPAN.lastIndex = 0;
      a.addEventListener("click", (ev) => { ev.preventDefault(); askAbout(src); });
      list.appendChild(a);
    }
    meta.appendChild(list);
  }
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.textContent = "Copy";
  copy.setAttribute("aria-label", "Copy this answer as plain text");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(el.dataset.text || "");
      copy.textContent = "Copied";
    } catch (e) { copy.textContent = "Copy failed"; }
  });
  meta.appendChild(copy);
}

// "word:泳ぐ:およぐ" → 泳ぐ, "kanji:泳" → 泳: the item's written form, never the raw id.
function sourceLabel(src) {
  if (src.label) return src.label;
  const [kind, written] = String(src.id).split(":");
  return kind === "sentence" ? "example sentence" : (written || kind);
}

function askAbout(src) {
  $("message").value = src.kind === "sentence" ? "Show me that example sentence again"
                                                 : `Tell me more about ${sourceLabel(src)}`;
  $("message").focus();
}

// ---------------------------------------------------------------- playback (24 kHz PCM16) with stop / replay
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
  $("stop-audio").disabled = false;
  src.onended = () => {
    state.play.sources = state.play.sources.filter((s) => s !== src);
    if (!state.play.sources.length) $("stop-audio").disabled = true;
  };
}

function receiveAudio(buffer) {
  if (!state.play.collecting) { state.play.last = []; state.play.collecting = true; }
  state.play.last.push(buffer);
  $("replay").disabled = false;
  playPcm(buffer);
}

function stopPlayback() {
  for (const src of state.play.sources) { try { src.stop(); } catch (e) { /* already stopped */ } }
  state.play.sources = [];
  state.play.cursor = 0;
  $("stop-audio").disabled = true;
}

function replay() {
  stopPlayback();
  for (const buffer of state.play.last) playPcm(buffer);
}

// ---------------------------------------------------------------- errors in words
const RETRY_AFTER_S = {rate_limited: 5, busy: 3, too_many_handshakes: 1};
const ERROR_WORDS = {
  rate_limited: "You're sending messages faster than the tutor allows.",
  busy: "The tutor is still answering your earlier message.",
  budget_exceeded: "Today's tutoring time is used up. It resets at midnight UTC; your message is kept in the box.",
  too_large: "That message is too long. Shorten it and send again.",
  bad_message: "The tutor could not read that message. Edit it and send again.",
  upstream_unavailable: "The tutor is unavailable right now. Reconnecting; your conversation is kept.",
  too_many_sessions: "You have Kotoba open in too many tabs. Close one, then choose Reconnect.",
  session_moved: "This conversation continued in another tab.",
  resume_failed: "The earlier conversation could not be continued, so a new one started.",
  idle_timeout: "The session was closed after a quiet spell. Send a message to continue.",
  going_away: "The server is restarting. Reconnecting…",
  token_expired: "Your sign-in expired. Sign in again to continue where you left off.",
  internal: "Something went wrong on our side. Try again in a moment.",
  server_busy: "The tutor is busy right now. Reconnecting by itself shortly…",
};
const KEEP_TEXT = new Set(["rate_limited", "busy", "budget_exceeded", "too_large", "bad_message"]);

function showError(msg) {
  window.kotoba.stats.errors.push(msg.code);
  setBusy(false);
  let words = ERROR_WORDS[msg.code] || `${msg.message || "Something went wrong"}.`;
  const wait = msg.retry_after || RETRY_AFTER_S[msg.code];
  const el = addMessage("error", words);
  el.setAttribute("role", "alert");
  if (KEEP_TEXT.has(msg.code) && state.pendingText !== null) {
    // A refused message goes back into the box, to be sent again as is.
    if (!$("message").value) $("message").value = state.pendingText;
    const mine = document.querySelector(".msg.learner.pending");
    if (mine) { mine.classList.add("not-sent"); mine.querySelector("time").textContent += " · not sent"; }
    state.pendingText = null;
  }
  if (wait) countdown(el, words, wait);
}

function countdown(el, words, seconds) {
  clearInterval(state.retryTimer);
  let left = Math.ceil(seconds);
  const draw = () => { el.querySelector(".body").textContent = `${words} You can send again in ${left} s.`; };
  draw();
  $("send").disabled = true;
  state.retryTimer = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(state.retryTimer);
      el.querySelector(".body").textContent = `${words} You can send again now.`;
      $("send").disabled = !isOpen();
      return;
    }
    draw();
  }, 1000);
}

// ---------------------------------------------------------------- signing in
async function authCheck(token) {
  // Browsers hide a refused WebSocket upgrade's status (all they see is 1006): a cheap authenticated GET
  // tells a bad or expired token apart from a network problem.
  try {
    const r = await fetch("/api/v1/me/privacy", {headers: {"Authorization": `Bearer ${token}`}});
    if (r.status === 401 || r.status === 403) {
      const data = await r.json().catch(() => ({}));
      const why = (data.error && data.error.message) || "";
      return {ok: false, reason: /expired/.test(why) ? "expired" : (r.status === 403 ? "refused" : "invalid"), why};
    }
    return {ok: true};
  } catch (e) {
    return {ok: true, offline: true};
  }
}

function showSignIn(message) {
  disconnect();
  $("signin").hidden = false;
  $("options").hidden = true;
  $("chat-footer").hidden = true;
  $("signout").hidden = true;
  $("signin-msg").textContent = message || "";
  setStatus("not signed in");
  setComposer(false);
  const first = document.querySelector("#demo-buttons button");
  if (first && !$("demo").hidden) first.focus();
}

const SIGNIN_WORDS = {
  expired: "Your sign-in expired. Sign in again to continue where you left off.",
  invalid: "That sign-in was not accepted (the token is not valid here). Sign in again.",
  refused: "This account may not use the tutor. Sign in with another account.",
};

async function signIn(token, started) {
  const t0 = started || performance.now();
  const check = await authCheck(token);
  if (!check.ok) {
    localStorage.removeItem("kotoba-token");
    showSignIn(SIGNIN_WORDS[check.reason]);
    return false;
  }
  state.token = token;
  localStorage.setItem("kotoba-token", token);
  $("signin").hidden = true;
  $("options").hidden = false;
  $("chat-footer").hidden = false;
  $("signout").hidden = false;
  $("signin-msg").textContent = "";
  state.signInStarted = t0;
  connect();
  return true;
}

async function demoSignIn(user) {
  const t0 = performance.now();
  $("signin-msg").textContent = "Signing in…";
  try {
    const r = await fetch("/api/v1/dev/token", {method: "POST", headers: {"Content-Type": "application/json"},
                                                 body: JSON.stringify({user})});
    const data = await r.json();
    if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
    localStorage.setItem("kotoba-demo-user", user);
    sessionStorage.removeItem("kotoba-session");  // another learner: a new conversation
    $("log").textContent = "";
    await signIn(data.token, t0);
  } catch (e) {
    $("signin-msg").textContent = `Could not sign in: ${e.message}. Try again.`;
  }
}

async function loadDemoLearners() {
  try {
    const r = await fetch("/api/v1/dev/token");
    if (!r.ok) throw new Error("no demo sign-in here");
    const data = await r.json();
    for (const d of data.learners) {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.user = d.user;
      b.textContent = `Sign in as ${d.label}`;
      b.addEventListener("click", () => demoSignIn(d.user));
      $("demo-buttons").appendChild(b);
    }
    $("demo").hidden = false;
  } catch (e) {
    $("prod-hint").hidden = false;  // prod: the token comes from the app (URL fragment or postMessage)
  }
}

function signOut() {
  localStorage.removeItem("kotoba-token");
  sessionStorage.removeItem("kotoba-session");
  state.token = "";
  $("log").textContent = "";
  showSignIn("Signed out.");
}

// ---------------------------------------------------------------- socket, reconnect and resume
function send(obj) {
  if (isOpen()) state.ws.send(JSON.stringify(obj));
}

function isOpen() { return state.ws && state.ws.readyState === WebSocket.OPEN; }

function setComposer(on) {
  for (const id of ["message", "send", "talk"]) $(id).disabled = !on;
}

function disconnect() {
  clearTimeout(state.reconnect.timer);
  if (state.ws) {
    state.closingOnPurpose = true;
    state.ws.close();
    state.ws = null;
  }
}

function connect() {
  clearTimeout(state.reconnect.timer);
  if (state.ws) { state.closingOnPurpose = true; state.ws.close(); }
  state.closingOnPurpose = false;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The token travels as a subprotocol, not in the URL (URLs end up in logs and history).
  const ws = new WebSocket(`${scheme}://${location.host}/v1/chat`, ["kotoba.v1", `bearer.${state.token}`]);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  if (!state.reconnect.attempt) setStatus("connecting…");
  ws.onopen = () => {
    const start = {type: "start", mode: state.mode, language: state.language};
    const resume = sessionStorage.getItem("kotoba-session");
    if (resume) start.resume = resume;
    send(start);
  };
  ws.onmessage = (ev) => {
    if (ws !== state.ws) return;
    if (typeof ev.data !== "string") {
      window.kotoba.stats.audioChunksIn++;
      window.kotoba.stats.audioBytesIn += ev.data.byteLength;
      receiveAudio(ev.data);
      return;
    }
    onMessage(JSON.parse(ev.data));
  };
  ws.onclose = (ev) => {
    if (ws !== state.ws) return;
    onClose(ev);
  };
}

function onSession(msg) {
  state.sessionId = msg.session_id;
  state.mode = msg.mode || state.mode;
  sessionStorage.setItem("kotoba-session", msg.session_id);
  const t = window.kotoba.timings;
  if (state.reconnect.attempt || state.reconnect.droppedAt) {
    t.reconnectMs = Math.round(performance.now() - state.reconnect.droppedAt);
    window.kotoba.stats.reconnects++;
  } else if (state.signInStarted && t.signInMs === undefined) {
    t.signInMs = Math.round(performance.now() - state.signInStarted);
  }
  state.reconnect.attempt = 0;
  state.reconnect.droppedAt = 0;
  // After a reload the page is empty: redraw the resumed session's last turns (redacted, as stored).
  if (msg.resumed && Array.isArray(msg.history) && !document.querySelector("#log .msg")) {
    for (const h of msg.history) {
      const el = addMessage(h.role === "tutor" ? "tutor history" : "learner history", h.text, null);
      if (h.display) { el.dataset.display = JSON.stringify(h.display); drawTutor(el); }
    }
  }
  setStatus(`connected · ${msg.language === "ja" ? "Japanese" : "English"}`, "ok");
  setComposer(true);
  if (state.retryTimer) $("send").disabled = false;
}

function onMessage(msg) {
  switch (msg.type) {
    case "session": onSession(msg); break;
    case "text": state.pendingText = null; tutorAppend(msg.text); break;
    case "transcript":
      if (msg.role === "tutor") tutorAppend(msg.text);
      else addMessage("learner transcript", msg.text);
      break;
    // msg.text: the status in the learner's words ("looking up 水…", services/gateway/citations.tool_status)
    case "tool": setBusy(true, msg.text); break;
    case "interrupted":
      window.kotoba.stats.interrupted++;
      stopPlayback();
      state.tutorEl = null;
      break;
    case "turn_complete":
      window.kotoba.stats.turns++;
      setBusy(false);
      state.pendingText = null;
      state.play.collecting = false;
      for (const el of document.querySelectorAll(".msg.learner.pending")) el.classList.remove("pending");
      finishTutor(msg);
      break;
    case "error":
      if (msg.code === "token_expired") {
        state.reconnect.expired = true;
        return;  // the close (4001) that follows shows the sign-in
      }
      showError(msg);
      break;
    default: break;
  }
}

window.kotoba.receive = onMessage;  // tests feed frames the gateway may send (e.g. sources) through here

function onClose(ev) {
  setComposer(false);
  setBusy(false);
  stopRecording();
  if (state.closingOnPurpose) return;
  if (ev.code === 4001 || state.reconnect.expired) {
    state.reconnect.expired = false;
    showSignIn(SIGNIN_WORDS.expired);
    return;
  }
  if (ev.code === 4000) {
    setStatus("continued in another tab", "warn");
    offerReconnect("Continue here");
    return;
  }
  if (ev.code === 1008) {
    setStatus("not connected", "warn");
    offerReconnect("Reconnect");
    return;
  }
  scheduleReconnect();
}

function offerReconnect(label) {
  const el = addMessage("system", "");
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", () => { el.remove(); connect(); });
  el.querySelector(".body").appendChild(b);
}

function scheduleReconnect() {
  const r = state.reconnect;
  if (!r.droppedAt) r.droppedAt = performance.now();
  r.attempt += 1;
  // 0.25 s, 0.5, 1, 2, 4, … capped at 15 s, ±50% jitter: a restarted gateway is not hit by every page at once.
  const delay = Math.min(15000, 250 * 2 ** (r.attempt - 1)) * (0.5 + Math.random());
  setStatus(`reconnecting… (attempt ${r.attempt})`, "warn");
  r.timer = setTimeout(async () => {
    const check = await authCheck(state.token);
    if (!check.ok) { showSignIn(SIGNIN_WORDS[check.reason]); return; }
    connect();
  }, delay);
}

function switchMode(mode) {
  if (state.mode !== mode) {
    state.mode = mode;
    send({type: "start", mode, language: state.language});
  }
}

// ---------------------------------------------------------------- microphone (hold to talk)
async function micStart() {
  if (state.recording || $("talk").disabled) return;
  state.recording = true;
  $("talk").classList.add("recording");
  $("talk").setAttribute("aria-pressed", "true");
  $("listening").hidden = false;
  playerContext();  // created inside the gesture so playback is allowed
  stopPlayback();
  switchMode("audio");
  try {
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
        if (state.recording) $("level").value = Math.min(1, ev.data.rms * 4);
        if (state.recording && isOpen()) {
          state.ws.send(ev.data.pcm);
          window.kotoba.stats.audioChunksOut++;
        }
      };
      source.connect(node);
      state.mic = {ctx, stream, node};
    } else if (state.mic.ctx.state === "suspended") {
      await state.mic.ctx.resume();
    }
  } catch (e) {
    stopRecording();
    addMessage("error", "The microphone is not available. Allow it in the browser's site settings, or type instead.");
  }
}

function stopRecording() {
  if (!state.recording) return false;
  state.recording = false;
  $("talk").classList.remove("recording");
  $("talk").setAttribute("aria-pressed", "false");
  $("listening").hidden = true;
  $("level").value = 0;
  return true;
}

function micStop() {
  if (stopRecording()) {
    setBusy(true);
    send({type: "audio_end"});
  }
}

// ---------------------------------------------------------------- wiring
$("connect").addEventListener("click", () => {
  const token = $("token").value.trim();
  if (!token) { $("signin-msg").textContent = "Paste a token first."; return; }
  sessionStorage.removeItem("kotoba-session");
  signIn(token);
});
$("signout").addEventListener("click", signOut);
$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("message").value.trim();
  if (!text || !isOpen()) return;
  switchMode("text");
  const el = addMessage("learner pending", text);
  el.classList.add("pending");
  state.pendingText = text;
  state.sentAt = performance.now();
  setBusy(true);
  send({type: "text", text});
  $("message").value = "";
});
$("talk").addEventListener("pointerdown", (ev) => { ev.preventDefault(); micStart(); });
$("talk").addEventListener("pointerup", micStop);
$("talk").addEventListener("pointerleave", micStop);
$("stop-audio").addEventListener("click", stopPlayback);
$("replay").addEventListener("click", replay);
// Space held anywhere but a text field (or on the talk button) talks; keyup sends.
function spaceTalks(ev) {
  if (ev.code !== "Space") return false;
  const t = ev.target;
  if (t === $("talk")) return true;
  return !(t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement
           || t instanceof HTMLButtonElement || t instanceof HTMLAnchorElement || (t && t.tagName === "SUMMARY"));
}
document.addEventListener("keydown", (ev) => {
  if (!spaceTalks(ev)) return;
  ev.preventDefault();
  if (!ev.repeat) micStart();
});
document.addEventListener("keyup", (ev) => {
  if (!spaceTalks(ev)) return;
  ev.preventDefault();
  micStop();
});
for (const radio of document.querySelectorAll("input[name=display]")) {
  radio.checked = radio.value === state.display;
  radio.addEventListener("change", () => {
    state.display = radio.value;
    localStorage.setItem("kotoba-display", state.display);
    rerender();
  });
}
$("language").value = state.language;
$("language").addEventListener("change", () => {
  state.language = $("language").value;
  localStorage.setItem("kotoba-language", state.language);
  send({type: "start", language: state.language});
});

// ---------------------------------------------------------------- privacy settings
async function privacyCall(method, path, body) {
  if (!state.token) throw new Error("sign in first");
  const headers = {"Authorization": `Bearer ${state.token}`};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) { showSignIn(SIGNIN_WORDS.expired); throw new Error("sign in again"); }
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

// ---------------------------------------------------------------- start-up
// A token handed over by the app: in the URL fragment (`#token=…`, or `#id_token=…` from the Cognito hosted
// UI's redirect; fragments never reach a server), or by postMessage from the window that opened this page.
function tokenFromFragment() {
  const frag = new URLSearchParams(location.hash.slice(1));
  const token = frag.get("token") || frag.get("id_token") || frag.get("access_token");
  if (token) history.replaceState(null, "", location.pathname + location.search);
  return token;
}
window.addEventListener("message", (ev) => {
  if (ev.origin !== location.origin || !ev.data || ev.data.type !== "kotoba-token") return;
  signIn(String(ev.data.token));
});
window.addEventListener("hashchange", () => {  // the app handing over a fresh token to an open page
  const token = tokenFromFragment();
  if (token) signIn(token);
});
loadDemoLearners();
const handed = tokenFromFragment() || new URLSearchParams(location.search).get("token");
if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
const saved = handed || localStorage.getItem("kotoba-token");
if (saved) signIn(saved); else showSignIn("");
