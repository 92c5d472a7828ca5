// latentkit explorer: vanilla JS, no CDN. Each view keeps at most one render request in flight and
// remembers only the latest wanted one, so a slider dragged fast renders its latest value, not a backlog
// (the server also drops requests that a newer one of the same tab and view replaced: status 204).
"use strict";
const $ = (id) => document.getElementById(id);
const client = (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2));
let info = null;
const wanted = {}, busy = {};

function showError(text) {
  const box = $("error");
  box.textContent = text || "";
  box.hidden = !text;
}

function esc(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}

function qs(params) {
  return new URLSearchParams({client, ...params}).toString();
}

function request(view, url, done) {
  wanted[view] = {url, done};
  if (!busy[view]) pump(view);
}

async function pump(view) {
  const job = wanted[view];
  if (!job) return;
  wanted[view] = null;
  busy[view] = true;
  const started = performance.now();
  try {
    const r = await fetch(job.url);
    if (r.status === 200) {
      const body = await r.json();
      job.done(body);
      const ms = Math.round(performance.now() - started);
      $("timing").textContent = `${view}: request to image ${ms} ms`;
      $("timing").dataset.ms = ms;
      showError("");
    } else if (r.status !== 204) {
      showError((await r.json()).error || `HTTP ${r.status}`);
    }
  } catch (e) {
    showError(String(e));
  }
  busy[view] = false;
  pump(view);
}

// ---------------------------------------------------------------------------------------------- views
function switchView(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.view === name));
  document.querySelectorAll(".view").forEach((s) => (s.hidden = s.id !== `view-${name}`));
  if (name === "edit") renderEdit();
  if (name === "interp") renderInterp();
}

function renderSeeds() {
  $("seeds-psi-out").textContent = $("seeds-psi").value;
  $("seeds-tau-out").textContent = $("seeds-tau").value;
  const url = "/api/render/seeds?" + qs({seeds: $("seeds-text").value, psi: $("seeds-psi").value, tau: $("seeds-tau").value});
  request("seeds", url, (r) => {
    for (const k of ["untruncated", "truncated", "compressed"]) $(`seeds-${k}`).src = r.images[k];
    const tau = $("seeds-tau").value;
    $("seeds-beyond").textContent = r.seeds.map((s, i) =>
      `seed ${s}: ${r.beyond[i]} of ${r.w_dim} principal components of v beyond tau = ${tau}`).join("; ");
  });
}

// A latent picker: a seed number or an entry of the list.
function picker(id, seed) {
  const box = $(id);
  box.innerHTML = `<select></select> <input type="number" min="0" max="4294967295" value="${seed}" style="width:7em">`;
  box.querySelector("select").addEventListener("change", () => {
    box.querySelector("input").hidden = box.querySelector("select").value !== "seed";
    box.dispatchEvent(new Event("input"));
  });
  fillPicker(box);
}
function fillPicker(box) {
  const select = box.querySelector("select");
  const keep = select.value || "seed";
  select.innerHTML = `<option value="seed">seed</option>` +
    info.latents.map((e) => `<option value="${esc(e.id)}">${esc(e.name)}</option>`).join("");
  select.value = [...select.options].some((o) => o.value === keep) ? keep : "seed";
  box.querySelector("input").hidden = select.value !== "seed";
}
function pickedLatent(id) {
  const box = $(id);
  const v = box.querySelector("select").value;
  return v === "seed" ? `seed:${Math.max(0, parseInt(box.querySelector("input").value || "0", 10))}` : v;
}

function buildEdit() {
  const sliders = $("edit-sliders");
  sliders.innerHTML = "";
  for (const d of info.directions) {
    const label = document.createElement("label");
    label.textContent = d.name;
    label.title = d.method;
    const input = Object.assign(document.createElement("input"),
      {type: "range", min: -5, max: 5, step: 0.1, value: 0, className: "amount"});
    const out = document.createElement("output");
    out.textContent = "0";
    input.addEventListener("input", () => { out.textContent = input.value; renderEdit(); });
    sliders.append(label, input, out);
  }
  for (const id of ["edit-lo", "edit-hi"]) {
    $(id).max = info.num_ws - 1;
    $(id).addEventListener("input", renderEdit);
  }
  $("edit-hi").value = info.num_ws - 1;
  $("edit-reset").addEventListener("click", () => {
    sliders.querySelectorAll("input").forEach((i) => { i.value = 0; i.nextSibling.textContent = "0"; });
    renderEdit();
  });
  picker("edit-base", 0);
  $("edit-base").addEventListener("input", renderEdit);
}

function renderEdit() {
  let lo = parseInt($("edit-lo").value, 10), hi = parseInt($("edit-hi").value, 10);
  if (lo > hi) [lo, hi] = [hi, lo];
  $("edit-layers-out").textContent = `${lo}-${hi}`;
  const amounts = [...$("edit-sliders").querySelectorAll("input")].map((i) => i.value).join(",");
  const url = "/api/render/edit?" + qs({base: pickedLatent("edit-base"), amounts, layers: `${lo}-${hi}`});
  request("edit", url, (r) => {
    $("edit-image").src = r.image;
    $("edit-caption").textContent = `layers ${r.layers[0]}-${r.layers[r.layers.length - 1]}; video sweeps ${r.sweep}`;
  });
}

function renderInterp() {
  const position = $("interp-position").value;
  $("interp-t").textContent = (position / 100).toFixed(2);
  const url = "/api/render/interp?" + qs({a: pickedLatent("interp-a"), b: pickedLatent("interp-b"), position,
                                          space: $("interp-space").value});
  request("interp", url, (r) => { $("interp-image").src = r.image; });
}

// ---------------------------------------------------------------------------------------------- list + uploads
function renderList() {
  const body = $("latent-table").querySelector("tbody");
  body.innerHTML = "";
  for (const e of info.latents) {
    const tr = document.createElement("tr");
    const img = (k) => (e.images[k] ? `<img src="${esc(e.images[k])}" alt="${k}">` : "");
    const scores = esc(Object.entries(e.scores).map(([k, v]) =>
      `${k} ${typeof v === "number" ? Number(v.toPrecision(4)) : v}`).join(", "));
    tr.innerHTML = `<td></td><td>${img("target")}</td><td>${img("proj")}</td><td>${scores}</td>
      <td><button data-to="edit-base">edit</button> <button data-to="interp-a">as A</button>
      <button data-to="interp-b">as B</button></td>`;
    tr.cells[0].textContent = e.name;
    tr.dataset.entry = e.id;
    tr.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => {
      const box = $(b.dataset.to);
      box.querySelector("select").value = e.id;
      box.querySelector("input").hidden = true;
      switchView(b.dataset.to === "edit-base" ? "edit" : "interp");
    }));
    body.append(tr);
  }
  for (const id of ["edit-base", "interp-a", "interp-b"]) fillPicker($(id));
}

let job = null;
async function upload() {
  const file = $("upload-file").files[0];
  if (!file) return;
  if (file.size > info.max_upload_bytes) {
    showError(`${file.name} is ${file.size} bytes, more than the limit of ${info.max_upload_bytes}`);
    return;
  }
  $("upload-status").textContent = "uploading…";
  const r = await fetch("/api/project?" + new URLSearchParams({name: file.name}), {method: "POST", body: file});
  const body = await r.json();
  if (r.status !== 200) {
    $("upload-status").textContent = "refused";
    showError(body.error);
    return;
  }
  showError("");
  job = body;
  $("upload-cancel").disabled = false;
  poll();
}

async function poll() {
  if (!job) return;
  const r = await fetch(`/api/jobs/${job.id}`);
  job = await r.json();
  $("upload-progress").max = job.total;
  $("upload-progress").value = job.step;
  $("upload-status").textContent = `${job.name}: ${job.status}, step ${job.step} of ${job.total}` +
    (job.message ? ` (${job.message})` : "");
  if (job.status === "queued" || job.status === "running") {
    setTimeout(poll, 500);
    return;
  }
  $("upload-cancel").disabled = true;
  if (job.status === "failed") showError(job.message);
  if (job.entry) {
    info.latents.push(job.entry);
    renderList();
  }
  job = null;
}

// ---------------------------------------------------------------------------------------------- export
async function download(what) {
  const [view, pick] = $("export-view").value.split("/");
  const params = {view};
  if (pick) params.pick = pick;
  if (what === "video") params.format = $("export-format").value;
  $("export-status").textContent = `making the ${what}…`;
  const r = await fetch(`/api/export/${what}?` + qs(params));
  if (r.status !== 200) {
    $("export-status").textContent = "";
    showError((await r.json()).error);
    return;
  }
  const name = (r.headers.get("Content-Disposition") || "").split('filename="')[1]?.replace('"', "") || what;
  const a = Object.assign(document.createElement("a"), {href: URL.createObjectURL(await r.blob()), download: name});
  document.body.append(a);
  a.click();
  a.remove();
  $("export-status").textContent = `downloaded ${name}`;
  showError("");
}

// ---------------------------------------------------------------------------------------------- start
async function start() {
  info = await (await fetch("/api/info")).json();
  $("network").textContent = `${info.network} (${info.architecture}, ${info.resolution} px, w_dim ${info.w_dim}, ` +
    `num_ws ${info.num_ws}; preview ${info.preview || "full"} px; on ${info.device})`;
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => switchView(b.dataset.view)));
  for (const id of ["seeds-psi", "seeds-tau", "seeds-text"]) $(id).addEventListener("input", renderSeeds);
  buildEdit();
  picker("interp-a", 0);
  picker("interp-b", 1);
  for (const id of ["interp-a", "interp-b", "interp-space", "interp-position"]) $(id).addEventListener("input", renderInterp);
  $("interp-space").addEventListener("change", renderInterp);
  $("upload-file").addEventListener("change", upload);
  $("upload-cancel").addEventListener("click", () => job && fetch(`/api/jobs/${job.id}/cancel`, {method: "POST"}));
  $("upload-note").textContent = info.uploads
    ? `A photo is projected with ${info.project_steps} steps on ${info.device}` +
      (info.device.startsWith("cpu") ? " (few, because this runs on a CPU; NVIDIA's projector uses 1000: " +
       "start the server with --project-steps for more)." : ".")
    : "This server projects no uploads.";
  $("export-png").addEventListener("click", () => download("png"));
  $("export-latent").addEventListener("click", () => download("latent"));
  $("export-video").addEventListener("click", () => download("video"));
  renderList();
  renderSeeds();
}
start();
