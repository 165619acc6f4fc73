// The unimodal web page: the conversation lives here, in `turns`, and every chat request sends
// all of it to /v1/chat/completions (streamed). Generate posts the prompt to
// /v1/images/generations; Edit posts the attached (or else the last) image and the instruction
// to /v1/images/edits. Every image, uploaded or drawn, is shown inline in the history.
"use strict";

const turns = []; // {role: "user" | "assistant" | "error", kind, text, images: [dataURL]}
let attachment = null; // data URL of the image waiting to be sent
let limits = {};
let caps = [];
const $ = (id) => document.getElementById(id);

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
    img.src = url;
    img.alt = turn.text || "image";
    pics.append(img);
  }
  el.append(text, pics);
  $("history").append(el);
  el.scrollIntoView({ block: "end" });
  return { turn, text };
}

function add(role, kind, text, images = []) {
  const turn = { role, kind, text, images };
  if (role !== "error") turns.push(turn);
  return show(turn);
}

const PREFIX = { chat: "", generate: "Draw an image: ", edit: "Edit the image: " };

// The history as OpenAI messages; only the newest `max_images_per_chat` images are kept.
function messages() {
  let budget = limits.max_images_per_chat ?? 8;
  const out = [];
  for (let i = turns.length - 1; i >= 0; i--) {
    const t = turns[i];
    const parts = [];
    for (let j = t.images.length - 1; j >= 0 && budget > 0; j--, budget--) {
      parts.unshift({ type: "image_url", image_url: { url: t.images[j] } });
    }
    const text = t.role === "user" ? PREFIX[t.kind] + t.text : t.text;
    if (text) parts.push({ type: "text", text });
    if (parts.length) out.unshift({ role: t.role, content: parts });
  }
  return out;
}

async function errorOf(res) {
  try {
    const body = await res.json();
    return body.error?.message ?? JSON.stringify(body);
  } catch {
    return `HTTP ${res.status}`;
  }
}

async function post(url, body) {
  const init = body instanceof FormData
    ? { method: "POST", body }
    : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(await errorOf(res));
  return res;
}

async function chat(text) {
  add("user", "chat", text, attachment ? [attachment] : []);
  setAttachment(null);
  const res = await post("/v1/chat/completions", { messages: messages(), stream: true });
  const view = add("assistant", "chat", "");
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
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
      if (event.error) throw new Error(event.error.message);
      const piece = event.choices?.[0]?.delta?.content ?? "";
      view.turn.text += piece;
      view.text.textContent = view.turn.text;
    }
  }
}

const asImage = (item) => `data:image/png;base64,${item.b64_json}`;

async function generate(prompt) {
  add("user", "generate", prompt);
  const res = await post("/v1/images/generations", { prompt, n: 1, response_format: "b64_json" });
  add("assistant", "generate", "", (await res.json()).data.map(asImage));
}

function lastImage() {
  for (let i = turns.length - 1; i >= 0; i--) {
    if (turns[i].images.length) return turns[i].images.at(-1);
  }
  return null;
}

async function edit(instruction) {
  const source = attachment ?? lastImage();
  if (!source) throw new Error("nothing to edit: attach an image or generate one first");
  add("user", "edit", instruction, attachment ? [attachment] : []);
  setAttachment(null);
  const form = new FormData();
  form.append("image", await (await fetch(source)).blob(), "image.png");
  form.append("prompt", instruction);
  const res = await post("/v1/images/edits", form);
  add("assistant", "edit", "", (await res.json()).data.map(asImage));
}

async function act(action) {
  const text = $("input").value.trim();
  if (document.body.dataset.busy === "1") return;
  if (!text && !(action === chat && attachment)) {
    add("error", "chat", "type a message, prompt or instruction first");
    return;
  }
  document.body.dataset.busy = "1";
  $("input").value = "";
  try {
    await action(text);
  } catch (e) {
    add("error", "chat", String(e.message ?? e));
  } finally {
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

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (!file) return;
  if (limits.max_image_bytes && file.size > limits.max_image_bytes) {
    add("error", "chat", `${file.name}: ${file.size} bytes; the limit is ${limits.max_image_bytes}`);
    return setAttachment(null);
  }
  const reader = new FileReader();
  reader.onload = () => setAttachment(reader.result);
  reader.readAsDataURL(file);
});
$("detach").addEventListener("click", () => setAttachment(null));
$("composer").addEventListener("submit", (e) => { e.preventDefault(); act(chat); });
$("generate").addEventListener("click", () => act(generate));
$("edit").addEventListener("click", () => act(edit));
$("clear").addEventListener("click", () => { turns.length = 0; $("history").replaceChildren(); });
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); act(chat); }
});

(async () => {
  try {
    const health = await (await fetch("/health")).json();
    limits = health.limits;
    caps = health.capabilities;
    $("status").textContent = `${health.model} · ${caps.join(", ")}`;
  } catch (e) {
    $("status").textContent = `server unreachable: ${e}`;
  }
  $("generate").disabled = !caps.includes("images.generations");
  $("edit").disabled = !caps.includes("images.edits");
  document.body.dataset.ready = "1";
})();
