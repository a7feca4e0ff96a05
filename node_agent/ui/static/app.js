// node-agent status page: polls the node's one state document (ui/state) and draws it.
// Everything the node sends is written as text (textContent), never parsed as HTML.
"use strict";
(() => {
  const KEY_STORE = "node-agent.api-key";
  const LOG_MAX_CHARS = 200000; // the log view keeps the newest output only
  const GIB = 2 ** 30;
  const SVG = "http://www.w3.org/2000/svg";
  const W = 300, H = 60;

  let key = sessionStorage.getItem(KEY_STORE) || "";
  let samples = [];
  let lastAt = null;
  let windowSeconds = 900;
  let pollSeconds = 5;
  let timer = null;
  let pollRun = 0; // each poll() supersedes any still waiting for an answer
  let logAbort = null;

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("data-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fill(sectionId, ...children) {
    const body = $(sectionId).querySelector(".body");
    body.replaceChildren(...children.filter((c) => c));
  }

  const empty = (text) => el("p", { class: "empty", text });
  const pill = (status) => el("span", { class: `pill s-${status}`, text: String(status ?? "unknown") });

  // --- formatting ------------------------------------------------------------------------------

  function num(value, digits = 1) {
    if (value === null || value === undefined || Number.isNaN(value)) return "–";
    return String(Number(Number(value).toFixed(digits)));
  }
  const gib = (bytes) =>
    bytes === null || bytes === undefined ? "–" : num(bytes / GIB, bytes < 10 * GIB ? 2 : 1);

  function seconds(value) {
    if (value === null || value === undefined) return "–";
    if (value < 1) return `${num(value * 1000, 0)} ms`;
    if (value < 120) return `${num(value, 1)} s`;
    if (value < 7200) return `${num(value / 60, 0)} min`;
    return `${num(value / 3600, 1)} h`;
  }

  function when(value) {
    if (value === null || value === undefined) return "–";
    const at = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return Number.isNaN(at.getTime()) ? String(value) : at.toLocaleTimeString();
  }

  function epoch(value) {
    if (value === null || value === undefined) return null;
    return typeof value === "number" ? value : new Date(value).getTime() / 1000;
  }

  function table(headers, rows) {
    return el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows),
    );
  }

  function row(cells, props) {
    return el(
      "tr",
      props,
      ...cells.map((c) => el("td", {}, c instanceof Node ? c : String(c ?? "–"))),
    );
  }

  function facts(pairs) {
    const list = el("dl");
    for (const [name, value] of pairs) {
      list.append(el("dt", { text: name }), el("dd", {}, value instanceof Node ? value : String(value ?? "–")));
    }
    return list;
  }

  function reasons(items) {
    return items && items.length ? el("ul", { class: "reasons" }, ...items.map((r) => el("li", { text: r }))) : null;
  }

  // --- charts (inline SVG) ---------------------------------------------------------------------

  // lines: [{label, values: [number|null per sample]}]; max: the top of the scale, or null.
  function chart(title, lines, opts) {
    const times = samples.map((s) => s.at);
    const end = times.length ? times[times.length - 1] : 0;
    const start = end - windowSeconds;
    const values = lines.flatMap((l) => l.values).filter((v) => v !== null && v !== undefined);
    const top = opts.max || Math.max(1e-9, ...values) * 1.15;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", title);
    lines.forEach((line, i) => {
      let d = "";
      let pen = false;
      line.values.forEach((v, j) => {
        if (v === null || v === undefined) {
          pen = false;
          return;
        }
        const x = ((times[j] - start) / windowSeconds) * W;
        const y = H - Math.min(1, Math.max(0, v / top)) * (H - 2) - 1;
        d += `${pen ? "L" : "M"}${x.toFixed(1)} ${y.toFixed(1)} `;
        pen = true;
      });
      // A lone point still shows: a short horizontal stroke.
      if (d && !d.includes("L")) d += `l2 0`;
      const path = document.createElementNS(SVG, "path");
      path.setAttribute("d", d.trim() || "M0 0");
      path.setAttribute("class", `l${i}`);
      svg.append(path);
    });
    const points = lines.length ? lines[0].values.filter((v) => v !== null && v !== undefined).length : 0;
    const legend = lines.length > 1
      ? el("span", {}, ...lines.map((l, i) => el("span", { class: `k${i}`, text: ` ${l.label}` })))
      : null;
    return el(
      "div",
      { class: "chart", "data-chart": opts.id, "data-points": String(points) },
      el("div", { class: "head" }, el("span", { text: title }, legend), el("span", { class: "now", text: opts.now })),
      svg,
    );
  }

  // --- sections ------------------------------------------------------------------------------

  function renderHealth(doc) {
    const node = doc.node || {};
    const verdict = $("verdict");
    verdict.textContent = node.verdict || "unknown";
    verdict.className = `pill s-${node.verdict}`;
    $("version").textContent = node.agent_version ? `v${node.agent_version} (Infernet ${node.infernet_version})` : "";
    const checks = Object.entries((doc.health || {}).checks || {});
    if (!checks.length) {
      fill("health", empty("No component reports its health."));
      return;
    }
    fill(
      "health",
      el("p", {}, "Node ", pill(doc.health.status)),
      ...checks.map(([name, check]) => {
        const list = check.reasons || (check.reason ? [check.reason] : []);
        return el(
          "div",
          { class: "check", "data-check": name },
          el("div", {}, pill(check.status), ` ${name}`),
          reasons(list),
          check.remedy ? el("p", { class: "muted", text: `Remedy: ${check.remedy}` }) : null,
        );
      }),
    );
  }

  function gpuSeries(key, index) {
    return samples.map((s) => {
      const point = (s.gpus || {})[key];
      return point ? point[index] : null;
    });
  }

  function renderGpus(doc) {
    const gpus = doc.gpus || {};
    const devices = gpus.devices || [];
    if (!gpus.monitoring) {
      fill("gpus", empty("GPU monitoring is off (gpus.enabled: false): this node offers no GPUs."));
      return;
    }
    if (!devices.length) {
      const why = gpus.nvml_available === false
        ? "No GPUs: NVML (the NVIDIA driver's library) is not available on this host, so this node runs CPU work only."
        : "No GPUs found by NVML.";
      fill(
        "gpus",
        empty(why),
        reasons(gpus.reasons),
        gpus.remedy ? el("p", { class: "muted", text: `Remedy: ${gpus.remedy}` }) : null,
      );
      return;
    }
    const cards = devices.map((gpu) => {
      const mem = gpu.memory_total ? gpu.memory_total : null;
      return el(
        "div",
        { class: "card", "data-gpu": gpu.key },
        el(
          "h3",
          {},
          `#${gpu.index ?? "?"} ${gpu.name || "GPU"} `,
          pill(gpu.health),
          el("span", { class: "muted", text: ` ${gpu.uuid || ""}` }),
        ),
        reasons(gpu.reasons),
        el(
          "div",
          { class: "charts" },
          chart("Utilisation %", [{ label: "util", values: gpuSeries(gpu.key, 0) }], {
            id: "util", max: 100, now: `${num(gpu.util_pct, 0)} %`,
          }),
          chart("Memory GiB", [{ label: "used", values: gpuSeries(gpu.key, 1) }], {
            id: "memory", max: mem, now: `${gib(gpu.memory_used)} / ${gib(mem)}`,
          }),
          chart("Temperature °C", [{ label: "temp", values: gpuSeries(gpu.key, 2) }], {
            id: "temperature", max: 100, now: `${num(gpu.temperature_c, 0)} °C`,
          }),
          chart("Power W", [{ label: "power", values: gpuSeries(gpu.key, 3) }], {
            id: "power", max: gpu.power_limit_w, now: `${num(gpu.power_w, 0)} / ${num(gpu.power_limit_w, 0)} W`,
          }),
        ),
      );
    });
    const driver = gpus.driver_version ? `Driver ${gpus.driver_version}, CUDA ${gpus.cuda_driver_version ?? "–"}` : "";
    fill("gpus", driver ? el("p", { class: "muted", text: driver }) : null, el("div", { class: "cards" }, ...cards));
  }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null && values[i] !== undefined) return values[i];
    return null;
  }

  function renderJobs(doc) {
    const jobs = doc.jobs || {};
    const rate = samples.map((s) => s.jobs_per_second);
    const queued = samples.map((s) => s.queued);
    const running = samples.map((s) => s.running);
    const lat = ["p50", "p90", "p99"].map((p) => ({ label: p, values: samples.map((s) => (s.latency || {})[p]) }));
    const latest = samples.length ? samples[samples.length - 1] : {};
    const stat = (label, value) => el("div", { class: "stat" }, el("b", { text: value }), label);
    const queues = Object.entries(jobs.queues || {});
    fill(
      "jobs",
      el(
        "div",
        { class: "stats" },
        stat("jobs/s", num(lastValue(rate), 2)),
        stat("running", num(latest.running ?? jobs.running_offchain, 0)),
        stat("queued", num(latest.queued, 0)),
        stat("on-chain pending", num(jobs.pending_onchain, 0)),
        stat("latency p50 / p99", `${seconds(lastValue(lat[0].values))} / ${seconds(lastValue(lat[2].values))}`),
      ),
      el(
        "div",
        { class: "charts" },
        chart("Jobs per second", [{ label: "jobs/s", values: rate }], { id: "rate", now: num(lastValue(rate), 2) }),
        chart("Queue", [{ label: "queued", values: queued }, { label: "running", values: running }], {
          id: "queue", now: `${num(latest.queued, 0)} / ${num(latest.running, 0)}`,
        }),
        chart("Latency", lat, {
          id: "latency",
          now: lastValue(lat[1].values) === null ? "no job yet" : `${seconds(lastValue(lat[1].values))} p90`,
        }),
      ),
      queues.length
        ? table(["Container", "Queued"], queues.map(([name, depth]) => row([name, depth])))
        : null,
    );
  }

  function renderContainers(doc) {
    const containers = doc.containers || [];
    if (!containers.length) {
      fill("containers", empty("No service containers configured."));
      return;
    }
    fill(
      "containers",
      table(
        ["Container", "Image", "State", "Restarts"],
        containers.map((c) =>
          row(
            [
              el("span", {}, c.id, c.reason ? el("div", { class: "muted", text: c.reason }) : null),
              c.image || "(not managed)",
              pill(c.state),
              c.restarts,
            ],
            { "data-container": c.id },
          ),
        ),
      ),
    );
  }

  function renderChain(doc) {
    const chain = doc.chain || {};
    if (!chain.enabled) {
      fill(
        "chain",
        chain.configured
          ? empty(`The chain is configured but not running: ${chain.reason || "see the chain check"}.`)
          : empty("No chain configured (chain.enabled: false): this node serves off-chain jobs only."),
      );
      return;
    }
    fill(
      "chain",
      facts([
        ["Ready", chain.ready ? "yes" : "no"],
        ["Chain id", chain.chain_id],
        ["Node address", chain.address],
        ["Head", chain.head],
        ["Synced block", chain.synced_block],
        ["Lag", chain.lag === null || chain.lag === undefined ? "–" : `${chain.lag} blocks`],
        ["Subscriptions", chain.tracked_subscriptions],
        ["Deliveries in flight", chain.deliveries_in_flight],
        ["Delegated pending", chain.delegated_subscriptions],
        ["RPC calls / failures", `${chain.rpc_calls ?? "–"} / ${chain.rpc_failures ?? "–"}`],
        ["Last error", chain.last_error || "none"],
        ...walletFacts((chain.payments || {}).balances),
      ]),
    );
  }

  // Wei arrive as strings (a JS number loses them); shown in ETH (or token units) to 6 places.
  function units(wei) {
    if (wei === null || wei === undefined) return "–";
    const value = BigInt(wei);
    const whole = value / 10n ** 18n;
    const part = ((value % 10n ** 18n) / 10n ** 12n).toString().padStart(6, "0");
    return `${whole}.${part}`;
  }

  function walletFacts(balances) {
    if (!balances) return [];
    const rows = [["Gas (node key)", `${units(balances.gas_wei)} ETH`]];
    for (const [token, held] of Object.entries(balances.wallet || {})) {
      const name = /^0x0{40}$/.test(token) ? "ETH" : token;
      rows.push([
        `Wallet ${name}`,
        `${units(held.unlocked_wei)} unlocked, ${units(held.locked_wei)} locked`,
      ]);
    }
    return rows;
  }

  function renderGrid(doc) {
    const grid = doc.grid || {};
    if (!grid.enabled) {
      fill("grid", empty("Not reporting to an orchestrator (grid.enabled: false)."));
      return;
    }
    fill(
      "grid",
      facts([
        ["State", pill(grid.state)],
        ["Orchestrator", grid.url],
        ["Node id", grid.node_id],
        ["Last success", when(grid.last_success_at)],
        ["Heartbeats sent", grid.heartbeats_sent],
        ["Failures in a row", grid.consecutive_failures],
        ["Last error", grid.last_error || "none"],
      ]),
    );
  }

  function renderRecent(doc) {
    const recent = doc.recent_jobs || {};
    const items = recent.items || [];
    if (recent.error) {
      fill("recent", empty(`Jobs cannot be listed: ${recent.error}`));
      return;
    }
    if (!items.length) {
      fill("recent", empty("No jobs yet."));
      return;
    }
    fill(
      "recent",
      table(
        ["Job", "Status", "Containers", "Created", "Took"],
        items.map((j) =>
          row(
            [
              el("code", { text: j.id }),
              pill(j.status),
              (j.containers || []).join(" → "),
              when(j.created_at),
              j.status === "running" ? "…" : seconds(j.updated_at - j.created_at),
            ],
            { "data-job": j.id },
          ),
        ),
      ),
    );
  }

  function renderWorkloads(doc) {
    const workloads = doc.workloads || {};
    const items = workloads.items || [];
    if (!workloads.enabled) {
      fill("workloads", empty("Workloads are off on this node (workloads.enabled: false)."));
      return;
    }
    if (workloads.error) {
      fill("workloads", empty(`Workloads cannot be listed: ${workloads.error}`));
      return;
    }
    if (!items.length) {
      fill("workloads", empty("No workloads yet."));
      return;
    }
    fill(
      "workloads",
      table(
        ["Workload", "Status", "Image", "GPUs", "Started", "Runtime", "Exit", ""],
        items.map((w) => {
          const follow = el("button", { type: "button", text: "Log" });
          follow.addEventListener("click", () => openLog(w.job_id));
          const gpus = (w.gpus || []).map((g) => `#${g.index ?? "?"} ${g.family || ""}`.trim()).join(", ");
          const status = el("span", {}, pill(w.status), w.queue_position ? ` #${w.queue_position} in queue` : "");
          return row(
            [
              el("span", {}, el("code", { text: w.job_id }), w.name ? el("div", { text: w.name }) : null,
                w.error ? el("div", { class: "muted", text: w.error }) : null),
              status,
              w.image,
              gpus || "none",
              when(w.started_at),
              seconds(w.runtime_seconds),
              w.exit_code ?? "–",
              follow,
            ],
            { "data-workload": w.job_id },
          );
        }),
      ),
    );
  }

  function render(doc) {
    renderHealth(doc);
    renderGpus(doc);
    renderJobs(doc);
    renderContainers(doc);
    renderChain(doc);
    renderGrid(doc);
    renderRecent(doc);
    renderWorkloads(doc);
    $("updated").textContent = `updated ${when(doc.generated_at)}`;
  }

  // --- polling -------------------------------------------------------------------------------

  function notice(text) {
    const box = $("notice");
    box.textContent = text || "";
    box.hidden = !text;
  }

  function authHeaders() {
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function merge(history) {
    windowSeconds = history.window_seconds || windowSeconds;
    for (const sample of history.samples || []) {
      if (lastAt === null || sample.at > lastAt) {
        samples.push(sample);
        lastAt = sample.at;
      }
    }
    const from = (lastAt ?? 0) - windowSeconds;
    while (samples.length && samples[0].at < from) samples.shift();
  }

  async function poll() {
    clearTimeout(timer);
    const run = ++pollRun;
    let delay = pollSeconds;
    if (document.hidden) {
      // A background tab asks nothing; it catches up when shown (visibilitychange).
      timer = setTimeout(poll, delay * 1000);
      return;
    }
    try {
      const query = lastAt === null ? "" : `?since=${encodeURIComponent(lastAt)}`;
      const resp = await fetch(`ui/state${query}`, { headers: authHeaders(), cache: "no-store" });
      if (run !== pollRun) return;
      if (resp.status === 401 || resp.status === 403) {
        const body = await resp.json().catch(() => ({}));
        notice(
          key
            ? `The node refused this API key: ${body.error || resp.status}.`
            : "This node shows its status only to callers with an API key (api_keys.protect_info): enter one above.",
        );
        $("verdict").textContent = "locked";
        $("verdict").className = "pill";
      } else if (resp.status === 429) {
        delay = Math.max(delay, Number(resp.headers.get("Retry-After")) || 10);
        notice(`Rate limited by the node; next try in ${delay} s.`);
      } else if (!resp.ok) {
        const body = await resp.json().catch(() => ({}));
        notice(`The node answered ${resp.status}: ${body.error || resp.statusText}.`);
      } else {
        const doc = await resp.json();
        if (run !== pollRun) return;
        pollSeconds = doc.poll_seconds || pollSeconds;
        delay = pollSeconds;
        merge(doc.history || {});
        notice("");
        render(doc);
      }
    } catch (err) {
      if (run !== pollRun) return;
      notice(`The node is unreachable (${err.message}); retrying.`);
      $("verdict").textContent = "unreachable";
      $("verdict").className = "pill s-unreachable";
    }
    timer = setTimeout(poll, delay * 1000);
  }

  // --- live log of a workload ------------------------------------------------------------------

  function appendLog(text) {
    const out = $("log-output");
    const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
    let all = out.textContent + text;
    if (all.length > LOG_MAX_CHARS) all = all.slice(all.length - LOG_MAX_CHARS);
    out.textContent = all;
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  function closeLog() {
    if (logAbort) logAbort.abort();
    logAbort = null;
    $("log").hidden = true;
  }

  // Server-sent events read from a fetch (EventSource cannot send the API key header).
  async function openLog(jobId) {
    closeLog();
    const section = $("log");
    section.hidden = false;
    $("log-job").textContent = jobId;
    $("log-output").textContent = "";
    const status = $("log-status");
    if (!key) {
      status.textContent = "Following a workload's output needs the API key it was submitted with: enter it above.";
      return;
    }
    status.textContent = "connecting…";
    const abort = (logAbort = new AbortController());
    try {
      const resp = await fetch(`v1/jobs/${encodeURIComponent(jobId)}/logs/live`, {
        headers: { ...authHeaders(), Accept: "text/event-stream" },
        signal: abort.signal,
      });
      if (!resp.ok) {
        const body = await resp.json().catch(() => ({}));
        status.textContent = resp.status === 404
          ? "Not found for this API key: only the key that submitted a workload can follow its output."
          : `The node answered ${resp.status}: ${body.error || resp.statusText}.`;
        return;
      }
      status.textContent = "following";
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trimStart();
          }
          if (event === "log") appendLog(JSON.parse(data));
          else if (event === "end") {
            const info = JSON.parse(data);
            status.textContent = `ended: ${info.status}${info.exit_code === null ? "" : `, exit code ${info.exit_code}`}${info.error ? ` (${info.error})` : ""}`;
          }
        }
      }
      if (status.textContent === "following") status.textContent = "stream closed";
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = `Log stream failed: ${err.message}`;
    }
  }

  // --- start ---------------------------------------------------------------------------------

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("key");
    key = input.value.trim();
    input.value = "";
    input.placeholder = key ? "key set" : "na_…";
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    poll();
  });
  $("key-forget").addEventListener("click", () => {
    key = "";
    sessionStorage.removeItem(KEY_STORE);
    $("key").placeholder = "na_…";
    closeLog();
    poll();
  });
  $("log-close").addEventListener("click", closeLog);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });
  if (key) $("key").placeholder = "key set";
  poll();
})();
