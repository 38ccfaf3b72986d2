// The try-it page: a photo (chosen, taken, dropped or pasted) and an optional text go to
// POST /predict (or a chosen version's predict route), the answer comes back as a bar chart.
// Only this server is called; nothing is fetched from anywhere else.
"use strict";

// Below this share of probability on the food classes, the photo is said not to look like food.
const FOOD_MASS = 0.3;
const CACHE = {
  miss: "computed for this photo",
  local: "a cache hit (this server's cache)",
  shared: "a cache hit (the cache the replicas share)",
  joined: "answered with an identical request in flight",
};
const $ = (id) => document.getElementById(id);
let photo = null;
let modelName = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

const percent = (p) => (p < 0.001 ? "under 0.1%" : `${(p * 100).toFixed(p >= 0.995 ? 0 : 1)}%`);

function usePhoto(file) {
  if (!file) return;
  photo = file;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("file-name").textContent = file.name ? `Photo: ${file.name}` : "Photo pasted";
  $("error").hidden = true;
}

// What an error answer means, in a sentence (the server's own message follows as detail).
function sentence(status, body) {
  const detail = body && body.error ? ` (${body.error})` : "";
  switch (status) {
    case 413: return `This photo is too large for the server; try a smaller one${detail}.`;
    case 415: return "That file is not a photo this server can read. Try a JPEG, PNG, WebP, BMP, GIF or TIFF image.";
    case 400:
      return body && body.error_type === "invalid_image"
        ? "That file looks like an image but could not be read: it may be cut short or damaged."
        : `The server could not use this request${detail}.`;
    case 404: case 409: return `That model version is not available now; pick another one${detail}.`;
    case 408: case 504: return "The server took too long to answer. Try again.";
    case 429: case 503: return "The server is busy right now. Try again in a moment.";
    default: return `Something went wrong on the server (status ${status}). Try again later.`;
  }
}

function predictUrl(version) {
  return version ? `/models/${encodeURIComponent(modelName)}/versions/${encodeURIComponent(version)}/predict` : "/predict";
}

async function predict(version) {
  const form = new FormData();
  form.append("image", photo, photo.name || "photo");
  const text = $("text").value.trim();
  if (text) form.append("text", text);
  let response;
  try {
    response = await fetch(`${predictUrl(version)}?top_k=5`, { method: "POST", body: form });
  } catch (e) {
    throw new Error("Could not reach the server. Is it running?");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(sentence(response.status, body));
  return body;
}

function chart(topK) {
  const list = el("ol", { "aria-label": "Most likely dishes" });
  for (const c of topK) {
    const bar = el("span");
    bar.style.width = `${(c.probability * 100).toFixed(2)}%`;
    list.append(el("li", {}, el("span", {}, `${c.label}: ${percent(c.probability)}`),
      el("div", { class: "bar", "aria-hidden": "true" }, bar)));
  }
  return list;
}

function card(a) {
  const box = el("article", { class: "answer", "aria-label": `Answer of version ${a.model.version}` });
  box.append(el("h3", {}, el("span", { class: "label" }, a.label), ` ${percent(a.confidence)}`));
  if (a.mapped_probability < FOOD_MASS) {
    box.append(el("p", { class: "notice" },
      `This does not look like food: only ${percent(a.mapped_probability)} of the model's belief is on food classes.`));
  }
  if (a.text_match && a.image.label !== a.label) {
    box.append(el("p", {}, `With your text: ${a.label}. The photo alone says: ${a.image.label} (${percent(a.image.probability)}).`));
  }
  box.append(chart(a.top_k));
  const t = a.timings_ms;
  const model = t.inference != null ? `, ${t.inference.toFixed(1)} ms of it in the model` : "";
  box.append(el("p", { class: "small" },
    `Version ${a.model.version}; ${CACHE[a.cache] || a.cache}; ${t.total.toFixed(1)} ms in all${model}.`));
  return box;
}

async function classify(event) {
  event.preventDefault();
  const error = $("error");
  error.hidden = true;
  if (!photo) {
    error.textContent = "Choose, take, drop or paste a photo first.";
    error.hidden = false;
    return;
  }
  const versions = [$("version").value];
  if ($("compare").checked && $("version2").value) versions.push($("version2").value);
  $("go").disabled = true;
  $("status").textContent = "Classifying…";
  $("answers").replaceChildren();
  try {
    const answers = await Promise.all(versions.map(predict));
    $("answers").replaceChildren(...answers.map(card));
    $("status").textContent = answers.map((a) => `Version ${a.model.version} says ${a.label}.`).join(" ");
  } catch (e) {
    $("status").textContent = "";
    error.textContent = e.message;
    error.hidden = false;
  } finally {
    $("go").disabled = false;
  }
}

// The versions that can answer: a choice appears only when there are several.
async function loadVersions() {
  try {
    const health = await (await fetch("/health")).json();
    modelName = health.model.name;
    const meta = await (await fetch(`/v2/models/${encodeURIComponent(modelName)}`)).json();
    if (!meta.versions || meta.versions.length < 2) return;
    for (const v of meta.versions) {
      $("version").append(el("option", { value: v }, v));
      $("version2").append(el("option", { value: v }, v));
    }
    $("version2").selectedIndex = 1;
    $("versions").hidden = false;
  } catch (e) {
    // The page still works on the routing policy's choice.
  }
}

function listen() {
  for (const id of ["photo", "camera"]) $(id).addEventListener("change", (e) => usePhoto(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    usePhoto(e.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (e) => {
    const file = [...e.clipboardData.files].find((f) => f.type.startsWith("image/"));
    if (file) usePhoto(file);
  });
  $("compare").addEventListener("change", (e) => { $("version2").disabled = !e.target.checked; });
  $("form").addEventListener("submit", classify);
}

listen();
loadVersions();
