// The page is a thin client of the /v1 API: every click is a dialogue turn ("the 3rd one",
// "earlier"), so typing and clicking share one path through the engine.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.hash.slice(1)).get("token") || localStorage.getItem("ivcr.token");
if (token) localStorage.setItem("ivcr.token", token);
const auth = token ? { Authorization: `Bearer ${token}` } : {};
const withToken = (url) => (token ? `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}` : url);
const ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"];

let sessionId = localStorage.getItem("ivcr.session");
let shown = { video: null, start: null, end: null, duration: null };
window.ivcr = { lastReply: null, busy: false };  // read by the browser test

async function api(method, path, body) {
  const res = await fetch(path, {
    method, headers: { "Content-Type": "application/json", ...auth },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(data.error ? data.error.message : res.statusText), { status: res.status });
  return data;
}

async function ensureSession() {
  if (sessionId) {
    try { return await api("GET", `/v1/sessions/${sessionId}`); } catch (e) { if (e.status !== 404) throw e; }
  }
  sessionId = (await api("POST", "/v1/sessions")).session_id;
  localStorage.setItem("ivcr.session", sessionId);
  return null;
}

function addMessage(kind, text, intent) {
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  if (intent) {
    const tag = document.createElement("span");
    tag.className = "intent";
    tag.textContent = intent;
    li.appendChild(tag);
  }
  li.appendChild(document.createTextNode(text));
  $("messages").appendChild(li);
  li.scrollIntoView({ block: "end" });
}

async function ask(text) {
  if (!text.trim() || window.ivcr.busy) return;
  window.ivcr.busy = true;
  addMessage("user", text);
  try {
    const reply = await api("POST", `/v1/sessions/${sessionId}/turns`, { text });
    addMessage("bot", reply.text, reply.intent);
    render(reply, text);
    window.ivcr.lastReply = reply;
  } catch (e) {
    if (e.status === 404) { await ensureSession(); }
    addMessage("bot error", e.message);
  } finally {
    window.ivcr.busy = false;
  }
}

function fmt(t) { return `${t.toFixed(1)}s`; }

// The words of a turn worth marking in its evidence: Latin words of 3+ letters that are not
// function words, and every 2-character run of its Chinese text.
const STOPWORDS = new Set(("the and for are was were with that this from what when where which who how does did " +
  "find show videos video clip clips some about there their them they you your have has had into onto than then " +
  "its it's is").split(" "));
function markedWords(query) {
  const words = (query.toLowerCase().match(/[a-z0-9][a-z0-9'-]{2,}/g) || []).filter((w) => !STOPWORDS.has(w));
  for (const run of query.match(/[\u3400-\u9fff]+/g) || []) {
    for (let i = 0; i + 2 <= run.length; i++) words.push(run.slice(i, i + 2));
  }
  return [...new Set(words)].sort((a, b) => b.length - a.length);
}

// One evidence line as text nodes and <mark>s around the words it shares with the turn.
function markLine(text, words) {
  const li = document.createElement("li");
  if (!words.length) { li.textContent = text; return li; }
  // Latin words whole ("pan" not inside "pancake"); Chinese runs anywhere
  const esc = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).map((w) => (/^[a-z0-9]/.test(w) ? `\\b${w}\\b` : w));
  const re = new RegExp(`(${esc.join("|")})`, "gi");
  let last = 0;
  for (const m of text.matchAll(re)) {
    li.append(text.slice(last, m.index), Object.assign(document.createElement("mark"), { textContent: m[0] }));
    last = m.index + m[0].length;
  }
  li.append(text.slice(last));
  return li;
}

function render(reply, query = "") {
  const list = $("candidates");
  list.replaceChildren();
  reply.candidates.forEach((c, i) => {
    const li = document.createElement("li");
    li.className = "cand" + (c.video_id === reply.video_id ? " selected" : "");
    li.dataset.video = c.video_id;
    li.dataset.rank = i + 1;
    const at = c.moment ? (c.moment.start + c.moment.end) / 2 : 0;
    const img = document.createElement("img");
    img.loading = "lazy";
    img.alt = c.name;
    img.src = withToken(`/v1/videos/${c.video_id}/thumbnail?t=${at.toFixed(2)}&size=180`);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.innerHTML = `<span class="name"></span><span class="when"></span>`;
    meta.querySelector(".name").textContent = `${i + 1}. ${c.name}`;
    meta.querySelector(".when").textContent = c.moment ? `${fmt(c.moment.start)}–${fmt(c.moment.end)}` : c.score.toFixed(2);
    li.append(img, meta);
    // clicking a candidate is the turn "the Nth one"
    li.addEventListener("click", () => ask(`the ${ORDINALS[i] || (i + 1) + "th"} one`));
    list.appendChild(li);
  });
  const words = markedWords(query);
  $("evidence").replaceChildren(...reply.evidence.map((e) => markLine(e, words)));
  if (reply.moment) show(reply.moment.video_id, reply.moment.start, reply.moment.end);
  else if (reply.video_id !== null && reply.video_id !== undefined) {
    const c = reply.candidates.find((x) => x.video_id === reply.video_id);
    show(reply.video_id, c && c.moment ? c.moment.start : 0, c && c.moment ? c.moment.end : null);
  }
}

function show(video, start, end) {
  const player = $("player");
  const seek = () => {
    shown.duration = player.duration || shown.duration;
    player.currentTime = start;
    drawSpan();
  };
  shown = { video, start, end, duration: shown.video === video ? shown.duration : null };
  const name = ($(`candidates`).querySelector(`[data-video="${video}"] .name`) || {}).textContent || `video ${video}`;
  $("now-showing").textContent = end !== null ? `${name} — moment ${fmt(start)}–${fmt(end)}` : `${name}`;
  $("now-showing").classList.remove("muted");
  const src = withToken(`/v1/videos/${video}/media`);
  if (player.dataset.src !== src) {
    player.dataset.src = src;
    player.poster = withToken(`/v1/videos/${video}/thumbnail?t=${start.toFixed(2)}&size=480`);
    player.src = src;
    player.addEventListener("loadedmetadata", seek, { once: true });
  } else if (player.readyState >= 1) seek();
  else player.addEventListener("loadedmetadata", seek, { once: true });
}

function drawSpan() {
  const span = $("span");
  const d = shown.duration || $("player").duration;
  if (!d || shown.end === null) { span.style.display = "none"; return; }
  span.style.display = "block";
  span.style.left = `${(100 * shown.start) / d}%`;
  span.style.width = `${Math.max(0.8, (100 * (shown.end - shown.start)) / d)}%`;
}

$("player").addEventListener("timeupdate", () => {
  const p = $("player");
  if (p.duration) $("head").style.left = `${(100 * p.currentTime) / p.duration}%`;
});
$("player").addEventListener("durationchange", () => { shown.duration = $("player").duration; drawSpan(); });
$("timeline").addEventListener("click", (ev) => {
  const p = $("player"), r = ev.currentTarget.getBoundingClientRect();
  if (p.duration) p.currentTime = ((ev.clientX - r.left) / r.width) * p.duration;
});
$("ask").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("turn").value;
  $("turn").value = "";
  ask(text);
});
document.querySelectorAll("#actions button").forEach((b) => b.addEventListener("click", () => ask(b.dataset.turn)));
$("new-session").addEventListener("click", async () => {
  localStorage.removeItem("ivcr.session");
  sessionId = null;
  await ensureSession();
  $("messages").replaceChildren($("messages").firstElementChild);
  $("candidates").replaceChildren();
  $("evidence").replaceChildren();
});

ensureSession().then((state) => {
  if (!state) return;
  for (const t of state.history) { addMessage("user", t.user); addMessage("bot", t.reply, t.intent); }
}).catch((e) => addMessage("bot error", `Cannot reach the server: ${e.message}`));
