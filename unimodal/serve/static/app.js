// The unimodal web page: the conversation lives here, in `turns`, and every chat request sends
// as much of it as the server takes (its limits come from /health: messages, characters,
// images) to /v1/chat/completions, streamed. Generate posts the prompt to
// /v1/images/generations; Edit posts the attached (or else the last) image and the instruction
// to /v1/images/edits. A turn the server refuses is marked as not sent and left out of the
// conversation, with the reason in words. With an API key (asked for when /health says one is
// required, or given as #key=... in the address) every request carries it.
"use strict";

const turns = []; // {role: "user" | "assistant", kind, text, images: [dataURL]}
let attachment = null; // data URL of the image waiting to be sent
let limits = {};
let caps = [];
let apiKey = sessionStorage.getItem("unimodal-key") ?? "";
const $ = (id) => document.getElementById(id);

function scrollToEnd() {
  const h = $("history");
  h.scrollTop = h.scrollHeight;
}

function show(turn) {
  const el = document.createElement("div");
  el.className = `turn ${turn.role}`;
  if (turn.kind !== "chat") {
    const tag = document.createElement("div");
    tag.className = "kind";
    tag.textContent = turn.kind;
    el.append(tag);
  }
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = turn.text;
  const pics = document.createElement("div");
  pics.className = "pics";
  for (const url of turn.images) {
    const img = document.createElement("img");
    img.alt = turn.text || "image";
    img.addEventListener("load", scrollToEnd); // its height is known only once it has loaded
    img.src = url;
    pics.append(img);
  }
  el.append(text, pics);
  $("history").append(el);
  scrollToEnd();
  return { turn, text, el };
}

function add(role, kind, text, images = []) {
  const turn = { role, kind, text, images };
  if (role !== "error") turns.push(turn);
  return show(turn);
}

// A refused turn leaves the conversation: later requests do not carry it.
function refuse(view, reason) {
  const i = turns.indexOf(view.turn);
  if (i >= 0) turns.splice(i, 1);
  view.el.classList.add("refused");
  view.el.title = "not sent: left out of the conversation";
  add("error", "chat", `${reason} This turn was not sent and is left out of the conversation.`);
}

const PREFIX = { chat: "", generate: "Draw an image: ", edit: "Edit the image: " };

// The newest turns as OpenAI messages, within the server's limits on messages, characters and
// images (older turns are left out first).
function messages() {
  let images = limits.max_images_per_chat ?? 8;
  let chars = limits.max_chat_chars ?? Infinity;
  const most = limits.max_messages ?? Infinity;
  const out = [];
  for (let i = turns.length - 1; i >= 0 && out.length < most; i--) {
    const t = turns[i];
    const text = t.role === "user" ? PREFIX[t.kind] + t.text : t.text;
    if (text.length > chars && out.length) break;
    chars -= text.length;
    const parts = [];
    for (let j = t.images.length - 1; j >= 0 && images > 0; j--, images--) {
      parts.unshift({ type: "image_url", image_url: { url: t.images[j] } });
    }
    if (text) parts.push({ type: "text", text });
    if (parts.length) out.unshift({ role: t.role, content: parts });
  }
  return out;
}

// The server's error message, in words: no API paths such as "messages.6.content.0".
function inWords(message) {
  const m = message.replace(/^invalid request: /, "").replace(/\bmessages\.\d+(\.content(\.\d+)?)?:?\s*/g, "");
  const reserved = m.match(/reserved token '([^']+)'/);
  if (reserved) return `The text contains ${reserved[1]}, a control word the model reserves.`;
  if (/server busy/.test(m)) return "The server is busy; try again in a moment.";
  if (/megapixels|px a side|aspect ratio|decode to/.test(m)) return `The image is too large: ${m}.`;
  if (/API key/.test(m)) return "The server needs its API key (the field at the top).";
  return m.charAt(0).toUpperCase() + m.slice(1) + (m.endsWith(".") ? "" : ".");
}

async function errorOf(res) {
  try {
    const body = await res.json();
    return inWords(body.error?.message ?? JSON.stringify(body));
  } catch {
    return `The server answered HTTP ${res.status}.`;
  }
}

class Refused extends Error {}

async function post(url, body) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  const init = body instanceof FormData
    ? { method: "POST", headers, body }
    : { method: "POST", headers: { ...headers, "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(url, init);
  if (!res.ok) throw new Refused(await errorOf(res));
  return res;
}

function progress(text) {
  $("progress").hidden = !text;
  $("progress-text").textContent = text ?? "";
}

async function chat(text) {
  const asked = add("user", "chat", text, attachment ? [attachment] : []);
  setAttachment(null);
  const view = { turn: null, el: null };
  try {
    await stream(await post("/v1/chat/completions", { messages: messages(), stream: true }), view);
  } catch (e) {
    if (view.turn) { // a partial answer leaves with its question
      turns.splice(turns.indexOf(view.turn), 1);
      view.el.remove();
    }
    refuse(asked, e instanceof Refused ? e.message : `The answer broke off (${e.message ?? e}).`);
  }
}

async function stream(res, view) {
  Object.assign(view, add("assistant", "chat", ""));
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let pieces = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut).replace(/^data: /, "");
      buffer = buffer.slice(cut + 2);
      if (line === "[DONE]") return;
      const event = JSON.parse(line);
      if (event.error) throw new Refused(inWords(event.error.message));
      const piece = event.choices?.[0]?.delta?.content ?? "";
      view.turn.text += piece;
      view.text.textContent = view.turn.text;
      if (piece) progress(`Writing… ${++pieces} pieces`);
      scrollToEnd();
    }
  }
}

const asImage = (item) => `data:image/png;base64,${item.b64_json}`;

async function draw(url, body, asked) {
  try {
    const res = await post(url, body);
    add("assistant", asked.turn.kind, "", (await res.json()).data.map(asImage));
  } catch (e) {
    refuse(asked, e instanceof Refused ? e.message : `The server could not be reached (${e.message ?? e}).`);
  }
}

async function generate(prompt) {
  const asked = add("user", "generate", prompt);
  await draw("/v1/images/generations", { prompt, n: 1, response_format: "b64_json" }, asked);
}

function lastImage() {
  for (let i = turns.length - 1; i >= 0; i--) {
    if (turns[i].images.length) return turns[i].images.at(-1);
  }
  return null;
}

async function edit(instruction) {
  const source = attachment ?? lastImage();
  if (!source) throw new Error("Nothing to edit: attach an image or generate one first.");
  const asked = add("user", "edit", instruction, attachment ? [attachment] : []);
  setAttachment(null);
  const form = new FormData();
  form.append("image", await (await fetch(source)).blob(), "image.png");
  form.append("prompt", instruction);
  await draw("/v1/images/edits", form, asked);
}

const WORKING = { chat: "Thinking…", generate: "Drawing…", edit: "Editing…" };

async function act(action, name) {
  const text = $("input").value.trim();
  if (document.body.dataset.busy === "1") return;
  if (!text && !(action === chat && attachment)) {
    add("error", "chat", "Type a message, prompt or instruction first.");
    return;
  }
  document.body.dataset.busy = "1";
  const started = Date.now();
  progress(WORKING[name]);
  const timer = setInterval(() => {
    const s = Math.round((Date.now() - started) / 1000);
    if (!$("progress-text").textContent.startsWith("Writing")) progress(`${WORKING[name]} ${s} s`);
  }, 1000);
  $("input").value = "";
  try {
    await action(text);
  } catch (e) {
    add("error", "chat", `Something went wrong: ${e.message ?? e}`);
  } finally {
    clearInterval(timer);
    progress(null);
    document.body.dataset.busy = "0";
    $("input").focus();
  }
}

function setAttachment(url) {
  attachment = url;
  $("attachment").hidden = !url;
  $("attachment-preview").src = url ?? "";
  if (!url) $("file").value = "";
}

function setKey(key) {
  apiKey = key;
  sessionStorage.setItem("unimodal-key", key);
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  if (limits.max_image_bytes && file.size > limits.max_image_bytes) {
    add("error", "chat", `${file.name} has ${file.size} bytes; the server takes at most ${limits.max_image_bytes}.`);
    return setAttachment(null);
  }
  const reader = new FileReader();
  reader.onload = () => setAttachment(reader.result);
  reader.readAsDataURL(file);
});
$("detach").addEventListener("click", () => setAttachment(null));
$("composer").addEventListener("submit", (e) => { e.preventDefault(); act(chat, "chat"); });
$("generate").addEventListener("click", () => act(generate, "generate"));
$("edit").addEventListener("click", () => act(edit, "edit"));
$("clear").addEventListener("click", () => { turns.length = 0; $("history").replaceChildren(); });
$("key").addEventListener("change", () => setKey($("key").value.trim()));
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); act(chat, "chat"); }
});

(async () => {
  const fromAddress = new URLSearchParams(location.hash.slice(1)).get("key");
  if (fromAddress) {
    setKey(fromAddress);
    history.replaceState(null, "", location.pathname); // the key leaves the address bar
  }
  try {
    const health = await (await fetch("/health")).json();
    limits = health.limits;
    caps = health.capabilities;
    $("status").textContent = `${health.model} · ${caps.join(", ")}`;
    $("key").hidden = !health.api_key_required;
    $("key").value = apiKey;
  } catch (e) {
    $("status").textContent = `server unreachable: ${e}`;
  }
  $("generate").disabled = !caps.includes("images.generations");
  $("edit").disabled = !caps.includes("images.edits");
  document.body.dataset.ready = "1";
})();
