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

function addMessage(kind, text, intent, picture) {
  const li = document.createElement("li");
  li.className = `msg ${kind}`;
  if (intent) {
    const tag = document.createElement("span");
    tag.className = "intent";
    tag.textContent = intent;
    li.appendChild(tag);
  }
  if (picture && picture.dataUrl) {  // a picture turn: the picture, small, above what was typed with it
    const img = document.createElement("img");
    img.className = "turn-picture";
    img.alt = `picture: ${picture.name}`;
    img.src = picture.dataUrl;
    li.appendChild(img);
  } else if (picture) {  // a picture turn from the session's history: the server keeps no picture
    const note = document.createElement("span");
    note.className = "picture-note";
    note.textContent = "[a picture]";
    li.appendChild(note);
  }
  if (text) li.appendChild(document.createTextNode(text));
  $("messages").appendChild(li);
  li.scrollIntoView({ block: "end" });
}

// A turn: text, a picture ({dataUrl, name}: search by picture), or both.
async function ask(text, picture = null) {
  if ((!text.trim() && !picture) || window.ivcr.busy) return;
  window.ivcr.busy = true;
  addMessage("user", text, null, picture);
  try {
    const body = picture ? { text, image: picture.dataUrl } : { text };
    const reply = await api("POST", `/v1/sessions/${sessionId}/turns`, body);
    addMessage("bot", reply.text, reply.intent);
    render(reply, text);
    window.ivcr.lastReply = reply;
  } catch (e) {
    if (e.status === 404) { await ensureSession(); }
    addMessage("bot error", picture && e.status === 413
      ? `The server refused the picture as too large (${e.message}); try a smaller one.` : e.message);
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
  if (window.ivcr.busy) return;  // what is typed and attached stays for when the reply is in
  const text = $("turn").value, picture = attached;
  if (!text.trim() && !picture) return;
  $("turn").value = "";
  detachPicture();
  ask(text, picture);
});

// -- search by picture: a JPEG, PNG or WebP dropped on the chat, pasted, or picked goes with the
// next turn as a data URL. Checked here first (type by its first bytes, size) so a wrong file
// costs no upload; the server checks again.
const PICTURE_TYPES = ["image/jpeg", "image/png", "image/webp"];
const MAX_PICTURE_BYTES = 8 * 1024 * 1024;
let attached = null;  // {dataUrl, name} of the picture in the composer

function sizeText(n) {
  // rounded up: a file just over the 8 MiB cap must not read "8.0 MiB"
  return n >= 1024 * 1024 ? `${(Math.ceil(n / (1024 * 1024) * 10) / 10).toFixed(1)} MiB` : `${Math.max(1, Math.ceil(n / 1024))} KiB`;
}

function pictureType(bytes) {  // from the file's first bytes, not its name
  const at = (i, ...b) => b.every((x, k) => bytes[i + k] === x);
  if (at(0, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "image/png";
  if (at(0, 0xff, 0xd8, 0xff)) return "image/jpeg";
  if (at(0, 0x52, 0x49, 0x46, 0x46) && at(8, 0x57, 0x45, 0x42, 0x50)) return "image/webp";  // RIFF....WEBP
  return null;
}

const readDataUrl = (blob) => new Promise((resolve, reject) => {
  const r = new FileReader();
  r.onload = () => resolve(r.result);
  r.onerror = () => reject(r.error);
  r.readAsDataURL(blob);
});

async function attachPicture(file) {
  const name = file.name || "pasted picture";
  const refuse = (why) => { addMessage("bot error", why); return false; };
  if (file.type && !PICTURE_TYPES.includes(file.type)) {
    return refuse(`“${name}” (${file.type}) is not a picture the search can use: attach a JPEG, PNG or WebP picture.`);
  }
  if (file.size > MAX_PICTURE_BYTES) {
    return refuse(`“${name}” is too large (${sizeText(file.size)}): a picture can be at most 8 MiB.`);
  }
  let type, dataUrl;
  try {
    type = pictureType(new Uint8Array(await file.slice(0, 12).arrayBuffer()));
    if (!type) return refuse(`“${name}” is not a JPEG, PNG or WebP picture: attach one of those.`);
    dataUrl = await readDataUrl(new Blob([file], { type }));  // data:<its real type>;base64,...
  } catch (e) {
    return refuse(`Could not read “${name}”: ${e.message || e}`);
  }
  attached = { dataUrl, name };
  $("attachment-img").src = dataUrl;
  $("attachment-img").alt = `attached: ${name}`;
  $("attachment-name").textContent = `${name} · ${sizeText(file.size)}`;
  $("attachment").hidden = false;
  return true;
}

function detachPicture() {
  attached = null;
  $("attachment").hidden = true;
  $("attachment-img").removeAttribute("src");
  $("attachment-name").textContent = "";
}

$("attach").addEventListener("click", () => $("picture").click());
$("picture").addEventListener("change", async () => {
  const file = $("picture").files[0];
  $("picture").value = "";  // the same file can be picked again after a remove
  if (file && await attachPicture(file)) $("turn").focus();
});
$("attachment-remove").addEventListener("click", () => { detachPicture(); $("turn").focus(); });

// drag and drop: the whole chat panel takes a dropped file; a file dropped anywhere else on the
// page is ignored rather than opened by the browser in place of the page
const carriesFiles = (ev) => !!ev.dataTransfer && [...ev.dataTransfer.types].includes("Files");
const chat = $("chat");
for (const kind of ["dragenter", "dragover"]) {
  chat.addEventListener(kind, (ev) => {
    if (!carriesFiles(ev)) return;  // dragged text still drops into the text box as usual
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
    chat.classList.add("dropping");
  });
}
chat.addEventListener("dragleave", (ev) => { if (!chat.contains(ev.relatedTarget)) chat.classList.remove("dropping"); });
chat.addEventListener("drop", async (ev) => {
  if (!carriesFiles(ev)) return;
  ev.preventDefault();
  chat.classList.remove("dropping");
  const file = ev.dataTransfer.files[0];
  if (file && await attachPicture(file)) $("turn").focus();
});
for (const kind of ["dragover", "drop"]) {
  window.addEventListener(kind, (ev) => {
    if (carriesFiles(ev) && !chat.contains(ev.target)) { ev.preventDefault(); ev.dataTransfer.dropEffect = "none"; }
  });
}

// paste: a picture on the clipboard (a screenshot, "copy image") is attached; a clipboard with
// text on it pastes its text, as before
document.addEventListener("paste", async (ev) => {
  const cd = ev.clipboardData;
  if (!cd || [...cd.types].includes("text/plain")) return;
  const file = [...cd.items].filter((i) => i.kind === "file").map((i) => i.getAsFile()).find(Boolean);
  if (!file) return;
  ev.preventDefault();
  if (await attachPicture(file)) $("turn").focus();
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
  for (const t of state.history) {
    addMessage("user", t.user, null, t.picture ? {} : null);
    addMessage("bot", t.reply, t.intent);
  }
}).catch((e) => addMessage("bot error", `Cannot reach the server: ${e.message}`));
