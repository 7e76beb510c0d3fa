// The live link shared by every page: one WebSocket to the page's event stream, the
// "UPLINK FAILED" banner, and regions re-rendered by the server when an event concerns them.
//
// Page contract (attributes on <body>):
//   data-stream="/ws/..."   the stream to follow
//   data-since="N"          cursor to start after (the log's last id when the page was made)
//   data-cursor="id|seq"    which field of an event is the cursor
//   data-refresh-every="S"  also refresh every region every S seconds (for silent changes)
// Regions: <div data-region="name" data-on="prefix prefix">, re-fetched as ?fragment=name
// when an event whose type starts with one of the prefixes arrives.
"use strict";

(function () {
  const body = document.body;
  const listeners = [];
  const timers = new Map();
  const rendered = new Map(); // region -> the markup last fetched for it
  const REFRESH_DELAY_MS = 150;
  const WATCHDOG_MS = 45000; // the server pings after 15 s of silence
  let socket = null;
  let cursor = null;
  let retryMs = 500;
  let watchdog = null;
  let leaving = false;
  let linkDown = false;
  let apiDown = false;

  // -- banner ------------------------------------------------------------------------

  function showLink() {
    const banner = document.getElementById("uplink");
    const state = document.getElementById("link-state");
    const down = linkDown || apiDown;
    if (banner) banner.hidden = !down;
    if (state) state.dataset.state = down ? "down" : socket ? "up" : "idle";
  }

  function uplinkFailed(detail) {
    const note = document.getElementById("uplink-detail");
    if (note) note.textContent = detail;
    showLink();
  }

  // -- REST ----------------------------------------------------------------------------

  // Calls the API; resolves to {ok, status, data}. A network failure or an unavailable
  // server (502-504) raises the banner; an answer clears it.
  async function api(method, path, payload) {
    const init = { method, headers: { Accept: "application/json" } };
    if (payload !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(payload);
    }
    // Signed in with the dashboard's cookie, a change carries the page's CSRF token.
    const csrf = document.querySelector('meta[name="csrf-token"]');
    if (csrf && method !== "GET") init.headers["X-CSRF-Token"] = csrf.content;
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      apiDown = true;
      uplinkFailed("the API cannot be reached: " + error.message);
      throw error;
    }
    noteApiAnswer(response.status);
    let data = null;
    const text = await response.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = { message: text };
      }
    }
    return { ok: response.ok, status: response.status, data };
  }

  function noteApiAnswer(status) {
    const wasDown = apiDown;
    apiDown = status >= 502 && status <= 504;
    if (apiDown) uplinkFailed("the API answers " + status + "; retrying");
    else if (wasDown) showLink();
  }

  // -- regions ---------------------------------------------------------------------------

  function regionUrl(name) {
    const url = new URL(window.location.href);
    url.hash = "";
    url.searchParams.set("fragment", name);
    return url.toString();
  }

  async function refresh(name) {
    const region = document.querySelector('[data-region="' + name + '"]');
    if (!region) return;
    let response;
    try {
      response = await fetch(regionUrl(name), { headers: { Accept: "text/html" } });
    } catch (error) {
      apiDown = true;
      uplinkFailed("the dashboard cannot be reached: " + error.message);
      return;
    }
    noteApiAnswer(response.status);
    if (!response.ok) return;
    const html = await response.text();
    if (html === rendered.get(name)) return;
    // Keep the keyboard where it was: refocus the same control in the new markup.
    const focused = region.contains(document.activeElement) ? document.activeElement : null;
    const key = focused && (focused.id || focused.dataset.verb || focused.dataset.permissionId);
    region.innerHTML = html;
    rendered.set(name, html);
    if (key) {
      const again =
        document.getElementById(key) ||
        region.querySelector('[data-verb="' + key + '"]') ||
        region.querySelector('[data-permission-id="' + key + '"]');
      if (again && !again.disabled) again.focus();
    }
    region.dispatchEvent(new CustomEvent("region:updated", { bubbles: true }));
  }

  // Many events in a burst cost one request per region.
  function schedule(name) {
    if (timers.has(name)) return;
    timers.set(
      name,
      setTimeout(() => {
        timers.delete(name);
        refresh(name);
      }, REFRESH_DELAY_MS)
    );
  }

  function refreshAll() {
    document.querySelectorAll("[data-region]").forEach((region) => {
      if (region.dataset.on !== "none") schedule(region.dataset.region);
    });
  }

  function concerns(region, type) {
    const on = (region.dataset.on || "").split(/\s+/).filter(Boolean);
    if (on.length === 0) return type !== "session.log";
    return on.some((prefix) => type.startsWith(prefix));
  }

  function dispatch(event) {
    document.querySelectorAll("[data-region]").forEach((region) => {
      if (concerns(region, event.type)) schedule(region.dataset.region);
    });
    listeners.forEach((listener) => listener(event));
  }

  // -- the stream ------------------------------------------------------------------------

  function streamUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    const url = new URL(body.dataset.stream, scheme + "//" + window.location.host);
    if (cursor !== null) url.searchParams.set("since", String(cursor));
    return url.toString();
  }

  function armWatchdog() {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => {
      if (socket) socket.close(4000, "silent for too long");
    }, WATCHDOG_MS);
  }

  function connect() {
    const ws = new WebSocket(streamUrl());
    socket = ws;
    let opened = false;
    ws.addEventListener("open", () => {
      opened = true;
      retryMs = 500;
      const wasDown = linkDown;
      linkDown = false;
      showLink();
      armWatchdog();
      // Whatever changed while the link was down is in the regions' next rendering.
      if (wasDown) refreshAll();
    });
    ws.addEventListener("message", (message) => {
      armWatchdog();
      let event;
      try {
        event = JSON.parse(message.data);
      } catch (_) {
        return;
      }
      if (event.type === "ping") {
        ws.send('{"type":"pong"}');
        return;
      }
      if (event.type === "pong" || event.type === "error") return;
      const position = body.dataset.cursor === "seq" ? event.seq : event.id;
      if (typeof position !== "number") return;
      if (cursor !== null && position <= cursor) return; // already shown: never twice
      cursor = position;
      dispatch(event);
    });
    ws.addEventListener("close", (closed) => {
      clearTimeout(watchdog);
      if (socket === ws) socket = null;
      if (leaving) return;
      // 4400-4499: the server refused this stream (4400 malformed, 4401 no token, 4403
      // another site, 4404 unknown session); trying again would be refused again.
      if (closed.code >= 4400 && closed.code < 4500) {
        uplinkFailed(closed.reason || "the server refused this stream");
        linkDown = true;
        showLink();
        return;
      }
      linkDown = true;
      const wait = retryMs;
      retryMs = Math.min(retryMs * 2, 5000);
      uplinkFailed(
        (opened ? "the live link was lost" : "the live link cannot be made") +
          "; reconnecting in " + (wait / 1000).toFixed(1) + " s"
      );
      setTimeout(connect, wait);
    });
  }

  // -- small conveniences ----------------------------------------------------------------

  function autosubmit() {
    document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
      select.addEventListener("change", () => select.form && select.form.submit());
    });
  }

  window.addEventListener("pagehide", () => {
    leaving = true;
  });

  // A form's fields as an API body. Empty optional fields are left out; numbers the
  // browser cannot read are sent as typed (the API says what is wrong with them); list
  // fields take comma-separated values.
  function formBody(form, { numbers = [], required = [], lists = [] } = {}) {
    const body = {};
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.type === "checkbox") {
        body[field.name] = field.checked;
        continue;
      }
      const value = field.value;
      if (value.trim() === "" && !required.includes(field.name)) continue;
      if (numbers.includes(field.name)) {
        const number = Number(value.trim());
        body[field.name] = value.trim() !== "" && Number.isFinite(number) ? number : value;
      } else if (lists.includes(field.name)) {
        body[field.name] = value.split(",").map((item) => item.trim()).filter(Boolean);
      } else {
        body[field.name] = value;
      }
    }
    return body;
  }

  function clearErrors(form, top) {
    form.querySelectorAll("[data-error-for]").forEach((node) => (node.textContent = ""));
    form.querySelectorAll("[aria-invalid]").forEach((node) => node.removeAttribute("aria-invalid"));
    top.hidden = true;
    top.textContent = "";
  }

  // The API's own messages, next to the fields they concern, and its summary in ``top``.
  function showErrors(form, answer, top, refused) {
    const data = answer.data || {};
    const problems = Array.isArray(data.details) ? data.details : [];
    for (const problem of problems) {
      const name = String(problem.field || "").split(".")[0];
      const slot = form.querySelector('[data-error-for="' + name + '"]');
      if (!slot) continue;
      slot.textContent = (slot.textContent ? slot.textContent + " " : "") + problem.message;
      if (form.elements[name]) form.elements[name].setAttribute("aria-invalid", "true");
    }
    const named = data.details && !Array.isArray(data.details) ? data.details.field : null;
    const slot = named ? form.querySelector('[data-error-for="' + named + '"]') : null;
    if (!form.querySelector("[aria-invalid]") && slot) {
      slot.textContent = data.message;
      if (form.elements[named]) form.elements[named].setAttribute("aria-invalid", "true");
    }
    top.textContent = data.message || refused + " (" + answer.status + ")";
    top.hidden = false;
    const first = form.querySelector("[aria-invalid]");
    if (first) first.focus();
  }

  // Dollars for people, the rule of domain/money.py's format_usd: cents, four decimals
  // below a cent, "<$0.0001" above zero below that. toFixed rounds the double's exact
  // value half up, as the Python side does.
  function usd(amount) {
    const value = Number(amount);
    if (!Number.isFinite(value)) return "$?";
    const sign = value < 0 ? "-" : "";
    const size = Math.abs(value);
    if (size === 0) return "$0.00";
    const fine = size.toFixed(4);
    if (Number(fine) >= 0.01) {
      return sign + "$" + size.toFixed(2).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    }
    if (Number(fine) === 0) return "<$0.0001";
    return sign + "$" + fine;
  }

  window.Orchestrator = {
    api,
    usd,
    formBody,
    clearErrors,
    showErrors,
    refresh,
    schedule,
    onEvent(listener) {
      listeners.push(listener);
    },
  };

  document.addEventListener("DOMContentLoaded", () => {
    autosubmit();
    if (body.dataset.stream) {
      const since = Number(body.dataset.since);
      cursor = Number.isFinite(since) && body.dataset.since !== "" ? since : null;
      connect();
    }
    const every = Number(body.dataset.refreshEvery);
    if (every > 0) setInterval(refreshAll, every * 1000);
  });
})();
