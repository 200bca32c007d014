// The page `pix2pix serve` answers at GET /: pick or drop an image, see it beside its translation,
// download the result. Self-contained (inline style and script, no fonts or external files) so it
// works offline and behind any proxy; it uses only the public API (GET /v1/model,
// POST /v1/translate). Element ids are what tests/tools/serve_page.js drives: keep them stable.
#include "pix2pix/tools/server.h"

namespace pix2pix {

const std::string& serve_page_html() {
  static const std::string html = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pix2pix serve</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f2; color: #222; }
  header { background: #263238; color: #eceff1; padding: 12px 24px; }
  header h1 { font-size: 20px; margin: 0 0 4px 0; }
  header p { margin: 0; font-size: 13px; color: #b0bec5; }
  main { padding: 20px 24px; }
  #drop { display: block; max-width: 640px; border: 2px dashed #90a4ae; border-radius: 8px;
          padding: 18px; text-align: center; background: #fff; cursor: pointer; }
  #drop.over { background: #e3f2fd; border-color: #1e88e5; }
  #status { margin: 12px 0; min-height: 1.4em; font-size: 14px; }
  #status.error { color: #c62828; }
  .pair { display: flex; gap: 20px; flex-wrap: wrap; }
  figure { margin: 0; background: #fff; padding: 10px; border-radius: 8px;
           box-shadow: 0 1px 3px rgba(0,0,0,.15); }
  figcaption { font-size: 13px; color: #555; margin-bottom: 6px; }
  figure img { display: block; max-width: 480px; max-height: 480px; min-width: 128px;
               min-height: 128px; background: #eceff1; image-rendering: auto; }
  #download { display: inline-block; margin-top: 8px; font-size: 14px; }
  #download[hidden] { display: none; }
</style>
</head>
<body>
<header>
  <h1>pix2pix</h1>
  <p id="model">loading the model description&hellip;</p>
</header>
<main>
  <label id="drop" for="file">
    Drop an image here (PNG, JPEG or TIFF) or click to pick one
    <input id="file" type="file" accept="image/png,image/jpeg,image/tiff,.tif,.tiff" hidden>
  </label>
  <div id="status"></div>
  <div class="pair">
    <figure><figcaption>input</figcaption><img id="input" alt="input"></figure>
    <figure><figcaption>output</figcaption><img id="output" alt="output">
      <a id="download" hidden>download the PNG</a></figure>
  </div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let inputUrl = null, outputUrl = null;

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

fetch("/v1/model").then((r) => r.json()).then((m) => {
  const a = m.architecture;
  $("model").textContent = a.netG + " (ngf " + a.ngf + ", " + a.norm + " norm), " +
      (m.direction || "direction unknown") + ", " + m.mode + " mode, " + m.precision +
      ", sides padded to multiples of " + m.size_multiple;
}).catch(() => { $("model").textContent = "model description unavailable"; });

async function translate(file) {
  if (inputUrl) URL.revokeObjectURL(inputUrl);
  inputUrl = URL.createObjectURL(file);
  $("input").src = inputUrl;
  $("output").removeAttribute("src");
  $("download").hidden = true;
  setStatus("translating " + file.name + " (" + file.size + " bytes)\u2026", false);
  const started = performance.now();
  try {
    const response = await fetch("/v1/translate", {
      method: "POST", body: file,
      headers: { "Content-Type": file.type || "application/octet-stream" } });
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { message = (await response.json()).error; } catch (e) {}
      setStatus("error: " + message, true);
      return;
    }
    const blob = await response.blob();
    if (outputUrl) URL.revokeObjectURL(outputUrl);
    outputUrl = URL.createObjectURL(blob);
    $("output").src = outputUrl;
    const link = $("download");
    link.href = outputUrl;
    link.download = file.name.replace(/\.[^.]*$/, "") + ".png";
    link.hidden = false;
    setStatus(file.name + ": translated in " + Math.round(performance.now() - started) + " ms",
              false);
  } catch (e) {
    setStatus("error: " + e.message, true);
  }
}

$("input").addEventListener("error", () => {
  if ($("input").src) setStatus($("status").textContent + " (the browser cannot show this input)",
                                false);
});
$("file").addEventListener("change", (e) => {
  if (e.target.files.length > 0) translate(e.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length > 0) translate(e.dataTransfer.files[0]);
});
</script>
</body>
</html>
)HTML";
  return html;
}

}  // namespace pix2pix
