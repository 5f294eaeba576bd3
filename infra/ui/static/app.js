// clip-lambda gallery: search the stack's images by text, by image or by example, upload to its bucket.
// Every call goes to the gallery server (same origin): /api/... is the stack's API, signed there; /ui/...
// presigns S3 URLs and reads DynamoDB items. The page holds no credentials and loads nothing from elsewhere.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("search-form"), q: $("q"), prefix: $("prefix"), k: $("k"), tag: $("tag"), tagField: $("tag-field"),
    query: $("query"), queryFile: $("query-file"), queryDrop: $("query-drop"),
    uploadFile: $("upload-file"), uploadDrop: $("upload-drop"), uploadDest: $("upload-dest"),
    uploads: $("uploads"), uploadsSection: $("uploads-section"),
    error: $("error"), status: $("status"), results: $("results"),
  };
  const POLL_MS = 1000;
  const ITEM_WAIT_MS = 10 * 60 * 1000; // the S3 function's first invoke loads the model; SQS may retry
  const state = { config: null, query: null, label: "", tags: new Set(), searches: 0 };
  const BROWSE = Object.freeze({}); // the query of a search by the chosen tag alone (POST /search {"tags"})

  class ApiError extends Error {
    constructor(code, message, status) {
      super(message);
      this.code = code;
      this.status = status;
    }
  }

  // The API's error shape {"error": {"code", "message"}}; API Gateway's own refusals are {"message"}.
  function apiError(status, body) {
    if (body && typeof body === "object" && body.error && body.error.code) {
      return new ApiError(body.error.code, body.error.message || "", status);
    }
    if (body && typeof body === "object" && typeof body.message === "string") {
      return new ApiError(`http_${status}`, body.message, status);
    }
    const text = typeof body === "string" ? body : JSON.stringify(body);
    return new ApiError(`http_${status}`, (text || "").slice(0, 500), status);
  }

  // One call to the gallery server. X-Clip-Gallery makes it answer 200 {status, body} whatever the API said,
  // so that an expected refusal is an answer to show (the browser logs every 4xx/5xx response as an error).
  async function call(method, path, { json, body, headers = {} } = {}) {
    const init = { method, headers: { "X-Clip-Gallery": "1", ...headers } };
    if (json !== undefined) {
      init.body = JSON.stringify(json);
      init.headers["Content-Type"] = "application/json";
    } else if (body !== undefined) {
      init.body = body;
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new ApiError("gallery_unreachable", `the gallery server did not answer (${err.message}): is it running?`);
    }
    let envelope;
    try {
      envelope = await response.json();
    } catch (err) {
      throw new ApiError("bad_response", `the gallery server answered HTTP ${response.status} without JSON`);
    }
    if (envelope.status >= 200 && envelope.status < 300) return envelope.body;
    throw apiError(envelope.status, envelope.body);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    Object.assign(node, props);
    node.append(...children);
    return node;
  }

  // --- messages --------------------------------------------------------------------------------------
  function showError(err) {
    const code = err instanceof ApiError ? err.code : "page_error";
    ui.error.replaceChildren(el("code", { textContent: code }), document.createTextNode(`: ${err.message}`));
    ui.error.dataset.code = code;
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.hidden = true;
    ui.error.replaceChildren();
    delete ui.error.dataset.code;
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  // Nothing may end as an uncaught error in the console: whatever escapes is shown like an API error.
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    showError(event.reason instanceof Error ? event.reason : new Error(String(event.reason)));
  });
  window.addEventListener("error", (event) => {
    event.preventDefault();
    showError(event.error instanceof Error ? event.error : new Error(event.message));
  });

  // --- model and target ------------------------------------------------------------------------------
  function showModel(model) {
    $("model-id").textContent = model.model;
    $("model-dim").textContent = `· ${model.dim}-d`;
    // The zero-shot tags' vocabulary (null: a model built without one, and the filter stays hidden).
    if (model.tags && Array.isArray(model.tags.labels)) addTags(model.tags.labels);
    const untrained = $("untrained");
    if (model.untrained) {
      const why = typeof model.untrained === "string" ? model.untrained : JSON.stringify(model.untrained);
      untrained.textContent = `Untrained model (${why}): its vectors are well-formed but carry no meaning, so ` +
        "scores and rankings are arbitrary.";
      untrained.hidden = false;
    }
  }

  function showConfig(config) {
    $("target").textContent = `Target: ${config.target}`;
    document.body.dataset.upload = config.upload || "off";
    if (config.bucket && config.upload) {
      ui.uploadDest.textContent = `s3://${config.bucket}/${config.upload_prefix}`;
    } else {
      ui.uploadDrop.hidden = true;
    }
  }

  // --- search ----------------------------------------------------------------------------------------
  function resultCount() {
    const k = Math.min(100, Math.max(1, Number.parseInt(ui.k.value, 10) || 24));
    ui.k.value = String(k);
    return k;
  }

  function tagsOf(hit) {
    if (!Array.isArray(hit.tags)) return [];
    return hit.tags
      .map((t) => (typeof t === "string" ? t : t && (t.label || t.tag || t.name)))
      .filter((t) => typeof t === "string" && t);
  }

  // The tag filter offers the model's vocabulary (GET /model) and any tag a result carries; without either
  // (a model built without a vocabulary) it stays hidden.
  function addTags(tags) {
    const before = state.tags.size;
    for (const tag of tags) if (typeof tag === "string" && tag) state.tags.add(tag);
    if (state.tags.size === before) return;
    const selected = ui.tag.value;
    const sorted = [...state.tags].sort((a, b) => a.localeCompare(b));
    const options = sorted.map((t) => el("option", { value: t, textContent: t }));
    ui.tag.replaceChildren(el("option", { value: "", textContent: "any tag" }), ...options);
    ui.tag.value = selected;
    ui.tagField.hidden = false;
  }

  function card(hit, url, isNew, chosen) {
    const picture = url
      ? el("img", { src: url, alt: "", loading: "lazy", decoding: "async" })
      : el("span", { className: "noimg", textContent: "no preview" });
    const meta = el(
      "span", { className: "meta" },
      el("span", { className: "visually-hidden", textContent: "More like this: " }),
      el("span", { className: "key", textContent: hit.key }),
      el("span", { className: "visually-hidden", textContent: " score " }),
      el("span", { className: "score", textContent: Number(hit.score).toFixed(4), title: "cosine similarity" }),
    );
    const button = el("button", { type: "button", title: `More like this: ${hit.key}` }, picture, meta);
    button.addEventListener("click", () => moreLikeThis(hit));
    const li = el("li", { className: isNew ? "card new" : "card" }, button);
    li.dataset.key = hit.key;
    li.dataset.bucket = hit.bucket;
    const tags = tagsOf(hit);
    if (tags.length) {
      const chips = tags.map((t) => el("li", { textContent: t }));
      chips.forEach((chip, i) => chip.classList.toggle("chosen", tags[i] === chosen));
      const list = el("ul", { className: "tags" }, ...chips);
      list.setAttribute("aria-label", "Tags"); // the image's zero-shot tags, best first
      li.append(list);
    }
    return li;
  }

  function render(hits, urls, highlight, chosen) {
    ui.results.replaceChildren(...hits.map((hit, i) => card(hit, urls[i], hit.key === highlight, chosen)));
    addTags(hits.flatMap(tagsOf));
  }

  // Back to no query: the grid empties (a tag cleared while browsing by it).
  function noQuery() {
    state.searches++;
    state.query = null;
    state.label = "";
    ui.results.replaceChildren();
    ui.results.setAttribute("aria-busy", "false");
    ui.query.hidden = true;
    clearError();
    setStatus("");
  }

  // POST /search with the filters, then presigned thumbnails; returns the hits, or null (failed or overtaken).
  // The query BROWSE searches by the chosen tag alone: the images carrying it, ranked by its label.
  async function search(query, label, { highlight } = {}) {
    const tag = ui.tag.value;
    const browsing = query === BROWSE;
    if (browsing && !tag) {
      noQuery();
      return null;
    }
    const mine = ++state.searches;
    state.query = query;
    state.label = label;
    const request = { ...query, k: resultCount() };
    const prefix = ui.prefix.value.trim();
    if (prefix) request.prefix = prefix;
    if (tag) request.tags = [tag];
    const what = browsing ? `tagged ${tag}` : label;
    clearError();
    ui.query.textContent = `Query: ${browsing ? `the images ${what}` : what}`;
    ui.query.hidden = false;
    setStatus(`Searching ${what}…`);
    ui.results.setAttribute("aria-busy", "true");
    try {
      const answer = await call("POST", "/api/search", { json: request });
      const hits = answer.results || [];
      const objects = hits.map((h) => ({ bucket: h.bucket, key: h.key }));
      const thumbs = hits.length ? await call("POST", "/ui/thumbnails", { json: { objects } }) : { urls: [] };
      if (mine !== state.searches) return null;
      render(hits, thumbs.urls, highlight, tag);
      const where = (prefix ? ` under ${prefix}` : "") + (tag && !browsing ? ` tagged ${tag}` : "");
      setStatus(`${hits.length} result${hits.length === 1 ? "" : "s"} ${what}${where}.`);
      return hits;
    } catch (err) {
      if (mine !== state.searches) return null;
      ui.results.replaceChildren();
      setStatus("The search failed.");
      showError(err);
      return null;
    } finally {
      if (mine === state.searches) ui.results.setAttribute("aria-busy", "false");
    }
  }

  function moreLikeThis(hit) {
    ui.q.value = "";
    return search({ s3: `s3://${hit.bucket}/${hit.key}` }, `like ${hit.key}`);
  }

  function base64Of(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => {
        const url = String(reader.result);
        resolve(url.slice(url.indexOf(",") + 1));
      };
      reader.onerror = () => reject(reader.error || new Error("the file could not be read"));
      reader.readAsDataURL(file);
    });
  }

  async function searchByImage(file) {
    let data;
    try {
      data = await base64Of(file);
    } catch (err) {
      showError(new ApiError("unreadable_file", `${file.name}: ${err.message}`));
      return;
    }
    ui.q.value = "";
    await search({ image: data }, `like the image ${file.name || "pasted"}`);
  }

  // --- uploads ---------------------------------------------------------------------------------------
  function uploadRow(name) {
    const picture = el("span", { className: "noimg" });
    const label = el("span", { className: "name", textContent: name });
    const stateText = el("span", { className: "state", textContent: "starting…" });
    const li = el("li", {}, picture, label, stateText);
    ui.uploads.prepend(li);
    ui.uploadsSection.hidden = false;
    return {
      li,
      set(text, kind = "") {
        stateText.textContent = text;
        stateText.className = `state ${kind}`.trim();
        li.dataset.state = kind || "busy";
      },
      named(key) {
        label.textContent = key;
        li.dataset.key = key;
      },
      shown(url, hit) {
        if (url) picture.replaceWith(el("img", { src: url, alt: "" }));
        const again = el("button", { type: "button", textContent: "More like this" });
        again.addEventListener("click", () => moreLikeThis(hit));
        stateText.before(again);
      },
    };
  }

  async function putDirect(slot, file) {
    let response;
    try {
      response = await fetch(slot.url, { method: "PUT", body: file, headers: slot.headers });
    } catch (err) {
      throw new ApiError("upload_blocked", `the browser could not PUT to the bucket (${err.message}): its CORS ` +
        `configuration must admit a PUT from ${window.location.origin}, or start the gallery with --upload server`);
    }
    if (!response.ok) {
      const text = await response.text();
      const code = /<Code>([^<]+)<\/Code>/.exec(text);
      const message = /<Message>([^<]+)<\/Message>/.exec(text);
      throw new ApiError(code ? code[1] : `http_${response.status}`, message ? message[1] : "S3 refused the upload");
    }
  }

  async function waitForItem(key) {
    const deadline = Date.now() + ITEM_WAIT_MS;
    while (Date.now() < deadline) {
      const item = await call("GET", `/ui/item?key=${encodeURIComponent(key)}`);
      if (item.state !== "pending") return item;
      await sleep(POLL_MS);
    }
    throw new ApiError("still_pending", `${key} is in the bucket but has no item after ${ITEM_WAIT_MS / 1000} s: ` +
      "see the S3 function's log and the dead-letter queue");
  }

  // The new image's neighbours, itself first; the index follows the item within moments: asked again until then.
  async function showUploaded(slot) {
    ui.q.value = "";
    ui.prefix.value = "";
    ui.tag.value = "";
    for (let attempt = 0; attempt < 20; attempt++) {
      const hits = await search({ s3: slot.s3 }, `like ${slot.key} (just uploaded)`, { highlight: slot.key });
      if (!hits || hits.some((h) => h.key === slot.key)) return;
      await sleep(POLL_MS);
    }
  }

  async function upload(file) {
    const row = uploadRow(file.name);
    try {
      const type = file.type || "application/octet-stream";
      const slot = await call("POST", "/ui/uploads", { json: { name: file.name, type } });
      row.named(slot.key);
      row.set("uploading…");
      if (slot.via === "direct") await putDirect(slot, file);
      else await call("PUT", slot.url, { body: file, headers: slot.headers });
      row.set("embedding…");
      const item = await waitForItem(slot.key);
      if (item.state === "failed") {
        row.set(`failed: ${item.error.code}`, "failed");
        showError(new ApiError(item.error.code, `${slot.key}: ${item.error.message}`));
        return;
      }
      row.set("embedded", "embedded");
      const hit = { bucket: state.config.bucket, key: slot.key };
      const thumbs = await call("POST", "/ui/thumbnails", { json: { objects: [hit] } });
      row.shown(thumbs.urls[0], hit);
      await showUploaded(slot);
    } catch (err) {
      row.set(`failed: ${err instanceof ApiError ? err.code : "error"}`, "failed");
      showError(err);
    }
  }

  // --- wiring ----------------------------------------------------------------------------------------
  function dropZone(zone, onFiles) {
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      const files = [...((event.dataTransfer && event.dataTransfer.files) || [])];
      if (files.length) onFiles(files);
    });
  }

  // An image query (its text box is empty) is re-run with the new filters; an emptied text box with a tag
  // chosen browses by the tag; an empty text otherwise gets the API's own answer (empty_text).
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = ui.q.value.trim();
    const imageQuery = state.query && state.query !== BROWSE && state.query.text === undefined;
    if (text) search({ text }, `for “${text}”`);
    else if (imageQuery) search(state.query, state.label);
    else if (ui.tag.value) search(BROWSE, "");
    else search({ text }, `for “${text}”`);
  });
  // A tag chosen re-runs the current query with it, or without a query browses by it.
  ui.tag.addEventListener("change", () => {
    if (state.query) search(state.query, state.label);
    else if (ui.tag.value) search(BROWSE, "");
  });
  ui.queryFile.addEventListener("change", () => {
    const file = ui.queryFile.files[0];
    ui.queryFile.value = "";
    if (file) searchByImage(file);
  });
  ui.uploadFile.addEventListener("change", () => {
    const files = [...ui.uploadFile.files];
    ui.uploadFile.value = "";
    files.forEach(upload);
  });
  dropZone(ui.queryDrop, (files) => searchByImage(files[0]));
  dropZone(ui.uploadDrop, (files) => files.forEach(upload));
  // A file dropped beside the zones must not replace the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  document.addEventListener("paste", (event) => {
    const file = [...((event.clipboardData && event.clipboardData.files) || [])][0];
    if (file) {
      event.preventDefault();
      searchByImage(file);
    }
  });

  async function init() {
    try {
      state.config = await call("GET", "/ui/config");
      showConfig(state.config);
    } catch (err) {
      showError(err);
    }
    try {
      showModel(await call("GET", "/api/model"));
    } catch (err) {
      $("model-id").textContent = "unavailable";
      showError(err);
    }
    document.body.dataset.ready = "true";
  }

  init();
})();
