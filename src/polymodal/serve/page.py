"""The demo's one page: HTML with inline CSS and JS (no fonts, scripts or styles from the network).

The form is built from ``/api/info`` (the model's inputs and outputs). A run posts JSON (the image as a data URL:
the file's name never leaves the browser), then polls ``/api/jobs/{id}`` for the queue position and the step
count until the pictures arrive. Element ids (``image``, ``caption``, ``run``, ``status``, ``error``,
``outputs``, ``matches``, ``download``) are what the browser test drives.
"""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>polymodal demo</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f24}
header{background:#24324a;color:#fff;padding:12px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;font-size:14px;color:#dfe6f2}
main{display:grid;grid-template-columns:380px 1fr;gap:18px;padding:18px 24px}
section{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 3px #0002}
h2{font-size:16px;margin:4px 0 10px}h2 .n{display:inline-block;width:22px;height:22px;border-radius:11px;
background:#3b6fd8;color:#fff;text-align:center;font-size:13px;line-height:22px;margin-right:6px}
label{font-size:13px;font-weight:600;display:block;margin:10px 0 4px}
textarea{width:100%;box-sizing:border-box;font:12px monospace;height:64px}
#caption{font:13px system-ui,sans-serif;height:70px}
.row{display:flex;gap:8px;align-items:center;flex-wrap:wrap}
.set input{width:64px}.set label{display:inline;font-weight:normal}
#frame{width:128px;height:128px;border:1px dashed #999;background:#eee;margin-top:6px;position:relative;
display:flex;align-items:center;justify-content:center;font-size:12px;color:#778}
#preview{position:absolute;inset:0;width:128px;height:128px;image-rendering:pixelated;object-fit:contain;
display:none}
button{font-size:15px;padding:8px 16px;border:0;border-radius:6px;background:#3b6fd8;color:#fff;cursor:pointer}
button.secondary{background:#e4e8f0;color:#1d1f24}button:disabled{opacity:.5;cursor:wait}
.targets label{display:inline-block;font-weight:normal;margin:3px 10px 3px 0}
#error{display:none;background:#fde8e8;color:#8a1111;border:1px solid #f3b4b4;padding:8px 12px;border-radius:6px;
margin-bottom:10px;font-size:14px}
#status{font-size:15px;margin:8px 0;min-height:20px;color:#24324a}progress{width:260px;vertical-align:middle}
.tiles{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0;background:#fafbfc;border:1px solid #dde1e8;border-radius:6px;padding:6px;width:194px}
figure img{width:192px;height:192px;image-rendering:pixelated;display:block}
figcaption{font-size:13px;font-weight:600;margin:4px 0 2px}figure.in figcaption{color:#556}
figure pre{font-size:11px;white-space:pre-wrap;max-height:120px;overflow:auto;margin:2px 0 0}
figure .text{width:180px;height:180px;overflow:auto;font-size:14px;line-height:1.35;padding:6px;background:#fff;
border:1px solid #e4e7ee;white-space:pre-wrap;overflow-wrap:anywhere}
figure.match pre{font:12px system-ui,sans-serif}summary{font-size:12px;color:#556;cursor:pointer}
.group{font-size:13px;color:#556;margin:10px 0 6px;text-transform:uppercase;letter-spacing:.05em}
.muted{color:#667;font-size:13px}
</style></head><body>
<header><h1>polymodal &mdash; any-to-any demo</h1>
<p>Give one or more inputs, tick the outputs you want, press <b>Generate</b>. Everything runs on this machine.</p>
<p id="model"></p></header>
<main>
<div>
<section><h2><span class="n">1</span>Inputs</h2>
<div id="in-rgb"><label for="image">Image (PNG, JPEG; at most 4 MB)</label>
<input type="file" id="image" accept="image/*">
<div class="row"><div id="frame"><span>no image yet</span><img id="preview" alt="your image"></div>
<div><button class="secondary" id="sample" type="button">Use a world scene</button><br>
<button class="secondary" id="clear" type="button" style="margin-top:6px">Clear image</button></div></div></div>
<div id="in-caption"><label for="caption">Caption</label>
<textarea id="caption" placeholder="e.g. a room with two small red cubes and a person"></textarea></div>
<details><summary class="muted">Boxes and metadata (JSON, optional)</summary>
<div id="in-det"><label for="det">Boxes: [{"class": "cube", "box": [x0, y0, x1, y1]}] (0..1)</label>
<textarea id="det"></textarea></div>
<div id="in-metadata"><label for="metadata">Metadata: {"brightness": 170, ...}</label>
<textarea id="metadata"></textarea></div></details></section>
<section style="margin-top:14px"><h2><span class="n">2</span>Outputs</h2>
<div class="targets" id="targets"></div>
<label for="preset">Settings</label>
<select id="preset"><option value="auto" selected>Auto (one greedy step from an image, else 8)</option>
<option value="fast">Fast (4 steps)</option><option value="balanced">Balanced
(8 steps)</option><option value="careful">Careful (16 steps, guidance 2)</option>
<option value="custom">Custom</option></select>
<div class="row set" style="margin-top:6px">
<label>steps <input id="steps" type="number" min="1" placeholder="auto"></label>
<label>temperature <input id="temperature" type="number" step="0.1" min="0" max="5" placeholder="auto"></label>
<label>guidance <input id="guidance" type="number" step="0.5" min="0" max="10" value="1"></label>
<label>seed <input id="seed" type="number" min="0" value="0"></label></div></section>
<section style="margin-top:14px"><h2><span class="n">3</span>Run</h2>
<div class="row"><button id="run">Generate</button>
<button id="retrieve" class="secondary">Find similar scenes</button></div>
<p id="retrieval-note" class="muted"></p></section>
</div>
<section><div id="error" role="alert"></div><div id="status">Results appear here.</div>
<div id="results"></div><p><a id="download" style="display:none">Download all outputs (zip)</a></p>
<div id="matches"></div></section>
</main>
<script>
const $ = (id) => document.getElementById(id);
let info = null, image = null, sampleIndex = 0, busy = false;
// "" = the server's per-target choice: an image target predicted from an image in one greedy step, else 8 steps
const PRESETS = {auto: ["", "", 1], fast: [4, 0.5, 1], balanced: [8, 0.5, 1], careful: [16, 0.5, 2]};

function showError(msg) { const e = $("error"); e.textContent = msg || ""; e.style.display = msg ? "block" : "none"; }
function setBusy(b) { busy = b; $("run").disabled = b; $("retrieve").disabled = b || info.retrieval !== "available"; }
function setImage(url) {
  image = url; $("preview").style.display = url ? "block" : "none";
  if (url) $("preview").src = url; else $("preview").removeAttribute("src");
}

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}});
  let data = null;
  try { data = await r.json(); } catch (e) { data = {error: "the server answered " + r.status}; }
  if (!r.ok) throw new Error(data.error || ("error " + r.status));
  return data;
}

function inputs() {
  const v = {};
  if (info.inputs.rgb && image) v.rgb = image;
  for (const k of ["caption", "det", "metadata"]) if (info.inputs[k] && $(k).value.trim()) v[k] = $(k).value;
  return v;
}

function figure(t, cls) {
  // Pictures with a title; texts (captions, metadata) as readable text; boxes and palettes also as JSON.
  const f = document.createElement("figure"); f.className = cls;
  if (t.png) {
    const img = document.createElement("img"); img.src = t.png; img.alt = t.label; f.appendChild(img);
  } else {
    const d = document.createElement("div"); d.className = "text"; d.textContent = t.text; f.appendChild(d);
  }
  const c = document.createElement("figcaption"); c.textContent = (cls === "in" ? "input: " : "") + t.label;
  f.appendChild(c);
  if (t.png && t.text) {
    const d = document.createElement("details"), s = document.createElement("summary");
    const p = document.createElement("pre"); s.textContent = t.kind === "caption" ? "text" : "JSON";
    p.textContent = t.text; d.appendChild(s); d.appendChild(p); f.appendChild(d);
    if (cls === "match") d.open = true;
  }
  return f;
}

function group(title, tiles, cls, into) {
  const h = document.createElement("div"); h.className = "group"; h.textContent = title; into.appendChild(h);
  const d = document.createElement("div"); d.className = "tiles " + cls + "s";
  tiles.forEach((t) => d.appendChild(figure(t, cls))); into.appendChild(d);
}

async function follow(job, done) {
  while (true) {
    if (job.state === "queued") {
      $("status").innerHTML = "Waiting in the queue: position <b>" + job.position + "</b> (" +
        (job.position - 1) + " job(s) ahead of yours)";
    } else if (job.state === "running") {
      $("status").innerHTML = "Running: step " + job.step + " of " + (job.total || "?") + " (" + job.doing +
        ") <progress max='" + (job.total || 1) + "' value='" + job.step + "'></progress>";
    } else if (job.state === "error") { throw new Error(job.error); }
    else if (job.state === "done") { $("status").textContent = "Done in " + job.seconds + " s."; return done(job); }
    await new Promise((r) => setTimeout(r, 300));
    job = await api("/api/jobs/" + job.id);
  }
}

async function run() {
  showError(""); $("results").innerHTML = ""; $("matches").innerHTML = ""; $("download").style.display = "none";
  const targets = [...document.querySelectorAll("#targets input:checked")].map((c) => c.value);
  const body = {inputs: inputs(), targets, steps: $("steps").value, temperature: $("temperature").value,
                guidance: $("guidance").value, seed: $("seed").value};
  setBusy(true);
  try {
    await follow(await api("/api/generate", body), (job) => {
      const r = job.result;
      group("Inputs", r.inputs, "in", $("results")); group("Outputs", r.outputs, "out", $("results"));
      if (r.notices.length) $("status").textContent += " Note: " + r.notices.join("; ");
      $("download").href = "/api/jobs/" + job.id + "/download"; $("download").style.display = "inline";
    });
  } catch (e) { showError(e.message); $("status").textContent = ""; }
  setBusy(false);
}

async function retrieve() {
  showError(""); $("results").innerHTML = ""; $("matches").innerHTML = ""; $("download").style.display = "none";
  setBusy(true);
  try {
    await follow(await api("/api/retrieve", {inputs: inputs(), k: 6}), (job) => {
      const r = job.result;
      group("Query", r.query, "in", $("matches"));
      group("Nearest gallery scenes (" + r.gallery + ")", r.matches.map((m) => ({png: m.png,
        label: "#" + m.key + "  similarity " + m.score.toFixed(3), text: m.caption, kind: "caption"})), "match",
        $("matches"));
    });
  } catch (e) { showError(e.message); $("status").textContent = ""; }
  setBusy(false);
}

$("image").addEventListener("change", () => {
  showError(""); const f = $("image").files[0]; if (!f) return;
  if (f.size > 4 * 1024 * 1024) {  // the server refuses it too (413); saying so now saves the upload
    showError("This image is " + (f.size / 1048576).toFixed(1) + " MB, over the limit of 4 MB: choose a smaller one.");
    $("image").value = ""; return;
  }
  const reader = new FileReader();  // read in the browser: only the bytes are sent, never the file's name
  reader.onload = () => setImage(reader.result); reader.readAsDataURL(f);
});
function syncGiven() {
  // A text given as input cannot also be asked for (the server would refuse it): its output box is unticked and
  // greyed while the field has text.
  for (const k of ["caption", "det", "metadata"]) {
    const c = $("out-" + k); if (!c) continue;
    const given = Boolean(info.inputs[k] && $(k).value.trim());
    if (given && !c.disabled) c.checked = false;
    c.disabled = given; c.parentNode.querySelector(".given").textContent = given ? " (given)" : "";
  }
}
for (const k of ["caption", "det", "metadata"]) $(k).addEventListener("input", syncGiven);
$("clear").onclick = () => { setImage(null); $("image").value = ""; };
$("sample").onclick = async () => {
  showError("");
  try {
    const s = await api("/api/sample?index=" + (sampleIndex++));
    setImage(s.rgb); $("caption").value = s.caption;
    $("det").value = JSON.stringify(s.det); $("metadata").value = JSON.stringify(s.metadata); syncGiven();
  } catch (e) { showError(e.message); }
};
$("preset").onchange = () => {
  const p = PRESETS[$("preset").value]; if (!p) return;
  $("steps").value = p[0]; $("temperature").value = p[1]; $("guidance").value = p[2];
};
for (const k of ["steps", "temperature", "guidance"]) {
  $(k).addEventListener("input", () => { $("preset").value = "custom"; });
}
$("run").onclick = run; $("retrieve").onclick = retrieve;

(async () => {
  info = await api("/api/info");
  $("model").textContent = "Model inputs: " + Object.keys(info.inputs).join(", ") + " \u00b7 outputs: " +
    info.outputs.map((o) => o.label).join(", ");
  for (const k of ["rgb", "caption", "det", "metadata"]) if (!info.inputs[k]) $("in-" + k).style.display = "none";
  info.outputs.forEach((o) => {
    const l = document.createElement("label"), c = document.createElement("input");
    c.type = "checkbox"; c.value = o.name; c.id = "out-" + o.label;
    c.checked = o.label === "depth" || o.label === "caption";
    const g = document.createElement("span"); g.className = "given muted";
    l.appendChild(c); l.appendChild(document.createTextNode(" " + o.label)); l.appendChild(g);
    $("targets").appendChild(l);
  });
  $("retrieval-note").textContent = info.retrieval === "available" ?
    "Retrieval: finds the gallery scenes nearest to your inputs." : "Retrieval unavailable: " + info.retrieval;
  setBusy(false);
})();
</script></body></html>
"""
