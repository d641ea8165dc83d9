// The Face Search web page: the public API, called with the signed-in key (HTTP Basic).
"use strict";

const API = new URL(document.documentElement.dataset.api, document.baseURI); // the server fills it in
const PAGE_SIZE = 24;
const STORAGE_KEY = "face-search-auth";
const UPLOADS_AT_ONCE = 2;
const $ = (id) => document.getElementById(id);

const state = {
  auth: null, // the Authorization header value
  key: "",
  page: 0,
  total: 0,
  selected: new Set(),
};

class ApiError extends Error {
  constructor(code, message, httpStatus) {
    super(message);
    this.code = code;
    this.httpStatus = httpStatus;
  }
}

// -- talking to the API --------------------------------------------------------------------

function basicAuth(key, secret) {
  const bytes = new TextEncoder().encode(`${key}:${secret}`);
  return "Basic " + btoa(String.fromCharCode(...bytes));
}

function refusal(answer, httpStatus) {
  if (answer && typeof answer.status_code === "number") {
    return new ApiError(answer.status_code, answer.message, httpStatus);
  }
  return new ApiError(-1, `the server answered HTTP ${httpStatus}`, httpStatus);
}

async function call(method, path, { json, form, query } = {}) {
  const url = new URL(path, API);
  for (const [name, value] of Object.entries(query || {})) url.searchParams.set(name, value);
  const headers = { Authorization: state.auth };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(url, { method, headers, body });
  const answer = await response.json().catch(() => null);
  if (!answer || answer.status_code !== 0) {
    const error = refusal(answer, response.status);
    if (error.code === 5) signOut("Your key or secret is no longer accepted: sign in again.");
    throw error;
  }
  return answer;
}

// POST /images with the file as multipart/form-data, reporting upload progress (0..1).
function uploadPhoto(file, metadata, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", new URL("images", API));
    request.setRequestHeader("Authorization", state.auth);
    request.responseType = "json";
    request.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    request.onload = () => {
      const answer = request.response;
      if (answer && answer.status_code === 0) resolve(answer.result);
      else reject(refusal(answer, request.status));
    };
    request.onerror = () => reject(new ApiError(-1, "the server could not be reached", 0));
    const form = new FormData();
    form.append("image", file, file.name);
    form.append("metadata", JSON.stringify(metadata));
    request.send(form);
  });
}

// -- small helpers -----------------------------------------------------------------------

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
  status.hidden = !message;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function describeMetadata(metadata) {
  const text = JSON.stringify(metadata);
  if (text === "{}") return "no metadata";
  return text.length > 120 ? text.slice(0, 117) + "…" : text;
}

function parseMetadata(text) {
  if (!text.trim()) return {};
  const value = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("must be a JSON object");
  return value;
}

// A tile: the photo (with the matched face boxed when ``bbox`` is given) and its details. The
// photo is the signed link the API gave (the photo's, whose size the box is measured in, or its
// thumbnail's), which the browser loads like any image, without the key.
function photoTile(image, src, { score, bbox } = {}) {
  const tile = element("article", "tile");
  tile.dataset.id = image.id;
  const photo = element("div", "photo");
  const img = element("img");
  img.alt = `image ${image.id}`;
  img.addEventListener("error", () => (img.alt = `image ${image.id}: photo unavailable`));
  photo.append(img);
  if (bbox) {
    img.addEventListener("load", () => {
      const [x1, y1, x2, y2] = bbox;
      const box = element("div", "face-box");
      const width = img.naturalWidth, height = img.naturalHeight;
      Object.assign(box.style, {
        left: `${(100 * x1) / width}%`, top: `${(100 * y1) / height}%`,
        width: `${(100 * (x2 - x1)) / width}%`, height: `${(100 * (y2 - y1)) / height}%`,
      });
      photo.append(box);
    });
  }
  img.src = src;
  const meta = element("div", "meta");
  const first = element("div", "row");
  first.append(element("span", "", `id ${image.id}`));
  if (score !== undefined) first.append(element("span", "score", `score ${score.toFixed(3)}`));
  else first.append(element("span", "hint", `${image.faces} face${image.faces === 1 ? "" : "s"}`));
  meta.append(first, element("div", "md", describeMetadata(image.metadata)));
  tile.append(photo, meta);
  return tile;
}

// -- drop zones ------------------------------------------------------------------------------

function dropZone(zone, input) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    input.files = event.dataTransfer.files;
    input.dispatchEvent(new Event("change"));
  });
}

// -- search ---------------------------------------------------------------------------------

function searchPicked() {
  const file = $("search-file").files[0];
  const preview = $("search-preview");
  $("search-button").disabled = !file;
  if (!file) return;
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("search-drop").querySelector(".drop-text").textContent = file.name;
}

async function runSearch(event) {
  event.preventDefault();
  const file = $("search-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("top_k", $("top-k").value || "12");
  if ($("threshold").value !== "") form.append("threshold", $("threshold").value);
  $("search-button").disabled = true;
  $("search-summary").textContent = "Searching…";
  try {
    const hits = (await call("POST", "search", { form })).result;
    const grid = $("results");
    grid.replaceChildren(...hits.map((hit) => photoTile(hit, hit.url, { score: hit.score, bbox: hit.bbox })));
    $("search-summary").textContent = hits.length
      ? `${hits.length} matching photo${hits.length === 1 ? "" : "s"}, best first; the matched face is boxed.`
      : "No photo in the gallery matches this face.";
    say("");
  } catch (error) {
    $("search-summary").textContent = "";
    $("results").replaceChildren();
    say(error.message, true);
  } finally {
    $("search-button").disabled = false;
  }
}

// -- gallery ---------------------------------------------------------------------------------

function updateSelection() {
  const count = state.selected.size;
  $("delete-selected").disabled = count === 0;
  $("delete-selected").textContent = count ? `Delete selected (${count})` : "Delete selected";
}

function galleryTile(image) {
  const tile = photoTile(image, image.thumbnail_url);
  const actions = element("div", "actions");
  const label = element("label", "check");
  const box = element("input");
  box.type = "checkbox";
  box.className = "select";
  box.checked = state.selected.has(image.id);
  tile.classList.toggle("selected", box.checked);
  box.addEventListener("change", () => {
    if (box.checked) state.selected.add(image.id);
    else state.selected.delete(image.id);
    tile.classList.toggle("selected", box.checked);
    updateSelection();
  });
  label.append(box, "select");
  const edit = element("button", "secondary edit", "Edit");
  edit.type = "button";
  edit.addEventListener("click", () => openEditor(image));
  actions.append(label, element("span", "spacer"), edit);
  tile.querySelector(".meta").append(actions);
  return tile;
}

async function loadGallery() {
  try {
    const answer = await call("GET", "images", { query: { offset: state.page * PAGE_SIZE, limit: PAGE_SIZE } });
    state.total = answer.total;
    const pages = Math.max(1, Math.ceil(answer.total / PAGE_SIZE));
    if (state.page >= pages) {
      state.page = pages - 1;
      return loadGallery();
    }
    $("gallery-grid").replaceChildren(...answer.result.map(galleryTile));
    $("gallery-count").textContent = `${answer.total} photo${answer.total === 1 ? "" : "s"} in your gallery`;
    $("page-label").textContent = `Page ${state.page + 1} of ${pages}`;
    $("prev-page").disabled = state.page === 0;
    $("next-page").disabled = state.page + 1 >= pages;
    updateSelection();
  } catch (error) {
    say(error.message, true);
  }
}

function selectPage() {
  document.querySelectorAll("#gallery-grid .select").forEach((box) => {
    if (!box.checked) {
      box.checked = true;
      box.dispatchEvent(new Event("change"));
    }
  });
}

function confirmed(text) {
  return new Promise((resolve) => {
    const dialog = $("confirm-dialog");
    $("confirm-text").textContent = text;
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

async function deleteSelected() {
  const ids = [...state.selected];
  if (!ids.length || !(await confirmed(`Delete ${ids.length} photo${ids.length === 1 ? "" : "s"} for good?`))) return;
  try {
    const answer = await call("DELETE", "images", { json: { ids } });
    state.selected.clear();
    say(`Deleted ${answer.deleted} photo${answer.deleted === 1 ? "" : "s"}.`);
    $("results").querySelectorAll(".tile").forEach((tile) => ids.includes(Number(tile.dataset.id)) && tile.remove());
    await loadGallery();
  } catch (error) {
    say(error.message, true);
  }
}

function openEditor(image) {
  $("edit-id").textContent = image.id;
  $("edit-metadata").value = JSON.stringify(image.metadata, null, 2);
  $("edit-error").hidden = true;
  $("edit-dialog").dataset.id = image.id;
  $("edit-dialog").showModal();
}

async function saveMetadata(event) {
  event.preventDefault();
  const error = $("edit-error");
  try {
    const metadata = parseMetadata($("edit-metadata").value);
    await call("PUT", `images/${$("edit-dialog").dataset.id}`, { json: { metadata } });
    $("edit-dialog").close();
    say("Metadata saved.");
    await loadGallery();
  } catch (problem) {
    error.textContent = problem.message;
    error.hidden = false;
  }
}

// -- adding ----------------------------------------------------------------------------------

function addPicked() {
  const files = $("add-files").files;
  $("add-button").disabled = files.length === 0;
  $("add-drop-text").textContent = files.length
    ? `${files.length} photo${files.length === 1 ? "" : "s"} chosen`
    : "Drop photos here, or click to pick several";
}

async function addPhotos(event) {
  event.preventDefault();
  let shared;
  try {
    shared = parseMetadata($("add-metadata").value);
  } catch (problem) {
    say(`Metadata: ${problem.message}`, true);
    return;
  }
  const files = [...$("add-files").files];
  const progress = $("add-progress");
  const log = $("add-log");
  const share = new Array(files.length).fill(0);
  const redraw = () => (progress.value = share.reduce((a, b) => a + b, 0));
  progress.max = files.length;
  progress.value = 0;
  progress.hidden = false;
  log.replaceChildren();
  $("add-button").disabled = true;
  let added = 0;
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const index = next++;
      const file = files[index];
      const metadata = $("add-file-name").checked ? { ...shared, file: file.name } : shared;
      const line = element("li", "", `${file.name}: uploading…`);
      log.append(line);
      try {
        // the upload is half the work; detection and indexing on the server the other half
        const image = await uploadPhoto(file, metadata, (part) => ((share[index] = part / 2), redraw()));
        added += 1;
        line.textContent = `${file.name}: added as #${image.id} with ${image.faces.length} face${image.faces.length === 1 ? "" : "s"}`;
      } catch (error) {
        line.textContent = `${file.name}: ${error.message}`;
        line.className = "bad";
      }
      share[index] = 1;
      redraw();
    }
  };
  await Promise.all(Array.from({ length: Math.min(UPLOADS_AT_ONCE, files.length) }, worker));
  say(`Added ${added} of ${files.length} photo${files.length === 1 ? "" : "s"}.`, added < files.length);
  $("add-files").value = "";
  addPicked();
}

// -- signing in and tabs --------------------------------------------------------------------

function showTab() {
  const name = (location.hash || "#search").slice(1);
  const tab = ["search", "gallery", "add"].includes(name) ? name : "search";
  document.querySelectorAll(".tab").forEach((section) => (section.hidden = section.id !== tab));
  document.querySelectorAll("#tabs a").forEach((link) => link.classList.toggle("active", link.dataset.tab === tab));
  if (tab === "gallery") loadGallery();
}

function showApp() {
  $("sign-in").hidden = true;
  $("tabs").hidden = false;
  $("who").hidden = false;
  $("who-key").textContent = `Key ${state.key}`;
  showTab();
}

function signOut(message = "") {
  sessionStorage.removeItem(STORAGE_KEY);
  state.auth = null;
  $("results").replaceChildren();
  $("gallery-grid").replaceChildren();
  document.querySelectorAll(".tab").forEach((section) => (section.hidden = true));
  $("tabs").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  say(message, Boolean(message));
}

async function signIn(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  state.auth = basicAuth(key, $("secret").value);
  state.key = key;
  try {
    await call("GET", "images", { query: { limit: 1 } });
  } catch (error) {
    state.auth = null;
    say(error.code === 5 ? "Wrong key or secret." : error.message, true);
    return;
  }
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ key, auth: state.auth }));
  $("secret").value = "";
  say("");
  showApp();
}

function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  window.addEventListener("hashchange", () => state.auth && showTab());
  dropZone($("search-drop"), $("search-file"));
  dropZone($("add-drop"), $("add-files"));
  $("search-file").addEventListener("change", searchPicked);
  $("search-form").addEventListener("submit", runSearch);
  $("add-files").addEventListener("change", addPicked);
  $("add-form").addEventListener("submit", addPhotos);
  $("select-page").addEventListener("click", selectPage);
  $("delete-selected").addEventListener("click", deleteSelected);
  $("prev-page").addEventListener("click", () => (state.page -= 1, loadGallery()));
  $("next-page").addEventListener("click", () => (state.page += 1, loadGallery()));
  $("edit-form").addEventListener("submit", saveMetadata);
  $("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
  const saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "null");
  if (saved) {
    state.auth = saved.auth;
    state.key = saved.key;
    showApp();
  }
}

start();
